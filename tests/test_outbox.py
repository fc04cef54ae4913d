"""The delivery journal as outbox: nothing accepted is lost when the host never writes the output binding.

Issue #16.2's scenario: pause the queue, POST, kill the host, restart, resend within 60 s. Here "the host died
before writing the outputs" is an invocation whose output-binding values are dropped (`deliver=False`).

The cases run on the fake queues, journal and record stores (the `door` fixture), the crash scenarios end to end
through intake, the outbox timer, the bump worker and git. On Azurite only what is particular to Table storage (a
failed transaction, mark_done's transaction fallback, no rows for unknown ids).
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace

import azure.functions as func
import pytest

from core.adapters.deliveries import DELIVERIES_TABLE, OUTBOX_PREFIX, AsyncDeliveryJournal, Claim, DeliveryLog, row_key
from core.ops.health import HealthProbes, OutboxProbe, check_health
from core.workers.outbox import reenqueue_due
from core.workers.runners import BumpJob, QueuedMessage, settle
from core.wiring import get_services
from core.adapters.storage import IMAGE_PUSHED, PR_REVIEW, AsyncStorage
from core.model.workitems import decode, encode
from devkit.gitrepos import bare_repo, branches, commits, file_at
from tests.conftest import ACR_SECRET, AZDO_SECRET
from tests.fakes.probes import HealthyStores
from tests.functions import call_http, invoke
from tests.test_bump import EXAMPLE_HLD, FRONTEND_PROD, make_service

FIXTURES = Path(__file__).parent / "fixtures" / "deliveries"
ACR_EVENT_ID = "acr:cb8c3971-9adc-488b-bdd8-43cbb4974ff5"


def run_bump(services, item):
    """One bump worker run of `item`, as the queue function's runner does it (and marks its delivery done)."""
    [verdict] = settle(BumpJob(services), [QueuedMessage("m-1", encode(item))])
    assert verdict.error is None, verdict.error
    return verdict.settled.result


def acr_request(body: bytes | None = None) -> func.HttpRequest:
    return func.HttpRequest("POST", "/api/hooks/acr", body=body or (FIXTURES / "acr_push.json").read_bytes(),
                            headers={"Authorization": f"Bearer {ACR_SECRET}", "Content-Type": "application/json"})


def eventgrid_request(events: list[dict]) -> func.HttpRequest:
    return func.HttpRequest("POST", "/api/hooks/eventgrid", body=json.dumps(events).encode(),
                            headers={"Authorization": f"Bearer {ACR_SECRET}", "Content-Type": "application/json"})


def post(req: func.HttpRequest, fn: str = "acr_webhook", *, deliver: bool = True) -> tuple[int, dict, dict]:
    resp, outputs = call_http(fn, req, deliver=deliver)
    return resp.status_code, json.loads(resp.get_body()), outputs


def queued(queues, queue: str = IMAGE_PUSHED) -> list:
    return [decode(m.text, queue) for m in queues.peek(queue)]


def aio(coro_fn):
    """Run `coro_fn(async_deliveries)` on a fresh loop with the app's aio clients, closing them afterwards."""
    async def run():
        services = get_services()
        try:
            return await coro_fn(services.async_deliveries())
        finally:
            await services.aclose()
    return asyncio.run(run())


def outbox_run(now: float, max_attempts: int = 3):
    return aio(lambda log: reenqueue_due(log, now, max_attempts))


def deliver(queues, outputs: dict[str, list[str]]) -> None:
    for queue, texts in outputs.items():
        for text in texts:
            queues.enqueue(queue, text)


def worker_services(door, bump) -> SimpleNamespace:
    """What BumpJob needs of Services, on the door's fakes."""
    return SimpleNamespace(queues=door.queues, deliveries=door.journal, trace=door.records.trace, bump=bump)


def take(queues, queue: str = IMAGE_PUSHED):
    """Receive and delete the one message on `queue`, as a worker's trigger does: its work item."""
    [message] = queues.receive(queue, 1, 30)
    assert queues.delete(queue, message)
    return decode(message.text, queue)


