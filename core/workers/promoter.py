"""Promotion, the I/O side: evaluate every gate (core.rules.promotion_gate) and promote the tags whose gate opened.

Runs after each Flux event (the cluster-events worker) and on a timer (the `promotion_timer` function), so a soak
or a window that ends opens its gate without waiting for an event.

Exactly once. Before bumping, a promotion claims (service, next env, tag) (core.adapters.promotion_records: an
insert that fails when the claim exists), so two instances evaluating one gate, a duplicate or late Flux event, and a
replay all promote once: the loser sees the claim and does nothing. A claim whose bump failed is released so the next
evaluation retries; the bump itself is forward-only and idempotent (the high-water mark and the tag already in the
file make a repeat a noop).

Paused targets: (service, env) pairs a person's manual rollback paused (`PauseStore`), listed by
`python -m core.ops.cli resume` / `POST /api/ops/resume`, which removes them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from core.adapters.cluster_records import RunningStore
from core.adapters.promotion_records import ClaimStore, PauseStore
from core.adapters.trace import TraceStore, now_iso
from core.errors import Permanent
from core.model.trace_record import TraceStage
from core.model.workitems import ImagePushed, new_trace_id
from core.rules.policy import Policy
from core.rules.promotion_gate import Candidate, GateDecision, candidates, decide_gate
from core.workers.bump import ROLLBACK

log = logging.getLogger("autopilot.promotion")

LOOKBACK_DAYS = 30


class PromotionError(Permanent, ValueError):
    """A promotion request (resume) is malformed; the message names the field."""


def resume_request(body: Any) -> tuple[str, str]:
    """(service, env) of a resume request `{"service": S, "env": E}`; PromotionError naming the field."""
    if not isinstance(body, dict):
        raise PromotionError("body must be a JSON object with service and env")
    values = []
    for key in ("service", "env"):
        value = body.get(key)
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise PromotionError(f"{key} must be a non-empty string")
        values.append(value.strip())
    return values[0], values[1]


@dataclass(frozen=True)
class Evaluated:
    candidate: Candidate
    decision: GateDecision
    promoted: bool = False
    commit: str | None = None


def rollback_item(candidate: Candidate, env: str, tag: str, digest: str) -> ImagePushed:
    """The bump request that puts `tag` (the previous good one) back into `env` after the candidate failed there."""
    item = promotion_item(candidate, env)
    now = now_iso()   # its own trace (a record of the good tag's return), started now
    return replace(item, event_id=f"rollback:{candidate.service}:{env}:{candidate.tag}", trace_id=new_trace_id(),
                   tag=tag, digest=digest, pushed_at=now, received_at=now, source=ROLLBACK)


def promotion_item(candidate: Candidate, to_env: str) -> ImagePushed:
    """The bump request that promotes the exact tag (and digest) of the candidate's push into `to_env`, on the same
    trace (so the trace shows push -> dev -> applied@dev -> prod -> applied@prod with every latency from the push)."""
    row = candidate.record
    registry, _, repository = row.image.partition("/") if "." in row.image.split("/", 1)[0] else ("", "", row.image)
    return ImagePushed(event_id=f"promote:{candidate.service}:{to_env}:{candidate.tag}", trace_id=row.trace_id,
                       registry=registry, repository=repository, tag=candidate.tag, digest=row.digest,
                       media_type="", pushed_at=row.start, acr_event_id="", source="promotion", received_at=row.start)


def previous_good(running: Sequence[dict[str, Any]], failed_tag: str) -> str:
    """The tag the clusters that failed `failed_tag` still run (what they applied healthy before), or ''."""
    for row in running:
        if row.get("state") == "failed" and row.get("failedTag") == failed_tag and row.get("tag") \
                and row.get("tag") != failed_tag:
            return str(row["tag"])
    return ""


class Promoter:
    def __init__(self, *, trace: TraceStore, claims: ClaimStore, pauses: PauseStore, running: RunningStore, bump: Any,
                 policy: Any, clusters_for: Any, write_mode: str = "direct",
                 clock=lambda: datetime.now(timezone.utc)):
        """`policy()`: the current autopilot.yaml Policy; `clusters_for(env)`: the clusters serving env."""
        self.trace = trace
        self.claims = claims
        self.pauses = pauses
        self.running = running
        self.bump = bump
        self.policy = policy
        self.clusters_for = clusters_for
        self.write_mode = write_mode
        self.clock = clock

    def evaluate(self) -> list[Evaluated]:
        policy: Policy = self.policy()
        if not policy.promotion:
            return []
        since = (self.clock() - timedelta(days=LOOKBACK_DAYS)).isoformat()
        results = []
        for candidate in candidates(self.trace.with_manifest_commit(since), policy.promotion):
            results.append(self._one(candidate, policy))
        return results

    def _roll_back(self, candidate: Candidate, env: str, decision: GateDecision) -> Evaluated:
        """onFailure: rollback: commit the previous good tag to the stage where `candidate` failed, once."""
        row = candidate.record
        good = previous_good(self.running.matrix(service=candidate.service, env=env), candidate.tag)
        if not good:
            return Evaluated(candidate, GateDecision("halt", f"{decision.reason}; no previous good tag to roll back "
                                                             f"to", env))
        if not self.claims.claim(candidate.service, env, f"rollback:{candidate.tag}", row.trace_id):
            return Evaluated(candidate, GateDecision("halt", f"{decision.reason}; rolled back to {good}", env))
        digest = next((r.digest for r in self.trace.query(service=candidate.service, env=env,
                                                                            tag=good, top=1)), "")
        try:
            result = self.bump.process([rollback_item(candidate, env, good, digest)], only_env=env)
        except Exception:
            self.claims.release(candidate.service, env, f"rollback:{candidate.tag}")
            raise
        self.trace.record(row.trace_id, row.target_key, TraceStage.ROLLED_BACK.at(env), actor="gitops-autopilot",
                          detail={"reason": f"{candidate.tag} failed in {env}; back to {good} (onFailure: rollback)",
                                  "commit": result.commit})
        log.warning("rolled %s back to %s in %s: %s failed", candidate.service, good, env, candidate.tag,
                    extra={"trace_id": row.trace_id})
        return Evaluated(candidate, GateDecision("halt", f"{decision.reason}; rolled back to {good}", env),
                         commit=result.commit)

    def _one(self, candidate: Candidate, policy: Policy) -> Evaluated:
        stages = policy.promotion
        if candidate.stage_index + 1 < len(stages):
            to_env = stages[candidate.stage_index + 1].env
            if self.claims.claimed(candidate.service, to_env, candidate.tag):
                return Evaluated(candidate, GateDecision("wait", f"{candidate.tag} already promoted to {to_env}",
                                                         to_env))
        decision = decide_gate(candidate, stages, self.clusters_for(stages[candidate.stage_index].env), self.clock(),
                               paused=self.pauses.reason(candidate.service, stages[min(candidate.stage_index + 1,
                                                                                        len(stages) - 1)].env),
                               write_mode=self.write_mode)
        row = candidate.record
        if decision.action == "halt":
            halted = TraceStage.HALTED.at(stages[candidate.stage_index].env)
            if not row.has(halted):
                self.trace.record(row.trace_id, row.target_key, halted, actor="gitops-autopilot",
                                  detail={"reason": decision.reason})
            if stages[candidate.stage_index].on_failure == "rollback":
                return self._roll_back(candidate, stages[candidate.stage_index].env, decision)
            return Evaluated(candidate, decision)
        if decision.action != "promote":
            return Evaluated(candidate, decision)
        if not self.claims.claim(candidate.service, decision.to_env, candidate.tag, row.trace_id):
            return Evaluated(candidate, GateDecision("wait", "another evaluation promoted it", decision.to_env))
        try:
            result = self.bump.process([promotion_item(candidate, decision.to_env)], only_env=decision.to_env)
        except Exception:
            self.claims.release(candidate.service, decision.to_env, candidate.tag)
            raise
        prs = [pr for _, pr in result.pull_requests]
        self.claims.settle(candidate.service, decision.to_env, candidate.tag,
                           {"commit": result.commit, "pr": prs[0] if prs else None})
        self.trace.record(row.trace_id, row.target_key, TraceStage.PROMOTED.at(decision.to_env),
                          actor="gitops-autopilot", detail={"reason": decision.reason, "commit": result.commit,
                                                            **({"pr": prs[0]} if prs else {})})
        log.info("promoted %s %s to %s: %s", candidate.service, candidate.tag, decision.to_env,
                 result.commit or prs, extra={"trace_id": row.trace_id})
        return Evaluated(candidate, decision, True, result.commit)


def promoter_for(services: Any) -> Promoter | None:
    """The promoter over the wired services; None when nothing can be bumped (no bump repo configured)."""
    from core.rules.policy import POLICY_FILE, load_policy

    settings = services.settings
    bump = getattr(services, "bump", None) if settings.bump_repo_url else None   # test doubles may wire no bump
    if bump is None:
        return None
    registry = services.clusters

    def policy() -> Policy:
        text = bump.workspace.file_at(bump.branch, POLICY_FILE)
        return load_policy(None if text is None else text.decode("utf-8", errors="replace"), POLICY_FILE)

    def clusters(env: str) -> list[str]:
        return sorted(set(registry.serving(env)) | {r.cluster for r in settings.flux.receivers if r.env == env})

    return Promoter(trace=services.trace, claims=services.claims, pauses=services.pauses, running=services.running,
                    bump=bump, policy=policy, clusters_for=clusters, write_mode=settings.write_mode)


def promote_fleet(services: Any) -> int:
    """Every active tenant's gates, each on its own services; one tenant's failure does not skip the others (the
    first is raised after all were evaluated, so the run still shows as failed). The number of promotions."""
    promoted, failures = 0, []
    for tenant in services.fleet.tenants:
        if tenant.paused:
            continue
        try:
            promoter = promoter_for(services.for_work(tenant.name))
            if promoter is not None:
                promoted += len([e for e in promoter.evaluate() if e.promoted])
        except Exception as exc:  # noqa: BLE001 - reported below, after the other tenants
            log.error("promotion timer: tenant %s: %s", tenant.name, exc)
            failures.append(exc)
    if failures:
        raise failures[0]
    return promoted
