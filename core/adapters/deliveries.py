"""The delivery journal and outbox, in Table storage: de-duplication, the raw bodies, and the work not yet done.

Deliveries are claimed with table transactions, one per partition group of up to 99 deliveries (a single
webhook is a group of one), each inserting in one partition:

- one delivery row per delivery (RowKey = sha256 of the event id): state `accepted`, the raw body (bodies over one
  table property go to the journal table first, in chunks) and the encoded work items it produced;
- one outbox marker for the group (RowKey = `outbox-<uuid>`): the member event ids and when they are due for a
  re-enqueue.

The insert is atomic and fails when a delivery row exists, so two copies of a delivery cannot both win, and no
claim exists without its marker. The work items then leave through the function's queue output bindings, which
the host writes after the function returned — and can fail to write (crash, storage error). A worker that takes
an item sets its delivery `done` (`mark_done`, one merge). The outbox timer (core/workers/outbox.py) looks at markers
due OUTBOX_REENQUEUE_AFTER_SECONDS after acceptance: members still `accepted` are re-enqueued (at most
OUTBOX_MAX_REENQUEUES times, then health reports them stuck); a marker whose members are all done is deleted.

Cost and retention: a request costs its deliveries + one row per partition group on the hot path (a 1 MiB Event
Grid batch: ~45 transactions); markers live in a RowKey range of their own (`outbox-…` sorts after every hex
hash) in each of the 16 partitions, so the timer's scan is 16 range queries that read pending markers only,
however many delivered rows the table has accumulated.

Retention: `purge` (run by the outbox timer) deletes delivery rows that are done, no longer on any marker and
received and done before a cutoff (JOURNAL_RETENTION_DAYS), with their journaled bodies, at most PURGE_MAX_PER_RUN
per call, and records the cutoff (`purged_before`) so that a replay of a purged delivery can say so.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol, Sequence

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from core.adapters.storage import AsyncStorage, Storage, StorageUnavailable

log = logging.getLogger("autopilot.deliveries")

DELIVERIES_TABLE = "autopilotDeliveries"
JOURNAL_TABLE = "autopilotJournal"
OUTBOX_PREFIX = "outbox-"
_OUTBOX_END = "outbox."  # the first RowKey after the `outbox-` range
PARTITIONS = tuple("0123456789abcdef")
INTAKE_EVENT_PREFIXES = ("acr:", "eventgrid:", "azdo:", "flux:")  # ids the front door claims (not bump:/bump-retry:)
_CHUNK = 60_000            # a binary table property holds at most 64 KiB
MAX_MESSAGES_CHARS = 30_000  # a string table property holds 64 KiB of UTF-16
MAX_EVENT_ID_CHARS = 1_024   # so that a marker's member list stays within one string property
_MEMBERS_CHARS = 30_000
_TRANSACTION_OPS = 100     # Table storage: at most 100 operations and 4 MiB per transaction
_TRANSACTION_BYTES = 2 << 20
CLAIM_CONCURRENCY = 16     # transactions in flight at once for one request
# Rows deleted by one purge: the outbox timer runs every minute and must stay short (a few seconds of deletes);
# 500 a minute is 720,000 a day, far above what intake accepts, so a backlog (a first run) drains in a few runs.
PURGE_MAX_PER_RUN = 500
_RETENTION_KEY = ("retention", "horizon")  # a partition of its own: never among the 16 hash partitions


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
class Marker:
    """An outbox marker: deliveries accepted together, not all known to be taken by a worker."""
    partition: str
    row: str
    members: tuple[str, ...]
    accepted_at: float
    due_at: float
    attempts: int
    etag: str = ""


@dataclass(frozen=True)
class Pending:
    """An accepted delivery whose work no worker has taken yet, with its messages."""
    event_id: str
    messages: tuple[Message, ...]
    accepted_at: float
    attempts: int


@dataclass
class Purged:
    """What one purge deleted: delivery rows and journaled bodies (meta + chunk rows count as one body)."""
    deliveries: int = 0
    bodies: int = 0
    more: bool = False    # it stopped at the bound: rows past retention may be left for the next run


@dataclass(frozen=True)
class Journaled:
    event_id: str
    source: str
    body: bytes
    content_type: str
    received_at: float


class AsyncDeliveryJournal(Protocol):
    """The intake and outbox-timer side of the journal (coroutines): claims with their outbox markers, and the
    markers' looks. `AsyncDeliveryLog` is the Table-storage implementation."""

    async def claim(self, claims: Sequence[Claim]) -> ClaimResult:
        """Claim distinct deliveries: a delivery already claimed is a duplicate; the claims of one partition
        group are written with their marker atomically (all or none)."""
        ...

    async def due(self, now: float, limit: int = 500) -> list[Marker]:
        """Markers whose dueAt is not after `now`, oldest acceptance first, at most `limit`."""
        ...

    async def pending(self, marker: Marker) -> list[Pending]:
        """The marker's deliveries still `accepted` (not done)."""
        ...

    async def settle(self, marker: Marker, pending: Sequence[str], now: float, *, reenqueue: bool) -> bool:
        """Delete (nothing pending) or narrow the marker if unchanged since it was read; False if it changed."""
        ...

    async def purge(self, before: float, limit: int = PURGE_MAX_PER_RUN) -> Purged:
        """Delete deliveries done, on no marker, and received and done before `before`, with their journaled
        bodies: at most `limit` deliveries; record `before` for `purged_before`."""
        ...


