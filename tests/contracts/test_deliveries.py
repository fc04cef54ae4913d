"""The delivery journal's contract: the same assertions against Table storage (on Azurite) and the fake that the
service tests use (tests/fakes/deliveries.py). The Table-storage specifics (transaction sizes, chunked journal
rows, the markers' RowKey range) are tested in tests/test_outbox.py."""
from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from core.adapters.deliveries import Claim, _partition, row_key
from tests.fakes.deliveries import FakeDeliveryJournal

AFTER = 120.0


class Azure:
    """Both faces of the Table-storage journal; each coroutine runs on a fresh loop with its own aio clients."""

    def __init__(self, conn: str):
        from core.adapters.deliveries import DeliveryLog
        from core.adapters.storage import Storage

        self.conn = conn
        self.sync = DeliveryLog(Storage(conn))

    def run(self, call):
        from core.adapters.deliveries import AsyncDeliveryLog
        from core.adapters.storage import AsyncStorage

        async def go():
            store = AsyncStorage(self.conn)
            try:
                return await call(AsyncDeliveryLog(store, reenqueue_after=AFTER))
            finally:
                await store.close()
        return asyncio.run(go())


class Fake:
    def __init__(self):
        self.sync = FakeDeliveryJournal(reenqueue_after=AFTER)

    def run(self, call):
        return asyncio.run(call(self.sync))


@pytest.fixture(params=["azure", "fake"])
def journal(request):
    return Fake() if request.param == "fake" else Azure(request.getfixturevalue("azurite"))


def claim(event_id: str, body: bytes = b'{"x": 1}', queue: str = "image-pushed") -> Claim:
    return Claim(event_id, "acr", body, "application/json", ((queue, f"item of {event_id}"),))


def in_partition(partition: str, count: int, prefix: str = "acr:p") -> list[str]:
    found, n = [], 0
    while len(found) < count:
        if _partition(row_key(f"{prefix}{n}")) == partition:
            found.append(f"{prefix}{n}")
        n += 1
    return found


def test_a_claim_wins_once_and_is_journaled(journal):
    first = journal.run(lambda j: j.claim([claim("acr:one")]))
    again = journal.run(lambda j: j.claim([claim("acr:one")]))
    assert (first.won, first.duplicates, first.failed) == (["acr:one"], [], [])
    assert (again.won, again.duplicates) == ([], ["acr:one"])
    found = journal.sync.journaled("acr:one")
    assert (found.event_id, found.source, found.body, found.content_type) == ("acr:one", "acr", b'{"x": 1}',
                                                                             "application/json")
    assert journal.sync.journaled("acr:never") is None


def test_a_large_body_is_journaled_exactly(journal):
    body = bytes(range(256)) * 1200   # over one table property
    assert journal.run(lambda j: j.claim([claim("acr:big", body)])).won == ["acr:big"]
    assert journal.sync.journaled("acr:big").body == body


def test_concurrent_claims_of_one_delivery_have_one_winner(journal):
    async def race(j):
        return await asyncio.gather(*(j.claim([claim("acr:race")]) for _ in range(6)))

    results = journal.run(race)
    assert sum(len(r.won) for r in results) == 1 and sum(len(r.duplicates) for r in results) == 5


def test_a_batch_gets_one_marker_per_partition_group_and_a_known_member_only_itself_refused(journal):
    ids = [f"eventgrid:batch-{n}" for n in range(60)]
    assert journal.run(lambda j: j.claim([claim(ids[0])])).won == [ids[0]]
    result = journal.run(lambda j: j.claim([claim(i) for i in ids]))
    assert sorted(result.won) == sorted(ids[1:]) and result.duplicates == [ids[0]] and result.failed == []
    markers = journal.run(lambda j: j.due(time.time() + AFTER + 1))
    members = Counter(m for marker in markers for m in marker.members)
    assert set(members) == set(ids) and set(members.values()) == {1}
    assert all(len({_partition(row_key(m)) for m in marker.members}) == 1 for marker in markers)
    assert sorted(m.accepted_at for m in markers) == [m.accepted_at for m in markers]


def test_markers_fall_due_after_the_bound_and_list_what_is_not_done(journal):
    ids = in_partition("a", 4)
    journal.run(lambda j: j.claim([claim(i) for i in ids]))
    now = time.time()
    assert journal.run(lambda j: j.due(now + 60)) == []
    [marker] = journal.run(lambda j: j.due(now + AFTER + 1))
    assert (sorted(marker.members), marker.attempts) == (sorted(ids), 0)
    journal.sync.mark_done(ids[:2] + ["bump:abc", "acr:never-claimed"])
    pending = journal.run(lambda j: j.pending(marker))
    assert sorted(p.event_id for p in pending) == sorted(ids[2:])
    assert all(p.messages == (("image-pushed", f"item of {p.event_id}"),) for p in pending)


