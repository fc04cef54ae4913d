"""HTTP trigger route templates (`items/{id}`, `{id:int}`, optional `{id?}`, catch-all `{*rest}`) matched to paths."""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_PARAM = re.compile(r"\{(\*{1,2})?([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)(?:\([^)]*\))?)?(\?)?\}")
_CONSTRAINTS = {"int": r"-?\d+", "long": r"-?\d+", "alpha": r"[A-Za-z]+", "bool": r"(?:true|false)",
                "guid": r"[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}"}


class RouteError(ValueError):
    """A route template cannot be parsed; the message names the template."""


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    pattern: re.Pattern[str]
    literal_segments: int
    catch_all: bool

    def match(self, path: str) -> dict[str, str] | None:
        """Route parameters (URL-decoded) when `path` (still percent-encoded) matches, else None."""
        found = self.pattern.match(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items() if value is not None}

    @property
    def precedence(self) -> tuple[int, int]:
        """Sort key: templates with more literal segments first, catch-alls last (ASP.NET's order, simplified)."""
        return (int(self.catch_all), -self.literal_segments)


def _segment_regex(segment: str, template: str) -> tuple[str, bool, bool]:
    """(regex, optional, catch_all) for one path segment."""
    parts: list[str] = []
    optional = catch_all = False
    pos = 0
    for param in _PARAM.finditer(segment):
        parts.append(re.escape(segment[pos:param.start()]))
        stars, name, constraint, question = param.groups()
        if stars:
            parts.append(f"(?P<{name}>.*)")
            catch_all = True
        else:
            parts.append(f"(?P<{name}>{_CONSTRAINTS.get((constraint or '').lower(), '[^/]+')})")
            optional = optional or bool(question)
        pos = param.end()
    rest = segment[pos:]
    if "{" in rest or "}" in rest:
        raise RouteError(f"route {template!r}: cannot parse segment {segment!r}")
    parts.append(re.escape(rest))
    return "".join(parts), optional, catch_all


def compile_route(prefix: str, route: str) -> RouteTemplate:
    template = "/".join(part for part in (prefix.strip("/"), route.strip("/")) if part)
    regex = ""
    literals = 0
    catch_all = False
    for segment in template.split("/") if template else []:
        seg_regex, optional, seg_catch_all = _segment_regex(segment, template)
        if seg_catch_all:
            regex += f"(?:/{seg_regex})?"
            catch_all = True
        elif optional:
            regex += f"(?:/{seg_regex})?"
        else:
            regex += "/" + seg_regex
        literals += "{" not in segment
    try:
        pattern = re.compile(f"^{regex}/?$", re.IGNORECASE)
    except re.error as exc:
        raise RouteError(f"route {template!r}: {exc}") from exc
    return RouteTemplate(template=template, pattern=pattern, literal_segments=literals, catch_all=catch_all)