def fake_markers(door) -> list[dict]:
    return [{"members": json.dumps(list(m.members)), "attempts": m.attempts} for m in door.journal.markers.values()]


def markers(storage) -> list[dict]:
    return [e for e in storage.table(DELIVERIES_TABLE).list_entities() if e["RowKey"].startswith(OUTBOX_PREFIX)]


def delivery_state(storage, event_id: str) -> str:
    key = row_key(event_id)
    return storage.table(DELIVERIES_TABLE).get_entity(key[0], key)["state"]


def test_crash_between_claim_and_enqueue_ends_with_the_push_applied_exactly_once(door, tmp_path):
    hld = bare_repo(tmp_path, EXAMPLE_HLD, name="hld")
    before = branches(hld)["main"]
    # POST; the host dies before it writes the output binding: accepted, journaled, nothing on the queue
    status, body, outputs = post(acr_request(), deliver=False)
    assert (status, body["queued"]) == (202, [IMAGE_PUSHED]) and len(outputs[IMAGE_PUSHED]) == 1
    assert queued(door.queues) == []
    # restart, the sender resends within 60 s: a duplicate, and still nothing queued
    status, body, outputs = post(acr_request())
    assert (status, body["duplicate"]) == (200, True) and outputs == {}
    assert queued(door.queues) == []
    accepted = time.time()
    # the outbox timer: not due within the bound, due after it
    assert outbox_run(accepted + 60).reenqueued == []
    run = outbox_run(accepted + 121)
    assert run.reenqueued == [ACR_EVENT_ID]
    deliver(door.queues, run.outputs)
    item = take(door.queues)
    assert (item.event_id, item.repository, item.tag) == (ACR_EVENT_ID, "fabrikam/app", "1.4.0")
    # the worker takes it: the delivery is done, so the next timer run drops the marker and sends nothing
    bump = make_service(hld, door.records, tmp_path)
    result = run_bump(worker_services(door, bump), item)
    assert door.journal.state(ACR_EVENT_ID) == "done"
    run = outbox_run(accepted + 10_000)
    assert (run.reenqueued, run.cleared) == ([], 1) and fake_markers(door) == []
    assert queued(door.queues) == []
    # the example HLD does not use fabrikam/app: the run decided once, and nothing was committed twice
    assert result.commit is None and branches(hld)["main"] == before


def test_a_lost_push_is_bumped_exactly_once_in_the_hld(door, tmp_path):
    hld = bare_repo(tmp_path, EXAMPLE_HLD, name="hld")
    data = json.loads((FIXTURES / "acr_push.json").read_bytes())
    data["target"].update(repository="fabrikam/frontend", tag="1.4.7")
    data["request"]["host"] = "fabrikam.azurecr.io"
    raw = json.dumps(data).encode()
    assert post(acr_request(raw), deliver=False)[0] == 202
    assert post(acr_request(raw))[1]["duplicate"] is True
    run = outbox_run(time.time() + 121)
    deliver(door.queues, run.outputs)
    bump = make_service(hld, door.records, tmp_path)
    services = worker_services(door, bump)
    head = branches(hld)["main"]
    result = run_bump(services, take(door.queues))
    assert result.commit is not None
    assert [c.sha for c in commits(hld, "main", 2)][1] == head  # exactly one new commit
    assert b'tag: "1.4.7"' in file_at(hld, "main", FRONTEND_PROD)
    assert outbox_run(time.time() + 10_000).reenqueued == []
    assert branches(hld)["main"] == result.commit


def test_output_written_and_taken_leaves_nothing_for_the_timer(door):
    status, _, _ = post(acr_request())
    assert status == 202
    [item] = queued(door.queues)
    door.journal.mark_done([item.event_id])
    assert door.journal.state(ACR_EVENT_ID) == "done"
    assert outbox_run(time.time() + 60).cleared == 0  # not due yet: the marker stays until the bound
    run = outbox_run(time.time() + 10_000)
    assert (run.reenqueued, run.cleared) == ([], 1) and fake_markers(door) == []