class DeliveryJournal(Protocol):
    """The synchronous side: done marks for the queue workers, stuck deliveries for health, journal reads for
    replay. `DeliveryLog` is the Table-storage implementation."""

    def mark_done(self, event_ids: Iterable[str]) -> None:
        """Set the claimed ones among `event_ids` done (never raises)."""
        ...

    def stuck(self, max_attempts: int) -> list[str]:
        """Members of markers with at least `max_attempts` re-enqueues."""
        ...

    def journaled(self, event_id: str) -> Journaled | None:
        """The claimed delivery's body and source, or None."""
        ...

    def purged_before(self) -> float | None:
        """The cutoff of the latest purge (deliveries done before it may be gone), or None if none ran."""
        ...


def _delivery_row(claim: Claim, now: float, marker: str) -> dict:
    key = row_key(claim.event_id)
    row = {"PartitionKey": _partition(key), "RowKey": key, "eventId": claim.event_id, "state": "accepted",
           "source": claim.source, "contentType": claim.content_type, "receivedAt": now,
           "messages": json.dumps(claim.messages, separators=(",", ":")), "outbox": marker}
    if claim.inline:
        row["body"] = claim.body
    return row


def _marker_row(partition: str, row: str, members: Sequence[str], now: float, due: float, attempts: int) -> dict:
    return {"PartitionKey": partition, "RowKey": row, "members": json.dumps(list(members)), "acceptedAt": now,
            "dueAt": due, "attempts": attempts}


def _marker(entity) -> Marker:
    return Marker(entity["PartitionKey"], entity["RowKey"], tuple(json.loads(entity.get("members") or "[]")),
                  float(entity.get("acceptedAt", 0)), float(entity.get("dueAt", 0)), int(entity.get("attempts", 0)),
                  entity.metadata.get("etag", ""))


def _messages(entity) -> tuple[Message, ...]:
    return tuple((str(q), str(t)) for q, t in json.loads(entity.get("messages") or "[]"))


def _journal_ops(event_id: str, source: str, body: bytes, content_type: str, now: float) -> list:
    key = row_key(event_id)
    chunks = [body[i:i + _CHUNK] for i in range(0, len(body), _CHUNK)] or [b""]
    ops = [("upsert", {"PartitionKey": key, "RowKey": "meta", "eventId": event_id, "source": source,
                       "contentType": content_type, "receivedAt": now, "chunks": len(chunks)})]
    ops += [("upsert", {"PartitionKey": key, "RowKey": f"chunk-{i:04d}", "data": chunk})
            for i, chunk in enumerate(chunks)]
    return ops