def test_settle_narrows_counts_and_deletes_only_an_unchanged_marker(journal):
    ids = in_partition("b", 3)
    journal.run(lambda j: j.claim([claim(i) for i in ids]))
    now = time.time() + AFTER + 1
    [marker] = journal.run(lambda j: j.due(now))
    assert journal.run(lambda j: j.settle(marker, ids[1:], now, reenqueue=True)) is True
    assert journal.run(lambda j: j.settle(marker, ids[1:], now, reenqueue=True)) is False   # stale etag
    assert journal.run(lambda j: j.due(now + 1)) == []                                       # due again later
    [narrowed] = journal.run(lambda j: j.due(now + AFTER + 1))
    assert (sorted(narrowed.members), narrowed.attempts) == (sorted(ids[1:]), 1)
    assert journal.sync.stuck(1) == list(narrowed.members) and journal.sync.stuck(2) == []
    assert journal.run(lambda j: j.settle(narrowed, [], now, reenqueue=False)) is True
    assert journal.run(lambda j: j.due(now + 10 * AFTER)) == [] and journal.sync.stuck(0) == []


def test_both_implementations_have_the_ports_methods_with_their_parameters():
    import inspect

    from core.adapters.deliveries import AsyncDeliveryJournal, AsyncDeliveryLog, DeliveryJournal, DeliveryLog

    for protocol, cls in ((DeliveryJournal, DeliveryLog), (AsyncDeliveryJournal, AsyncDeliveryLog),
                          (DeliveryJournal, FakeDeliveryJournal), (AsyncDeliveryJournal, FakeDeliveryJournal)):
        for name, fn in vars(protocol).items():
            if callable(fn) and not name.startswith("_"):
                method = getattr(cls, name)
                assert inspect.signature(method).parameters.keys() == inspect.signature(fn).parameters.keys(), name
                assert inspect.iscoroutinefunction(method) == inspect.iscoroutinefunction(fn), (cls, name)


def settle_all(journal, now: float) -> None:
    """What the outbox timer does for every marker: drop what is done, narrow to what is not (no re-enqueue)."""
    for marker in journal.run(lambda j: j.due(now)):
        pending = journal.run(lambda j, m=marker: j.pending(m))
        assert journal.run(lambda j, m=marker, p=pending: j.settle(m, [x.event_id for x in p], now, reenqueue=False))


def test_purge_deletes_exactly_the_done_deliveries_past_the_cutoff_with_their_bodies(journal):
    old, undone = in_partition("c", 3, "acr:old"), in_partition("c", 2, "acr:undone")
    big = "acr:old-big"
    journal.run(lambda j: j.claim([claim(i) for i in old + undone] + [claim(big, bytes(range(256)) * 1200)]))
    journal.sync.mark_done(old + [big])
    time.sleep(0.02)
    cutoff = time.time()
    time.sleep(0.02)
    recent = in_partition("c", 2, "acr:recent")
    journal.run(lambda j: j.claim([claim(i) for i in recent]))
    journal.sync.mark_done(recent)
    assert journal.sync.purged_before() is None

    still_on_markers = journal.run(lambda j: j.purge(cutoff))   # done, but the outbox timer has not looked yet
    assert (still_on_markers.deliveries, still_on_markers.bodies) == (0, 0)
    assert journal.sync.purged_before() == cutoff
    settle_all(journal, time.time() + AFTER + 1)

    purged = journal.run(lambda j: j.purge(cutoff))
    assert (purged.deliveries, purged.bodies, purged.more) == (len(old) + 1, 1, False)
    assert all(journal.sync.journaled(e) is None for e in old + [big])
    assert all(journal.sync.journaled(e) is not None for e in undone + recent)
    assert journal.run(lambda j: j.purge(cutoff)).deliveries == 0
    again = journal.run(lambda j: j.claim([claim(i) for i in undone + recent]))   # inside the window: still deduped
    assert again.won == [] and sorted(again.duplicates) == sorted(undone + recent)
    assert sorted(journal.sync.stuck(0)) == sorted(undone)                        # their marker is untouched


def test_purge_deletes_at_most_the_limit_per_call(journal):
    ids = in_partition("d", 7)
    journal.run(lambda j: j.claim([claim(i) for i in ids]))
    journal.sync.mark_done(ids)
    settle_all(journal, time.time() + AFTER + 1)
    cutoff = time.time() + 1
    runs = [journal.run(lambda j: j.purge(cutoff, 3)) for _ in range(3)]
    assert [(r.deliveries, r.more) for r in runs] == [(3, True), (3, True), (1, False)]
    assert all(journal.sync.journaled(e) is None for e in ids)
