"""The deployment trace record, as data: one per (image push, target), with the stages every worker appended.

Pure (no storage): the rules read it (core.rules.promotion_gate) without the adapter; core.adapters.trace is the one
module that writes and reads it. Stored column names are Bedrock's introspection names (service, env, imageTag,
hldCommitId, pr, manifestCommitId, manifestRepo), so teams coming from `bedrock deployment get` find what they know.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from types import MappingProxyType
from typing import Any, Mapping

DEFAULT_TENANT = "default"


class TraceStage(str, Enum):
    """What happened. The per-place kinds are recorded as `<kind>@<where>` (a cluster, an environment, a Flux
    receiver): see `StageName`."""
    RECEIVED = "received"
    HLD_COMMIT = "hld-commit"
    HLD_PR = "hld-pr"
    PR_APPROVED = "pr-approved"
    PR_COMPLETED = "pr-completed"
    HLD_MERGE = "hld-merge"
    MANIFEST_COMMIT = "manifest-commit"
    MANIFEST_PR = "manifest-pr"
    REVIEW_INELIGIBLE = "review-ineligible"
    SKIPPED = "skipped"
    NO_TARGET = "no-target"
    FAILED = "failed"               # also per cluster: failed@<cluster> (core.workers.cluster_feedback)
    APPLIED = "applied"             # applied@<cluster>
    NOTIFIED = "notified"           # notified@<receiver> (core.workers.flux_notify)
    NOTIFY_FAILED = "notify-failed"  # notify-failed@<receiver>
    PROMOTED = "promoted"           # promoted@<env> (core.workers.promoter)
    ROLLED_BACK = "rolled-back"     # rolled-back@<env>
    HALTED = "halted"               # halted@<env>

    def at(self, where: str) -> StageName:
        return StageName(self, where)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class StageName:
    kind: TraceStage
    where: str = ""

    def __post_init__(self) -> None:
        if "@" in self.where:
            raise ValueError(f"stage place {self.where!r} must not contain '@'")

    @classmethod
    def parse(cls, text: str) -> StageName | None:
        """The name of a stored stage; None for a name this version does not know."""
        kind, _, where = text.partition("@")
        try:
            return cls(TraceStage(kind), where)
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.kind.value}@{self.where}" if self.where else self.kind.value


@dataclass(frozen=True)
class StageEntry:
    """One appended stage. `name` is the stored text (`applied@prod-1`); `detail` holds what the stage carries
    (commit, pr, reason, cluster, revision, queue, ...)."""
    name: str
    at: str
    actor: str
    latency_seconds: float | None = None
    detail: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def stage(self) -> StageName | None:
        return StageName.parse(self.name)

    @property
    def kind(self) -> TraceStage | None:
        parsed = self.stage
        return None if parsed is None else parsed.kind

    @property
    def where(self) -> str:
        return self.name.partition("@")[2]

    def is_(self, stage: TraceStage | StageName) -> bool:
        return self.name == str(stage)


@dataclass(frozen=True)
class TraceRecord:
    trace_id: str
    target_key: str
    start: str
    stages: tuple[StageEntry, ...] = ()
    updated_at: str = ""
    tenant: str = DEFAULT_TENANT
    service: str = ""
    env: str = ""
    image: str = ""
    image_tag: str = ""
    digest: str = ""
    target_file: str = ""
    hld_repo: str = ""
    manifest_repo: str = ""
    hld_commit_id: str = ""
    pr: str = ""
    manifest_commit_id: str = ""
    state: str = ""          # a row-level state (paused, soaking, ...) when a stage alone cannot say
    state_reason: str = ""

    def has(self, stage: TraceStage | StageName, **detail: Any) -> bool:
        """Does a stage of this name (with these detail values) exist?"""
        return any(s.is_(stage) and all(s.detail.get(k) == v for k, v in detail.items()) for s in self.stages)

    def as_json(self) -> dict[str, Any]:
        """The record under Bedrock's names (`bedrock deployment get`), as the ops endpoints and the CLI print it."""
        out: dict[str, Any] = {column: getattr(self, name) for name, column in COLUMNS.items()
                               if getattr(self, name) != ""}
        out["stages"] = [{"stage": s.name, "at": s.at, "actor": s.actor, **s.detail,
                          "latencySeconds": s.latency_seconds} for s in self.stages]
        return out


# Attribute -> stored column (Bedrock's names). The settable ones are what `TraceLog.record(fields=...)` accepts.
COLUMNS: Mapping[str, str] = MappingProxyType({
    "trace_id": "traceId", "target_key": "targetKey", "start": "start", "updated_at": "updatedAt",
    "tenant": "tenant", "service": "service", "env": "env", "image": "image", "image_tag": "imageTag",
    "digest": "digest", "target_file": "targetFile", "hld_repo": "hldRepo", "manifest_repo": "manifestRepo",
    "hld_commit_id": "hldCommitId", "pr": "pr", "manifest_commit_id": "manifestCommitId", "state": "state",
    "state_reason": "stateReason"})
SETTABLE = frozenset(COLUMNS[name] for name in ("service", "env", "image", "image_tag", "digest", "target_file",
                                                "hld_repo", "manifest_repo", "hld_commit_id", "pr",
                                                "manifest_commit_id", "state", "state_reason"))


def parse_time(ts: str) -> datetime | None:
    """An ISO-8601 time as stored or sent by ACR (nanoseconds, `Z`); None when it is not one."""
    if not ts:
        return None
    try:
        # ACR timestamps carry nanoseconds; Python keeps microseconds.
        head, dot, frac = ts.rstrip("Z").partition(".")
        tz = "+00:00" if ts.endswith("Z") else ""
        if "+" in frac or "-" in frac:
            sep = "+" if "+" in frac else "-"
            frac, _, off = frac.partition(sep)
            tz = sep + off
        text = head + (("." + frac[:6]) if dot else "") + tz
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def latency_seconds(start: str, end: str) -> float | None:
    a, b = parse_time(start), parse_time(end)
    return None if a is None or b is None else round((b - a).total_seconds(), 3)
