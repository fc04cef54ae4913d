r"""How image tags are ordered, and semver range constraints.

Orderings (``TagOrder.ordering``):

- ``semver``: strict SemVer 2.0 via ``semver.Version.parse``, with one optional leading ``v``. MAJOR.MINOR.PATCH is
  required, so a numeric git SHA (``1234567``) or a date (``20200212``) is *not* a version (flux#2729: such tags
  parsed loosely sort above every real release and pin automation forever). Prereleases order below their release;
  build metadata is ignored, so ``v1.2.3`` and ``1.2.3+b7`` order equal to ``1.2.3``.
- ``numeric``: integers. Without ``extract`` the whole tag must be ASCII digits. With ``extract`` every named group of
  the regex (``(?P<name>...)``, in the order they appear in the pattern) must capture ASCII digits; the tuple of
  integers is compared left to right, so ``^(?P<date>\d+)\.(?P<build>\d+)$`` orders ``20200212.10`` above
  ``20200212.9``. The regex must contain at least one named group.
- ``alphabetical``: plain string order of the tag, or of the named-group captures when ``extract`` is given
  (e.g. a sortable timestamp embedded in ``main-<ts>-<sha>``).
- ``pushed``: ACR's own push timestamp for the tag (registry-controlled, not the publisher's image ``created``
  date), ties broken alphabetically. A naive datetime is taken to be UTC.

A tag that does not fit the ordering (or does not match ``extract``) is *unorderable*: ``sort_key`` returns None and
``compare`` raises ``UnorderableTag``. ``extract`` is searched (unanchored); anchor it with ``^...$``.

Every pattern that comes from a repository (``extract``, ``tagFilter``, the globs of policy rules) is compiled by
``compile_repo_regex`` onto RE2: matching takes linear time, so no pattern can stall the process (Python's ``re``
backtracks while holding the GIL, freezing every function of the host). RE2 has Go's ``regexp`` syntax, the one
Flux, Argo CD Image Updater and Kargo use for the same settings: no back-references or look-around, ``\d`` is
ASCII, ``$`` without ``(?m)`` is the end of the text.

Range constraints (``in_range``; semver only) are comparator sets, OR-ed with ``||``; comparators inside a set are
separated by spaces and/or commas and AND-ed:

- ``>=1.4.0``, ``>1.4.0``, ``<=``, ``<``, ``=`` (or a bare version), ``!=``; a leading ``v`` is accepted.
- Partial versions and ``x``/``X``/``*`` wildcards mean "any value here": ``1.x`` = ``1`` = ``>=1.0.0 <2.0.0``;
  ``>1.4`` = ``>=1.5.0``; ``<=1.4`` = ``<1.5.0``; ``*`` matches every release.
- ``^1.2.3`` = ``>=1.2.3 <2.0.0``; ``^0.2.3`` = ``>=0.2.3 <0.3.0``; ``^0.0.3`` = ``>=0.0.3 <0.0.4``.
- ``~1.2.3`` (or ``~>1.2.3``) = ``>=1.2.3 <1.3.0``; ``~1`` = ``>=1.0.0 <2.0.0``.
- A prerelease tag satisfies a comparator set only if some comparator in that set names a prerelease itself
  (``>=2.0.0-rc.1``), so ``<2.0.0`` does not admit ``2.0.0-rc.1``.

A malformed constraint raises ``PolicyError``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from functools import lru_cache

import re2
import semver

from core.errors import Permanent

Regex = re2._Regexp  # a compiled repo pattern: .search/.fullmatch/.pattern/.groupindex like re.Pattern


class PolicyError(Permanent, ValueError):
    """A policy setting (autopilot.yaml, a range constraint, an ordering regex) is invalid.

    Defined here, the lowest layer, because ranges and orderings are validated here; core.rules.policy re-exports it.
    """


class UnorderableTag(Permanent, ValueError):
    """A tag cannot be placed in the requested ordering."""


class Ordering(str, Enum):
    SEMVER = "semver"
    NUMERIC = "numeric"
    ALPHABETICAL = "alphabetical"
    PUSHED = "pushed"


@dataclass(frozen=True)
class TagOrder:
    ordering: Ordering = Ordering.SEMVER
    extract: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ordering, Ordering):
            try:
                object.__setattr__(self, "ordering", Ordering(self.ordering))
            except ValueError:
                raise PolicyError(f"unknown ordering {self.ordering!r}; expected one of "
                                  f"{', '.join(o.value for o in Ordering)}") from None
        if self.extract is None:
            return
        if self.ordering not in (Ordering.NUMERIC, Ordering.ALPHABETICAL):
            raise PolicyError(f"extract applies only to numeric or alphabetical ordering, not {self.ordering.value}")
        if not _compile(self.extract).groupindex:
            raise PolicyError(f"extract regex {quoted(self.extract)} has no named group (?P<name>...)")


def quoted(text: str) -> str:
    """``text`` in single quotes for a message; escaped (repr) only when unprintable, so messages stay one line."""
    return f"'{text}'" if text.isprintable() else repr(text)


_SEMVER_CHARS = re.compile(r"[0-9A-Za-z.+-]+")
_DIGITS = re.compile(r"[0-9]+")


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported by PolicyError, not written to stderr by RE2


class RegexError(PolicyError):
    """A repository pattern RE2 cannot compile; the message is RE2's reason."""


