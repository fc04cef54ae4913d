r"""The ``autopilot.yaml`` policy at the HLD repository root: parsing, validation and per-target lookup.

The file is optional; without it (or when it is empty) every default below applies. Schema::

    # autopilot.yaml
    environments: [prod]          # environments the manifest generator builds (default [prod])
    helmMode: helmrelease         # rendered | helmrelease; unset leaves the choice to the generator
    mergeStrategy: squash         # squash | noFastForward | rebase | rebaseMerge (default squash); used by the reviewer
    paused: false                 # global kill switch: true pauses every image, whatever the rules say
    autoApprove: none             # none | patch | minor | major (default none): the largest change the reviewer
                                  # approves on its own; changes under a non-semver ordering count as major
    allowedAuthors: []            # PR author ids / uniqueNames the reviewer trusts besides the service identity
    defaults:                     # tag settings for every image unless a rule overrides them
      ordering: semver            # semver | numeric | alphabetical | pushed (default semver)
      tagFilter: '^v?\d+\.\d+\.\d+$'   # RE2 regex, searched (anchor it); tags that do not match are ignored
      range: '>=1.0.0'            # semver range constraint (semver ordering only)
    rules:                        # first matching rule wins; unmatched targets get the defaults
      - image: "myacr.azurecr.io/app-*"   # glob on "<registry host>/<repository>" (no tag); case-insensitive
        path: "fabrikam-project/**"       # glob on the repo-relative path of the file that holds the image
        ordering: numeric
        tagFilter: '^master-(?P<n>\d+)$'
        range: null               # null clears a default tagFilter/range
        environments: [dev, staging]      # environments (Bedrock rings) a push may update; default all
        autoApprove: patch        # overrides the top-level autoApprove for matching targets
        paused: true              # pauses matching targets (cannot un-pause a globally paused file)
        fields: {repository: image.name, tag: image.version}  # an image shape to find in Fabrikate config: the
                                  # map at a key path ending in `image` names the image in `name`, its tag in `version`
    promotion:                    # ordered stages a pushed tag goes through; schema and errors in core.rules.promotion
      - env: dev
      - env: prod
        soak: 1h

Rules need ``image``, ``path`` or both; when both are given both must match. Globs: ``*`` and ``?`` stay within one
``/``-separated segment, ``**`` spans segments (``a/**`` is everything under ``a/``, ``**/x`` is ``x`` at any
depth), ``[abc]``/``[!abc]`` are character classes.

Tag settings: under ``numeric`` ordering the named groups of ``tagFilter`` are the numbers compared (in pattern
order), so the filter must have at least one; without a ``tagFilter`` the whole tag must be digits. Under
``alphabetical`` ordering a ``tagFilter`` with named groups compares those captures instead of the whole tag.
``range`` requires ``semver`` ordering; its syntax (``>=1.4.0 <2.0.0``, ``^1.2``, ``~1.2.3``, ``1.x``, ``||``) is
described in ``core.rules.tag_order``. ``pushed`` orders by ACR's push timestamp. Environment names (top level and rules)
are letters, digits, ``.``, ``_`` and ``-``, compared exactly (Bedrock rings are lower-case).

Every problem is reported as ``PolicyError("<file>:<line>: <what is wrong>")``: unknown keys, wrong types, bad
regexes, globs, ordering names, ranges and autoApprove levels, and the combinations above.

The file is hostile input. ``tagFilter`` patterns and rule globs run on RE2 (``core.rules.tag_order.compile_repo_regex``:
linear time; a pattern RE2 cannot compile, such as a back-reference or look-around, is refused at load). The file
must be a regular file at the checkout root, not a symbolic link, and at most ``MAX_POLICY_BYTES``; its YAML is
loaded through ``core.rules.repo_yaml`` (bounded alias expansion).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import re2
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarbool import ScalarBoolean

from core.rules.helm_modes import HELM_MODES
from core.rules.promotion import PromotionStage, parse_promotion
from core.rules.repo_yaml import RepoYamlError, describe_value, load_one, node_line, read_repo_text
from core.rules.targets import ImageFields
from core.rules.tag_order import Ordering, PolicyError, Regex, RegexError, TagOrder, compile_repo_regex, parse_range, quoted

__all__ = ["AUTO_APPROVE_LEVELS", "Policy", "PolicyError", "Rule", "TargetPolicy", "auto_approves", "load_policy"]

AUTO_APPROVE_LEVELS = ("none", "patch", "minor", "major")
MERGE_STRATEGIES = ("squash", "noFastForward", "rebase", "rebaseMerge")
DEFAULT_ENVIRONMENTS = ("prod",)

_TOP_KEYS = ("environments", "helmMode", "mergeStrategy", "paused", "autoApprove", "allowedAuthors", "defaults",
             "rules", "promotion")
_TAG_KEYS = ("ordering", "tagFilter", "range")
_RULE_KEYS = ("image", "path", *_TAG_KEYS, "environments", "autoApprove", "paused", "fields")
_FIELD_PATH = re.compile(r"[A-Za-z0-9_-]{1,100}(\.[A-Za-z0-9_-]{1,100}){0,9}")  # bounded, linear: key.key...
_ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class TargetPolicy:
    """The effective settings for one image reference in one file."""
    order: TagOrder
    tag_filter: Regex | None
    range: str | None
    environments: frozenset[str] | None
    auto_approve: str
    paused: bool
    rule_index: int | None


@dataclass(frozen=True)
class Rule:
    image: str | None
    path: str | None
    target: TargetPolicy
    fields: ImageFields | None = None  # `fields: {repository: image.name, tag: image.version}`

    def matches(self, image: str, path: str) -> bool:
        return ((self.image is None or _glob_regex(self.image.lower()).fullmatch(image.lower()) is not None)
                and (self.path is None or _glob_regex(self.path).fullmatch(_normalise_path(path)) is not None))


@dataclass(frozen=True)
class Policy:
    environments: tuple[str, ...] = DEFAULT_ENVIRONMENTS
    helm_mode: str | None = None
    merge_strategy: str = "squash"
    paused: bool = False
    auto_approve: str = "none"
    allowed_authors: tuple[str, ...] = ()
    default_target: TargetPolicy = TargetPolicy(TagOrder(), None, None, None, "none", False, None)
    rules: tuple[Rule, ...] = ()
    promotion: tuple[PromotionStage, ...] = ()   # core.rules.promotion: ordered stages; () = every environment at once

    @property
    def image_fields(self) -> tuple[ImageFields, ...]:
        """Every rule's `fields`: extra image shapes discovery looks for in Fabrikate config."""
        return tuple(dict.fromkeys(rule.fields for rule in self.rules if rule.fields is not None))

    def for_target(self, image: str, path: str) -> TargetPolicy:
        """Settings for ``image`` ("host/repository", no tag) referenced from the repo-relative file ``path``."""
        for rule in self.rules:
            if rule.matches(image, path):
                return rule.target
        return self.default_target


