"""The promotion gate, a pure decision over data: may tag T of service S move from stage i to stage i+1 now?

Open when: the target (S, next env) is not paused; every cluster serving stage i reports `applied@<cluster>` on the
push record of T there; none reports `failed@<cluster>` (a failure halts T in stage i); the next stage's soak has
elapsed since the last of those applied times; now is inside the next stage's window; and an `approval: manual` stage
is reached through a pull request (WRITE_MODE=pull-request), which the reviewer never approves.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from core.model.trace_record import TraceRecord, TraceStage, parse_time
from core.rules.promotion import PromotionStage


@dataclass(frozen=True)
class Candidate:
    """The newest push of a service that reached stage `stage_index`, with its trace record."""
    service: str
    tag: str
    stage_index: int
    record: TraceRecord


@dataclass(frozen=True)
class GateDecision:
    action: str          # promote | wait | halt | last
    reason: str
    to_env: str = ""


def _stage_times(record: TraceRecord, kind: TraceStage) -> dict[str, datetime]:
    """When each cluster first reported `<kind>@<cluster>`."""
    times: dict[str, datetime] = {}
    for stage in record.stages:
        if stage.kind is kind and stage.where:
            at = parse_time(stage.at)
            if at is not None:
                times.setdefault(stage.where, at)
    return times


def decide_gate(candidate: Candidate, stages: Sequence[PromotionStage], clusters: Sequence[str], now: datetime, *,
                paused: str = "", write_mode: str = "direct") -> GateDecision:
    """`clusters`: those serving stage `candidate.stage_index`; `paused`: why the next target is paused ('' if not)."""
    if candidate.stage_index + 1 >= len(stages):
        return GateDecision("last", f"{candidate.tag} is in the last stage {stages[-1].env}")
    here, nxt = stages[candidate.stage_index], stages[candidate.stage_index + 1]
    failed = _stage_times(candidate.record, TraceStage.FAILED)
    if failed:
        which = ", ".join(sorted(failed))
        return GateDecision("halt", f"{candidate.tag} failed in {here.env} on {which}: halted there", nxt.env)
    if paused:
        return GateDecision("wait", f"{candidate.service} in {nxt.env} is paused: {paused}", nxt.env)
    if not clusters:
        return GateDecision("wait", f"no cluster is known to serve {here.env} (none has sent a Flux event, and "
                                    f"FLUX_RECEIVERS names none)", nxt.env)
    applied = _stage_times(candidate.record, TraceStage.APPLIED)
    missing = sorted(c for c in clusters if c not in applied)
    if missing:
        return GateDecision("wait", f"{candidate.tag} is not applied yet in {here.env} on {', '.join(missing)}",
                            nxt.env)
    soaked = max(applied[c] for c in clusters)
    left = nxt.soak_seconds - (now - soaked).total_seconds()
    if left > 0:
        return GateDecision("wait", f"{candidate.tag} soaks in {here.env} for {left:.0f} s more", nxt.env)
    if nxt.window is not None and not nxt.window.inside(now):
        return GateDecision("wait", f"outside the window of {nxt.env} ({nxt.window.text})", nxt.env)
    if nxt.approval == "manual" and write_mode != "pull-request":
        return GateDecision("wait", f"{nxt.env} needs approval: manual, which needs WRITE_MODE=pull-request "
                                    "(a person completes the promotion PR)", nxt.env)
    return GateDecision("promote", f"{candidate.tag} is applied on {', '.join(sorted(clusters))} in {here.env}, "
                                   f"soaked {nxt.soak_seconds} s", nxt.env)


def candidates(rows: Sequence[TraceRecord], stages: Sequence[PromotionStage]) -> list[Candidate]:
    """Per (service, stage): the newest push record (by start) that reached the manifest repo there. An older tag
    in a stage has been overtaken by the newer one and is not promoted."""
    index = {s.env: i for i, s in enumerate(stages)}
    newest: dict[tuple[str, int], TraceRecord] = {}
    for row in rows:
        if row.env not in index or not row.service or not row.image_tag or not row.manifest_commit_id:
            continue
        key = (row.service, index[row.env])
        if key not in newest or row.start > newest[key].start:
            newest[key] = row
    return [Candidate(service, row.image_tag, i, row) for (service, i), row in sorted(newest.items(),
                                                                                        key=lambda kv: kv[0])]
