"""The delivery journal and outbox, in Table storage: de-duplication, the raw bodies, and the work not yet done.

A delivery is claimed with ONE table transaction that inserts two rows in the same partition:

- the delivery row (RowKey = sha256 of the event id): state `accepted`, the raw body (bodies over one table
  property go to the journal table first, in chunks), for de-duplication and replay;
- its outbox marker (RowKey = `outbox-` + the same hash): the encoded work item(s) the delivery produced and
  when they are due for a re-enqueue.

The insert is atomic and fails when the delivery row exists, so two copies of a delivery cannot both win, and a
claim can never exist without its marker. The work items then leave through the function's queue output
bindings, which the host writes after the function returned — and can fail to write (crash, storage error).
So the marker stays until a worker has taken the item (`mark_done`, from the queue workers, deletes it and sets
the delivery `done` in one transaction); the outbox timer re-enqueues markers still there after
OUTBOX_REENQUEUE_AFTER_SECONDS, at most OUTBOX_MAX_REENQUEUES times (then health reports them as stuck).

Retention: markers live in a RowKey range of their own (`outbox-…` sorts after every hex hash) in each of the
16 partitions, so the timer's scan is 16 range queries that read pending markers only, however many delivered
rows the table has accumulated.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from core.storage import AsyncStorage, Storage, StorageUnavailable

log = logging.getLogger("autopilot.deliveries")

DELIVERIES_TABLE = "autopilotDeliveries"
JOURNAL_TABLE = "autopilotJournal"
OUTBOX_PREFIX = "outbox-"
PARTITIONS = tuple("0123456789abcdef")
INTAKE_EVENT_PREFIXES = ("acr:", "eventgrid:", "azdo:")  # event ids that intake claims (not bump:/bump-retry:)
_CHUNK = 60_000            # a binary table property holds at most 64 KiB
MAX_MESSAGES_CHARS = 30_000  # a string table property holds 64 KiB of UTF-16
_TRANSACTION_OPS = 100     # Table storage: at most 100 operations and 4 MiB per transaction
_TRANSACTION_BYTES = 2 << 20
CLAIM_CONCURRENCY = 16     # transactions in flight at once for one request


def row_key(event_id: str) -> str:
    return hashlib.sha256(event_id.encode("utf-8")).hexdigest()


def _partition(key: str) -> str:
    return key[0]


Message = tuple[str, str]  # (queue, encoded work item)


@dataclass(frozen=True)
class Claim:
    """What intake accepted for one delivery: the journal entry and the messages it must enqueue."""
    event_id: str
    source: str
    body: bytes
    content_type: str
    messages: tuple[Message, ...]

    @property
    def inline(self) -> bool:
        return len(self.body) <= _CHUNK


@dataclass
class ClaimResult:
    won: list[str]
    duplicates: list[str]
    failed: list[str]
    error: str = ""


@dataclass(frozen=True)
class Pending:
    """An outbox marker: an accepted delivery whose work no worker has taken yet."""
    event_id: str
    messages: tuple[Message, ...]
    accepted_at: float
    due_at: float
    attempts: int
    etag: str = ""


@dataclass(frozen=True)
class Journaled:
    event_id: str
    source: str
    body: bytes
    content_type: str
    received_at: float


def _rows(claim: Claim, now: float, reenqueue_after: float) -> tuple[dict, dict]:
    key = row_key(claim.event_id)
    delivery = {"PartitionKey": _partition(key), "RowKey": key, "eventId": claim.event_id, "state": "accepted",
                "source": claim.source, "contentType": claim.content_type, "receivedAt": now}
    if claim.inline:
        delivery["body"] = claim.body
    marker = {"PartitionKey": _partition(key), "RowKey": OUTBOX_PREFIX + key, "eventId": claim.event_id,
              "messages": json.dumps(claim.messages, separators=(",", ":")), "acceptedAt": now,
              "dueAt": now + reenqueue_after, "attempts": 0}
    return delivery, marker


def _pending(entity) -> Pending:
    messages = tuple((str(q), str(t)) for q, t in json.loads(entity.get("messages") or "[]"))
    return Pending(entity["eventId"], messages, float(entity.get("acceptedAt", 0)), float(entity.get("dueAt", 0)),
                   int(entity.get("attempts", 0)), entity.metadata.get("etag", "") if hasattr(entity, "metadata")
                   else "")


def _journal_ops(event_id: str, source: str, body: bytes, content_type: str, now: float) -> list:
    key = row_key(event_id)
    chunks = [body[i:i + _CHUNK] for i in range(0, len(body), _CHUNK)] or [b""]
    ops = [("upsert", {"PartitionKey": key, "RowKey": "meta", "eventId": event_id, "source": source,
                       "contentType": content_type, "receivedAt": now, "chunks": len(chunks)})]
    ops += [("upsert", {"PartitionKey": key, "RowKey": f"chunk-{i:04d}", "data": chunk})
            for i, chunk in enumerate(chunks)]
    return ops


def _transactions(claims: Sequence[Claim]) -> list[list[Claim]]:
    """Same-partition groups within Table storage's transaction limits (two operations per claim)."""
    by_partition: dict[str, list[Claim]] = defaultdict(list)
    for claim in claims:
        by_partition[_partition(row_key(claim.event_id))].append(claim)
    groups: list[list[Claim]] = []
    for members in by_partition.values():
        current: list[Claim] = []
        size = 0
        for claim in members:
            weight = (len(claim.body) if claim.inline else 0) + sum(len(t) for _, t in claim.messages) * 2 + 1024
            if current and (2 * (len(current) + 1) > _TRANSACTION_OPS or size + weight > _TRANSACTION_BYTES):
                groups.append(current)
                current, size = [], 0
            current.append(claim)
            size += weight
        groups.append(current)
    return groups