def auto_approves(allowed: str, change: str | None) -> bool:
    """Whether an ``autoApprove`` level admits a change of level ``change`` ("patch"/"minor"/"major")."""
    if change is None or allowed == "none":
        return False
    return AUTO_APPROVE_LEVELS.index(change) <= AUTO_APPROVE_LEVELS.index(allowed)


POLICY_FILE = "autopilot.yaml"
MAX_POLICY_BYTES = 256 * 1024


def read_policy_file(root: Path) -> str | None:
    """The text of `autopilot.yaml` at the root of a checkout, or None when there is none.

    Raises PolicyError (naming the file, never showing its content) when it is a symbolic link or resolves
    outside the checkout, is not a regular file, is larger than MAX_POLICY_BYTES (checked before reading it)
    or is not UTF-8."""
    try:
        return read_repo_text(Path(root), POLICY_FILE, limit=MAX_POLICY_BYTES)
    except RepoYamlError as exc:
        raise PolicyError(str(exc)) from None


def load_policy_from(root: Path) -> Policy:
    return load_policy(read_policy_file(root), POLICY_FILE)


def load_policy(text: str | None, source: str = "autopilot.yaml") -> Policy:
    """Parse and validate ``autopilot.yaml``; None or empty text gives the defaults. Raises PolicyError."""
    if text is None or not text.strip():
        return Policy()
    try:
        data = load_one(text, source, yaml=YAML(typ="rt"), max_bytes=MAX_POLICY_BYTES)
    except RepoYamlError as exc:
        raise PolicyError(str(exc)) from None
    if data is None:
        return Policy()
    return _Parser(source).policy(data)


