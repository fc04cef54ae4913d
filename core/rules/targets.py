"""Where images live in a desired-state repository: discovery of image fields, and the YAML position index
(`index_yaml`) that both discovery and the byte-preserving editor use to locate a field in the text.

Discovery is a pure function of the files: `discover_targets` takes (repo-relative path, bytes) pairs (the reviewer
judges a PR's files this way); `discover` takes any `TreeFiles` reader, and core.adapters.checkout_targets is the one
that reads a checkout on disk (no symlinks, files over `MAX_FILE_BYTES` skipped, parses cached across runs). YAML is
indexed from its events, so aliases are never expanded.

Three kinds of image field are found by reading the tree (no per-service wiring):

* ``fabrikate``: an image in a Fabrikate ``config/*.yaml`` (or ``.json``) anywhere under a ``config:`` of the file's
  top level or of any nesting of ``subcomponents:``, in one of the `Shape`s (``image: {repository, tag[, digest]}``,
  an image string, ``image`` + ``imageTag``, ``{registry, repository, tag}``, ``{name, tag}``, a policy's
  `ImageFields`). The field returned is the one the generator uses for each environment in scope (`_resolve`,
  following ``core.generate.config.precedence``): a tag-only map in ``config/<env>.yaml``, a higher config's block,
  or the map itself; a field that wins nowhere is reported as overridden. Labels come from the component directory the
  field applies to: the config file's component directory, extended by the nested ``subcomponents.<name>`` chain as
  far as those names map onto directories (via the ``component.yaml`` ``path`` of the subcomponent, else a
  directory of the same name; helm/static subcomponents are inlined and end the chain). With that directory's
  repo-relative parts ``p``: two or more parts → service ``p[-2]``, env ``p[-1]`` (Bedrock ``<repo>/<svc>/<ring>``);
  one part → service ``p[0]``, env ``default``; none → service = innermost subcomponent name (or ``default``), env
  ``default``.
* ``manifest``: ``image:`` of ``containers``/``initContainers``/``ephemeralContainers`` anywhere under ``spec`` of a
  document with a ``kind`` (any other YAML file). service = ``metadata.name``; env = first path segment of the
  file, ``default`` at the root.

A ``# autopilot: ignore`` line comment on a field's line, or on the line of any map above it, hides it.
* ``kustomize``: ``images:`` entries of a kustomization file. service = last path segment of the image name; env =
  the kustomization's directory name, ``default`` at the root.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterable, Iterator, Protocol, Sequence

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver

from core.errors import Permanent
from core.generate.component import component_type
from core.generate.config import CONFIG_SUFFIXES, EnvironmentSpec, parse_environment, precedence
from core.model.images import ImageRef, ImageRefError, parse_image_ref
from core.rules.repo_yaml import MAX_REPO_YAML_BYTES

MAX_FILE_BYTES = MAX_REPO_YAML_BYTES  # larger files are not indexed, so never targets
KUSTOMIZATION_NAMES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
FABRIKATE_IMAGE_FIELDS = ("repository", "tag", "digest")


@dataclass(frozen=True)
class Shape:
    """How a values map spells an image, relative to the node a Fabrikate target's locator names: the keys whose
    values, joined with "/", form the image name, and the tag and digest keys. No repository keys: the node is one
    image string (`image: host/repo:tag`, or `@sha256:...`)."""
    repository: tuple[str, ...] = ("repository",)
    tag: str = "tag"
    digest: str | None = "digest"

    @property
    def is_string(self) -> bool:
        return not self.repository


IMAGE_MAP = Shape()                                   # image: {repository, tag[, digest]}
IMAGE_STRING = Shape((), "", None)                    # image: host/repo:tag
REGISTRY_MAP = Shape(("registry", "repository"))      # image: {registry, repository, tag}  (Bitnami)
NAME_MAP = Shape(("name",))                           # image: {name, tag}
IMAGE_TAG_SIBLINGS = Shape(("image",), "imageTag", None)  # image: host/repo + imageTag: x  (Elastic)


@dataclass(frozen=True)
class ImageFields:
    """A policy rule's `fields: {repository: a.b.name, tag: a.b.version}`: the map at a key path ending in
    `parent` holds the image name under `repository` and its tag under `tag`."""
    parent: tuple[str, ...]
    repository: str
    tag: str

    @property
    def shape(self) -> Shape:
        return Shape((self.repository,), self.tag, None)

PathKey = str | int
YamlPath = tuple[PathKey, ...]  # (document index, key or sequence index, ...)


class YamlIndexError(Permanent, ValueError):
    """YAML text that cannot be indexed (syntax error, duplicate key, nesting too deep)."""


class LocatorError(Permanent, ValueError):
    """A locator string that does not follow the locator grammar."""


# ---------------------------------------------------------------------------------------------- YAML position index


@dataclass(frozen=True)
class TextPosition:
    index: int  # character offset into the text
    line: int  # 0-based
    column: int  # 0-based


@dataclass(frozen=True)
class YamlNode:
    kind: str  # "scalar" | "alias" | "mapping" | "sequence"
    start: TextPosition  # includes an anchor or explicit tag written before the value
    end: TextPosition
    value: str | None = None  # scalar text after unquoting (an alias: its anchored scalar's); else None
    style: str | None = None  # scalar (or aliased scalar): None (plain), "'", '"', "|", ">"
    flow: bool = False  # collection written in flow style
    anchor: str | None = None
    tag: str | None = None  # explicit tag, if any
    key_start: TextPosition | None = None  # where the key starts, when this node is a mapping value
    children: tuple[PathKey, ...] = ()  # mapping keys / sequence indices in text order

    def text(self) -> str | None:
        """The scalar (or aliased scalar) as a string, None for a null or a collection."""
        if self.value is None:
            return None
        if self.style is None and self.tag is None and resolves_to(self.value, (1, 2)) == "null":
            return None
        return self.value


@dataclass(frozen=True)
class YamlIndex:
    nodes: dict[YamlPath, YamlNode]
    documents: int
    ignored_lines: frozenset[int] = frozenset()  # 0-based lines carrying an `# autopilot: ignore` comment

    def ignored(self, path: YamlPath) -> bool:
        """An `# autopilot: ignore` comment on the line of this field's key (or value), or of any map above it."""
        if not self.ignored_lines:
            return False
        for end in range(len(path), 1, -1):
            node = self.nodes.get(path[:end])
            if node is not None and ((node.key_start or node.start).line in self.ignored_lines
                                     or (end == len(path) and node.start.line in self.ignored_lines)):
                return True
        return False

    def get(self, path: YamlPath) -> YamlNode | None:
        return self.nodes.get(path)

    def scalar_text(self, path: YamlPath) -> str | None:
        node = self.nodes.get(path)
        return node.text() if node else None


