"""Promotion, the I/O side: evaluate every gate (core.rules.promotion_gate) and promote the tags whose gate opened.

Runs after each Flux event (the cluster-events worker) and on a timer (the `promotion_timer` function), so a soak
or a window that ends opens its gate without waiting for an event.

Exactly once. Before bumping, a promotion claims (service, next env, tag) with an insert into the promotions table
(Table storage's insert is conditional: `If-None-Match: *` semantics, it fails with 409 when the row exists), so two
instances evaluating one gate, a duplicate or late Flux event, and a replay all promote once: the loser sees the
claim and does nothing. A claim whose bump failed is deleted (ETag-conditional) so the next evaluation retries; the
bump itself is forward-only and idempotent (the high-water mark and the tag already in the file make a repeat a noop).

Paused targets: (service, env) pairs in the pauses table (a person's manual rollback, see `pause`), listed by
`python -m core.ops.cli resume` / `POST /api/ops/resume`, which removes them.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from core.workers.bump import ROLLBACK
from core.errors import Permanent
from core.model.fleet import DEFAULT_TENANT
from core.rules.policy import Policy
from core.rules.promotion_gate import Candidate, GateDecision, candidates, decide_gate
from core.adapters.storage import Storage, StorageUnavailable
from core.adapters.trace import TraceLog, now_iso
from core.model.workitems import ImagePushed, new_trace_id

log = logging.getLogger("autopilot.promotion")

PROMOTIONS_TABLE = "autopilotPromotions"
PAUSES_TABLE = "autopilotPauses"
LOOKBACK_DAYS = 30


class PromotionError(Permanent, ValueError):
    """A promotion request (resume) is malformed; the message names the field."""


def _pk(service: str, env: str, tenant: str = DEFAULT_TENANT) -> str:
    """Per tenant: the same service and environment in two tenants are two keys (`default` keeps its old keys)."""
    scoped = f"{service}\x1f{env}" if tenant == DEFAULT_TENANT else f"{tenant}\x1e{service}\x1f{env}"
    return hashlib.sha256(scoped.encode("utf-8")).hexdigest()[:40]


def _rk(tag: str) -> str:
    return hashlib.sha256(tag.encode("utf-8")).hexdigest()[:40]


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


class Pauses:
    """(service, env) pairs paused by a person's manual rollback. A resume keeps the row as `resumed` with the tag
    the person set, so that same lowered tag does not pause the target again; a later lower tag does."""

    def __init__(self, storage: Storage, tenant: str = DEFAULT_TENANT):
        self._storage = storage
        self._tenant = tenant

    def _get(self, service: str, env: str) -> dict[str, Any] | None:
        try:
            return dict(self._storage.table(PAUSES_TABLE).get_entity("paused", _pk(service, env, self._tenant)))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageUnavailable(f"pauses table: {type(exc).__name__}") from exc

    def _put(self, entity: dict[str, Any]) -> None:
        try:
            self._storage.table(PAUSES_TABLE).upsert_entity(entity)
        except AzureError as exc:
            raise StorageUnavailable(f"pauses table: {type(exc).__name__}") from exc

    def pause(self, service: str, env: str, reason: str, tag: str = "") -> None:
        self._put({"PartitionKey": "paused", "RowKey": _pk(service, env, self._tenant), "service": service,
                   "env": env, "tenant": self._tenant, "reason": reason[:500], "tag": tag, "state": "paused",
                   "at": now_iso()})

    def reason(self, service: str, env: str) -> str:
        """Why (service, env) is paused; '' when it is not."""
        row = self._get(service, env)
        return str(row.get("reason") or "paused") if row and row.get("state") == "paused" else ""

    def acknowledged(self, service: str, env: str) -> str:
        """The lowered tag a person's resume accepted ('' when none)."""
        row = self._get(service, env)
        return str(row.get("tag") or "") if row and row.get("state") == "resumed" else ""

    def acknowledge(self, service: str, env: str, tag: str) -> None:
        """Automation itself set `tag` below the high-water mark (a stage's rollback): not a person's rollback."""
        if self.reason(service, env):
            return   # a person's pause stays until they resume
        self._put({"PartitionKey": "paused", "RowKey": _pk(service, env, self._tenant), "service": service,
                   "env": env, "tenant": self._tenant, "reason": "", "tag": tag, "state": "resumed", "at": now_iso()})

    def resume(self, service: str, env: str) -> bool:
        """True when it was paused."""
        row = self._get(service, env)
        if not row or row.get("state") != "paused":
            return False
        row.update(state="resumed", resumedAt=now_iso())
        self._put(row)
        return True

    def listed(self) -> list[dict[str, Any]]:
        try:
            rows = self._storage.table(PAUSES_TABLE).query_entities("PartitionKey eq 'paused' and state eq 'paused'")
            return [{"service": e["service"], "env": e["env"], "reason": e.get("reason", ""), "at": e.get("at", ""),
                     "tenant": e.get("tenant") or DEFAULT_TENANT} for e in rows]
        except AzureError as exc:
            raise StorageUnavailable(f"pauses table: {type(exc).__name__}") from exc


