"""Decision records of the pull request reviewer: one Table storage row per evaluation.

Table `autopilotReviews`: PartitionKey = str(pr id) for tenant `default` (the keys from before the fleet, so existing
rows still read), `<tenant>:<pr id>` for any other tenant (PR numbers are per Azure DevOps organization: two tenants'
PR 7 are two pull requests), RowKey = `<iteration, 6 digits>-<UTC timestamp>` (zero-padded
so rows sort by iteration, then time); properties `pr`, `repository`, `iteration`, `passed` (comma list of rule
names), `failed` (JSON list of {rule, reason}), `action`, `at`, `traceIds` (space-separated), `tenant`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from azure.core.exceptions import AzureError

from core.adapters.storage import Storage, StorageUnavailable
from core.model.fleet import DEFAULT_TENANT

REVIEW_TABLE = "autopilotReviews"


@dataclass(frozen=True)
class RuleFailure:
    rule: str
    reason: str


@dataclass(frozen=True)
class ReviewRecord:
    pr: int
    repository: str
    iteration: int            # 0 when the evaluation stopped before reading iterations
    passed: tuple[str, ...]
    failed: tuple[RuleFailure, ...]
    action: str
    at: datetime
    trace_ids: tuple[str, ...] = ()


def review_pk(pr: int, tenant: str = DEFAULT_TENANT) -> str:
    return str(pr) if tenant == DEFAULT_TENANT else f"{tenant}:{pr}"


class ReviewStore(Protocol):
    def for_tenant(self, tenant: str) -> "ReviewStore":
        """The same store's view of tenant `tenant`'s records (a tenant's reviewer writes there; a reader of a trace
        record asks the record's tenant)."""

    def write(self, record: ReviewRecord) -> None:
        """Keep one evaluation (a second write of the same pr, iteration and time replaces it)."""

    def for_pr(self, pr: int) -> list[ReviewRecord]:
        """Every evaluation of one pull request, oldest iteration first, then by time."""


class ReviewRecords:
    """Review records in Table storage, of one tenant."""

    def __init__(self, storage: Storage, tenant: str = DEFAULT_TENANT):
        self._storage = storage
        self._tenant = tenant

    def for_tenant(self, tenant: str) -> "ReviewRecords":
        return ReviewRecords(self._storage, tenant)

    def write(self, record: ReviewRecord) -> None:
        at = record.at.astimezone(timezone.utc)
        entity = {
            "PartitionKey": review_pk(record.pr, self._tenant),
            "RowKey": f"{record.iteration:06d}-{at.strftime('%Y%m%dT%H%M%S.%fZ')}",
            "pr": record.pr,
            "repository": record.repository,
            "iteration": record.iteration,
            "passed": ",".join(record.passed),
            "failed": json.dumps([{"rule": f.rule, "reason": f.reason} for f in record.failed]),
            "action": record.action,
            "at": at.isoformat(),
            "traceIds": " ".join(record.trace_ids),
            "tenant": self._tenant,
        }
        try:
            self._storage.table(REVIEW_TABLE).upsert_entity(entity)
        except AzureError as exc:
            raise StorageUnavailable(f"table {REVIEW_TABLE}: {type(exc).__name__}") from exc

    def for_pr(self, pr: int) -> list[ReviewRecord]:
        """Every evaluation of one pull request, oldest iteration first, then by time."""
        try:
            rows = list(self._storage.table(REVIEW_TABLE).query_entities(
                "PartitionKey eq @pk", parameters={"pk": review_pk(pr, self._tenant)}))
        except AzureError as exc:
            raise StorageUnavailable(f"table {REVIEW_TABLE}: {type(exc).__name__}") from exc
        return [_record(row) for row in sorted(rows, key=lambda row: row["RowKey"])]


def _record(row: dict) -> ReviewRecord:
    return ReviewRecord(
        pr=int(row["pr"]),
        repository=row.get("repository", ""),
        iteration=int(row.get("iteration", 0)),
        passed=tuple(name for name in (row.get("passed") or "").split(",") if name),
        failed=tuple(RuleFailure(f["rule"], f["reason"]) for f in json.loads(row.get("failed") or "[]")),
        action=row.get("action", ""),
        at=datetime.fromisoformat(row["at"]),
        trace_ids=tuple((row.get("traceIds") or "").split()),
    )