_RESOLVERS = {version: VersionedResolver(version=version) for version in ((1, 1), (1, 2))}


def resolves_to(plain: str, version: tuple[int, int]) -> str:
    """Short type name ("str", "float", "null", ...) a plain scalar resolves to under a YAML version."""
    tag = _RESOLVERS[version].resolve(ScalarNode, plain, (True, False))
    return str(tag).rsplit(":", 1)[-1]


def _mark(mark) -> TextPosition:
    return TextPosition(mark.index, mark.line, mark.column)


class _Indexer:
    def __init__(self, events: list) -> None:
        self.events = events
        self.pos = 0
        self.nodes: dict[YamlPath, YamlNode] = {}
        self.anchors: dict[str, YamlNode] = {}

    def next(self):
        event = self.events[self.pos]
        self.pos += 1
        return event

    def peek(self):
        return self.events[self.pos]

    def node(self, path: YamlPath | None, key_start: TextPosition | None = None) -> None:
        """Consume one node; record it (and its descendants) when path is not None."""
        event = self.next()
        if isinstance(event, ScalarEvent):
            node = YamlNode("scalar", _mark(event.start_mark), _mark(event.end_mark), event.value, event.style or None,
                            anchor=event.anchor, tag=_explicit_tag(event), key_start=key_start)
        elif isinstance(event, AliasEvent):
            anchored = self.anchors.get(event.anchor)
            scalar = anchored if anchored is not None and anchored.kind == "scalar" else None
            node = YamlNode("alias", _mark(event.start_mark), _mark(event.end_mark), scalar and scalar.value,
                            scalar and scalar.style, anchor=event.anchor, tag=scalar and scalar.tag,
                            key_start=key_start)
        elif isinstance(event, MappingStartEvent):
            children = []
            while not isinstance(self.peek(), MappingEndEvent):
                key_event = self.peek()
                if isinstance(key_event, ScalarEvent) and path is not None:
                    self.next()
                    key = key_event.value
                    if key in children:
                        raise YamlIndexError(f"duplicate key {key!r} at line {key_event.start_mark.line + 1}")
                    children.append(key)
                    self.node(path + (key,), _mark(key_event.start_mark))
                else:  # complex or alias key: nothing below it can be addressed by a locator
                    self.node(None)
                    self.node(None)
            end = self.next()
            node = YamlNode("mapping", _mark(event.start_mark), _mark(end.end_mark), flow=bool(event.flow_style),
                            anchor=event.anchor, tag=_explicit_tag(event), key_start=key_start,
                            children=tuple(children))
        elif isinstance(event, SequenceStartEvent):
            count = 0
            while not isinstance(self.peek(), SequenceEndEvent):
                self.node(None if path is None else path + (count,))
                count += 1
            end = self.next()
            node = YamlNode("sequence", _mark(event.start_mark), _mark(end.end_mark), flow=bool(event.flow_style),
                            anchor=event.anchor, tag=_explicit_tag(event), key_start=key_start,
                            children=tuple(range(count)))
        else:
            raise YamlIndexError(f"unexpected {type(event).__name__} at line {event.start_mark.line + 1}")
        if path is not None:
            self.nodes[path] = node
        if node.kind != "alias" and node.anchor:
            self.anchors[node.anchor] = node

    def stream(self) -> int:
        documents = 0
        if not isinstance(self.next(), StreamStartEvent):
            raise YamlIndexError("not a YAML stream")
        while isinstance(self.peek(), DocumentStartEvent):
            self.next()
            self.node((documents,))
            if not isinstance(self.next(), DocumentEndEvent):
                raise YamlIndexError(f"document {documents} does not end where expected")
            documents += 1
        if not isinstance(self.next(), StreamEndEvent):
            raise YamlIndexError("YAML stream does not end where expected")
        return documents