def _normalise_path(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/")


@lru_cache(maxsize=256)
def _glob_regex(glob: str) -> Regex:
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and (end := glob.find("]", i + 2)) != -1:
            body = glob[i + 1:end]
            negate = body.startswith("!")
            chars = "".join(c if c == "-" else re2.escape(c) for c in (body[1:] if negate else body))
            out.append(f"[^/{chars}]" if negate else f"[{chars}]")
            i = end + 1
        else:
            out.append(re2.escape(glob[i]))
            i += 1
    try:
        return compile_repo_regex("".join(out))
    except RegexError as exc:
        raise PolicyError(f"invalid glob {glob!r}: {exc}") from None



@dataclass(frozen=True)
class _Setting:
    value: Any
    line: int


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, line: int, message: str) -> PolicyError:
        return PolicyError(f"{self.source}:{line}: {message}")

    def mapping(self, node: Any, where: str, allowed: tuple[str, ...], line: int) -> CommentedMap:
        if not isinstance(node, CommentedMap):
            raise self.error(line, f"{where} must be a mapping, got {describe_value(node)}")
        for key in node:
            if key not in allowed:
                raise self.error(node_line(node, key), f"unknown key {key!r} in {where} (allowed: {', '.join(allowed)})")
        return node

    def string(self, node: CommentedMap, key: str, where: str, choices: tuple[str, ...] = ()) -> str:
        value = node[key]
        line = node_line(node, key)
        if not isinstance(value, str) or not value:
            raise self.error(line, f"{_field(where, key)} must be a non-empty string, got {describe_value(value)}")
        if choices and value not in choices:
            raise self.error(line, f"{_field(where, key)} {value!r} is not one of {', '.join(choices)}")
        return str(value)

    def boolean(self, node: CommentedMap, key: str, where: str) -> bool:
        value = node[key]
        if not isinstance(value, (bool, ScalarBoolean)):
            raise self.error(node_line(node, key), f"{_field(where, key)} must be true or false, got {describe_value(value)}")
        return bool(value)

    def string_list(self, node: CommentedMap, key: str, where: str, pattern: re.Pattern[str] | None = None,
                    non_empty: bool = False) -> tuple[str, ...]:
        value = node[key]
        line = node_line(node, key)
        if not isinstance(value, CommentedSeq):
            raise self.error(line, f"{_field(where, key)} must be a list of strings, got {describe_value(value)}")
        if non_empty and not value:
            raise self.error(line, f"{_field(where, key)} must not be empty")
        items: list[str] = []
        for index, item in enumerate(value):
            item_line = node_line(value, index)
            if not isinstance(item, str) or not item:
                raise self.error(item_line,
                                 f"{_field(where, key)}[{index}] must be a non-empty string, got {describe_value(item)}")
            if pattern is not None and not pattern.fullmatch(item):
                raise self.error(item_line, f"{_field(where, key)}[{index}] {item!r} is not a valid name "
                                            f"(letters, digits, '.', '_', '-')")
            if item in items:
                raise self.error(item_line, f"{_field(where, key)} lists {item!r} twice")
            items.append(str(item))
        return tuple(items)

    def policy(self, data: Any) -> Policy:
        top = self.mapping(data, "the top level", _TOP_KEYS, node_line(data))
        where = ""
        paused = self.boolean(top, "paused", where) if "paused" in top else False
        auto_approve = self.string(top, "autoApprove", where, AUTO_APPROVE_LEVELS) if "autoApprove" in top else "none"
        defaults = self.tag_fields(self.mapping(top["defaults"], "defaults", _TAG_KEYS, node_line(top, "defaults")),
                                   "defaults") if "defaults" in top else {}
        default_target = self.target(defaults, {}, "defaults", paused, auto_approve, None)
        rules = self.rules(top, defaults, paused, auto_approve) if "rules" in top else ()
        return Policy(
            environments=(self.string_list(top, "environments", where, _ENV_NAME, non_empty=True)
                          if "environments" in top else DEFAULT_ENVIRONMENTS),
            helm_mode=self.string(top, "helmMode", where, HELM_MODES) if "helmMode" in top else None,
            merge_strategy=(self.string(top, "mergeStrategy", where, MERGE_STRATEGIES)
                            if "mergeStrategy" in top else "squash"),
            paused=paused,
            auto_approve=auto_approve,
            allowed_authors=self.string_list(top, "allowedAuthors", where) if "allowedAuthors" in top else (),
            default_target=default_target,
            rules=rules,
            promotion=parse_promotion(top, self.source) if "promotion" in top else (),
        )

    def tag_fields(self, node: CommentedMap, where: str) -> dict[str, _Setting]:
        """ordering / tagFilter / range of one mapping, validated on their own; null clears tagFilter and range."""
        fields: dict[str, _Setting] = {}
        if "ordering" in node:
            name = self.string(node, "ordering", where, tuple(o.value for o in Ordering))
            fields["ordering"] = _Setting(Ordering(name), node_line(node, "ordering"))
        for key in ("tagFilter", "range"):
            if key not in node:
                continue
            line = node_line(node, key)
            if node[key] is None:
                fields[key] = _Setting(None, line)
                continue
            text = self.string(node, key, where)
            fields[key] = _Setting(self.tag_filter(text, where, line) if key == "tagFilter"
                                   else self.range(text, where, line), line)
        return fields

    def tag_filter(self, text: str, where: str, line: int) -> Regex:
        try:
            return compile_repo_regex(text)
        except RegexError as exc:
            raise self.error(line, f"{_field(where, 'tagFilter')} {quoted(text)} is not a valid regex "
                                   f"(RE2 syntax): {exc}") from None

    def range(self, text: str, where: str, line: int) -> str:
        try:
            parse_range(text)
        except PolicyError as exc:
            raise self.error(line, f"{_field(where, 'range')}: {exc}") from None
        return text

    def rules(self, top: CommentedMap, defaults: dict[str, _Setting], paused: bool,
              auto_approve: str) -> tuple[Rule, ...]:
        node = top["rules"]
        if not isinstance(node, CommentedSeq):
            raise self.error(node_line(top, "rules"), f"rules must be a list of mappings, got {describe_value(node)}")
        rules = []
        for index, item in enumerate(node):
            where = f"rules[{index}]"
            rule = self.mapping(item, where, _RULE_KEYS, node_line(node, index))
            image = self.glob(rule, "image", where) if "image" in rule else None
            path = self.glob(rule, "path", where) if "path" in rule else None
            if image is None and path is None:
                raise self.error(node_line(node, index), f"{where} needs 'image', 'path' or both to say what it matches")
            fields = self.tag_fields(rule, where)
            environments = (frozenset(self.string_list(rule, "environments", where, _ENV_NAME, non_empty=True))
                            if "environments" in rule else None)
            rule_paused = paused or (self.boolean(rule, "paused", where) if "paused" in rule else False)
            rule_approve = (self.string(rule, "autoApprove", where, AUTO_APPROVE_LEVELS)
                            if "autoApprove" in rule else auto_approve)
            target = self.target(defaults, fields, where, rule_paused, rule_approve, index, environments)
            rules.append(Rule(image, path, target, self.image_fields(rule, where) if "fields" in rule else None))
        return tuple(rules)

    def image_fields(self, rule: CommentedMap, where: str) -> ImageFields:
        """`fields: {repository: a.b.name, tag: a.b.version}`: two key paths (up to 10 keys) in the same map."""
        where = f"{where}.fields"
        node = self.mapping(rule["fields"], where, ("repository", "tag"), node_line(rule, "fields"))
        paths = {}
        for key in ("repository", "tag"):
            if key not in node:
                raise self.error(node_line(rule, "fields"), f"{where} needs both 'repository' and 'tag'")
            text = self.string(node, key, where)
            if len(text) > 1000 or not _FIELD_PATH.fullmatch(text):
                raise self.error(node_line(node, key), f"{where}.{key} {quoted(text[:100])} is not a dotted key path "
                                                   "(up to 10 keys of letters, digits, '_', '-')")
            paths[key] = tuple(text.split("."))
        repository, tag = paths["repository"], paths["tag"]
        if repository[:-1] != tag[:-1] or repository[-1] == tag[-1]:
            raise self.error(node_line(rule, "fields"),
                             f"{where}: repository and tag must be two keys of the same map, e.g. image.name and "
                             "image.version")
        return ImageFields(repository[:-1], repository[-1], tag[-1])

    def glob(self, rule: CommentedMap, key: str, where: str) -> str:
        text = self.string(rule, key, where)
        try:
            _glob_regex(text.lower() if key == "image" else text)
        except PolicyError as exc:
            raise self.error(node_line(rule, key), f"{_field(where, key)}: {exc}") from None
        return text

    def target(self, defaults: dict[str, _Setting], own: dict[str, _Setting], where: str, paused: bool,
               auto_approve: str, rule_index: int | None,
               environments: frozenset[str] | None = None) -> TargetPolicy:
        merged = {**defaults, **own}

        def line_of(*keys: str) -> int:
            # Point at the setting in this rule when it has one; otherwise at the inherited default.
            for source in (own, merged):
                for key in keys:
                    if key in source:
                        return source[key].line
            return 1

        ordering = merged["ordering"].value if "ordering" in merged else Ordering.SEMVER
        tag_filter = merged["tagFilter"].value if "tagFilter" in merged else None
        constraint = merged["range"].value if "range" in merged else None
        if constraint is not None and ordering is not Ordering.SEMVER:
            raise self.error(line_of("range", "ordering"),
                             f"{where}: range {constraint!r} needs semver ordering, not {ordering.value}")
        named = tag_filter is not None and bool(tag_filter.groupindex)
        if ordering is Ordering.NUMERIC and tag_filter is not None and not named:
            raise self.error(line_of("tagFilter", "ordering"),
                             f"{where}: numeric ordering needs a named group (?P<name>...) in tagFilter "
                             f"{quoted(tag_filter.pattern)} to say which digits to compare")
        extract = tag_filter.pattern if named and ordering in (Ordering.NUMERIC, Ordering.ALPHABETICAL) else None
        return TargetPolicy(
            order=TagOrder(ordering, extract),
            tag_filter=tag_filter,
            range=constraint,
            environments=environments,
            auto_approve=auto_approve,
            paused=paused,
            rule_index=rule_index,
        )


def _field(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


