"""Safe YAML loading with go-yaml v2 scalar typing, and splitting of multi-document streams.

Helm, kubectl and Fabrikate read YAML with go-yaml v2, so a value must get the type those tools would give it:
`yes`/`on` are booleans, `0644` is octal, `12:30` and `2020-01-01` stay strings. ruamel's YAML 1.2 rules (and its
1.1 rules, which add sexagesimal numbers) differ, so scalars are resolved here. The libyaml parser is used when
ruamel.yaml.clib is installed (it is a dependency of ruamel.yaml): same safe constructor, about five times faster.
Documents go through `core.rules.repo_yaml` (the loader every repository YAML shares): an alias bomb or a document that
contains itself is refused before it is constructed, and errors read `<file>:<line>: <what is wrong>`.
"""
from __future__ import annotations

import json
import math
import re
import threading
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.nodes import ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.tag import Tag

from core.rules.repo_yaml import ALIAS_EXPANSION_BUDGET, RepoYamlError, load_one

from .errors import GenerationError

MAX_DEPTH = 100

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset("y Y yes Yes YES true True TRUE on On ON".split())
_FALSE = frozenset("n N no No NO false False FALSE off Off OFF".split())
_SPECIAL_FLOATS = {
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
_INT_FORMS = (
    (re.compile(r"0[xX]([0-9a-fA-F]+)"), 16),
    (re.compile(r"0[oO]([0-7]+)"), 8),
    (re.compile(r"0[bB]([01]+)"), 2),
    (re.compile(r"0([0-7]+)"), 8),
    (re.compile(r"(0|[1-9][0-9]*)"), 10),
)
_TAGS = {name: Tag(suffix=f"tag:yaml.org,2002:{name}") for name in ("null", "bool", "int", "float", "str", "merge")}
_KEY_TAGS = frozenset((_TAGS["str"].suffix, _TAGS["merge"].suffix))
_DOCUMENT_START = re.compile(r"^---(?=[ \t]|$)", re.MULTILINE)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


def _go_int(plain: str) -> int | None:
    """strconv.ParseInt/ParseUint with base 0, as go-yaml v2 applies them (underscores already removed)."""
    sign = -1 if plain[:1] == "-" else 1
    digits = plain[1:] if plain[:1] in "+-" else plain
    for pattern, base in _INT_FORMS:
        match = pattern.fullmatch(digits)
        if match:
            value = sign * int(match.group(1), base)
            return value if -(1 << 63) <= value < (1 << 64) else None
    return None


def _scalar_tag(value: str) -> Tag:
    if value in _NULLS:
        return _TAGS["null"]
    if value in _TRUE or value in _FALSE:
        return _TAGS["bool"]
    if value in _SPECIAL_FLOATS:
        return _TAGS["float"]
    if value == "<<":
        return _TAGS["merge"]
    first = value[0]
    if first in "0123456789+-":
        plain = value.replace("_", "")
        if _go_int(plain) is not None:
            return _TAGS["int"]
        if _GO_FLOAT.fullmatch(plain):
            return _TAGS["float"]
    elif first == "." and _DOT_FLOAT.fullmatch(value):
        return _TAGS["float"]
    return _TAGS["str"]


class _GoResolver(VersionedResolver):
    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode:
            return _scalar_tag(value) if implicit[0] else self.DEFAULT_SCALAR_TAG
        return self.DEFAULT_SEQUENCE_TAG if kind is SequenceNode else self.DEFAULT_MAPPING_TAG


class _StringResolver(VersionedResolver):
    """Every scalar is a string, as when go-yaml decodes into Fabrikate's string-typed struct fields."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode:
            return self.DEFAULT_SCALAR_TAG
        return self.DEFAULT_SEQUENCE_TAG if kind is SequenceNode else self.DEFAULT_MAPPING_TAG


class _GoConstructor(SafeConstructor):
    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # Keys keep their text (`80`, `on`, `1.10`): Fabrikate's string-keyed maps read them that way, and a
        # Kubernetes key is a string.
        for key_node, _ in node.value:
            # the libyaml parser gives tags as str, the pure one as Tag
            if isinstance(key_node, ScalarNode) and getattr(key_node.tag, "suffix", key_node.tag) not in _KEY_TAGS:
                key_node.tag = _TAGS["str"]
        return super().construct_mapping(node, deep=deep)

    def construct_go_int(self, node: Any) -> int:
        value = _go_int(self.construct_scalar(node).replace("_", ""))
        if value is None:
            raise GenerationError(f"not an integer: {node.value!r}")
        return value

    def construct_go_float(self, node: Any) -> float:
        text = self.construct_scalar(node)
        return _SPECIAL_FLOATS[text] if text in _SPECIAL_FLOATS else float(text.replace("_", ""))

    def construct_go_bool(self, node: Any) -> bool:
        text = self.construct_scalar(node)
        if text not in _TRUE and text not in _FALSE:
            raise GenerationError(f"not a boolean: {text!r}")
        return text in _TRUE


_GoConstructor.add_constructor("tag:yaml.org,2002:int", _GoConstructor.construct_go_int)
_GoConstructor.add_constructor("tag:yaml.org,2002:float", _GoConstructor.construct_go_float)
_GoConstructor.add_constructor("tag:yaml.org,2002:bool", _GoConstructor.construct_go_bool)

_local = threading.local()


def _loader(typed: bool) -> YAML:
    """YAML instances are not thread-safe, and the function host may run invocations in threads."""
    attribute = "typed" if typed else "strings"
    loader = getattr(_local, attribute, None)
    if loader is None:
        loader = YAML(typ="safe")
        loader.Resolver = _GoResolver if typed else _StringResolver
        loader.Constructor = _GoConstructor
        setattr(_local, attribute, loader)
    return loader


def _describe(error: BaseException) -> str:
    problem, mark = getattr(error, "problem", None), getattr(error, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def check_structure(value: Any, limit: int, label: str) -> None:
    """Refuse alias bombs, self-referencing documents and complex keys. Nodes are counted as a full copy would
    hold them, stopping at `limit`."""
    stack = [(value, 0)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > limit:
            raise GenerationError(f"{label}: document expands to more than {limit} nodes (YAML aliases?)")
        if depth > MAX_DEPTH:
            raise GenerationError(f"{label}: document nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            if not all(isinstance(key, str) for key in node):
                raise GenerationError(f"{label}: mapping keys must be scalars")
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def load_yaml(text: str, label: str, *, typed: bool = True, first_line: int = 1) -> Any:
    """One YAML document, safely loaded. `typed=False` keeps every scalar a string. `first_line` is the line of
    the file `text` starts at (for a document cut out of a stream), so errors name the file's own line."""
    try:
        # Sizes are capped by the callers (read_capped, the helm output budget).
        value = load_one(text, label, yaml=_loader(typed), max_bytes=None)
    except RepoYamlError as error:
        where = f"{label}:{error.line + first_line - 1}" if error.line else label
        raise GenerationError(f"{where}: {error.problem}") from None
    check_structure(value, len(text) + ALIAS_EXPANSION_BUDGET + 10_000, label)
    return value


def load_json(text: str, label: str) -> Any:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise GenerationError(f"{label}: invalid JSON: {_describe(error)}") from None
    check_structure(value, len(text) + 10_000, label)
    return value


def _pieces(text: str) -> list[tuple[str, int]]:
    """(source text, first line) of each document of a stream, split at `---` lines."""
    starts = [match.start() for match in _DOCUMENT_START.finditer(text)]
    bounds = [0, *starts, len(text)]
    pieces = []
    line = 1
    for begin, end in zip(bounds, bounds[1:]):
        piece = text[begin:end]
        if piece.startswith("---"):
            piece = piece[3:].lstrip(" \t")
        pieces.append((piece, line))
        line += text.count("\n", begin, end)
    return pieces


def split_documents(text: str) -> list[str]:
    """The source text of each document of a stream, split at `---` lines (anything after `---` on the marker
    line belongs to the document that follows). Documents stay as written so comments and scalar styles
    survive; each piece is parsed on its own to check it."""
    return [piece for piece, _ in _pieces(text)]


def load_documents(text: str, label: str) -> list[tuple[str, Any]]:
    """(source text, value) of every non-empty document in a stream."""
    documents = []
    for piece, first_line in _pieces(text):
        value = load_yaml(piece, label, first_line=first_line)
        if value is not None:
            documents.append((_LEADING_BLANK_LINES.sub("", piece).rstrip(), value))
    return documents