def _explicit_tag(event) -> str | None:
    tag = event.tag
    if tag is None:
        return None
    return str(getattr(tag, "value", tag))


def index_yaml(text: str) -> YamlIndex:
    """Position of every addressable node of every document. Parses only: never constructs tagged objects."""
    try:
        events = list(YAML(typ="rt").parse(text))
        indexer = _Indexer(events)
        documents = indexer.stream()
    except YAMLError as exc:
        raise YamlIndexError(" ".join(str(exc).split())) from None
    except RecursionError:
        raise YamlIndexError("YAML nesting too deep") from None
    ignored = frozenset(number for number, line in enumerate(text.splitlines()) if "#" in line
                        and _IGNORE_COMMENT.search(line))
    return YamlIndex(indexer.nodes, documents, ignored)


_IGNORE_COMMENT = re.compile(r"#\s*autopilot:\s*ignore\b")


# ------------------------------------------------------------------------------------------------------- locators

_PLAIN_KEY = re.compile(r"[^.\[\]\"\s]+")
_LOCATOR_TOKEN = re.compile(r'(?P<key>"(?:[^"\\]|\\.)*"|[^.\[\]"\s]+)(?P<idx>(?:\[\d+\])*)')


def format_locator(path: tuple[PathKey, ...]) -> str:
    """`("doc", 1, "spec", "containers", 0, "image")` → `doc[1].spec.containers[0].image`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = part if _PLAIN_KEY.fullmatch(part) else json.dumps(part)
            text += f".{key}" if text else key
    return text


def parse_locator(locator: str) -> tuple[PathKey, ...]:
    path: list[PathKey] = []
    for pos, segment in enumerate(_split_locator(locator)):
        match = _LOCATOR_TOKEN.fullmatch(segment)
        if not match:
            raise LocatorError(f"invalid locator {locator!r} at segment {pos}")
        key = match["key"]
        path.append(json.loads(key) if key.startswith('"') else key)
        path.extend(int(i) for i in re.findall(r"\[(\d+)\]", match["idx"]))
    return tuple(path)


def _split_locator(locator: str) -> Iterator[str]:
    segment, quoted, escaped = "", False, False
    for char in locator:
        if quoted:
            quoted = escaped or char != '"'
            escaped = not escaped and char == "\\"
        elif char == '"':
            quoted = True
        elif char == ".":
            yield segment
            segment = ""
            continue
        segment += char
    yield segment


# ----------------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    file: str  # repo-relative POSIX path
    kind: str  # "fabrikate" | "manifest" | "kustomize"
    locator: str  # field inside the file; manifests start with doc[N]
    repository: str  # image name as written in the file (host/repo)
    tag: str | None
    digest: str | None
    service: str
    env: str
    overridden_by: str | None = None  # "file:line" of the Fabrikate config that wins over this field everywhere
    environments: tuple[str, ...] = ()  # Fabrikate environments whose generated manifests take this field
    repository_from: str | None = None  # "file:line" of the repository, for a tag-only map (config/<env>.yaml)
    skip_reason: str | None = None  # why this winning field cannot be edited (the bump reports it as a skip)
    shape: Shape = IMAGE_MAP  # Fabrikate targets: how the named node spells the image

    @property
    def key(self) -> str:
        return f"{self.file}#{self.locator}"

    def index_path(self) -> YamlPath:
        """The locator as a `YamlIndex` path (document index first)."""
        path = parse_locator(self.locator)
        if self.kind == "manifest":
            if len(path) < 2 or path[0] != "doc" or not isinstance(path[1], int):
                raise LocatorError(f"manifest locator {self.locator!r} does not start with doc[N]")
            return path[1:]
        return (0,) + path


def discover_targets(files: Iterable[tuple[str, bytes]], candidates: Iterable[str] | None = None,
                     environments: Sequence[str] | None = None,
                     fields: Sequence[ImageFields] = ()) -> list[Target]:
    """Every image field in a set of files given as (repo-relative POSIX path, content) pairs: no file system.

    The pairs are the tree: a directory exists when a file is under it. Paths that are not plain repo-relative
    paths (absolute, `..`, `.`, empty segments) are ignored, as are files over `MAX_FILE_BYTES` and files that are
    not UTF-8 YAML; a path given twice keeps its last content. `candidates`, `environments` and `fields` mean what
    they mean for `find_all_targets`, which reads a checkout and gives the same result for the same files."""
    return discover(_Pairs(files), candidates, environments, fields)


def discover(files: "TreeFiles", candidates: Iterable[str] | None, environments: Sequence[str] | None,
              fields: Sequence[ImageFields]) -> list[Target]:
    tree = _Tree(files)
    tree.environments = None if environments is None else tuple(parse_environment(e) for e in environments)
    tree.fields = tuple(fields)
    found: list[tuple[str, int, Target]] = []
    paths = files.walk() if candidates is None else sorted(rel for rel in candidates if is_discovered(rel))
    for rel in paths:
        index = tree.index(rel)
        if index is None:
            continue
        try:
            if PurePosixPath(rel).name in KUSTOMIZATION_NAMES:
                found += _kustomize_targets(rel, index)
                continue
            if not rel.endswith(".json"):
                found += _manifest_targets(rel, index)
            if PurePosixPath(rel).parent.name == "config":
                found += _fabrikate_targets(tree, rel, index)
        except RecursionError:  # nesting the indexer took but the recursive searches below cannot: not a target
            continue
    unique: dict[str, Target] = {}
    for _, _, target in sorted(found, key=lambda item: (item[0], item[1])):
        known = unique.get(target.key)
        if known is None:
            unique[target.key] = target
        elif target.environments and not known.overridden_by:  # one field reached from two definitions
            environments = tuple(dict.fromkeys(known.environments + target.environments))
            unique[target.key] = dataclasses.replace(known, environments=environments)
        elif target.environments:
            unique[target.key] = target
    return list(unique.values())


def parse_indexable(data: bytes) -> YamlIndex | None:
    """The index of one file's content; None (never a target) when too large, not UTF-8 or not YAML."""
    if len(data) > MAX_FILE_BYTES:
        return None
    try:
        return index_yaml(data.decode("utf-8"))
    except (UnicodeDecodeError, YamlIndexError):
        return None