class Claims:
    def __init__(self, storage: Storage, tenant: str = DEFAULT_TENANT):
        self._storage = storage
        self._tenant = tenant

    def claim(self, service: str, env: str, tag: str, trace_id: str) -> bool:
        """True for the one caller that may promote `tag` of `service` into `env`."""
        try:
            self._storage.table(PROMOTIONS_TABLE).create_entity(
                {"PartitionKey": _pk(service, env, self._tenant), "RowKey": _rk(tag), "service": service, "env": env,
                 "tag": tag, "tenant": self._tenant, "traceId": trace_id, "state": "claimed", "at": now_iso()})
            return True
        except ResourceExistsError:
            return False
        except AzureError as exc:
            raise StorageUnavailable(f"promotions table: {type(exc).__name__}") from exc

    def claimed(self, service: str, env: str, tag: str) -> bool:
        try:
            self._storage.table(PROMOTIONS_TABLE).get_entity(_pk(service, env, self._tenant), _rk(tag))
            return True
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise StorageUnavailable(f"promotions table: {type(exc).__name__}") from exc

    def settle(self, service: str, env: str, tag: str, detail: dict[str, Any]) -> None:
        table = self._storage.table(PROMOTIONS_TABLE)
        try:
            table.update_entity({"PartitionKey": _pk(service, env, self._tenant), "RowKey": _rk(tag), "state": "done",
                                 **{k: str(v) for k, v in detail.items() if v is not None}}, mode="merge")
        except AzureError as exc:
            raise StorageUnavailable(f"promotions table: {type(exc).__name__}") from exc

    def release(self, service: str, env: str, tag: str) -> None:
        table = self._storage.table(PROMOTIONS_TABLE)
        try:
            entity = table.get_entity(_pk(service, env, self._tenant), _rk(tag))
            table.delete_entity(entity, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified)
        except (ResourceNotFoundError, ResourceModifiedError):
            pass
        except AzureError as exc:
            raise StorageUnavailable(f"promotions table: {type(exc).__name__}") from exc


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
    image = str(row.get("image") or "")
    registry, _, repository = image.partition("/") if "." in image.split("/", 1)[0] else ("", "", image)
    start = str(row.get("start") or "")
    return ImagePushed(event_id=f"promote:{candidate.service}:{to_env}:{candidate.tag}", trace_id=str(row["traceId"]),
                       registry=registry, repository=repository, tag=candidate.tag, digest=str(row.get("digest") or ""),
                       media_type="", pushed_at=start, acr_event_id="", source="promotion", received_at=start)


def previous_good(running: Sequence[dict[str, Any]], failed_tag: str) -> str:
    """The tag the clusters that failed `failed_tag` still run (what they applied healthy before), or ''."""
    for row in running:
        if row.get("state") == "failed" and row.get("failedTag") == failed_tag and row.get("tag") \
                and row.get("tag") != failed_tag:
            return str(row["tag"])
    return ""


