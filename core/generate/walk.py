"""Walking a Fabrikate component tree per environment and producing one file per component visited."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from core.rules.helm_modes import HELM_MODES
from core.rules.source_hosts import chart_repository_allowed, default_allowed_sources

from .component import Component, load_component
from .config import (EMPTY, ComponentConfig, EnvironmentSpec, config_names, load_config_file, merge,
                     parse_environment)
from .documents import load_documents
from .emitter import dump
from .errors import GenerationError
from .helm import (ChartSource, HelmTemplate, chart_path_in_repository, is_helm_release_name, release_documents,
                   release_name)
from .manifests import dump_documents, join_documents
from .output import GeneratedFile, Generation
from .paths import inside, links_leaving
from .sources import GitCheckouts, GitRef, check_url, strip_credentials
from .static import static_documents

MAX_TREE_DEPTH = 50


@dataclass(frozen=True)
class Location:
    """Where a component's files are: its directory, the checkout that bounds every path it names, and the git
    source of that checkout (None for the HLD repository itself)."""
    directory: Path
    checkout: Path
    origin: GitRef | None

    def display(self, directory: Path | None = None) -> str:
        relative = (directory or self.directory).relative_to(self.checkout).as_posix()
        prefix = f"{self.origin.describe()}:" if self.origin else ""
        return prefix + ("" if relative == "." else relative + "/")


class _Walker:
    def __init__(self, root: Path, *, helm_mode: str, helm: HelmTemplate, checkouts: GitCheckouts,
                 max_file_bytes: int, max_output_bytes: int, hld_repo_url: str | None,
                 allowed_sources: tuple[str, ...]) -> None:
        self._root = root
        self._allowed_sources = allowed_sources
        self._helm_mode = helm_mode
        self._helm = helm
        self._checkouts = checkouts
        self._file_limit = max_file_bytes
        self._output_left = max_output_bytes
        self._hld_repo_url = hld_repo_url
        self._components: dict[Path, Component] = {}
        self._config_files: dict[tuple[Path, str], ComponentConfig] = {}
        self._config_directories: dict[Path, Path] = {}
        self._statics: dict[Path, list[tuple[str, Any]]] = {}
        self._charts_checked: set[Path] = set()

    # -- loading, cached across environments --------------------------------------------------------------

    def _component(self, location: Location) -> Component:
        if location.directory not in self._components:
            self._components[location.directory] = load_component(
                location.directory, location.checkout, self._file_limit, location.display())
        return self._components[location.directory]

    def _config(self, location: Location, layers: tuple[str, ...]) -> ComponentConfig:
        if location.directory not in self._config_directories:
            self._config_directories[location.directory] = inside(
                location.checkout, location.directory, "config", f"{location.display()}config")
        merged = EMPTY
        for environment in config_names(layers):
            key = (location.directory, environment)
            if key not in self._config_files:
                self._config_files[key] = load_config_file(
                    self._config_directories[location.directory], environment, location.checkout,
                    self._file_limit, location.display())
            merged = merge(merged, self._config_files[key])
        return merged

    def _static(self, directory: Path, location: Location) -> list[tuple[str, Any]]:
        if directory not in self._statics:
            self._statics[directory] = static_documents(
                directory, location.checkout, self._file_limit, location.display(directory))
        return self._statics[directory]

    def _git_checkout(self, component: Component, label: str) -> tuple[GitRef, Path]:
        ref = GitRef(component.source, component.version, component.branch)
        return ref, self._checkouts.checkout(ref, label)

    def _vendored(self, component: Component, parent: Location, folder: str, label: str) -> Location | None:
        """Where `fab install` put a git source (`components/<name>/` for a component, `helm_repos/<name>/` for a
        helm chart) when that copy is committed to the HLD: Fabrikate's `generate` reads it from there, offline,
        so the walk does too. A symlinked copy is not used."""
        copy = parent.directory / folder / component.name
        if copy.is_symlink() or not copy.is_dir():
            return None
        directory = inside(parent.checkout, copy, component.path or ".", label)
        return Location(directory, parent.checkout, parent.origin)

    def _locate(self, component: Component, parent: Location, label: str) -> Location:
        if component.method == "git":
            vendored = self._vendored(component, parent, "components", label)
            if vendored is not None:
                return vendored
            ref, checkout = self._git_checkout(component, label)
            return Location(inside(checkout, checkout, component.path or ".", label), checkout, ref)
        base = inside(parent.checkout, parent.directory, component.source or ".", label)
        return Location(inside(parent.checkout, base, component.path or ".", label), parent.checkout, parent.origin)

    # -- walking -------------------------------------------------------------------------------------------

    def environment(self, spec: EnvironmentSpec) -> list[GeneratedFile]:
        self._files: dict[str, tuple[bytes, str]] = {}
        self._releases: dict[tuple[str, str], str] = {}
        self._helm_releases: dict[tuple[str, str], str] = {}
        location = Location(self._root, self._root, None)
        root = self._component(location)
        if root.method == "git" and not root.inlined:
            raise GenerationError(f"component.yaml ({root.name}): a root component with method git is not supported")
        self._visit(root, self._config(location, spec.layers), location, (), spec, (location.directory,))
        return [GeneratedFile(path, content) for path, (content, _) in self._files.items()]

    def _visit(self, component: Component, config: ComponentConfig, location: Location,
               logical: tuple[str, ...], spec: EnvironmentSpec, ancestors: tuple[Path, ...]) -> None:
        label = f"component {'/'.join((*logical, component.name))} ({spec.folder})"
        self._emit(spec.folder, logical, component.name, self._render(component, config, location, logical, label),
                   label)
        for child in component.subcomponents:
            given = config.for_subcomponent(child.name)
            if given.disabled:
                continue
            child_label = f"component {'/'.join((*logical, child.name))} ({spec.folder})"
            if child.inlined:
                self._visit(child, given, location, logical, spec, ancestors)
                continue
            child_location = self._locate(child, location, child_label)
            if child_location.directory in ancestors or len(ancestors) > MAX_TREE_DEPTH:
                raise GenerationError(f"{child_label}: component tree loops back to {child_location.display()!r}")
            merged = merge(given, self._config(child_location, spec.layers))
            if merged.disabled:
                continue
            self._visit(self._component(child_location), merged, child_location, (*logical, child.name), spec,
                        (*ancestors, child_location.directory))

    def _emit(self, folder: str, logical: tuple[str, ...], name: str, text: str, label: str) -> None:
        path = "/".join((folder, *logical, f"{name}.yaml"))
        if path in self._files:
            raise GenerationError(f"{label}: output {path} is also written by {self._files[path][1]}")
        content = text.encode("utf-8")
        self._output_left -= len(content)
        if self._output_left < 0:
            raise GenerationError(f"{label}: generated output exceeds the size limit")
        self._files[path] = (content, label)

    # -- rendering -----------------------------------------------------------------------------------------

    def _render(self, component: Component, config: ComponentConfig, location: Location,
                logical: tuple[str, ...], label: str) -> str:
        if component.type == "component":
            return ""
        if component.type == "static":
            documents = self._static(*self._content_directory(component, location, label))
        elif self._helm_mode == "helmrelease":
            return dump_documents(self._release(component, config, location, logical, label),
                                  budget=self._output_left, label=label)
        else:
            documents = self._rendered(component, config, location, label)
        namespace = config.namespace if config.inject_namespace else None
        return join_documents(documents, namespace, budget=self._output_left, label=label)

    def _content_directory(self, component: Component, location: Location, label: str) -> tuple[Path, Location]:
        """The directory a static or helm component's `path` names: in its git source, or beside its parent."""
        if component.method == "git":
            vendored = self._vendored(component, location, "helm_repos" if component.type == "helm" else "components",
                                      label)
            if vendored is not None:
                return vendored.directory, vendored
            ref, checkout = self._git_checkout(component, label)
            location = Location(checkout, checkout, ref)
        return inside(location.checkout, location.directory, component.path or ".", label), location

    def _chart_directory(self, component: Component, location: Location, label: str) -> tuple[Path, Location]:
        directory, location = self._content_directory(component, location, label)
        if not (directory / "Chart.yaml").is_file():
            raise GenerationError(f"{label}: no Chart.yaml in {location.display(directory) or './'}")
        if directory not in self._charts_checked:
            escaping = links_leaving(directory, location.checkout)
            if escaping:
                raise GenerationError(f"{label}: chart file {escaping!r} links outside the checkout")
            self._charts_checked.add(directory)
        return directory, location

    def _rendered(self, component: Component, config: ComponentConfig, location: Location,
                  label: str) -> list[tuple[str, Any]]:
        if component.method == "git" and self._vendored(component, location, "helm_repos", label) is None:
            check_url(component.source, label, self._allowed_sources)  # a refused source is named first
        if component.method == "helm" and not chart_repository_allowed(component.source, self._allowed_sources):
            raise GenerationError(
                f"{label}: chart repository {strip_credentials(component.source)!r} is not allowed: rendered mode "
                f"fetches it, so its host must be in ALLOWED_SOURCE_HOSTS ({', '.join(self._allowed_sources) or 'none'})")
        self._helm.require(label)  # then a missing helm, before anything is fetched
        values = dump(dict(config.values), budget=self._output_left, label=label)
        if component.method == "helm":
            chart, repo, version = component.path, component.source, component.version
        else:
            chart = str(self._chart_directory(component, location, label)[0])
            repo, version = "", ""
        output = self._helm.render(release=component.name, chart=chart, namespace=config.namespace or "default",
                                   values=values, repo=repo, version=version, limit=self._output_left, label=label)
        documents = [(text, value) for text, value in load_documents(output, f"{label}: helm output")
                     if isinstance(value, dict)]
        if not documents:
            raise GenerationError(f"{label}: helm template rendered no documents")
        return documents

    def _release(self, component: Component, config: ComponentConfig, location: Location,
                 logical: tuple[str, ...], label: str) -> list[dict]:
        name = release_name(logical, component.name)
        namespace = config.namespace or "default"
        if (namespace, name) in self._releases:
            raise GenerationError(f"{label}: HelmRelease {namespace}/{name} is also written by "
                                  f"{self._releases[namespace, name]}")
        self._releases[namespace, name] = label
        helm_release = self._helm_release(component.name, name, namespace, label)
        if component.method == "helm":
            source = ChartSource.helm_repository(component.source, component.path, component.version)
        elif component.method == "git":
            check_url(component.source, label, self._allowed_sources)
            ref = GitRef(component.source, component.version, component.branch)
            source = ChartSource.git(ref, chart_path_in_repository(component.path, label))
        else:
            directory, location = self._chart_directory(component, location, label)
            chart = chart_path_in_repository(directory.relative_to(location.checkout).as_posix(), label)
            if location.origin is None:
                if not self._hld_repo_url:
                    raise GenerationError(f"{label}: the chart is in the HLD repository, so its URL is needed "
                                          "(hld_repo_url / --hld-repo-url)")
                source = ChartSource.git(GitRef(self._hld_repo_url), chart)
            else:
                source = ChartSource.git(location.origin, chart)
        return release_documents(name, config.namespace, config.values, source, helm_release)

    def _helm_release(self, component_name: str, object_name: str, namespace: str, label: str) -> str:
        """Fabrikate runs `helm template <component name>`, so charts that use `.Release.Name` named their objects
        after the component: keep that name, so moving from Fabrikate's manifests renames no workload. Helm
        releases are unique per namespace (the HelmRelease's, where Helm stores them): a second component of the
        same name there (every Bedrock ring has a `chart`) gets the unique object name instead, as does a name
        Helm would refuse."""
        helm_release = component_name
        if not is_helm_release_name(helm_release) or (namespace, helm_release) in self._helm_releases:
            helm_release = object_name
        if (namespace, helm_release) in self._helm_releases:
            raise GenerationError(f"{label}: Helm release {namespace}/{helm_release} is also installed by "
                                  f"{self._helm_releases[namespace, helm_release]}")
        self._helm_releases[namespace, helm_release] = label
        return helm_release


