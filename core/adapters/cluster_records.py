"""What the clusters told us, kept: the running log (which tag runs where) and the cluster registry (which
clusters serve which environments). `RunningStore` and `ClusterStore` are the ports (core.workers.cluster_feedback
and core.workers.promoter take them); `RunningLog` and `ClusterRegistry` keep them in Table storage."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, Sequence

from azure.core.exceptions import AzureError

from core.adapters.etag import update_with_etag
from core.adapters.storage import Storage, StorageUnavailable

RUNNING_TABLE = "autopilotRunning"
CLUSTERS_TABLE = "autopilotClusters"


@dataclass(frozen=True)
class Marked:
    """One push record a Flux event marked."""
    trace_id: str
    target_key: str
    service: str
    env: str
    tag: str
    commit: str
    seconds: float | None


class RunningStore(Protocol):
    def update(self, cluster: str, marked: Marked, *, state: str, at: str, start: str, image: str,
               revision: str, message: str = "") -> None:
        """Record what `cluster` said (`state` healthy|failed at `at`) about the push `marked` (started `start`)."""

    def matrix(self, *, service: str = "", env: str = "") -> list[dict[str, Any]]:
        """One row per (service, env, cluster), sorted so: service, env, cluster, tag, image, since, state,
        failedTag, message, ..."""


class ClusterStore(Protocol):
    def seen(self, cluster: str, envs: Sequence[str], at: str) -> None:
        """`cluster` sent an event at `at`, serving `envs` (empty: every environment)."""

    def serving(self, env: str) -> list[str]:
        """The clusters serving `env`, sorted."""


def running_key(service: str, env: str) -> str:
    return hashlib.sha256(f"{service}\x1f{env}".encode("utf-8")).hexdigest()[:40]


def running_row(current: dict[str, Any] | None, cluster: str, marked: Marked, *, state: str, at: str, start: str,
                image: str, revision: str, message: str = "") -> dict[str, Any] | None:
    """The running-log row after an event, or None when the event changes nothing. Forward-only: a late event (the
    cluster has said something newer) or an older push than the one recorded changes nothing."""
    if current is not None and str(current.get("eventAt", "")) > at:
        return None
    if current is not None and str(current.get("pushStart", "")) > start:
        return None
    row = {"service": marked.service, "env": marked.env, "cluster": cluster, "eventAt": at,
           "updatedAt": datetime.now(timezone.utc).isoformat()}
    if state == "healthy":
        same = current is not None and current.get("tag") == marked.tag
        row.update(tag=marked.tag, image=image, since=current.get("since") if same else at,
                   pushStart=start, revision=revision, state="healthy", message="", traceId=marked.trace_id)
    else:
        row.update({k: v for k, v in (current or {}).items() if k in ("tag", "image", "since", "pushStart",
                                                                      "revision", "traceId")})
        row.update(state="failed", failedTag=marked.tag, failedRevision=revision, message=message[:1000])
    return row


def in_matrix(row: dict[str, Any], service: str, env: str) -> bool:
    return (not service or row.get("service") == service) and (not env or row.get("env") == env)


def matrix_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r.get("service", ""), r.get("env", ""), r.get("cluster", "")))


def serves_env(envs: str, env: str) -> bool:
    return not envs or env in envs.split(",")


class RunningLog:
    """What runs where, in Table storage: one row per (service, environment, cluster), updated with ETag-conditional
    writes."""

    def __init__(self, storage: Storage):
        self._storage = storage

    def update(self, cluster: str, marked: Marked, *, state: str, at: str, start: str, image: str,
               revision: str, message: str = "") -> None:
        def change(current: dict[str, Any] | None) -> dict[str, Any] | None:
            return running_row(current, cluster, marked, state=state, at=at, start=start, image=image,
                               revision=revision, message=message)

        update_with_etag(self._storage.table(RUNNING_TABLE), running_key(marked.service, marked.env), cluster,
                         change, "running table")

    def matrix(self, *, service: str = "", env: str = "") -> list[dict[str, Any]]:
        try:
            rows = list(self._storage.table(RUNNING_TABLE).list_entities())
        except AzureError as exc:
            raise StorageUnavailable(f"running table: {type(exc).__name__}") from exc
        return matrix_order([{k: v for k, v in r.items() if k not in ("PartitionKey", "RowKey")} for r in rows
                             if in_matrix(r, service, env)])


class ClusterRegistry:
    """The clusters that have sent events, in Table storage, with the environments their Alert's eventMetadata
    names (none: every one): who serves an environment, for the promotion gates."""

    def __init__(self, storage: Storage):
        self._storage = storage

    def seen(self, cluster: str, envs: Sequence[str], at: str) -> None:
        try:
            self._storage.table(CLUSTERS_TABLE).upsert_entity(
                {"PartitionKey": "cluster", "RowKey": cluster, "envs": ",".join(envs), "lastEventAt": at})
        except AzureError as exc:
            raise StorageUnavailable(f"clusters table: {type(exc).__name__}") from exc

    def serving(self, env: str) -> list[str]:
        try:
            rows = list(self._storage.table(CLUSTERS_TABLE).query_entities("PartitionKey eq 'cluster'"))
        except AzureError as exc:
            raise StorageUnavailable(f"clusters table: {type(exc).__name__}") from exc
        return sorted(str(r["RowKey"]) for r in rows if serves_env(str(r.get("envs") or ""), env))
