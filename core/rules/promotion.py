r"""The `promotion:` list of autopilot.yaml: ordered stages a pushed tag goes through, each with its gate.

    promotion:
      - env: dev                # pushes land here only
      - env: staging
        soak: 10m               # applied and healthy on every cluster serving the previous stage for this long
      - env: prod
        soak: 1h
        approval: manual        # the promotion PR is opened and never auto-approved; a person completes it
        window: "Mon-Fri 08:00-16:00 Europe/Amsterdam"   # optional: promote only inside it
        onFailure: rollback     # halt (default): the tag stays halted | rollback: commit the previous good tag

Each `env` is an environment label the bump already uses (a Bedrock ring or an environment folder); without
`promotion:` every matching environment is bumped at once, as before. `soak` is `<n>s|m|h|d` (combinable: `1h30m`)
or 0. `window` is `<days> <HH:MM>-<HH:MM> <IANA zone>` with days `Mon-Fri`, `Sat,Sun` or `*`; an end before the
start spans midnight. Every problem is `autopilot.yaml:LINE: what is wrong`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from core.rules.tag_order import PolicyError

STAGE_KEYS = ("env", "soak", "approval", "window", "onFailure")
APPROVALS = ("auto", "manual")
ON_FAILURE = ("halt", "rollback")
MAX_STAGES = 10
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_ENV = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DURATION = re.compile(r"(?:(\d{1,4})d)?(?:(\d{1,5})h)?(?:(\d{1,6})m)?(?:(\d{1,7})s)?")
_WINDOW = re.compile(r"(?P<days>\S+)\s+(?P<start>\d\d:\d\d)-(?P<end>\d\d:\d\d)\s+(?P<zone>\S+)")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]          # 0 = Monday
    start: time
    end: time
    zone: str
    text: str

    def inside(self, when: datetime) -> bool:
        local = when.astimezone(ZoneInfo(self.zone))
        t = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return local.weekday() in self.days and self.start <= t < self.end
        # spans midnight: the part after midnight belongs to the previous day's window
        if t >= self.start:
            return local.weekday() in self.days
        return t < self.end and (local.weekday() - 1) % 7 in self.days


@dataclass(frozen=True)
class PromotionStage:
    env: str
    soak_seconds: int = 0
    approval: str = "auto"
    window: Window | None = None
    on_failure: str = "halt"
    line: int = 0


def _line(node: Any, key: Any = None) -> int:
    try:
        if key is None:
            return node.lc.line + 1
        if isinstance(node, CommentedSeq):
            return node.lc.item(key)[0] + 1
        return node.lc.key(key)[0] + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        return 1


def parse_duration(text: Any) -> int | None:
    """Seconds of `10m`, `1h30m`, `45s`, `2d`, `0`; None when malformed."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return text if text == 0 else None
    if not isinstance(text, str):
        return None
    text = text.strip()
    if text == "0":
        return 0
    match = _DURATION.fullmatch(text)
    if not text or not match or not any(match.groups()):
        return None
    d, h, m, s = (int(g or 0) for g in match.groups())
    return ((d * 24 + h) * 60 + m) * 60 + s


