"""The deployment trace store: one `TraceRecord` (core.model.trace_record) per (image push, target) that every stage
appends to. This module is the one that writes and reads them; `TraceStore` is the port the workers take,
`TraceLog` its Table storage implementation (tests use a dict fake, tests/fakes/records.py).

Table `autopilotDeployments`: PartitionKey = trace id, RowKey = hash of the target key; the record's fields under
Bedrock's names (core.model.trace_record.COLUMNS) and `stages`, a JSON list of {stage, at, actor, latencySeconds,
...detail}.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Protocol

from azure.core.exceptions import AzureError

from core.adapters.etag import update_with_etag
from core.adapters.storage import Storage, StorageUnavailable
from core.model.trace_record import (COLUMNS, DEFAULT_TENANT, SETTABLE, StageEntry, StageName, TraceRecord,
                                     TraceStage, latency_seconds)

TRACE_TABLE = "autopilotDeployments"
Stage = TraceStage | StageName | str   # a str must name a known stage (`applied@prod-1`)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def row_keys(trace_id: str, target_key: str) -> tuple[str, str]:
    return trace_id, hashlib.sha256(target_key.encode()).hexdigest()[:40]


class TraceStore(Protocol):
    def record(self, trace_id: str, target_key: str, stage: Stage, *, actor: str, start: str = "",
               fields: Mapping[str, Any] | None = None, detail: Mapping[str, Any] | None = None,
               at: str | None = None, tenant: str | None = None) -> None:
        """Append a stage (and set Bedrock-named `fields`, core.model.trace_record.SETTABLE) on the record of
        (trace, target), creating it (started at `start`, else `at`; tenant `default` unless given)."""

    def rows_for_trace(self, trace_id: str) -> list[TraceRecord]:
        """Every record of one trace."""

    def with_manifest_commit(self, since: str = "", tenant: str = "") -> list[TraceRecord]:
        """Records that reached the manifest repo (`manifest_commit_id` set), started at or after `since`."""

    def query(self, *, service: str = "", env: str = "", image: str = "", tag: str = "", tenant: str = "",
              top: int = 50) -> list[TraceRecord]:
        """The newest `top` records (by start) matching every given filter."""


def stage_name(stage: Stage) -> str:
    if isinstance(stage, (TraceStage, StageName)):
        return str(stage)
    if StageName.parse(stage) is None:
        raise ValueError(f"unknown trace stage {stage!r}")
    return stage


def appended(current: TraceRecord | None, trace_id: str, target_key: str, stage: Stage, *, actor: str,
             start: str = "", fields: Mapping[str, Any] | None = None, detail: Mapping[str, Any] | None = None,
             at: str, tenant: str | None = None) -> TraceRecord:
    """The record after one `TraceStore.record` call (every implementation appends through this)."""
    changes = clean_fields(fields)
    if tenant:
        changes["tenant"] = tenant
    base = current or TraceRecord(trace_id=trace_id, target_key=target_key, start=start or at)
    entry = StageEntry(stage_name(stage), at, actor, latency_seconds(base.start, at),
                       MappingProxyType(dict(detail or {})))
    return replace(base, stages=(*base.stages, entry), updated_at=at, **changes)


_ATTRIBUTE = {column: name for name, column in COLUMNS.items()}


def clean_fields(fields: Mapping[str, Any] | None) -> dict[str, str]:
    """Bedrock-named fields as record attributes; empty values leave a field as it is."""
    out = {}
    for column, value in (fields or {}).items():
        if column not in SETTABLE:
            raise ValueError(f"{column!r} is not a trace record field")
        if value is not None and value != "":
            out[_ATTRIBUTE[column]] = str(value)
    return out


def matches(record: TraceRecord, *, service: str = "", env: str = "", image: str = "", tag: str = "",
            tenant: str = "") -> bool:
    return ((not service or record.service == service) and (not env or record.env == env)
            and (not image or record.image == image) and (not tag or record.image_tag == tag)
            and (not tenant or record.tenant == tenant))


def newest(records: Iterable[TraceRecord], top: int) -> list[TraceRecord]:
    return sorted(records, key=lambda r: r.start, reverse=True)[:max(1, top)]


class TraceLog:
    """The trace in Table storage."""

    def __init__(self, storage: Storage):
        self._storage = storage

    def record(self, trace_id: str, target_key: str, stage: Stage, *, actor: str, start: str = "",
               fields: Mapping[str, Any] | None = None, detail: Mapping[str, Any] | None = None,
               at: str | None = None, tenant: str | None = None) -> None:
        at = at or now_iso()
        stage_name(stage)   # a bad name fails before any write
        pk, rk = row_keys(trace_id, target_key)

        def change(entity: dict[str, Any] | None) -> dict[str, Any]:
            current = None if entity is None else to_record(entity)
            return to_entity(appended(current, trace_id, target_key, stage, actor=actor, start=start,
                                      fields=fields, detail=detail, at=at, tenant=tenant))

        update_with_etag(self._storage.table(TRACE_TABLE), pk, rk, change, "trace table")

    def rows_for_trace(self, trace_id: str) -> list[TraceRecord]:
        try:
            rows = self._storage.table(TRACE_TABLE).query_entities("PartitionKey eq @pk",
                                                                   parameters={"pk": trace_id})
            return [to_record(r) for r in rows]
        except AzureError as exc:
            raise StorageUnavailable(f"trace table: {type(exc).__name__}") from exc

    def with_manifest_commit(self, since: str = "", tenant: str = "") -> list[TraceRecord]:
        flt, params = "manifestCommitId ne @empty", {"empty": ""}
        if since:
            flt, params = flt + " and start ge @since", {**params, "since": since}
        try:
            rows = [to_record(r) for r in self._storage.table(TRACE_TABLE).query_entities(flt, parameters=params)]
        except AzureError as exc:
            raise StorageUnavailable(f"trace table: {type(exc).__name__}") from exc
        return [r for r in rows if matches(r, tenant=tenant)]

    def query(self, *, service: str = "", env: str = "", image: str = "", tag: str = "", tenant: str = "",
              top: int = 50) -> list[TraceRecord]:
        clauses, params = [], {}
        for name, value in (("service", service), ("env", env), ("image", image), ("imageTag", tag)):
            if value:
                clauses.append(f"{name} eq @{name}")
                params[name] = value
        table = self._storage.table(TRACE_TABLE)
        try:
            rows = (table.query_entities(" and ".join(clauses), parameters=params) if clauses
                    else table.list_entities())
            result = [to_record(r) for r in rows]
        except AzureError as exc:
            raise StorageUnavailable(f"trace table: {type(exc).__name__}") from exc
        # Rows written before tenants have no `tenant` column (they read as `default`): filtered here, not in OData.
        return newest((r for r in result if matches(r, tenant=tenant)), top)


def to_entity(record: TraceRecord) -> dict[str, Any]:
    row = record.as_json()
    row["stages"] = json.dumps(row["stages"])
    return row


def to_record(entity: Mapping[str, Any]) -> TraceRecord:
    values = {name: str(entity.get(column) or "") for name, column in COLUMNS.items()}
    values["tenant"] = values["tenant"] or DEFAULT_TENANT
    return TraceRecord(**values, stages=tuple(_entry(s) for s in json.loads(entity.get("stages") or "[]")
                                              if isinstance(s, Mapping)))


def _entry(stored: Mapping[str, Any]) -> StageEntry:
    detail = {k: v for k, v in stored.items() if k not in ("stage", "at", "actor", "latencySeconds")}
    latency = stored.get("latencySeconds")
    return StageEntry(str(stored.get("stage") or ""), str(stored.get("at") or ""), str(stored.get("actor") or ""),
                      latency if isinstance(latency, (int, float)) else None, MappingProxyType(detail))


class TenantTrace:
    """The trace as one tenant's workers see it: every record they write names the tenant, and the records they
    read are that tenant's only (records from before tenants were recorded belong to `default`)."""

    def __init__(self, trace: TraceStore, tenant: str):
        self._trace = trace
        self.tenant = tenant

    def record(self, trace_id: str, target_key: str, stage: Stage, **kwargs: Any) -> None:
        self._trace.record(trace_id, target_key, stage, **{**kwargs, "tenant": self.tenant})

    def rows_for_trace(self, trace_id: str) -> list[TraceRecord]:
        return [r for r in self._trace.rows_for_trace(trace_id) if r.tenant == self.tenant]

    def with_manifest_commit(self, since: str = "", tenant: str = "") -> list[TraceRecord]:
        return self._trace.with_manifest_commit(since, tenant=self.tenant)

    def query(self, **filters: Any) -> list[TraceRecord]:
        return self._trace.query(**{**filters, "tenant": self.tenant})
