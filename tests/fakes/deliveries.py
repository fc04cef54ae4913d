"""A dict-backed delivery journal and outbox (core.adapters.deliveries.DeliveryJournal and AsyncDeliveryJournal).

Faithful where the services rely on it (tests/contracts/test_deliveries.py runs the same assertions against
Azurite): claims are grouped by partition exactly as the Table-storage journal groups them (the same `_groups`),
a group is written with its outbox marker all or nothing, a group holding an existing delivery is retried one
claim at a time, a marker is rewritten only with the etag it was read with, `mark_done` skips ids intake never
claimed, `stuck` reads the markers' attempts, and `purge` deletes at most `limit` deliveries done before the
cutoff and on no marker (with their bodies, which the fake keeps on the delivery).
`down` makes every call fail as unreachable storage does (claims in `failed`, reads raising StorageUnavailable);
`failing` names partitions whose claim transactions fail.
"""
from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence

from core.adapters.deliveries import (
    INTAKE_EVENT_PREFIXES,
    OUTBOX_PREFIX,
    Claim,
    PURGE_MAX_PER_RUN,
    ClaimResult,
    Journaled,
    Marker,
    Pending,
    Purged,
    _groups,
    _partition,
    row_key,
)
from core.adapters.storage import StorageUnavailable

UNAVAILABLE = "deliveries table: ServiceRequestError"


@dataclass
class Delivery:
    """One claimed delivery, as the journal holds it."""
    claim: Claim
    received_at: float
    marker: str
    state: str = "accepted"
    done_at: float | None = None


@dataclass
class FakeDeliveryJournal:
    """Both faces of the journal over one dict (the sync one for workers/replay/health, `aio` for intake/outbox)."""
    clock: Callable[[], float] = time.time
    reenqueue_after: float = 120.0
    down: bool = False
    failing: set[str] = field(default_factory=set)       # partitions ("0".."f") whose claims fail
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    markers: dict[tuple[str, str], Marker] = field(default_factory=dict)
    horizon: float | None = None
    _etags: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)   # intake runs a loop per thread in some tests

    def _reachable(self) -> None:
        if self.down:
            raise StorageUnavailable(UNAVAILABLE)

    def _etag(self) -> str:
        return f"etag-{next(self._etags)}"

    # -- AsyncDeliveryJournal ---------------------------------------------------------------------------------------
    async def claim(self, claims: Sequence[Claim]) -> ClaimResult:
        result = ClaimResult([], [], [])
        if not claims:
            return result
        if self.down:
            return ClaimResult([], [], [c.event_id for c in claims], UNAVAILABLE)
        now = self.clock()

        def submit(group: list[Claim]) -> list[Claim]:
            with self._lock:
                return write(group)

        def write(group: list[Claim]) -> list[Claim]:
            partition = _partition(row_key(group[0].event_id))
            if partition in self.failing:
                result.failed.extend(c.event_id for c in group)
                result.error = UNAVAILABLE
                return []
            if any(c.event_id in self.deliveries for c in group):   # the transaction is refused as a whole
                if len(group) == 1:
                    result.duplicates.append(group[0].event_id)
                    return []
                return group
            marker = OUTBOX_PREFIX + uuid.uuid4().hex
            for c in group:
                self.deliveries[c.event_id] = Delivery(c, now, marker)
            self.markers[(partition, marker)] = Marker(partition, marker, tuple(c.event_id for c in group), now,
                                                       now + self.reenqueue_after, 0, self._etag())
            result.won.extend(c.event_id for c in group)
            return []

        retry = [c for group in _groups(claims) for c in submit(group)]
        await asyncio.sleep(0)  # let concurrent claims interleave at the await, as the aio client does
        for claim in retry:
            submit([claim])
        return result

    async def due(self, now: float, limit: int = 500) -> list[Marker]:
        self._reachable()
        return sorted((m for m in self.markers.values() if m.due_at <= now), key=lambda m: m.accepted_at)[:limit]

    async def pending(self, marker: Marker) -> list[Pending]:
        self._reachable()
        return [Pending(e, self.deliveries[e].claim.messages, marker.accepted_at, marker.attempts)
                for e in marker.members if e in self.deliveries and self.deliveries[e].state == "accepted"]

    async def settle(self, marker: Marker, pending: Sequence[str], now: float, *, reenqueue: bool) -> bool:
        self._reachable()
        with self._lock:
            return self._settle(marker, pending, now, reenqueue)

    def _settle(self, marker: Marker, pending: Sequence[str], now: float, reenqueue: bool) -> bool:
        key = (marker.partition, marker.row)
        current = self.markers.get(key)
        if current is None or current.etag != marker.etag:
            return False
        if not pending:
            del self.markers[key]
        else:
            self.markers[key] = replace(marker, members=tuple(pending), due_at=now + self.reenqueue_after,
                                        attempts=marker.attempts + (1 if reenqueue else 0), etag=self._etag())
        return True

    async def purge(self, before: float, limit: int = PURGE_MAX_PER_RUN) -> Purged:
        self._reachable()
        with self._lock:
            self.horizon = before
            live = {e for m in self.markers.values() for e in m.members}
            expired = [e for e, d in self.deliveries.items()
                       if d.state == "done" and e not in live and d.received_at < before
                       and d.done_at is not None and d.done_at < before]
            gone = expired[:limit]
            bodies = sum(1 for e in gone if not self.deliveries[e].claim.inline)   # journaled apart in Table storage
            for event_id in gone:
                del self.deliveries[event_id]
            return Purged(len(gone), bodies, len(expired) > limit)

    # -- DeliveryJournal ----------------------------------------------------------------------------------------------
    def mark_done(self, event_ids: Iterable[str]) -> None:
        if self.down:
            return  # logged and dropped, as the Table-storage journal does
        for event_id in event_ids:
            if event_id.startswith(INTAKE_EVENT_PREFIXES) and event_id in self.deliveries:
                self.deliveries[event_id].state = "done"
                self.deliveries[event_id].done_at = self.clock()

    def stuck(self, max_attempts: int) -> list[str]:
        self._reachable()
        return [e for m in self.markers.values() if m.attempts >= max_attempts for e in m.members]

    def journaled(self, event_id: str) -> Journaled | None:
        self._reachable()
        found = self.deliveries.get(event_id)
        if found is None:
            return None
        c = found.claim
        return Journaled(c.event_id, c.source, c.body, c.content_type, found.received_at)

    def purged_before(self) -> float | None:
        self._reachable()
        return self.horizon

    # -- for the tests' eyes only -------------------------------------------------------------------------------------
    def state(self, event_id: str) -> str:
        return self.deliveries[event_id].state

    def claimed(self) -> int:
        return len(self.deliveries)
