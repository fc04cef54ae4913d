"""Fabrikate component config (`config/<env>.yaml`, `config/common.yaml`) and its layering.

Merging is "first set wins", applied in this order: a parent's `subcomponents.<name>` block, then the component's
own `config/<env>` files in the order the environments are named, then its `config/common` file. Maps merge key by
key; any other value (lists included) is taken whole from the first layer that sets it. Fabrikate appends lists
from every layer instead, which silently duplicates entries; and it cannot re-enable a component with
`disabled: false` under a `disabled: true`, which here works like any other first-set-wins key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from .documents import load_json, load_yaml
from .errors import GenerationError
from .paths import decode, read_capped


CONFIG_SUFFIXES = (".yaml", ".json")  # Fabrikate reads config/<name>.yaml, else config/<name>.json
_ENVIRONMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class EnvironmentSpec:
    """`"prod"` → folder `prod`, config layers [prod]. `"staging west"` → folder `staging-west`, layers
    [staging, west] (staging wins), as Bedrock's FAB_ENVS entry "STAGING WEST" produced."""
    folder: str
    layers: tuple[str, ...]


def parse_environment(text: str) -> EnvironmentSpec:
    layers = tuple(text.split())
    if not layers:
        raise GenerationError("empty environment name")
    for layer in layers:
        if not _ENVIRONMENT_NAME.fullmatch(layer):
            raise GenerationError(f"environment name {layer!r} is not allowed (letters, digits, . _ -)")
    return EnvironmentSpec("-".join(layers), layers)


def config_names(layers: tuple[str, ...]) -> tuple[str, ...]:
    """The config files of one component, the one that wins first: the environments as named, then common."""
    return tuple(dict.fromkeys((*layers, "common")))


def precedence(levels: int, layers: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    """(level, config name) in the order a value is looked up for a component `levels - 1` steps below the top of
    a chain of components: the top component's files first, because a parent's `subcomponents.<name>` block is
    handed to the child before the child's own files fill in what is still missing (see `merge` in the walk);
    within a level, `config_names`. This is the one statement of "which file wins" that the generator's merge
    and the image finder (core.rules.targets) both follow."""
    for level in range(levels):
        for name in config_names(layers):
            yield level, name


@dataclass(frozen=True)
class ComponentConfig:
    namespace: str | None = None
    inject_namespace: bool | None = None
    disabled: bool | None = None
    values: Mapping[str, Any] = field(default_factory=dict)  # the `config:` map, Helm values for helm components
    subcomponents: Mapping[str, ComponentConfig] = field(default_factory=dict)

    def for_subcomponent(self, name: str) -> ComponentConfig:
        return self.subcomponents.get(name, EMPTY)


EMPTY = ComponentConfig()


def _optional(document: dict, key: str, kind: type, label: str) -> Any:
    value = document.get(key)
    if value is not None and not isinstance(value, kind):
        raise GenerationError(f"{label}: `{key}` must be a {'boolean' if kind is bool else 'string'}")
    return value


def parse_config(document: Any, label: str) -> ComponentConfig:
    if document is None:
        return EMPTY
    if not isinstance(document, dict):
        raise GenerationError(f"{label}: config must be a mapping")
    values = document.get("config")
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise GenerationError(f"{label}: `config` must be a mapping")
    children = document.get("subcomponents")
    if children is None:
        children = {}
    if not isinstance(children, dict):
        raise GenerationError(f"{label}: `subcomponents` must be a mapping of names")
    return ComponentConfig(
        namespace=_optional(document, "namespace", str, label) or None,
        inject_namespace=_optional(document, "injectNamespace", bool, label),
        disabled=_optional(document, "disabled", bool, label),
        values=values,
        subcomponents={name: parse_config(child, f"{label} subcomponents.{name}") for name, child in children.items()})


def merge_values(first: Mapping[str, Any], second: Mapping[str, Any]) -> Mapping[str, Any]:
    """`first` wins; nested maps merge. Inputs are never modified (they may be shared between environments)."""
    if not second:
        return first
    if not first:
        return second
    merged = dict(second)
    for key, value in first.items():
        other = second.get(key)
        if isinstance(value, dict) and isinstance(other, dict):
            merged[key] = merge_values(value, other)
        else:
            merged[key] = value
    return merged


def merge(first: ComponentConfig, second: ComponentConfig) -> ComponentConfig:
    """`first` wins over `second`."""
    if second is EMPTY:
        return first
    if first is EMPTY:
        return second
    names = first.subcomponents.keys() | second.subcomponents.keys()
    return ComponentConfig(
        namespace=first.namespace or second.namespace,
        inject_namespace=first.inject_namespace if first.inject_namespace is not None else second.inject_namespace,
        disabled=first.disabled if first.disabled is not None else second.disabled,
        values=merge_values(first.values, second.values),
        subcomponents={name: merge(first.for_subcomponent(name), second.for_subcomponent(name))
                       for name in sorted(names)})


def load_config_file(config_directory: Path, environment: str, checkout: Path, limit: int,
                     display: str) -> ComponentConfig:
    """`<environment>.yaml`, else `.json`, else nothing (Fabrikate's lookup), in a resolved `config/` directory."""
    loaders = {".yaml": load_yaml, ".json": load_json}
    for suffix in CONFIG_SUFFIXES:
        loader = loaders[suffix]
        label = f"{display}config/{environment}{suffix}"
        data = read_capped(config_directory / f"{environment}{suffix}", checkout, limit, label)
        if data is not None:
            return parse_config(loader(decode(data, label), label), label)
    return EMPTY