def _days(text: str) -> frozenset[int] | None:
    if text == "*":
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if first not in DAYS or (dash and last not in DAYS):
            return None
        a, b = DAYS.index(first), DAYS.index(last) if dash else DAYS.index(first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def parse_window(text: str) -> Window | str:
    """The window, or what is wrong with it."""
    match = _WINDOW.fullmatch(text.strip())
    if not match:
        return f"{text[:60]!r} is not '<days> HH:MM-HH:MM <zone>' (e.g. 'Mon-Fri 08:00-16:00 Europe/Amsterdam')"
    days = _days(match.group("days"))
    if days is None:
        return f"days {match.group('days')!r} must be like Mon-Fri, Sat,Sun or *"
    try:
        start, end = time.fromisoformat(match.group("start")), time.fromisoformat(match.group("end"))
    except ValueError:
        return f"{match.group('start')}-{match.group('end')} is not a time range of HH:MM"
    if start == end:
        return "the window's start and end are the same time"
    try:
        ZoneInfo(match.group("zone"))
    except (ZoneInfoNotFoundError, ValueError):
        return f"time zone {match.group('zone')!r} is unknown (an IANA name such as Europe/Amsterdam)"
    return Window(days, start, end, match.group("zone"), text.strip())


def parse_promotion(top: CommentedMap, source: str) -> tuple[PromotionStage, ...]:
    """The stages of `top["promotion"]`; PolicyError("<source>:<line>: ...") naming what is wrong."""
    def error(line: int, message: str) -> PolicyError:
        return PolicyError(f"{source}:{line}: {message}")

    node = top["promotion"]
    line = _line(top, "promotion")
    if not isinstance(node, CommentedSeq):
        raise error(line, "promotion must be a list of stages (- env: ...)")
    if len(node) < 2:
        raise error(line, "promotion needs at least two stages (the first one receives the pushes)")
    if len(node) > MAX_STAGES:
        raise error(line, f"promotion has {len(node)} stages; at most {MAX_STAGES}")
    stages: list[PromotionStage] = []
    for index, item in enumerate(node):
        where = f"promotion[{index}]"
        item_line = _line(node, index)
        if not isinstance(item, CommentedMap):
            raise error(item_line, f"{where} must be a mapping with env (and soak, approval, window, onFailure)")
        for key in item:
            if key not in STAGE_KEYS:
                raise error(_line(item, key), f"unknown key {key!r} in {where} (allowed: {', '.join(STAGE_KEYS)})")
        env = item.get("env")
        if not isinstance(env, str) or not _ENV.fullmatch(env):
            raise error(_line(item, "env") if "env" in item else item_line,
                        f"{where}.env must be an environment name (letters, digits, '.', '_', '-')")
        if any(s.env == env for s in stages):
            raise error(_line(item, "env"), f"{where}.env {env!r} is already a stage")
        soak = 0
        if "soak" in item:
            soak = parse_duration(item["soak"])
            if soak is None:
                raise error(_line(item, "soak"), f"{where}.soak {str(item['soak'])[:40]!r} is not a duration "
                                                 "(e.g. 30s, 10m, 1h30m, 0)")
        approval = item.get("approval", "auto")
        if approval not in APPROVALS:
            raise error(_line(item, "approval"), f"{where}.approval must be auto or manual")
        on_failure = item.get("onFailure", "halt")
        if on_failure not in ON_FAILURE:
            raise error(_line(item, "onFailure"), f"{where}.onFailure must be halt or rollback")
        window = None
        if "window" in item:
            if not isinstance(item["window"], str):
                raise error(_line(item, "window"), f"{where}.window must be a string")
            parsed = parse_window(item["window"])
            if isinstance(parsed, str):
                raise error(_line(item, "window"), f"{where}.window: {parsed}")
            window = parsed
        if index == 0 and (soak or approval != "auto" or window is not None):
            raise error(item_line, f"{where} is the first stage: pushes land there directly, so it takes no soak, "
                                   "approval or window")
        stages.append(PromotionStage(str(env), soak, str(approval), window, str(on_failure), item_line))
    return tuple(stages)


def stage_of(stages: tuple[PromotionStage, ...], env: str) -> int | None:
    return next((i for i, s in enumerate(stages) if s.env == env), None)


def push_skip_reason(stages: tuple[PromotionStage, ...], env: str) -> str | None:
    """Why a push must not bump a target in `env` directly (it is a later promotion stage), or None."""
    index = stage_of(stages, env)
    if not index:
        return None
    return (f"promotion: pushes land in {stages[0].env} only; {env} gets the tag when the gate after "
            f"{stages[index - 1].env} opens")


def manual_envs(stages: tuple[PromotionStage, ...]) -> frozenset[str]:
    return frozenset(s.env for s in stages if s.approval == "manual")
