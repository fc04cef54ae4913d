"""Journal retention: the outbox timer purges delivery rows (and journaled bodies) done more than
JOURNAL_RETENTION_DAYS ago, in bounded batches; undone and recent ones stay; a replay of a purged delivery answers
404 saying it is past retention. The purge's contract (both implementations) is in tests/contracts/test_deliveries.py;
here: the timer function, the Table-storage specifics (journal rows, transaction sizes) and the setting."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace

import azure.functions as func
import pytest

from core.adapters.deliveries import (DELIVERIES_TABLE, JOURNAL_TABLE, OUTBOX_PREFIX, PURGE_MAX_PER_RUN,
                                      AsyncDeliveryLog, Claim, DeliveryLog, _partition, row_key)
from core.adapters.storage import AsyncStorage
from core.ops.replay import ReplayRequest, Replayer
from core.wiring import get_services
from core.workers.outbox import DAY, purge_expired
from tests.conftest import ACR_SECRET
from tests.fakes.deliveries import FakeDeliveryJournal
from tests.functions import call_http, invoke

FIXTURES = Path(__file__).parent / "fixtures" / "deliveries"
ACR_EVENT_ID = "acr:cb8c3971-9adc-488b-bdd8-43cbb4974ff5"


def acr_request() -> func.HttpRequest:
    return func.HttpRequest("POST", "/api/hooks/acr", body=(FIXTURES / "acr_push.json").read_bytes(),
                            headers={"Authorization": f"Bearer {ACR_SECRET}", "Content-Type": "application/json"})


def timer_at(monkeypatch, when: float) -> None:
    """Run the outbox timer as if it were `when`."""
    import handlers.outbox

    monkeypatch.setattr(handlers.outbox, "time", SimpleNamespace(time=lambda: when))
    assert invoke("outbox_timer", "timer", None)[0] is None


def test_the_timer_purges_a_done_delivery_after_retention_and_replay_says_past_retention(door, monkeypatch):
    resp, _ = call_http("acr_webhook", acr_request())
    assert resp.status_code == 202
    door.journal.mark_done([ACR_EVENT_ID])
    replayer = Replayer(door.queues, get_services().intake, door.journal)

    timer_at(monkeypatch, time.time() + 13 * DAY)               # inside the window: kept, and a resend is a duplicate
    assert door.journal.journaled(ACR_EVENT_ID) is not None
    resp, _ = call_http("acr_webhook", acr_request())
    assert json.loads(resp.get_body()).get("duplicate") is True
    assert replayer.run(ReplayRequest(event_id=ACR_EVENT_ID, dry_run=True)).status == 200

    timer_at(monkeypatch, time.time() + 15 * DAY)
    assert door.journal.journaled(ACR_EVENT_ID) is None and door.journal.claimed() == 0
    for dry_run in (True, False):
        reply = replayer.run(ReplayRequest(event_id=ACR_EVENT_ID, dry_run=dry_run))
        assert reply.status == 404 and "\n" not in reply.body["error"]
        assert ACR_EVENT_ID in reply.body["error"] and "past retention" in reply.body["error"]
        assert "JOURNAL_RETENTION_DAYS" in reply.body["error"]


def test_an_undone_delivery_is_never_purged_however_old(door, monkeypatch):
    assert call_http("acr_webhook", acr_request(), deliver=False)[0].status_code == 202
    for days in (15, 30, 400):
        timer_at(monkeypatch, time.time() + days * DAY)
    assert door.journal.state(ACR_EVENT_ID) == "accepted" and door.journal.journaled(ACR_EVENT_ID) is not None


def test_retention_zero_keeps_everything(door, monkeypatch):
    monkeypatch.setenv("JOURNAL_RETENTION_DAYS", "0")
    door.rewire()
    assert call_http("acr_webhook", acr_request())[0].status_code == 202
    door.journal.mark_done([ACR_EVENT_ID])
    timer_at(monkeypatch, time.time() + 1000 * DAY)
    assert door.journal.journaled(ACR_EVENT_ID) is not None and door.journal.purged_before() is None


def test_purge_expired_cuts_at_now_minus_the_retention_and_is_bounded():
    clock = [1_000_000.0]
    journal = FakeDeliveryJournal(clock=lambda: clock[0])
    ids = [f"acr:{n}" for n in range(PURGE_MAX_PER_RUN + 20)]
    asyncio.run(journal.claim([Claim(i, "acr", b"{}", "application/json", (("image-pushed", i),)) for i in ids]))
    journal.mark_done(ids)
    journal.markers.clear()                                       # as after the outbox timer's look
    now = clock[0] + 14 * DAY
    assert asyncio.run(purge_expired(journal, now, 14)).deliveries == 0   # exactly 14 days: not yet past
    assert journal.purged_before() == clock[0]
    first = asyncio.run(purge_expired(journal, now + 1, 14))
    assert (first.deliveries, first.more) == (PURGE_MAX_PER_RUN, True)
    second = asyncio.run(purge_expired(journal, now + 1, 14))
    assert (second.deliveries, second.more) == (20, False) and journal.claimed() == 0


# -- Table storage ---------------------------------------------------------------------------------------------------
def run_async(conn: str, call):
    async def go():
        store = AsyncStorage(conn)
        try:
            return await call(AsyncDeliveryLog(store, reenqueue_after=0))
        finally:
            await store.close()
    return asyncio.run(go())


def clear_markers(storage) -> None:
    table = storage.table(DELIVERIES_TABLE)
    for entity in list(table.list_entities()):
        if entity["RowKey"].startswith(OUTBOX_PREFIX):
            table.delete_entity(entity["PartitionKey"], entity["RowKey"])


def test_a_large_body_goes_with_every_journal_row_and_an_orphan_body_goes_too(azurite):
    from core.adapters.storage import Storage

    storage = Storage(azurite)
    body = bytes(range(256)) * 1200                                # six chunks + a meta row in the journal table
    run_async(azurite, lambda j: j.claim([Claim("acr:big", "acr", body, "application/json", ())]))
    DeliveryLog(storage).journal("acr:orphan", "acr", body, "application/json")   # a claim that failed after it
    DeliveryLog(storage).mark_done(["acr:big"])
    clear_markers(storage)
    assert len(list(storage.table(JOURNAL_TABLE).list_entities())) == 14
    purged = run_async(azurite, lambda j: j.purge(time.time() + 1))
    assert (purged.deliveries, purged.bodies) == (1, 2)
    assert list(storage.table(JOURNAL_TABLE).list_entities()) == []
    assert [e["RowKey"] for e in storage.table(DELIVERIES_TABLE).list_entities()] == ["horizon"]


def test_deletes_go_in_transactions_of_at_most_100_per_partition(azurite, monkeypatch):
    from azure.data.tables.aio import TableClient

    from core.adapters.storage import Storage

    ids, n = [], 0
    while len(ids) < 150:
        if _partition(row_key(f"acr:t{n}")) == "e":
            ids.append(f"acr:t{n}")
        n += 1
    run_async(azurite, lambda j: j.claim([Claim(i, "acr", b"{}", "application/json", ()) for i in ids]))
    storage = Storage(azurite)
    DeliveryLog(storage).mark_done(ids)
    clear_markers(storage)
    sizes: list[int] = []
    real = TableClient.submit_transaction

    async def counting(self, operations, **kwargs):
        ops = list(operations)
        sizes.append(len(ops))
        assert len({op[1]["PartitionKey"] for op in ops}) == 1
        return await real(self, ops, **kwargs)

    monkeypatch.setattr(TableClient, "submit_transaction", counting)
    assert run_async(azurite, lambda j: j.purge(time.time() + 1)).deliveries == 150
    assert sorted(sizes) == [50, 100]
    assert DeliveryLog(storage).purged_before() is not None


def test_a_row_on_a_marker_is_kept_even_when_done_and_old(azurite):
    from core.adapters.storage import Storage

    storage = Storage(azurite)
    run_async(azurite, lambda j: j.claim([Claim("acr:kept", "acr", b"x" * 70_000, "application/json", ())]))
    DeliveryLog(storage).mark_done(["acr:kept"])
    purged = run_async(azurite, lambda j: j.purge(time.time() + 1))
    assert (purged.deliveries, purged.bodies) == (0, 0)
    assert DeliveryLog(storage).journaled("acr:kept").body == b"x" * 70_000


@pytest.mark.parametrize("value", ["two weeks", "-1", "1.5", "nan"])
def test_the_retention_setting_is_validated(value):
    from core.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="JOURNAL_RETENTION_DAYS"):
        load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "JOURNAL_RETENTION_DAYS": value})
    assert load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}).journal_retention_days == 14
