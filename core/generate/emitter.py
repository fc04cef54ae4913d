"""Deterministic YAML text for plain data: block style, keys sorted, go-yaml layout (list items level with their key).

A string is left plain only when go-yaml v2 and YAML 1.2 parsers both read it back as that string; otherwise it is
double-quoted. Dates are written as quoted ISO strings (what Helm sees for an unquoted date). Writing stops with an
error once `budget` characters are exceeded, so an aliased document cannot expand without bound.
"""
from __future__ import annotations

import datetime
import json
import math
import re
from typing import Any

from .errors import GenerationError

MAX_DEPTH = 100
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./:@+-]*")
_RESERVED = frozenset("y n yes no on off true false null".split())


class _Budget:
    def __init__(self, limit: int, label: str) -> None:
        self.left = limit
        self.label = label

    def spend(self, line: str) -> str:
        self.left -= len(line) + 1
        if self.left < 0:
            raise GenerationError(f"{self.label}: output exceeds the size limit")
        return line


def _string(text: str) -> str:
    if _PLAIN.fullmatch(text) and not text.endswith(":") and text.lower() not in _RESERVED:
        return text
    if text.isascii() and text.isprintable():
        return json.dumps(text)
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"' or char == "\\":
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif code < 0xA0 or 0xD800 <= code < 0xE000 or code in (0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF):
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}e{exponent}" if exponent else mantissa


def scalar(value: Any, label: str) -> str:
    if isinstance(value, str):
        return _string(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return json.dumps(value.isoformat())
    raise GenerationError(f"{label}: cannot write a value of type {type(value).__name__}")


def _block(value: dict | list, indent: str, lines: list[str], budget: _Budget, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise GenerationError(f"{budget.label}: data nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key in sorted(value):
            if not isinstance(key, str):
                raise GenerationError(f"{budget.label}: mapping key {key!r} is not a string")
            item = value[key]
            head = f"{indent}{_string(key)}:"
            if isinstance(item, (dict, list)) and item:
                lines.append(budget.spend(head))
                _block(item, indent + "  " if isinstance(item, dict) else indent, lines, budget, depth + 1)
            else:
                lines.append(budget.spend(f"{head} {_inline(item, budget.label)}"))
        return
    for item in value:
        if isinstance(item, (dict, list)) and item:
            first = len(lines)
            _block(item, indent + "  ", lines, budget, depth + 1)
            lines[first] = indent + "- " + lines[first][len(indent) + 2:]
        else:
            lines.append(budget.spend(f"{indent}- {_inline(item, budget.label)}"))


def _inline(value: Any, label: str) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return scalar(value, label)


def dump(value: Any, *, budget: int, label: str) -> str:
    """YAML text of one document, without a leading `---` and with a trailing newline."""
    account = _Budget(budget, label)
    if isinstance(value, (dict, list)) and value:
        lines: list[str] = []
        _block(value, "", lines, account, 0)
    else:
        lines = [account.spend(_inline(value, label))]
    return "\n".join(lines) + "\n"