def _groups(claims: Sequence[Claim]) -> list[list[Claim]]:
    """Same-partition groups within Table storage's transaction limits (one operation per claim + the marker)."""
    by_partition: dict[str, list[Claim]] = defaultdict(list)
    for claim in claims:
        by_partition[_partition(row_key(claim.event_id))].append(claim)
    groups: list[list[Claim]] = []
    for members in by_partition.values():
        current: list[Claim] = []
        size = ids = 0
        for claim in members:
            weight = (len(claim.body) if claim.inline else 0) + sum(len(t) for _, t in claim.messages) * 2 + 1024
            id_chars = len(json.dumps(claim.event_id)) + 2
            if current and (len(current) + 2 > _TRANSACTION_OPS or size + weight > _TRANSACTION_BYTES
                            or ids + id_chars > _MEMBERS_CHARS):
                groups.append(current)
                current, size, ids = [], 0, 0
            current.append(claim)
            size += weight
            ids += id_chars
        groups.append(current)
    return groups


def _conflict(exc: TableTransactionError) -> bool:
    return exc.error_code in ("EntityAlreadyExists", "InvalidDuplicateRow") or exc.status_code == 409


def _storage_error(exc: Exception) -> StorageUnavailable:
    return StorageUnavailable(f"deliveries table: {type(exc).__name__}")