def generate(hld_root: Path, environments: Sequence[str], *, helm_mode: str = "rendered",
             helm_bin: str | None = None, cache_dir: Path | None = None, max_file_bytes: int = 1 << 20,
             max_output_bytes: int = 64 << 20, hld_repo_url: str | None = None,
             allowed_sources: Sequence[str] | None = None) -> Generation:
    """Generate the manifests of every environment (one top-level folder each) from the HLD at `hld_root`.
    The same HLD always gives byte-identical files, sorted by path. Git sources must be on `allowed_sources`
    (entries as in `core.rules.source_hosts`; default: the host of `hld_repo_url`, so none without it)."""
    allowed = tuple(allowed_sources) if allowed_sources is not None else default_allowed_sources(hld_repo_url)
    if helm_mode not in HELM_MODES:
        raise GenerationError(f"unknown helm mode {helm_mode!r} (expected one of {', '.join(HELM_MODES)})")
    if isinstance(environments, str):
        raise GenerationError("environments must be a list of names")
    specs = [parse_environment(environment) for environment in environments]
    if not specs:
        raise GenerationError("no environment to generate")
    folders = [spec.folder for spec in specs]
    if len(set(folders)) != len(folders):
        raise GenerationError(f"environment folders repeat: {', '.join(folders)}")
    root = Path(hld_root).resolve()
    if not root.is_dir():
        raise GenerationError(f"HLD directory {hld_root} not found")
    files: list[GeneratedFile] = []
    with tempfile.TemporaryDirectory(prefix="generate-") as scratch:
        walker = _Walker(root, helm_mode=helm_mode, helm=HelmTemplate(helm_bin, Path(scratch)),
                         checkouts=GitCheckouts(Path(cache_dir) if cache_dir else Path(scratch) / "cache", allowed),
                         max_file_bytes=max_file_bytes, max_output_bytes=max_output_bytes, hld_repo_url=hld_repo_url,
                         allowed_sources=allowed)
        for spec in specs:
            files.extend(walker.environment(spec))
    return Generation(files=tuple(sorted(files, key=lambda generated: generated.path)),
                      environments=tuple(folders))