def test_reenqueued_at_most_max_times_then_health_reports_it_stuck(door, monkeypatch):
    assert post(acr_request(), deliver=False)[0] == 202
    now = time.time()
    runs = [outbox_run(now + 121 * n, max_attempts=2) for n in range(1, 5)]
    assert [r.reenqueued for r in runs] == [[ACR_EVENT_ID], [ACR_EVENT_ID], [], []]
    assert [r.stuck for r in runs] == [[], [], [ACR_EVENT_ID], [ACR_EVENT_ID]]
    [row] = fake_markers(door)
    assert row["attempts"] == 2
    monkeypatch.setenv("OUTBOX_MAX_REENQUEUES", "2")
    monkeypatch.setenv("HLD_REPO_URL", "")
    monkeypatch.setenv("MANIFEST_REPO_URL", "")
    door.rewire()
    probes = lambda: HealthProbes(stores=HealthyStores(), outbox=OutboxProbe())   # noqa: E731  (the real outbox probe)
    report = check_health(get_services, probes())
    assert report.body["outbox"] == {"stuck": 1}
    assert any("stuck" in w and ACR_EVENT_ID in w for w in report.body["warnings"])
    door.journal.mark_done([ACR_EVENT_ID])  # e.g. an operator replayed it and a worker took it
    assert outbox_run(now + 121 * 6).cleared == 1
    assert check_health(get_services, probes()).body["outbox"] == {"stuck": 0}


def test_the_timer_function_sends_due_work_through_its_output_bindings(door, monkeypatch):
    monkeypatch.setenv("OUTBOX_REENQUEUE_AFTER_SECONDS", "0")
    door.rewire()
    assert post(acr_request(), deliver=False)[0] == 202
    result, outputs = invoke("outbox_timer", "timer", None)
    assert result is None
    assert list(outputs) == [IMAGE_PUSHED] and len(outputs[IMAGE_PUSHED]) == 1
    assert [i.event_id for i in queued(door.queues)] == [ACR_EVENT_ID]