class Promoter:
    def __init__(self, *, storage: Storage, trace: TraceLog, bump: Any, policy: Any, clusters_for: Any,
                 write_mode: str = "direct", clock=lambda: datetime.now(timezone.utc), tenant: str = DEFAULT_TENANT):
        """`policy()`: the current autopilot.yaml Policy; `clusters_for(env)`: the clusters serving env."""
        self.storage = storage
        self.trace = trace
        self.bump = bump
        self.policy = policy
        self.clusters_for = clusters_for
        self.write_mode = write_mode
        self.clock = clock
        self.claims = Claims(storage, tenant)
        self.pauses = Pauses(storage, tenant)

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
        from core.workers.cluster_feedback import RunningLog

        row = candidate.record
        good = previous_good(RunningLog(self.storage).matrix(service=candidate.service, env=env), candidate.tag)
        if not good:
            return Evaluated(candidate, GateDecision("halt", f"{decision.reason}; no previous good tag to roll back "
                                                             f"to", env))
        if not self.claims.claim(candidate.service, env, f"rollback:{candidate.tag}", str(row["traceId"])):
            return Evaluated(candidate, GateDecision("halt", f"{decision.reason}; rolled back to {good}", env))
        digest = next((str(r.get("digest") or "") for r in self.trace.query(service=candidate.service, env=env,
                                                                            tag=good, top=1)), "")
        try:
            result = self.bump.process([rollback_item(candidate, env, good, digest)], only_env=env)
        except Exception:
            self.claims.release(candidate.service, env, f"rollback:{candidate.tag}")
            raise
        self.trace.record(str(row["traceId"]), str(row["targetKey"]), f"rolled-back@{env}", actor="gitops-autopilot",
                          detail={"reason": f"{candidate.tag} failed in {env}; back to {good} (onFailure: rollback)",
                                  "commit": result.commit})
        log.warning("rolled %s back to %s in %s: %s failed", candidate.service, good, env, candidate.tag,
                    extra={"trace_id": str(row["traceId"])})
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
            if not any(s.get("stage") == f"halted@{stages[candidate.stage_index].env}" for s in row.get("stages", [])):
                self.trace.record(str(row["traceId"]), str(row["targetKey"]),
                                  f"halted@{stages[candidate.stage_index].env}", actor="gitops-autopilot",
                                  detail={"reason": decision.reason})
            if stages[candidate.stage_index].on_failure == "rollback":
                return self._roll_back(candidate, stages[candidate.stage_index].env, decision)
            return Evaluated(candidate, decision)
        if decision.action != "promote":
            return Evaluated(candidate, decision)
        if not self.claims.claim(candidate.service, decision.to_env, candidate.tag, str(row["traceId"])):
            return Evaluated(candidate, GateDecision("wait", "another evaluation promoted it", decision.to_env))
        try:
            result = self.bump.process([promotion_item(candidate, decision.to_env)], only_env=decision.to_env)
        except Exception:
            self.claims.release(candidate.service, decision.to_env, candidate.tag)
            raise
        prs = [pr for _, pr in result.pull_requests]
        self.claims.settle(candidate.service, decision.to_env, candidate.tag,
                           {"commit": result.commit, "pr": prs[0] if prs else None})
        self.trace.record(str(row["traceId"]), str(row["targetKey"]), f"promoted@{decision.to_env}",
                          actor="gitops-autopilot", detail={"reason": decision.reason, "commit": result.commit,
                                                            **({"pr": prs[0]} if prs else {})})
        log.info("promoted %s %s to %s: %s", candidate.service, candidate.tag, decision.to_env,
                 result.commit or prs, extra={"trace_id": str(row["traceId"])})
        return Evaluated(candidate, decision, True, result.commit)


def promoter_for(services: Any) -> Promoter | None:
    """The promoter over the wired services; None when nothing can be bumped (no bump repo configured)."""
    from core.workers.cluster_feedback import ClusterRegistry
    from core.rules.policy import POLICY_FILE, load_policy

    settings = services.settings
    bump = getattr(services, "bump", None) if settings.bump_repo_url else None   # test doubles may wire no bump
    if bump is None:
        return None
    registry = ClusterRegistry(services.storage)

    def policy() -> Policy:
        text = bump.workspace.file_at(bump.branch, POLICY_FILE)
        return load_policy(None if text is None else text.decode("utf-8", errors="replace"), POLICY_FILE)

    def clusters(env: str) -> list[str]:
        return sorted(set(registry.serving(env)) | {r.cluster for r in settings.flux.receivers if r.env == env})

    return Promoter(storage=services.storage, trace=services.trace, bump=bump, policy=policy,
                    clusters_for=clusters, write_mode=settings.write_mode,
                    tenant=getattr(services, "tenant", "") or DEFAULT_TENANT)