class TreeFiles(Protocol):
    """What discovery reads of a tree: repo-relative POSIX paths, "" for the root directory."""

    def walk(self) -> list[str]:
        """Every discovered file (`_is_discovered`), each directory's files before its subdirectories', by name."""

    def index(self, rel: str) -> YamlIndex | None:
        """The parsed file, None when absent or not indexable."""

    def is_dir(self, rel: str) -> bool: ...

    def plain_dir(self, rel: str) -> bool:
        """A directory reached without symbolic links."""

    def file_names(self, rel_dir: str) -> list[str]:
        """Names of the regular files directly in a directory."""

    def component_dirs(self, rel: str, index: YamlIndex, component_dir: str) -> dict[str, str | None]:
        """`_subcomponent_dirs` of the component file `rel` (a reader may cache it)."""


def _plain_path(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and all(part not in ("", ".", "..") for part in parts)


def _walk_key(rel: str) -> tuple[tuple[int, str], ...]:
    """The order of a checkout's walk (core.adapters.checkout_targets): in each directory its files (0) before its subdirectories (1), by name."""
    parts = rel.split("/")
    return tuple((1, part) for part in parts[:-1]) + ((0, parts[-1]),)


class _Pairs:
    """A tree given as (path, bytes) pairs."""

    def __init__(self, files: Iterable[tuple[str, bytes]]) -> None:
        self._data: dict[str, bytes] = {}
        for rel, data in files:
            if _plain_path(rel):
                self._data[rel] = bytes(data)
        self._dirs: dict[str, list[str]] = {"": []}
        for rel in self._data:
            parent, _, name = rel.rpartition("/")
            self._dirs.setdefault(parent, []).append(name)
            while parent:
                parent = parent.rpartition("/")[0]
                self._dirs.setdefault(parent, [])
        self._indexes: dict[str, YamlIndex | None] = {}

    def walk(self) -> list[str]:
        return sorted((rel for rel in self._data if is_discovered(rel) and ".git" not in rel.split("/")[:-1]),
                      key=_walk_key)

    def index(self, rel: str) -> YamlIndex | None:
        if rel not in self._indexes:
            data = self._data.get(rel)
            self._indexes[rel] = None if data is None else parse_indexable(data)
        return self._indexes[rel]

    def is_dir(self, rel: str) -> bool:
        return rel in self._dirs

    plain_dir = is_dir

    def file_names(self, rel_dir: str) -> list[str]:
        return list(self._dirs.get(rel_dir, ()))

    def component_dirs(self, rel: str, index: YamlIndex, component_dir: str) -> dict[str, str | None]:
        return subcomponent_dirs(index, component_dir)


class _Tree:
    """What discovery derives from the files: YAML indexes and Fabrikate component maps, each computed once."""

    def __init__(self, files: TreeFiles) -> None:
        self.files = files
        self._subcomponents: dict[str, dict[str, str | None]] = {}
        self.environments: tuple[EnvironmentSpec, ...] | None = None
        self.fields: tuple[ImageFields, ...] = ()

    def index(self, rel: str) -> YamlIndex | None:
        return self.files.index(rel)

    def config_file(self, component_dir: str, name: str) -> str | None:
        """`config/<name>.yaml`, else `.json` (the generator's lookup), in a directory reached without symlinks."""
        config_dir = _rel(component_dir, "config")
        if config_dir is None or not self.files.plain_dir(config_dir):
            return None
        for suffix in CONFIG_SUFFIXES:
            rel = _rel(component_dir, "config", name + suffix)
            if self.index(rel) is not None:
                return rel
        return None

    def environment_names(self, component_dir: str) -> list[str]:
        """Environments the config files of a component name (`config/<env>.yaml|json`), common excluded."""
        config_dir = _rel(component_dir, "config")
        if config_dir is None or not self.files.plain_dir(config_dir):
            return []
        names = self.files.file_names(config_dir)
        stems = {name.rsplit(".", 1)[0] for name in names if name.endswith(CONFIG_SUFFIXES)}
        return sorted(stem for stem in stems if stem != "common" and _ENVIRONMENT.fullmatch(stem))

    def subcomponent_dirs(self, component_dir: str) -> dict[str, str | None]:
        """Subcomponent name → its directory (repo-relative), None for inlined helm/static subcomponents."""
        if component_dir not in self._subcomponents:
            self._subcomponents[component_dir] = self._read_component(component_dir)
        return self._subcomponents[component_dir]

    def _read_component(self, component_dir: str) -> dict[str, str | None]:
        for name in ("component.yaml", "component.json"):
            rel = _rel(component_dir, name)
            index = self.index(rel)
            if index is not None:
                return self.files.component_dirs(rel, index, component_dir)
        return {}

    def child_dir(self, component_dir: str, name: str) -> str | None:
        dirs = self.subcomponent_dirs(component_dir)
        if name in dirs:
            return dirs[name]
        fallback = _rel(component_dir, name)
        return fallback if fallback is not None and self.files.is_dir(fallback) else None


def subcomponent_dirs(index: YamlIndex, component_dir: str) -> dict[str, str | None]:
    dirs: dict[str, str | None] = {}
    entries = index.get((0, "subcomponents"))
    for i in entries.children if entries and entries.kind == "sequence" else ():
        name = index.scalar_text((0, "subcomponents", i, "name"))
        if not name:
            continue
        kind = component_type(index.scalar_text((0, "subcomponents", i, "generator")),
                              index.scalar_text((0, "subcomponents", i, "type")))
        if kind != "component":
            dirs[name] = None
            continue
        sub_path = index.scalar_text((0, "subcomponents", i, "path")) or ""
        if index.scalar_text((0, "subcomponents", i, "method")) == "git":
            location = _rel(component_dir, "components", name, sub_path)
        else:
            location = _rel(component_dir, index.scalar_text((0, "subcomponents", i, "source")) or "", sub_path)
        if location is not None:
            dirs[name] = location
    return dirs


def is_discovered(rel: str) -> bool:
    """YAML files, kustomizations, and the JSON configs Fabrikate reads (`config/<env>.json`)."""
    path = PurePosixPath(rel)
    return (rel.endswith((".yaml", ".yml")) or path.name in KUSTOMIZATION_NAMES
            or (rel.endswith(".json") and path.parent.name == "config"))


_ENVIRONMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _rel(*parts: str) -> str | None:
    """Join and normalise repo-relative parts; "" is the root, None a path leading out of the tree."""
    joined = os.path.normpath(os.path.join(*parts)) if any(parts) else "."
    if os.path.isabs(joined) or joined == ".." or joined.startswith("../"):
        return None
    return "" if joined == "." else PurePosixPath(joined).as_posix()


def path_parts(rel_dir: str) -> list[str]:
    return [part for part in rel_dir.split("/") if part]


def _image(text: str | None) -> ImageRef | None:
    try:
        return parse_image_ref(text) if text else None
    except ImageRefError:
        return None


def is_container_image_path(rest: tuple[PathKey, ...]) -> bool:
    """`spec ... <containers|initContainers|ephemeralContainers>[i].image` of a document with a `kind`: the pod spec
    of a Pod, the pod template of any workload (Deployment, CronJob, Argo Rollout, Knative Service, KEDA ScaledJob's
    `jobTargetRef`, custom kinds), as kustomize's image transformer finds them."""
    return (len(rest) >= 4 and rest[0] == "spec" and rest[-1] == "image" and isinstance(rest[-2], int)
            and rest[-3] in CONTAINER_LISTS and all(isinstance(part, str) for part in rest[:-2]))


def _container_images(index: YamlIndex, path: YamlPath) -> Iterator[YamlPath]:
    node = index.get(path)
    if node is None or node.kind != "mapping":
        return
    for key in node.children:
        child = index.get(path + (key,))
        if key in CONTAINER_LISTS and child.kind == "sequence":
            for i in child.children:
                if index.get(path + (key, i, "image")) is not None:
                    yield path + (key, i, "image")
        elif child.kind == "mapping":
            yield from _container_images(index, path + (key,))


def _manifest_targets(rel: str, index: YamlIndex) -> list[tuple[str, int, Target]]:
    found = []
    segments = PurePosixPath(rel).parts[:-1]
    env = segments[0] if segments else "default"
    for doc in range(index.documents):
        if not index.scalar_text((doc, "kind")):
            continue
        service = index.scalar_text((doc, "metadata", "name")) or PurePosixPath(rel).stem
        for path in _container_images(index, (doc, "spec")):
            node = index.get(path)
            ref = _image(node.text())
            if ref is None or index.ignored(path):
                continue
            target = Target(rel, "manifest", format_locator(("doc",) + path), ref.name, ref.tag, ref.digest,
                            service, env)
            found.append((rel, node.start.index, target))
    return found


def _kustomize_targets(rel: str, index: YamlIndex) -> list[tuple[str, int, Target]]:
    found = []
    directory = PurePosixPath(rel).parent.name
    entries = index.get((0, "images"))
    for i in entries.children if entries and entries.kind == "sequence" else ():
        entry = (0, "images", i)
        name = index.scalar_text(entry + ("newName",)) or index.scalar_text(entry + ("name",))
        ref = _image(name)
        if ref is None or ref.tag or ref.digest or index.ignored(entry + ("name",)):
            continue
        target = Target(rel, "kustomize", format_locator(("images", i)), name,
                        index.scalar_text(entry + ("newTag",)), index.scalar_text(entry + ("digest",)),
                        ref.repository.rsplit("/", 1)[-1], directory or "default")
        found.append((rel, index.get(entry).start.index, target))
    return found


@dataclass(frozen=True)
class _ConfigImage:
    chain: tuple[str, ...]  # subcomponent names from the file's component down to the one configured
    config_path: tuple[PathKey, ...]  # below `config:`, ending at the node the shape is relative to
    path: YamlPath  # in the index
    shape: Shape = IMAGE_MAP


def _config_images(index: YamlIndex, path: YamlPath, chain: tuple[str, ...],
                   fields: tuple[ImageFields, ...] = ()) -> Iterator[_ConfigImage]:
    config = index.get(path + ("config",))
    if config and config.kind == "mapping":
        for below, shape in _image_nodes(index, path + ("config",), (), fields):
            yield _ConfigImage(chain, below, path + ("config",) + below, shape)
    subcomponents = index.get(path + ("subcomponents",))
    if subcomponents and subcomponents.kind == "mapping":
        for name in subcomponents.children:
            if index.get(path + ("subcomponents", name)).kind == "mapping":
                yield from _config_images(index, path + ("subcomponents", name), chain + (str(name),), fields)


def shape_image(index: YamlIndex, path: YamlPath, shape: Shape) -> ImageRef | None:
    """The image the node at `path` spells in `shape`: for a map, its name (no tag or digest in it); for a string,
    the whole reference, which must carry a tag or digest (a bare name says nothing to bump)."""
    node = index.get(path)
    if node is None:
        return None
    if shape.is_string:
        ref = _image(node.text()) if node.kind in ("scalar", "alias") else None
        return ref if ref is not None and (ref.tag or ref.digest) else None
    if node.kind != "mapping":
        return None
    parts = [index.scalar_text(path + (key,)) for key in shape.repository]
    if not all(parts):
        return None
    ref = _image("/".join(parts))
    return ref if ref is not None and not ref.tag and not ref.digest else None


def _node_shape(index: YamlIndex, path: YamlPath, keys: tuple[PathKey, ...],
                fields: tuple[ImageFields, ...]) -> tuple[tuple[PathKey, ...], Shape] | None:
    """The image shape the node at `path` (reached by `keys` below `config:`) holds, if any."""
    node = index.get(path)
    if node.kind == "mapping":
        for rule in fields:
            if tuple(keys[len(keys) - len(rule.parent):]) == rule.parent and shape_image(index, path, rule.shape):
                return keys, rule.shape
        if "image" in node.children and "imageTag" in node.children and shape_image(
                index, path, IMAGE_TAG_SIBLINGS):
            return keys, IMAGE_TAG_SIBLINGS
    if keys and keys[-1] == "image":
        for shape in (REGISTRY_MAP, IMAGE_MAP, NAME_MAP, IMAGE_STRING):
            if shape is NAME_MAP and "tag" not in node.children:
                continue  # {name, version} and the like: only a policy `fields` rule says which key is the tag
            if shape_image(index, path, shape):
                return keys, shape
    return None


def _image_nodes(index: YamlIndex, path: YamlPath, keys: tuple[PathKey, ...],
                 fields: tuple[ImageFields, ...]) -> Iterator[tuple[tuple[PathKey, ...], Shape]]:
    """(path below `config:`, shape) of every image at any depth of a helm values map."""
    found = _node_shape(index, path, keys, fields)
    if found is not None:
        yield found
        if found[1] is not IMAGE_TAG_SIBLINGS:
            return
    node = index.get(path)
    for child in node.children:
        child_node = index.get(path + (child,))
        if child_node.kind in ("mapping", "sequence"):
            yield from _image_nodes(index, path + (child,), keys + (child,), fields)
        elif child == "image" and (found is None or found[1] is not IMAGE_TAG_SIBLINGS):
            shaped = _node_shape(index, path + (child,), keys + (child,), fields)
            if shaped is not None:
                yield shaped


def _fabrikate_targets(tree: _Tree, rel: str, index: YamlIndex) -> list[tuple[str, int, Target]]:
    if index.documents != 1 or index.get((0,)).kind != "mapping":
        return []
    component_dir = str(PurePosixPath(rel).parent.parent)
    component_dir = "" if component_dir == "." else component_dir
    found = []
    for image in _config_images(index, (0,), (), tree.fields):
        if index.ignored(image.path):
            continue
        labels = _fabrikate_labels(tree, component_dir, image.chain)
        found += _resolved_targets(tree, rel, index, image, component_dir, labels)
    return found


@dataclass(frozen=True)
class _Field:
    """Where one layer sets an image map: the config file, the map's index path, and its index."""
    file: str
    path: YamlPath
    index: YamlIndex

    def line(self, key: str | None = None) -> str:
        node = self.index.get(self.path + (key,)) if key else None
        node = node or self.index.get(self.path)
        return f"{self.file}:{(node.key_start or node.start).line + 1}"


def _levels(tree: _Tree, component_dir: str, chain: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """(component directory, subcomponent names from it down to the configured component), from the top of the
    tree down to the deepest component with a directory of its own (inlined helm/static ones have none)."""
    above = _component_chain(tree, component_dir)
    names = tuple(name for _, name in above) + chain
    levels = [(directory, names[depth:]) for depth, (directory, _) in enumerate(above)]
    levels.append((component_dir, chain))
    directory = component_dir
    for depth, name in enumerate(chain):
        child = tree.child_dir(directory, name)
        if child is None:
            break
        directory = child
        levels.append((directory, chain[depth + 1:]))
    return levels


def _block(names: tuple[str, ...], config_path: tuple[PathKey, ...]) -> YamlPath:
    path: YamlPath = (0,)
    for name in names:
        path += ("subcomponents", name)
    return path + ("config",) + config_path


def _resolve(tree: _Tree, levels: list[tuple[str, tuple[str, ...]]], config_path: tuple[PathKey, ...],
             layers: tuple[str, ...], shape: Shape) -> tuple[_Field | None, _Field | None]:
    """(the field whose tag or digest the generator uses, the field whose repository it uses) for one environment,
    following `precedence`, the generator's rule: the first file that sets the key wins."""
    winner = repository = None
    tag_keys = tuple(key for key in (shape.tag, shape.digest) if key)
    for level, name in precedence(len(levels), layers):
        directory, names = levels[level]
        file = tree.config_file(directory, name)
        index = tree.index(file) if file else None
        if index is None or index.documents != 1:
            continue
        path = _block(names, config_path)
        node = index.get(path)
        if node is None:
            continue
        field = _Field(file, path, index)
        if shape.is_string or node.kind != "mapping":  # a value that is not a map replaces the whole map
            return (winner or field), (repository or field)
        if winner is None and any(index.get(path + (key,)) is not None for key in tag_keys):
            winner = field
        if repository is None and all(index.get(path + (key,)) is not None for key in shape.repository):
            repository = field
        if winner and repository:
            break
    return winner, repository


def _scope(tree: _Tree, levels: list[tuple[str, tuple[str, ...]]]) -> tuple[EnvironmentSpec, ...]:
    if tree.environments is not None:
        return tree.environments
    names = sorted({name for directory, _ in levels for name in tree.environment_names(directory)})
    return tuple(parse_environment(name) for name in (*names, "common"))


def _resolved_targets(tree: _Tree, rel: str, index: YamlIndex, image: _ConfigImage, component_dir: str,
                      labels: tuple[str, str]) -> list[tuple[str, int, Target]]:
    """The targets one image map with a repository leads to: for every environment in scope, the field that
    wins there (this map, a tag-only map in config/<env>.yaml, a higher config's block); this map itself as
    overridden when it wins nowhere; and a skip for a winning value that is not an editable map."""
    levels = _levels(tree, component_dir, image.chain)
    definition = _Field(rel, image.path, index)
    wins: dict[tuple[str, YamlPath], tuple[_Field, _Field, list[str]]] = {}
    shape = image.shape
    for spec in _scope(tree, levels):
        winner, repository = _resolve(tree, levels, image.config_path, spec.layers, shape)
        winner = winner or repository or definition
        entry = wins.setdefault((winner.file, winner.path), (winner, repository or definition, []))
        entry[2].append(spec.folder)
    service, env = labels
    found = []
    for winner, source, environments in wins.values():
        node = winner.index.get(winner.path)
        ref = shape_image(source.index, source.path, shape) or shape_image(index, image.path, shape)
        locator = format_locator(winner.path[1:])
        tag = digest = skip = None
        if shape.is_string and shape_image(winner.index, winner.path, shape):
            ref = shape_image(winner.index, winner.path, shape)
            tag, digest = ref.tag, ref.digest
        elif not shape.is_string and node.kind == "mapping":
            tag = winner.index.scalar_text(winner.path + (shape.tag,))
            digest = winner.index.scalar_text(winner.path + (shape.digest,)) if shape.digest else None
        else:
            skip = (f"{winner.line()} sets the image for {', '.join(environments)} as a {node.kind}, "
                    f"which cannot be edited as {'an image string' if shape.is_string else 'an image map'}")
        if winner.index.ignored(winner.path):
            skip = f"{winner.line()} is marked `# autopilot: ignore`"
        own_repository = shape.is_string or shape_image(winner.index, winner.path, shape) is not None
        target = Target(winner.file, "fabrikate", locator, ref.name, tag, digest, service, env,
                        environments=tuple(environments),
                        repository_from=None if own_repository or skip else source.line(shape.repository[0]),
                        skip_reason=skip, shape=shape)
        found.append((winner.file, node.start.index, target))
    if (definition.file, definition.path) not in wins:
        first = next(iter(wins.values()))[0]
        ref = shape_image(index, image.path, shape)
        tag, digest = (ref.tag, ref.digest) if shape.is_string else (
            index.scalar_text(image.path + (shape.tag,)),
            index.scalar_text(image.path + (shape.digest,)) if shape.digest else None)
        found.append((rel, index.get(image.path).start.index, Target(
            rel, "fabrikate", format_locator(image.path[1:]), ref.name, tag, digest, service, env,
            overridden_by=first.line(shape.tag if first.index.get(first.path + (shape.tag,)) else shape.digest),
            shape=shape)))
    return found


def _fabrikate_labels(tree: _Tree, component_dir: str, chain: tuple[str, ...]) -> tuple[str, str]:
    directory = component_dir
    for name in chain:
        child = tree.child_dir(directory, name)
        if child is None:
            break
        directory = child
    parts = path_parts(directory)
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    if parts:
        return parts[0], "default"
    return (chain[-1] if chain else "default"), "default"


def _component_chain(tree: _Tree, component_dir: str) -> list[tuple[str, str]]:
    """(ancestor component dir, name it gives the next component down) for each step from the root to
    `component_dir`: through a `component.yaml` subcomponent whose directory contains it, else the next
    directory under its own name (Bedrock's layout)."""
    chain, current = [], ""
    while current != component_dir:
        prefix = current + "/" if current else ""
        steps = [(location, name) for name, location in tree.subcomponent_dirs(current).items()
                 if location and location.startswith(prefix) and location != current
                 and (component_dir == location or component_dir.startswith(location + "/"))]
        if steps:
            location, name = max(steps)
        else:
            name = component_dir[len(prefix):].split("/")[0]
            location = prefix + name
        chain.append((current, name))
        current = location
    return chain