def test_azdo_work_leaves_through_the_azdo_bindings_and_is_covered_too(door):
    import base64
    token = base64.b64encode(f"u:{AZDO_SECRET}".encode()).decode()
    req = func.HttpRequest("POST", "/api/hooks/azdo", body=(FIXTURES / "azdo_pr_created.json").read_bytes(),
                           headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"})
    status, body, outputs = post(req, "azdo_webhook", deliver=False)
    assert status == 202 and list(outputs) == [PR_REVIEW]
    run = outbox_run(time.time() + 121)
    assert list(run.outputs) == [PR_REVIEW] and run.reenqueued == [body["eventId"]]


def test_claims_of_a_batch_are_one_per_event_and_a_resend_claims_nothing(door):
    queues = door.queues
    one = json.loads((FIXTURES / "eventgrid_push.json").read_bytes())[0]

    def event(n: int) -> dict:
        e = json.loads(json.dumps(one))
        e["id"], e["data"]["target"]["tag"] = f"batch-{n}", f"1.0.{n}"
        return e

    events = [event(n) for n in range(300)]
    status, body, outputs = post(eventgrid_request(events), "eventgrid_webhook")
    assert status == 202 and len(body["queued"]) == 300
    # one marker per partition group: 16 partitions, each group under 99 deliveries
    assert len(fake_markers(door)) == 16 and sum(len(json.loads(m["members"])) for m in fake_markers(door)) == 300
    assert len(outputs[IMAGE_PUSHED]) == 32  # the rest went out with the SDK, in parallel
    assert queues.queue_depth(IMAGE_PUSHED) == 300
    # a resend with 100 new events among the old ones: only the new ones are accepted
    status, body, outputs = post(eventgrid_request(events[:200] + [event(n) for n in range(300, 400)] + events[200:]),
                                 "eventgrid_webhook")
    assert status == 202 and body["duplicate"] is True and len(body["queued"]) == 100
    assert queues.queue_depth(IMAGE_PUSHED) == 400
    tags = {decode(m.text, IMAGE_PUSHED).tag for m in queues.receive(IMAGE_PUSHED, 32, 60)}
    assert tags  # decodable work items
    # the same event twice in one request is accepted once
    status, body, _ = post(eventgrid_request([event(500), event(500)]), "eventgrid_webhook")
    assert status == 202 and body["queued"] == [IMAGE_PUSHED] and body["duplicate"] is True


def test_concurrent_claims_of_one_delivery_have_one_winner(door):
    claim = Claim("acr:race", "acr", b"{}", "application/json", ((IMAGE_PUSHED, "{}"),))

    async def race(log: AsyncDeliveryJournal):
        return await asyncio.gather(*(log.claim([claim]) for _ in range(8)))

    results = aio(race)
    assert sum(len(r.won) for r in results) == 1 and sum(len(r.duplicates) for r in results) == 7
    [row] = fake_markers(door)
    assert (json.loads(row["members"]), row["attempts"]) == (["acr:race"], 0)


def test_storage_failure_of_some_claims_answers_503_and_still_sends_the_claimed_ones(app_env, storage,
                                                                                   monkeypatch):
    one = json.loads((FIXTURES / "eventgrid_push.json").read_bytes())[0]
    events = []
    for n in range(40):
        e = json.loads(json.dumps(one))
        e["id"] = f"partial-{n}"
        events.append(e)
    from azure.core.exceptions import ServiceRequestError
    from azure.data.tables.aio import TableClient

    real_submit = TableClient.submit_transaction

    async def flaky(self, operations, **kwargs):
        ops = list(operations)
        if ops and ops[0][1]["PartitionKey"] in "01234567":
            raise ServiceRequestError("connection refused")
        return await real_submit(self, ops, **kwargs)

    monkeypatch.setattr(TableClient, "submit_transaction", flaky)
    status, body, outputs = post(eventgrid_request(events), "eventgrid_webhook")
    monkeypatch.setattr(TableClient, "submit_transaction", real_submit)
    won = [e["id"] for e in events if row_key(f"eventgrid:{e['id']}")[0] not in "01234567"]
    assert status == 503 and "storage unavailable" in body["error"]
    assert sorted(body["accepted"]) == sorted(f"eventgrid:{i}" for i in won)
    assert sorted(decode(t, IMAGE_PUSHED).event_id for t in outputs[IMAGE_PUSHED]) == sorted(body["accepted"])
    # Event Grid retries the whole batch: the claimed ones are duplicates, the others are accepted now
    status, body, _ = post(eventgrid_request(events), "eventgrid_webhook")
    assert status == 202 and len(body["queued"]) == 40 - len(won) and body["duplicate"] is True
    assert storage.queue_depth(IMAGE_PUSHED) == 40


def test_claims_that_fail_answer_503_and_the_claimed_ones_are_still_sent(door):
    """The service's side of a partial storage failure (the Table-storage side is the test above)."""
    one = json.loads((FIXTURES / "eventgrid_push.json").read_bytes())[0]
    events = [dict(one, id=f"partial-{n}") for n in range(40)]
    door.journal.failing = set("01234567")
    status, body, outputs = post(eventgrid_request(events), "eventgrid_webhook")
    door.journal.failing = set()
    won = [e["id"] for e in events if row_key(f"eventgrid:{e['id']}")[0] not in "01234567"]
    assert status == 503 and "storage unavailable" in body["error"]
    assert sorted(body["accepted"]) == sorted(f"eventgrid:{i}" for i in won)
    assert sorted(decode(t, IMAGE_PUSHED).event_id for t in outputs[IMAGE_PUSHED]) == sorted(body["accepted"])
    assert door.journal.claimed() == len(won)
    status, body, _ = post(eventgrid_request(events), "eventgrid_webhook")
    assert status == 202 and len(body["queued"]) == 40 - len(won) and body["duplicate"] is True
    assert door.queues.queue_depth(IMAGE_PUSHED) == 40


def test_mark_done_ignores_ids_intake_never_claimed(app_env, storage):
    DeliveryLog(storage).mark_done(["bump:abc", "acr:never-seen", "bump-retry:acr:x"])
    assert list(storage.table(DELIVERIES_TABLE).list_entities()) == []


def test_async_storage_reports_dead_storage_as_unavailable():
    from core.adapters.storage import StorageUnavailable, dev_connection_string
    from devkit.azurite import free_port

    dead = free_port()

    async def run():
        store = AsyncStorage(dev_connection_string(queue_port=dead, table_port=dead))
        try:
            with pytest.raises(StorageUnavailable):
                await store.enqueue(IMAGE_PUSHED, "{}")
            with pytest.raises(StorageUnavailable):
                await store.table(DELIVERIES_TABLE)
        finally:
            await store.close()
    started = time.monotonic()
    asyncio.run(run())
    assert time.monotonic() - started < 10


def test_an_event_id_too_long_for_the_outbox_is_refused_before_anything_is_claimed(door):
    one = json.loads((FIXTURES / "eventgrid_push.json").read_bytes())[0]
    events = [dict(one, id="fine"), dict(one, id="x" * 5_000)]
    status, body, outputs = post(eventgrid_request(events), "eventgrid_webhook")
    # the door's id limit (256, core.model.payloads) is below the outbox's (1,024): refused naming the event, nothing out
    assert status == 400 and body["error"].startswith("[1].id:") and "too long" in body["error"] and outputs == {}
    assert door.journal.claimed() == 0 and door.enqueued() == 0


def test_a_marker_keeps_only_the_deliveries_still_pending(door):
    one = json.loads((FIXTURES / "eventgrid_push.json").read_bytes())[0]
    events = [dict(one, id=f"same-partition-{n}") for n in range(400)]
    events = [e for e in events if row_key(f"eventgrid:{e['id']}")[0] == "a"][:6]
    assert post(eventgrid_request(events), "eventgrid_webhook", deliver=False)[0] == 202
    [row] = fake_markers(door)
    assert len(json.loads(row["members"])) == 6
    door.journal.mark_done([f"eventgrid:{e['id']}" for e in events[:4]])
    run = outbox_run(time.time() + 121)
    assert sorted(run.reenqueued) == sorted(f"eventgrid:{e['id']}" for e in events[4:])
    assert len(run.outputs[IMAGE_PUSHED]) == 2
    [row] = fake_markers(door)
    assert sorted(json.loads(row["members"])) == sorted(run.reenqueued) and row["attempts"] == 1


def test_mark_done_sets_every_known_delivery_done_even_among_unknown_ids(app_env, storage):
    one = json.loads((FIXTURES / "eventgrid_push.json").read_bytes())[0]
    events = [dict(one, id=f"done-{n}") for n in range(40)]
    assert post(eventgrid_request(events), "eventgrid_webhook")[0] == 202
    ids = [f"eventgrid:{e['id']}" for e in events]
    DeliveryLog(storage).mark_done(ids + ["eventgrid:never-claimed", "bump:abc"])
    assert {delivery_state(storage, i) for i in ids} == {"done"}
    run = outbox_run(time.time() + 121)
    assert run.reenqueued == [] and markers(storage) == []


@pytest.mark.parametrize("name,value", [("OUTBOX_REENQUEUE_AFTER_SECONDS", "soon"),
                                        ("OUTBOX_REENQUEUE_AFTER_SECONDS", "-1"),
                                        ("OUTBOX_MAX_REENQUEUES", "2.5"), ("OUTBOX_MAX_REENQUEUES", "nan")])
def test_outbox_settings_are_validated(name, value):
    from core.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match=name):
        load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", name: value})
    loaded = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert (loaded.outbox_reenqueue_after, loaded.outbox_max_reenqueues) == (120.0, 3)