class AsyncDeliveryLog:
    """The intake and outbox-timer side, on the aio table client (coroutine functions only)."""

    def __init__(self, storage: AsyncStorage, clock: Callable[[], float] = time.time,
                 reenqueue_after: float = 120.0, concurrency: int = CLAIM_CONCURRENCY):
        self._storage = storage
        self._clock = clock
        self._after = reenqueue_after
        self._concurrency = concurrency

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
            table = await self._storage.table(DELIVERIES_TABLE)
            journal = await self._storage.table(JOURNAL_TABLE) if any(not c.inline for c in claims) else None
        except StorageUnavailable as exc:
            return ClaimResult([], [], [c.event_id for c in claims], str(exc))

        def failed(group: list[Claim], exc: Exception) -> None:
            result.failed.extend(c.event_id for c in group)
            result.error = str(_storage_error(exc))

        async def submit(group: list[Claim]) -> list[Claim]:
            """Claim the group; the claims to retry one by one (after a conflict)."""
            async with gate:
                try:
                    for claim in group:
                        if not claim.inline:  # the body first: a claim never points at a missing journal entry
                            await journal.submit_transaction(
                                _journal_ops(claim.event_id, claim.source, claim.body, claim.content_type, now))
                    partition = _partition(row_key(group[0].event_id))
                    marker = OUTBOX_PREFIX + uuid.uuid4().hex
                    ops = [("create", _delivery_row(c, now, marker)) for c in group]
                    ops.append(("create", _marker_row(partition, marker, [c.event_id for c in group], now,
                                                      now + self._after, 0)))
                    await table.submit_transaction(ops)
                except TableTransactionError as exc:
                    if not _conflict(exc):
                        failed(group, exc)
                    elif len(group) == 1:
                        result.duplicates.append(group[0].event_id)
                    else:
                        return group
                except AzureError as exc:
                    failed(group, exc)
                else:
                    result.won.extend(c.event_id for c in group)
                return []

        retry = await asyncio.gather(*(submit(group) for group in _groups(claims)))
        await asyncio.gather(*(submit([claim]) for group in retry for claim in group))
        return result

    async def due(self, now: float, limit: int = 500) -> list[Marker]:
        """Markers due for a look, oldest first, at most `limit`: one range query per partition, in parallel."""
        table = await self._storage.table(DELIVERIES_TABLE)

        async def scan(partition: str) -> list[Marker]:
            found = []
            params = {"pk": partition, "lo": OUTBOX_PREFIX, "hi": _OUTBOX_END, "now": float(now)}
            async for entity in table.query_entities(
                    "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and dueAt le @now", parameters=params,
                    results_per_page=min(limit, 1000)):
                found.append(_marker(entity))
                if len(found) >= limit:
                    break
            return found

        try:
            pages = await asyncio.gather(*(scan(p) for p in PARTITIONS))
        except AzureError as exc:
            raise _storage_error(exc) from exc
        return sorted((m for page in pages for m in page), key=lambda m: m.accepted_at)[:limit]

    async def pending(self, marker: Marker) -> list[Pending]:
        """The marker's deliveries still `accepted` (not taken by a worker), with their messages."""
        table = await self._storage.table(DELIVERIES_TABLE)
        gate = asyncio.Semaphore(self._concurrency)

        async def read(event_id: str):
            key = row_key(event_id)
            async with gate:
                try:
                    return await table.get_entity(_partition(key), key)
                except ResourceNotFoundError:
                    return None

        try:
            rows = await asyncio.gather(*(read(e) for e in marker.members))
        except AzureError as exc:
            raise _storage_error(exc) from exc
        return [Pending(r["eventId"], _messages(r), marker.accepted_at, marker.attempts)
                for r in rows if r is not None and r.get("state") == "accepted"]

    async def settle(self, marker: Marker, pending: Sequence[str], now: float, *, reenqueue: bool) -> bool:
        """Rewrite the marker after a look, if unchanged since it was read (else False: another run has it):
        deleted when nothing is pending; else narrowed to `pending`, due again after the bound, and with one
        more attempt counted when `reenqueue`."""
        table = await self._storage.table(DELIVERIES_TABLE)
        try:
            if not pending:
                await table.delete_entity(marker.partition, marker.row, etag=marker.etag,
                                          match_condition=MatchConditions.IfNotModified)
            else:
                row = _marker_row(marker.partition, marker.row, pending, marker.accepted_at, now + self._after,
                                  marker.attempts + (1 if reenqueue else 0))
                await table.update_entity(row, mode=UpdateMode.REPLACE, etag=marker.etag,
                                          match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        except AzureError as exc:
            raise _storage_error(exc) from exc
        return True

    async def purge(self, before: float, limit: int = PURGE_MAX_PER_RUN) -> Purged:
        """Bodies first, then the delivery rows (a failure in between leaves a row the next run deletes, never a
        body nobody points at); deletes are etag-checked, so a row changed since it was read stays."""
        result = Purged()
        try:
            table = await self._storage.table(DELIVERIES_TABLE)
            journal = await self._storage.table(JOURNAL_TABLE)
            await table.upsert_entity({"PartitionKey": _RETENTION_KEY[0], "RowKey": _RETENTION_KEY[1],
                                       "before": float(before)})
            result.bodies = await self._purge_bodies(table, journal, before, limit)
            for partition in PARTITIONS:
                if result.deliveries >= limit:
                    result.more = True
                    break
                rows, full = await self._expired(table, partition, before, limit - result.deliveries)
                result.more = result.more or full
                result.deliveries += await _delete(table, rows)
        except AzureError as exc:
            raise _storage_error(exc) from exc
        except StorageUnavailable:
            raise
        return result

    async def _expired(self, table, partition: str, before: float, limit: int) -> tuple[list, bool]:
        """Done delivery rows of a partition past the cutoff and on no marker (at most `limit`; True if more)."""
        live = set()
        async for entity in table.query_entities("PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                                                 parameters={"pk": partition, "lo": OUTBOX_PREFIX,
                                                             "hi": _OUTBOX_END}, select=["members"]):
            live.update(json.loads(entity.get("members") or "[]"))
        found = []
        async for entity in table.query_entities(
                "PartitionKey eq @pk and RowKey lt @lo and state eq 'done' and doneAt lt @before and "
                "receivedAt lt @before", parameters={"pk": partition, "lo": OUTBOX_PREFIX, "before": float(before)},
                select=["PartitionKey", "RowKey", "eventId"], results_per_page=min(limit + 1, 1000)):
            if entity.get("eventId") in live:
                continue
            if len(found) >= limit:
                return found, True
            found.append(entity)
        return found, False

    async def _purge_bodies(self, table, journal, before: float, limit: int) -> int:
        """Journaled bodies received before the cutoff whose delivery is gone (purged, or never claimed) or
        purgeable (the delivery pass after this deletes it)."""
        purged = looked = 0
        async for meta in journal.query_entities("RowKey eq 'meta' and receivedAt lt @before",
                                                 parameters={"before": float(before)},
                                                 select=["PartitionKey", "eventId"]):
            if looked >= limit:   # bodies kept (work not done) count too: the run stays bounded
                break
            looked += 1
            key = meta["PartitionKey"]
            try:
                row = await table.get_entity(_partition(key), key, select=["state", "doneAt", "receivedAt", "outbox"])
            except ResourceNotFoundError:
                row = None
            if row is not None:
                if row.get("state") != "done" or float(row.get("doneAt") or before) >= before:
                    continue
                try:
                    marker = await table.get_entity(_partition(key), row.get("outbox") or "-", select=["members"])
                    if meta.get("eventId") in json.loads(marker.get("members") or "[]"):
                        continue
                except ResourceNotFoundError:
                    pass
            rows = [r async for r in journal.query_entities("PartitionKey eq @pk", parameters={"pk": key},
                                                             select=["PartitionKey", "RowKey"])]
            await _delete(journal, rows)
            purged += 1
        return purged


