"""Helm components: `helm template` (rendered mode) or Flux v2 HelmRelease objects (helmrelease mode)."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from .errors import GenerationError
from .sources import GitRef, is_full_sha, strip_credentials

HELM_TIMEOUT_SECONDS = 300
RELEASE_NAME_LIMIT = 53  # Helm's limit on release names
INTERVAL = "5m"
HELM_RELEASE_API = "helm.toolkit.fluxcd.io/v2"
SOURCE_API = "source.toolkit.fluxcd.io/v1"


class HelmMissing(GenerationError):
    """Rendered mode on a host without a helm binary: permanent until the image provides one or the mode changes."""


class HelmTemplate:
    """Runs `helm template`, each distinct invocation once per object (environments often share values)."""

    def __init__(self, helm_bin: str | None, scratch: Path) -> None:
        self._requested = helm_bin
        self._binary: str | None = None
        self._scratch = scratch
        self._memo: dict[tuple, str] = {}

    def require(self, label: str) -> None:
        """Fail with HelmMissing now, before a git chart is fetched, so the error names the real cause."""
        self._resolve_binary(label)

    def _resolve_binary(self, label: str) -> str:
        if self._binary is None:
            wanted = self._requested or "helm"
            found = shutil.which(wanted)
            if not found:
                raise HelmMissing(
                    f"{label}: helm binary {wanted!r} not found (build the container image with "
                    "--build-arg INSTALL_HELM=true, set HELM_BIN, or use HELM_MODE=helmrelease)")
            self._binary = found
        return self._binary

    def render(self, *, release: str, chart: str, namespace: str, values: str, repo: str = "",
               version: str = "", limit: int, label: str) -> str:
        key = (release, chart, namespace, values, repo, version)
        if key not in self._memo:
            binary = self._resolve_binary(label)
            handle, values_file = tempfile.mkstemp(prefix="values-", suffix=".yaml", dir=self._scratch)
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(values)
            arguments = [binary, "template", f"--values={values_file}", f"--namespace={namespace}"]
            if repo:
                arguments.append(f"--repo={repo}")
            if version:
                arguments.append(f"--version={version}")
            self._memo[key] = _run(arguments + ["--", release, chart], limit, label)
        return self._memo[key]


def _run(arguments: list[str], limit: int, label: str) -> str:
    """stdout of a command, killed past `limit` bytes of output or HELM_TIMEOUT_SECONDS."""
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(arguments, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        except OSError as error:
            raise GenerationError(f"{label}: cannot run helm: {error.strerror}") from None
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            process.kill()

        timer = threading.Timer(HELM_TIMEOUT_SECONDS, expire)
        timer.start()
        chunks, size = [], 0
        try:
            while chunk := process.stdout.read(1 << 16):
                size += len(chunk)
                if size > limit:
                    process.kill()
                    break
                chunks.append(chunk)
            status = process.wait()
        finally:
            timer.cancel()
            process.stdout.close()
        errors.seek(0)
        stderr = errors.read()[-8192:].decode("utf-8", "replace")
    if timed_out.is_set():
        raise GenerationError(f"{label}: helm template timed out after {HELM_TIMEOUT_SECONDS} s")
    if size > limit:
        raise GenerationError(f"{label}: helm template output exceeds the size limit")
    if status != 0:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        reason = strip_credentials(lines[-1]) if lines else "no error output"
        raise GenerationError(f"{label}: helm template failed with exit status {status}: {reason}")
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise GenerationError(f"{label}: helm template output is not UTF-8") from None


def release_name(logical_path: tuple[str, ...], component_name: str) -> str:
    """A DNS-1123 label naming the HelmRelease and its source: the component name prefixed with its logical path,
    so the `chart` component of every Bedrock ring gets its own release."""
    parts = (*logical_path, component_name)
    name = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-") or "release"
    if len(name) > RELEASE_NAME_LIMIT:
        digest = hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]
        name = f"{name[:RELEASE_NAME_LIMIT - 9].rstrip('-')}-{digest}"
    return name


_HELM_RELEASE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def is_helm_release_name(name: str) -> bool:
    """What `helm template <name>` accepts as a release name (Helm's ValidateReleaseName: DNS-1123, 53 characters)."""
    return len(name) <= RELEASE_NAME_LIMIT and _HELM_RELEASE_NAME.fullmatch(name) is not None


def chart_path_in_repository(path: str, label: str) -> str:
    """`./<path>` for a chart inside a git repository; `..` and absolute paths are refused."""
    pure = PurePosixPath(path or ".")
    if pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise GenerationError(f"{label}: chart path {path!r} leaves the repository")
    return "./" + "/".join(part for part in pure.parts if part != ".")


def git_reference(ref: GitRef) -> dict[str, str]:
    reference = {}
    if ref.branch:
        reference["branch"] = ref.branch
    if ref.version:
        reference["commit" if is_full_sha(ref.version) else "tag"] = ref.version
    return reference


@dataclass(frozen=True)
class ChartSource:
    kind: str  # GitRepository | HelmRepository
    url: str
    chart: str
    chart_version: str = ""
    reference: Mapping[str, str] | None = None

    @staticmethod
    def git(ref: GitRef, chart: str) -> ChartSource:
        return ChartSource("GitRepository", strip_credentials(ref.url), chart, reference=git_reference(ref))

    @staticmethod
    def helm_repository(url: str, chart: str, version: str) -> ChartSource:
        return ChartSource("HelmRepository", strip_credentials(url), chart, chart_version=version)


def release_documents(name: str, namespace: str | None, values: Mapping[str, Any],
                      source: ChartSource, helm_release: str | None = None) -> list[dict]:
    """The chart source and the HelmRelease installing it, both named `name`, in the component's namespace; the
    Helm release itself is `helm_release` (default `name`), which charts see as `.Release.Name`."""
    in_namespace = namespace or "default"
    source_spec: dict[str, Any] = {"interval": INTERVAL, "url": source.url}
    if source.reference:
        source_spec["ref"] = dict(source.reference)
    if source.kind == "HelmRepository" and source.url.startswith("oci://"):
        source_spec["type"] = "oci"
    chart_spec: dict[str, Any] = {
        "chart": source.chart,
        "sourceRef": {"kind": source.kind, "name": name, "namespace": in_namespace},
    }
    if source.chart_version:
        chart_spec["version"] = source.chart_version
    release_spec: dict[str, Any] = {"interval": INTERVAL, "releaseName": helm_release or name,
                                    "chart": {"spec": chart_spec}}
    if namespace:
        release_spec["targetNamespace"] = namespace
    if values:
        release_spec["values"] = dict(values)
    return [
        {"apiVersion": SOURCE_API, "kind": source.kind,
         "metadata": {"name": name, "namespace": in_namespace}, "spec": source_spec},
        {"apiVersion": HELM_RELEASE_API, "kind": "HelmRelease",
         "metadata": {"name": name, "namespace": in_namespace}, "spec": release_spec},
    ]