def _conflict(exc: TableTransactionError) -> bool:
    return exc.error_code in ("EntityAlreadyExists", "InvalidDuplicateRow") or exc.status_code == 409


class AsyncDeliveryLog:
    """The intake and outbox-timer side, on the aio table client (coroutine functions only)."""

    def __init__(self, storage: AsyncStorage, clock: Callable[[], float] = time.time,
                 reenqueue_after: float = 120.0, concurrency: int = CLAIM_CONCURRENCY):
        self._storage = storage
        self._clock = clock
        self._after = reenqueue_after
        self._concurrency = concurrency

    async def _table(self, name: str = DELIVERIES_TABLE):
        return await self._storage.table(name)

    async def claim(self, claims: Sequence[Claim]) -> ClaimResult:
        """Claim every delivery (distinct event ids) with as few transactions as the partitions allow, in
        parallel. A transaction refused because one of its deliveries exists is retried one delivery at a time.
        Storage failures are reported per delivery: those in `failed` were not claimed (nothing written)."""
        result = ClaimResult([], [], [])
        if not claims:
            return result
        now = self._clock()
        gate = asyncio.Semaphore(self._concurrency)
        try:
            table = await self._table()
            journal = await self._table(JOURNAL_TABLE) if any(not c.inline for c in claims) else None
        except StorageUnavailable as exc:
            return ClaimResult([], [], [c.event_id for c in claims], str(exc))

        async def submit(group: list[Claim]) -> None:
            async with gate:
                try:
                    for claim in group:
                        if not claim.inline:  # the body first: a claim never points at a missing journal entry
                            await journal.submit_transaction(
                                _journal_ops(claim.event_id, claim.source, claim.body, claim.content_type, now))
                    ops = [("create", row) for claim in group for row in _rows(claim, now, self._after)]
                    await table.submit_transaction(ops)
                except TableTransactionError as exc:
                    if not _conflict(exc):
                        _fail(group, exc)
                        return
                    if len(group) == 1:
                        result.duplicates.append(group[0].event_id)
                        return
                    singles = [c for c in group]
                except AzureError as exc:
                    _fail(group, exc)
                    return
                else:
                    result.won.extend(c.event_id for c in group)
                    return
            await asyncio.gather(*(submit([c]) for c in singles))

        def _fail(group: list[Claim], exc: Exception) -> None:
            result.failed.extend(c.event_id for c in group)
            result.error = f"deliveries table: {type(exc).__name__}"

        await asyncio.gather(*(submit(group) for group in _transactions(claims)))
        return result

    async def due(self, now: float, max_attempts: int, limit: int = 500) -> list[Pending]:
        """Markers whose re-enqueue is due and that have attempts left, oldest partitions first, at most
        `limit`: one range query per partition, in parallel."""
        table = await self._table()
        query = ("PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and dueAt le @now "
                 "and attempts lt @max")

        async def scan(partition: str) -> list[Pending]:
            found = []
            params = {"pk": partition, "lo": OUTBOX_PREFIX, "hi": OUTBOX_PREFIX[:-1] + chr(ord("-") + 1),
                      "now": float(now), "max": int(max_attempts)}
            async for entity in table.query_entities(query, parameters=params, results_per_page=limit):
                found.append(_pending(entity))
                if len(found) >= limit:
                    break
            return found

        try:
            pages = await asyncio.gather(*(scan(p) for p in PARTITIONS))
        except AzureError as exc:
            raise StorageUnavailable(f"deliveries table: {type(exc).__name__}") from exc
        return sorted((p for page in pages for p in page), key=lambda p: p.accepted_at)[:limit]

    async def reenqueueing(self, pending: Pending, now: float) -> bool:
        """Record one more re-enqueue of `pending` (attempts + 1, due again after the bound) if the marker is
        unchanged since it was read: False when a worker finished it or another timer run took it meanwhile."""
        key = row_key(pending.event_id)
        table = await self._table()
        try:
            await table.update_entity(
                {"PartitionKey": _partition(key), "RowKey": OUTBOX_PREFIX + key, "attempts": pending.attempts + 1,
                 "dueAt": now + self._after, "lastReenqueueAt": now},
                mode=UpdateMode.MERGE, etag=pending.etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        except AzureError as exc:
            raise StorageUnavailable(f"deliveries table: {type(exc).__name__}") from exc
        return True


class DeliveryLog:
    """The synchronous side: journal reads for replay, `mark_done` for the queue workers, stuck markers for
    health."""

    def __init__(self, storage: Storage, clock: Callable[[], float] = time.time):
        self._storage = storage
        self._clock = clock

    def mark_done(self, event_ids: Iterable[str]) -> None:
        """The work of these deliveries was taken by a worker: delete their outbox markers and set them done.
        Ids that intake never claimed (bump:…, replays) and markers already gone are skipped; a storage error is
        logged, never raised (the marker then only causes a harmless, idempotent re-enqueue later)."""
        keys = sorted({row_key(e) for e in event_ids if e.startswith(INTAKE_EVENT_PREFIXES)})
        if not keys:
            return
        try:
            table = self._storage.table(DELIVERIES_TABLE)
        except StorageUnavailable as exc:
            log.warning("could not mark %d deliveries done: %s", len(keys), exc)
            return
        now = self._clock()
        for key in keys:
            ops = [("delete", {"PartitionKey": _partition(key), "RowKey": OUTBOX_PREFIX + key}),
                   ("update", {"PartitionKey": _partition(key), "RowKey": key, "state": "done", "doneAt": now},
                    {"mode": UpdateMode.MERGE})]
            try:
                table.submit_transaction(ops)
            except TableTransactionError as exc:
                if exc.status_code != 404:
                    log.warning("could not mark a delivery done: %s", exc.error_code)
            except AzureError as exc:
                log.warning("could not mark a delivery done: %s", type(exc).__name__)

    def stuck(self, max_attempts: int) -> list[Pending]:
        """Markers re-enqueued `max_attempts` times and still not taken by a worker."""
        try:
            table = self._storage.table(DELIVERIES_TABLE)
            found = []
            for partition in PARTITIONS:
                found += [_pending(e) for e in table.query_entities(
                    "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and attempts ge @max",
                    parameters={"pk": partition, "lo": OUTBOX_PREFIX,
                                "hi": OUTBOX_PREFIX[:-1] + chr(ord("-") + 1), "max": int(max_attempts)})]
        except AzureError as exc:
            raise StorageUnavailable(f"deliveries table: {type(exc).__name__}") from exc
        return found

    def journal(self, event_id: str, source: str, body: bytes, content_type: str) -> None:
        """Store a body too large for the delivery entity, in chunks, as one table transaction."""
        try:
            self._storage.table(JOURNAL_TABLE).submit_transaction(
                _journal_ops(event_id, source, body, content_type, self._clock()))
        except AzureError as exc:
            raise StorageUnavailable(f"journal table: {type(exc).__name__}") from exc

    def journaled(self, event_id: str) -> Journaled | None:
        key = row_key(event_id)
        try:
            entity = self._storage.table(DELIVERIES_TABLE).get_entity(_partition(key), key)
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