async def _delete(table, rows: Sequence) -> int:
    """Delete rows of one partition in transactions of at most 100, each row only if unchanged since it was read;
    a refused transaction is done row by row (a row changed or gone meanwhile is skipped). How many went."""
    deleted = 0
    for i in range(0, len(rows), _TRANSACTION_OPS):
        chunk = rows[i:i + _TRANSACTION_OPS]
        ops = [("delete", {"PartitionKey": r["PartitionKey"], "RowKey": r["RowKey"]},
                {"etag": r.metadata["etag"], "match_condition": MatchConditions.IfNotModified}) for r in chunk]
        try:
            await table.submit_transaction(ops)
            deleted += len(chunk)
            continue
        except TableTransactionError:
            pass
        for _, row, kwargs in ops:
            try:
                await table.delete_entity(row["PartitionKey"], row["RowKey"], **kwargs)
                deleted += 1
            except (ResourceModifiedError, ResourceNotFoundError):
                pass
    return deleted


class DeliveryLog:
    """The synchronous side: journal reads for replay, `mark_done` for the queue workers, stuck markers for
    health."""

    def __init__(self, storage: Storage, clock: Callable[[], float] = time.time):
        self._storage = storage
        self._clock = clock

    def mark_done(self, event_ids: Iterable[str]) -> None:
        """The work of these deliveries was taken by a worker: set them done (the outbox timer then drops their
        marker). Ids that intake never claimed (bump:…) and unknown ones are skipped; a storage error is logged,
        never raised (the delivery then only gets a harmless, idempotent re-enqueue later)."""
        keys = sorted({row_key(e) for e in event_ids if e.startswith(INTAKE_EVENT_PREFIXES)})
        if not keys:
            return
        try:
            table = self._storage.table(DELIVERIES_TABLE)
        except StorageUnavailable as exc:
            log.warning("could not mark %d deliveries done: %s", len(keys), exc)
            return
        now = self._clock()
        by_partition: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            by_partition[_partition(key)].append(key)
        for group in (g[i:i + _TRANSACTION_OPS] for g in by_partition.values()
                      for i in range(0, len(g), _TRANSACTION_OPS)):
            ops = [("update", {"PartitionKey": _partition(k), "RowKey": k, "state": "done", "doneAt": now},
                    {"mode": UpdateMode.MERGE}) for k in group]
            try:
                table.submit_transaction(ops)
                continue
            except TableTransactionError:
                pass  # one of them is unknown (never claimed): the others one by one
            except AzureError as exc:
                log.warning("could not mark %d deliveries done: %s", len(group), type(exc).__name__)
                continue
            for op in ops:
                try:
                    table.update_entity(op[1], mode=UpdateMode.MERGE)
                except ResourceNotFoundError:
                    pass
                except AzureError as exc:
                    log.warning("could not mark a delivery done: %s", type(exc).__name__)

    def stuck(self, max_attempts: int) -> list[str]:
        """Event ids of deliveries re-enqueued `max_attempts` times and, at the outbox timer's last look, still
        not taken by a worker."""
        try:
            table = self._storage.table(DELIVERIES_TABLE)
            found: list[str] = []
            for partition in PARTITIONS:
                for entity in table.query_entities(
                        "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and attempts ge @max",
                        parameters={"pk": partition, "lo": OUTBOX_PREFIX, "hi": _OUTBOX_END,
                                    "max": int(max_attempts)}):
                    found += _marker(entity).members
        except AzureError as exc:
            raise _storage_error(exc) from exc
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

    def purged_before(self) -> float | None:
        try:
            entity = self._storage.table(DELIVERIES_TABLE).get_entity(*_RETENTION_KEY)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageUnavailable(f"deliveries table: {type(exc).__name__}") from exc
        return float(entity["before"])
