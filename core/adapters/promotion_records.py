"""The promotion's records: pauses (a person's manual rollback stops promotion into a (service, env) until a resume)
and claims (exactly-once promotion). `PauseStore` and `ClaimStore` are the ports core.workers.promoter and
core.workers.bump take; `Pauses` and `Claims` keep them in Table storage.

A claim is an insert into the promotions table (Table storage's insert is conditional: it fails with 409 when the
row exists), so of two instances evaluating one gate exactly one promotes; a claim whose bump failed is deleted
(ETag-conditional) so the next evaluation retries.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from core.adapters.storage import Storage, StorageUnavailable
from core.model.fleet import DEFAULT_TENANT

PROMOTIONS_TABLE = "autopilotPromotions"
PAUSES_TABLE = "autopilotPauses"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def _pk(service: str, env: str, tenant: str = DEFAULT_TENANT) -> str:
    """Per tenant: the same service and environment in two tenants are two keys (`default` keeps its old keys)."""
    scoped = f"{service}\x1f{env}" if tenant == DEFAULT_TENANT else f"{tenant}\x1e{service}\x1f{env}"
    return hashlib.sha256(scoped.encode("utf-8")).hexdigest()[:40]


def _rk(tag: str) -> str:
    return hashlib.sha256(tag.encode("utf-8")).hexdigest()[:40]


class PauseStore(Protocol):
    def for_tenant(self, tenant: str) -> "PauseStore":
        """The same store's view of tenant `tenant`'s pauses (what a tenant's services use)."""

    def pause(self, service: str, env: str, reason: str, tag: str = "") -> None:
        """A person set `tag` below automation's: pause promotion into (service, env)."""

    def reason(self, service: str, env: str) -> str:
        """Why (service, env) is paused; '' when it is not."""

    def acknowledged(self, service: str, env: str) -> str:
        """The lowered tag a resume (or automation's own rollback) accepted; '' when none."""

    def acknowledge(self, service: str, env: str, tag: str) -> None:
        """Automation itself set `tag` below the high-water mark (a stage's rollback): not a person's rollback.
        A person's pause stays until they resume."""

    def resume(self, service: str, env: str) -> bool:
        """Lift the pause, keeping its tag as acknowledged; True when it was paused."""

    def listed(self) -> list[dict[str, Any]]:
        """The current pauses: {service, env, reason, at, tenant}."""


class ClaimStore(Protocol):
    def for_tenant(self, tenant: str) -> "ClaimStore":
        """The same store's view of tenant `tenant`'s claims."""

    def claim(self, service: str, env: str, tag: str, trace_id: str) -> bool:
        """True for the one caller that may promote `tag` of `service` into `env`."""

    def claimed(self, service: str, env: str, tag: str) -> bool:
        """Has anyone claimed it (and not released it)?"""

    def settle(self, service: str, env: str, tag: str, detail: dict[str, Any]) -> None:
        """The claimed promotion is done (`detail`: commit, pr)."""

    def release(self, service: str, env: str, tag: str) -> None:
        """Give the claim up (its bump failed): the next evaluation may claim it again."""


class Pauses:
    """Pauses in Table storage. A resume keeps the row as `resumed` with the tag the person set, so that same
    lowered tag does not pause the target again; a later lower tag does."""

    def __init__(self, storage: Storage, tenant: str = DEFAULT_TENANT):
        self._storage = storage
        self._tenant = tenant

    def for_tenant(self, tenant: str) -> "Pauses":
        return Pauses(self._storage, tenant)

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
        self._put({"PartitionKey": "paused", "RowKey": _pk(service, env, self._tenant), "service": service, "env": env,
                   "tenant": self._tenant, "reason": reason[:500], "tag": tag, "state": "paused", "at": now_iso()})

    def reason(self, service: str, env: str) -> str:
        row = self._get(service, env)
        return str(row.get("reason") or "paused") if row and row.get("state") == "paused" else ""

    def acknowledged(self, service: str, env: str) -> str:
        row = self._get(service, env)
        return str(row.get("tag") or "") if row and row.get("state") == "resumed" else ""

    def acknowledge(self, service: str, env: str, tag: str) -> None:
        if self.reason(service, env):
            return
        self._put({"PartitionKey": "paused", "RowKey": _pk(service, env, self._tenant), "service": service, "env": env,
                   "tenant": self._tenant, "reason": "", "tag": tag, "state": "resumed", "at": now_iso()})

    def resume(self, service: str, env: str) -> bool:
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
    """Promotion claims in Table storage."""

    def __init__(self, storage: Storage, tenant: str = DEFAULT_TENANT):
        self._storage = storage
        self._tenant = tenant

    def for_tenant(self, tenant: str) -> "Claims":
        return Claims(self._storage, tenant)

    def claim(self, service: str, env: str, tag: str, trace_id: str) -> bool:
        try:
            self._storage.table(PROMOTIONS_TABLE).create_entity(
                {"PartitionKey": _pk(service, env, self._tenant), "RowKey": _rk(tag), "service": service, "env": env, "tag": tag,
                 "tenant": self._tenant, "traceId": trace_id, "state": "claimed", "at": now_iso()})
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
