"""Delivery de-duplication and the raw-body journal, in Table storage.

A delivery is claimed with an insert (atomic in Table storage, so two concurrent copies cannot both win) that
also journals its body (bodies over one table property go to the journal table in chunks), then enqueued and
marked queued: three storage calls per delivery. A claim whose process died before marking it is taken over
after `stale_after` seconds, so a crash never turns the sender's retry into a lost event.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Callable

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from core.storage import Storage, StorageUnavailable

DELIVERIES_TABLE = "autopilotDeliveries"
JOURNAL_TABLE = "autopilotJournal"
_CHUNK = 60_000  # a binary table property holds at most 64 KiB


def _row_key(event_id: str) -> str:
    return hashlib.sha256(event_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Journaled:
    event_id: str
    source: str
    body: bytes
    content_type: str
    received_at: float


class DeliveryLog:
    def __init__(self, storage: Storage, clock: Callable[[], float] = time.time, stale_after: float = 60.0):
        self._storage = storage
        self._clock = clock
        self._stale_after = stale_after

    def claim(self, event_id: str, source: str, body: bytes, content_type: str) -> bool:
        """True when this call owns the delivery (and has journaled it); False for a duplicate (queued, or in
        flight elsewhere)."""
        table = self._storage.table(DELIVERIES_TABLE)
        key = _row_key(event_id)
        now = self._clock()
        entity = {"PartitionKey": key[:2], "RowKey": key, "eventId": event_id, "state": "claimed",
                  "claimedAt": now, "source": source, "contentType": content_type, "receivedAt": now}
        inline = len(body) <= _CHUNK
        if inline:
            entity["body"] = body
        try:
            table.create_entity(entity)
            if not inline:
                self.journal(event_id, source, body, content_type)
            return True
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise StorageUnavailable(f"deliveries table: {type(exc).__name__}") from exc
        try:
            entity = table.get_entity(key[:2], key)
            if entity.get("state") == "queued" or now - float(entity.get("claimedAt", now)) < self._stale_after:
                return False
            entity["claimedAt"] = now
            table.update_entity(entity, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified)
            if not inline:
                self.journal(event_id, source, body, content_type)
            return True
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        except AzureError as exc:
            raise StorageUnavailable(f"deliveries table: {type(exc).__name__}") from exc

    def mark_queued(self, event_id: str, queued: list[str]) -> None:
        key = _row_key(event_id)
        try:
            self._storage.table(DELIVERIES_TABLE).update_entity(
                {"PartitionKey": key[:2], "RowKey": key, "state": "queued", "queuedAt": self._clock(),
                 "queues": ",".join(queued)}, mode=UpdateMode.MERGE)
        except AzureError as exc:
            raise StorageUnavailable(f"deliveries table: {type(exc).__name__}") from exc

    def release(self, event_id: str) -> None:
        """Forget a claim whose work could not be enqueued, so the sender's retry is accepted."""
        key = _row_key(event_id)
        try:
            self._storage.table(DELIVERIES_TABLE).delete_entity(key[:2], key)
        except (AzureError, StorageUnavailable):
            pass  # a stale claim is taken over after stale_after anyway

    def journal(self, event_id: str, source: str, body: bytes, content_type: str) -> None:
        """Store a body too large for the delivery entity, in chunks, as one table transaction."""
        key = _row_key(event_id)
        chunks = [body[i:i + _CHUNK] for i in range(0, len(body), _CHUNK)] or [b""]
        ops = [("upsert", {"PartitionKey": key, "RowKey": "meta", "eventId": event_id, "source": source,
                           "contentType": content_type, "receivedAt": self._clock(), "chunks": len(chunks)})]
        ops += [("upsert", {"PartitionKey": key, "RowKey": f"chunk-{i:04d}", "data": chunk})
                for i, chunk in enumerate(chunks)]
        try:
            self._storage.table(JOURNAL_TABLE).submit_transaction(ops)
        except AzureError as exc:
            raise StorageUnavailable(f"journal table: {type(exc).__name__}") from exc

    def journaled(self, event_id: str) -> Journaled | None:
        key = _row_key(event_id)
        try:
            entity = self._storage.table(DELIVERIES_TABLE).get_entity(key[:2], key)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageUnavailable(f"deliveries table: {type(exc).__name__}") from exc
        if entity.get("body") is not None:
            return Journaled(event_id, entity["source"], bytes(entity["body"]), entity.get("contentType", ""),
                             float(entity.get("receivedAt", 0)))
        table = self._storage.table(JOURNAL_TABLE)
        try:
            rows = list(table.query_entities("PartitionKey eq @pk", parameters={"pk": key}))
        except AzureError as exc:
            raise StorageUnavailable(f"journal table: {type(exc).__name__}") from exc
        meta = next((r for r in rows if r["RowKey"] == "meta"), None)
        if meta is None:
            return None
        chunks = sorted((r for r in rows if r["RowKey"].startswith("chunk-")), key=lambda r: r["RowKey"])
        body = b"".join(bytes(r["data"]) if r.get("data") is not None else b"" for r in chunks)
        return Journaled(meta["eventId"], meta["source"], body, meta.get("contentType", ""),
                         float(meta.get("receivedAt", 0)))
