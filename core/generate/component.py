"""Fabrikate component definitions (`component.yaml` / `component.json`), validated into frozen data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .documents import load_json, load_yaml
from .errors import GenerationError
from .paths import decode, read_capped

TYPES = ("component", "static", "helm")
METHODS = ("", "local", "git", "helm")
_FORBIDDEN_IN_NAME = frozenset("/\\\0")


@dataclass(frozen=True)
class Component:
    name: str
    type: str
    method: str  # "" is local
    source: str
    path: str
    version: str
    branch: str
    subcomponents: tuple[Component, ...]

    @property
    def inlined(self) -> bool:
        """helm and static subcomponents live in their parent's directory and take only the parent's config."""
        return self.type != "component"


def component_type(generator: str | None, type_: str | None) -> str:
    """Fabrikate copies the deprecated `generator:` into `type:` (`applyDefaultsAndMigrations`), so it wins when
    both are set; neither means `component`. The image finder (core.rules.targets) labels through this same rule."""
    return generator or type_ or "component"


def check_name(name: Any, label: str) -> str:
    """A name becomes a file and directory name in the output, so it may not steer the path."""
    if not isinstance(name, str) or not name:
        raise GenerationError(f"{label}: `name` is required")
    if name in (".", "..") or any(char in _FORBIDDEN_IN_NAME or ord(char) < 0x20 for char in name):
        raise GenerationError(f"{label}: name {name!r} cannot be used as a file name")
    return name


def _text(document: dict, key: str, label: str) -> str:
    value = document.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise GenerationError(f"{label}: `{key}` must be a string")
    return value


def _refuse_hooks(document: dict, label: str) -> None:
    hooks = document.get("hooks")
    if hooks in (None, "", {}):
        return
    if not isinstance(hooks, dict) or any(commands not in (None, "", []) for commands in hooks.values()):
        raise GenerationError(
            f"{label}: hooks are not supported (they run shell commands from the HLD repository, "
            "which would let any pull request execute code)")


def parse_component(document: Any, label: str) -> Component:
    if not isinstance(document, dict):
        raise GenerationError(f"{label}: a component must be a mapping")
    name = check_name(document.get("name"), label)
    label = f"{label} ({name})"
    _refuse_hooks(document, label)
    kind = component_type(_text(document, "generator", label), _text(document, "type", label))
    if kind not in TYPES:
        raise GenerationError(f"{label}: unknown type {kind!r} (expected one of {', '.join(TYPES)})")
    method = _text(document, "method", label)
    if method == "http":
        raise GenerationError(
            f"{label}: method http is not supported (generation downloads nothing); "
            "commit the manifest to the HLD and use method local")
    if method not in METHODS:
        raise GenerationError(f"{label}: unknown method {method!r}")
    source, path = _text(document, "source", label), _text(document, "path", label)
    if method == "helm" and kind != "helm":
        raise GenerationError(f"{label}: method helm needs type helm")
    if method in ("git", "helm") and not source:
        raise GenerationError(f"{label}: method {method} needs a `source`")
    if method == "helm" and not path:
        raise GenerationError(f"{label}: method helm needs the chart name in `path`")
    children = document.get("subcomponents") or []
    if not isinstance(children, list):
        raise GenerationError(f"{label}: `subcomponents` must be a list")
    return Component(
        name=name, type=kind, method=method, source=source, path=path,
        version=_text(document, "version", label), branch=_text(document, "branch", label),
        subcomponents=tuple(parse_component(child, f"{label} subcomponent {index + 1}")
                            for index, child in enumerate(children)))


def load_component(directory: Path, checkout: Path, limit: int, display: str) -> Component:
    """The component defined in `directory` (component.yaml first, then component.json, like Fabrikate)."""
    label = f"{display}component.yaml"
    data = read_capped(directory / "component.yaml", checkout, limit, label)
    if data is not None:
        return parse_component(load_yaml(decode(data, label), label, typed=False), label)
    label = f"{display}component.json"
    data = read_capped(directory / "component.json", checkout, limit, label)
    if data is not None:
        return parse_component(load_json(decode(data, label), label), label)
    raise GenerationError(f"{display or './'}: no component.yaml or component.json")
