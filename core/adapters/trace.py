"""The deployment trace: one record per (image push, target) that every stage appends to.

Rows carry Bedrock's introspection names (service, env, imageTag, hldCommitId, pr, manifestCommitId,
manifestRepo) so teams coming from `bedrock deployment get` find what they know.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from core.adapters.storage import Storage, StorageUnavailable

TRACE_TABLE = "autopilotDeployments"
STAGES = ("received", "hld-commit", "hld-pr", "pr-approved", "pr-completed", "hld-merge", "manifest-commit",
          "manifest-pr", "review-ineligible", "skipped", "no-target", "failed")
# Per-cluster stages (core.workers.cluster_feedback): `applied@<cluster>` and `failed@<cluster>` (with Flux's message), next to
# `notified@<cluster>` / `notify-failed@<cluster>` (core.workers.flux_notify).
CLUSTER_STAGES = ("applied", "failed")


def cluster_stage(kind: str, cluster: str) -> str:
    return f"{kind}@{cluster}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def _parse(ts: str) -> datetime | None:
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
    a, b = _parse(start), _parse(end)
    return None if a is None or b is None else round((b - a).total_seconds(), 3)


@dataclass(frozen=True)
class Stage:
    name: str
    at: str
    actor: str
    detail: dict[str, Any]


def row_keys(trace_id: str, target_key: str) -> tuple[str, str]:
    return trace_id, hashlib.sha256(target_key.encode()).hexdigest()[:40]


class TraceLog:
    def __init__(self, storage: Storage):
        self._storage = storage

    def record(self, trace_id: str, target_key: str, stage: str, *, actor: str, start: str = "",
               fields: dict[str, Any] | None = None, detail: dict[str, Any] | None = None,
               at: str | None = None, tenant: str = "") -> None:
        """Append a stage (and set Bedrock-style fields) on the record of (trace, target); `tenant` names the fleet
        tenant the record belongs to (a column, so the trace can be filtered by it)."""
        at = at or now_iso()
        if tenant:
            fields = {**(fields or {}), "tenant": tenant}
        pk, rk = row_keys(trace_id, target_key)
        table = self._storage.table(TRACE_TABLE)
        new_stage = {"stage": stage, "at": at, "actor": actor, **(detail or {})}
        for _ in range(10):
            try:
                try:
                    entity = table.get_entity(pk, rk)
                except ResourceNotFoundError:
                    entity = None
                if entity is None:
                    base = {"PartitionKey": pk, "RowKey": rk, "traceId": trace_id, "targetKey": target_key,
                            "start": start or at, "stages": "[]"}
                    base.update(_clean(fields))
                    stages = [new_stage]
                    base["stages"] = json.dumps(_with_latency(stages, base["start"]))
                    base["updatedAt"] = at
                    try:
                        table.create_entity(base)
                        return
                    except ResourceExistsError:
                        continue
                stages = json.loads(entity.get("stages") or "[]")
                stages.append(new_stage)
                entity.update(_clean(fields))
                entity["stages"] = json.dumps(_with_latency(stages, entity.get("start", at)))
                entity["updatedAt"] = at
                table.update_entity(entity, mode="replace", etag=entity.metadata["etag"],
                                    match_condition=MatchConditions.IfNotModified)
                return
            except ResourceModifiedError:
                continue
            except AzureError as exc:
                raise StorageUnavailable(f"trace table: {type(exc).__name__}") from exc
        raise StorageUnavailable("trace table: too much contention")

    def rows_for_trace(self, trace_id: str) -> list[dict[str, Any]]:
        try:
            rows = self._storage.table(TRACE_TABLE).query_entities("PartitionKey eq @pk",
                                                                   parameters={"pk": trace_id})
            return [_public(r) for r in rows]
        except AzureError as exc:
            raise StorageUnavailable(f"trace table: {type(exc).__name__}") from exc

    def with_manifest_commit(self, since: str = "") -> list[dict[str, Any]]:
        """Records that reached the manifest repo (a `manifestCommitId` is set), started at or after `since`."""
        flt, params = "manifestCommitId ne @empty", {"empty": ""}
        if since:
            flt, params = flt + " and start ge @since", {**params, "since": since}
        try:
            return [_public(r) for r in self._storage.table(TRACE_TABLE).query_entities(flt, parameters=params)]
        except AzureError as exc:
            raise StorageUnavailable(f"trace table: {type(exc).__name__}") from exc

    def query(self, *, service: str = "", env: str = "", image: str = "", tag: str = "", tenant: str = "",
              top: int = 50) -> list[dict[str, Any]]:
        clauses, params = [], {}
        for name, value in (("service", service), ("env", env), ("image", image), ("imageTag", tag),
                            ("tenant", tenant)):
            if value:
                clauses.append(f"{name} eq @{name}")
                params[name] = value
        table = self._storage.table(TRACE_TABLE)
        try:
            rows = (table.query_entities(" and ".join(clauses), parameters=params) if clauses
                    else table.list_entities())
            result = [_public(r) for r in rows]
        except AzureError as exc:
            raise StorageUnavailable(f"trace table: {type(exc).__name__}") from exc
        result.sort(key=lambda r: r.get("start", ""), reverse=True)
        return result[:max(1, top)]


def _clean(fields: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (fields or {}).items() if v is not None and v != ""}


def _with_latency(stages: list[dict[str, Any]], start: str) -> list[dict[str, Any]]:
    for stage in stages:
        stage["latencySeconds"] = latency_seconds(start, stage["at"])
    return stages


def _public(entity: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey", "stages")}
    row["stages"] = json.loads(entity.get("stages") or "[]")
    return row