@lru_cache(maxsize=512)
def compile_repo_regex(pattern: str) -> Regex:
    """``pattern`` (from a repository) compiled on RE2; raises RegexError when RE2 cannot run it."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise RegexError(" ".join(reason.split())) from None
    except (TypeError, UnicodeError) as exc:
        raise RegexError(str(exc)) from None


def _compile(pattern: str) -> Regex:
    try:
        return compile_repo_regex(pattern)
    except RegexError as exc:
        raise PolicyError(f"invalid regex {quoted(pattern)} (RE2 syntax): {exc}") from None


def parse_semver(tag: str) -> semver.Version | None:
    """The strict SemVer version a tag denotes (optional leading ``v``), or None."""
    body = tag[1:] if tag.startswith("v") else tag
    # semver's regex ends in `$`, which also matches before a trailing newline; the charset check closes that gap.
    if not _SEMVER_CHARS.fullmatch(body):
        return None
    try:
        return semver.Version.parse(body)
    except ValueError:
        return None


def _named_captures(tag: str, extract: str) -> tuple[str, ...] | None:
    pattern = _compile(extract)
    match = pattern.search(tag)
    if match is None:
        return None
    names = sorted(pattern.groupindex, key=pattern.groupindex.__getitem__)
    captures = tuple(match.group(name) for name in names)
    return None if any(c is None for c in captures) else captures


def sort_key(tag: str, order: TagOrder, pushed_at: datetime | None = None) -> tuple | None:
    """A key that orders tags oldest to newest under ``order``; None when the tag is unorderable."""
    if order.ordering is Ordering.SEMVER:
        version = parse_semver(tag)
        return None if version is None else (version,)
    if order.ordering is Ordering.NUMERIC:
        parts = (tag,) if order.extract is None else _named_captures(tag, order.extract)
        if parts is None or not all(_DIGITS.fullmatch(p) for p in parts):
            return None
        return tuple(int(p) for p in parts)
    if order.ordering is Ordering.ALPHABETICAL:
        return (tag,) if order.extract is None else _named_captures(tag, order.extract)
    if pushed_at is None:
        return None
    if pushed_at.tzinfo is None:
        pushed_at = pushed_at.replace(tzinfo=timezone.utc)
    return (pushed_at.astimezone(timezone.utc), tag)


def _require_key(tag: str, order: TagOrder, pushed_at: datetime | None) -> tuple:
    key = sort_key(tag, order, pushed_at)
    if key is None:
        detail = " (no push timestamp)" if order.ordering is Ordering.PUSHED else ""
        raise UnorderableTag(f"tag {tag!r} is not orderable under {order.ordering.value} ordering{detail}")
    return key


def compare(a: str, b: str, order: TagOrder, a_pushed: datetime | None = None,
            b_pushed: datetime | None = None) -> int:
    """-1, 0 or 1 as ``a`` is older than, level with, or newer than ``b``; raises UnorderableTag."""
    key_a = _require_key(a, order, a_pushed)
    key_b = _require_key(b, order, b_pushed)
    return (key_a > key_b) - (key_a < key_b)


def change_level(old: str, new: str, order: TagOrder, old_pushed: datetime | None = None,
                 new_pushed: datetime | None = None) -> str | None:
    """How big a step ``old`` → ``new`` is: "patch", "minor" or "major"; None when ``new`` is not newer.

    Under semver the level is the first of MAJOR/MINOR/PATCH that differs; a change confined to the prerelease part
    (``1.2.3-rc.1`` → ``1.2.3``) is "patch". Under every other ordering a newer tag says nothing about compatibility,
    so it counts as "major". An unorderable ``old`` (``latest``) is an unknown starting point: "major".
    Raises UnorderableTag when ``new`` is unorderable.
    """
    new_key = _require_key(new, order, new_pushed)
    old_key = sort_key(old, order, old_pushed)
    if old_key is None:
        return "major"
    if new_key <= old_key:
        return None
    if order.ordering is not Ordering.SEMVER:
        return "major"
    old_v, new_v = old_key[0], new_key[0]
    if new_v.major != old_v.major:
        return "major"
    if new_v.minor != old_v.minor:
        return "minor"
    return "patch"


# --- range constraints -------------------------------------------------------------------------------------------

_COMPARATOR = re.compile(
    r"(?P<op>>=|<=|!=|==|~>|>|<|=|\^|~)?\s*v?"
    r"(?P<parts>[0-9xX*]+(?:\.[0-9xX*]+){0,2})"
    r"(?P<pre>-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
)
_SEPARATOR = re.compile(r"[\s,]*")
_WILDCARDS = {"x", "X", "*"}


@dataclass(frozen=True)
class _Bound:
    version: semver.Version
    inclusive: bool


@dataclass(frozen=True)
class _Comparator:
    lower: _Bound | None
    upper: _Bound | None
    negated: bool
    has_prerelease: bool

    def allows(self, v: semver.Version) -> bool:
        inside = (
            (self.lower is None or v > self.lower.version or (self.lower.inclusive and v == self.lower.version))
            and (self.upper is None or v < self.upper.version or (self.upper.inclusive and v == self.upper.version))
        )
        return inside != self.negated


def _parse_numbers(parts: str, constraint: str) -> list[int]:
    numbers: list[int] = []
    pieces = parts.split(".")
    for i, piece in enumerate(pieces):
        if piece in _WILDCARDS:
            if any(p not in _WILDCARDS for p in pieces[i:]):
                raise PolicyError(f"invalid range {constraint!r}: {parts!r} has a number after a wildcard")
            break
        if not _DIGITS.fullmatch(piece) or (len(piece) > 1 and piece.startswith("0")):
            raise PolicyError(f"invalid range {constraint!r}: bad version number {piece!r} in {parts!r}")
        numbers.append(int(piece))
    return numbers


def _bump(numbers: list[int], index: int) -> semver.Version:
    """The first version past every version that starts with ``numbers[:index + 1]``."""
    head = numbers[:index] + [numbers[index] + 1]
    return semver.Version(*(head + [0] * (3 - len(head))))


def _lower_version(numbers: list[int], pre: str | None, constraint: str) -> semver.Version:
    if pre is None:
        return semver.Version(*(numbers + [0] * (3 - len(numbers))))
    text = ".".join(map(str, numbers)) + pre
    try:
        return semver.Version.parse(text)
    except ValueError:
        raise PolicyError(f"invalid range {constraint!r}: {text!r} is not a valid semver version") from None


def _comparator(op: str, numbers: list[int], pre: str | None, constraint: str) -> _Comparator:
    if pre and len(numbers) < 3:
        raise PolicyError(f"invalid range {constraint!r}: a prerelease needs a full MAJOR.MINOR.PATCH version")
    if not numbers:
        if op in ("", "=", "==", ">=", "<=", "^", "~", "~>"):
            return _Comparator(None, None, False, False)
        raise PolicyError(f"invalid range {constraint!r}: {op!r} with a bare wildcard matches nothing")
    low = _lower_version(numbers, pre, constraint)
    # Partial versions stand for a block of versions [low, high): "1.4" is [1.4.0, 1.5.0).
    exact = len(numbers) == 3
    high = None if exact else _bump(numbers, len(numbers) - 1)
    has_pre = pre is not None
    if op in ("", "=", "==", "!="):
        upper = _Bound(low, True) if exact else _Bound(high, False)
        return _Comparator(_Bound(low, True), upper, op == "!=", has_pre)
    if op == ">=":
        return _Comparator(_Bound(low, True), None, False, has_pre)
    if op == ">":
        return _Comparator(_Bound(low, False) if exact else _Bound(high, True), None, False, has_pre)
    if op == "<":
        return _Comparator(None, _Bound(low, False), False, has_pre)
    if op == "<=":
        return _Comparator(None, _Bound(low, True) if exact else _Bound(high, False), False, has_pre)
    if op in ("~", "~>"):
        return _Comparator(_Bound(low, True), _Bound(_bump(numbers, min(1, len(numbers) - 1)), False), False, has_pre)
    # Caret: the leftmost non-zero number given may not change; all-zero prefixes pin the last number given.
    first_nonzero = next((i for i, n in enumerate(numbers) if n != 0), len(numbers) - 1)
    return _Comparator(_Bound(low, True), _Bound(_bump(numbers, first_nonzero), False), False, has_pre)


@lru_cache(maxsize=256)
def parse_range(constraint: str) -> tuple[tuple[_Comparator, ...], ...]:
    """The comparator sets of ``constraint`` (OR of ANDs); raises PolicyError when it is malformed."""
    if not isinstance(constraint, str) or not constraint.strip():
        raise PolicyError(f"invalid range {constraint!r}: empty constraint")
    alternatives = []
    for alternative in constraint.split("||"):
        comparators = []
        pos = _SEPARATOR.match(alternative).end()
        while pos < len(alternative):
            match = _COMPARATOR.match(alternative, pos)
            if match is None:
                raise PolicyError(f"invalid range {constraint!r}: cannot parse {alternative[pos:].strip()!r}")
            end = match.end()
            if end < len(alternative) and not alternative[end].isspace() and alternative[end] != ",":
                raise PolicyError(f"invalid range {constraint!r}: cannot parse {alternative[pos:].strip()!r}")
            numbers = _parse_numbers(match["parts"], constraint)
            comparators.append(_comparator(match["op"] or "", numbers, match["pre"], constraint))
            pos = _SEPARATOR.match(alternative, end).end()
        if not comparators:
            raise PolicyError(f"invalid range {constraint!r}: empty alternative around '||'")
        alternatives.append(tuple(comparators))
    return tuple(alternatives)


def in_range(tag: str, constraint: str) -> bool:
    """Whether ``tag`` is a strict semver version satisfying ``constraint``; False for non-semver tags."""
    alternatives = parse_range(constraint)
    version = parse_semver(tag)
    if version is None:
        return False
    return any(
        all(c.allows(version) for c in comparators)
        and (not version.prerelease or any(c.has_prerelease for c in comparators))
        for comparators in alternatives
    )
