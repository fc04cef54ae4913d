"""Replay through the admin handler, on the fake queues and journal (the `door` fixture): poison queues back to work
queues, and journaled deliveries. A queue deleted under the app is also tested on Azurite (end to end)."""
from __future__ import annotations

import json
from pathlib import Path

import azure.functions as func
import pytest
from azure.storage.queue import QueueServiceClient

from core.wiring import get_services, reset_services
from core.adapters.storage import (
    CLUSTER_EVENTS,
    FLUX_NOTIFY,
    HLD_CHANGED,
    IMAGE_PUSHED,
    PR_REVIEW,
    WORK_QUEUES,
    poison_queue,
)
from core.model.workitems import ClusterEvent, FluxNotify, HldChanged, ImagePushed, PrReview, decode, encode, new_trace_id
from tests.functions import call_http

FIXTURES = Path(__file__).parent / "fixtures" / "deliveries"
from tests.conftest import ACR_SECRET

ACR_EVENT_ID = "acr:cb8c3971-9adc-488b-bdd8-43cbb4974ff5"


def work_item(queue: str, n: int):
    trace = new_trace_id()
    if queue == IMAGE_PUSHED:
        return ImagePushed(f"acr:event-{n}", trace, "myregistry.azurecr.io", "fabrikam/app", f"1.{n}.0",
                           "sha256:" + f"{n:064x}", "application/vnd.oci.image.manifest.v1+json",
                           "2024-05-01T10:00:00Z", f"event-{n}")
    if queue == HLD_CHANGED:
        return HldChanged(f"azdo:push-{n}", trace, "push", commit=f"{n:040x}")
    if queue == FLUX_NOTIFY:
        return FluxNotify(f"flux:{n:040x}", trace, f"{n:040x}")
    if queue == CLUSTER_EVENTS:
        return ClusterEvent(f"flux:event-{n}", trace, "prod-1", f"{n:040x}", "applied")
    return PrReview(f"azdo:pr-{n}", trace, "git.pullrequest.created", pr_id=n)


def call_replay(body) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = func.HttpRequest("POST", "/api/ops/replay", headers={"Content-Type": "application/json"}, body=raw)
    resp, _ = call_http("ops_replay", req)
    return resp.status_code, json.loads(resp.get_body())


def visible(queues, queue: str) -> list:
    return queues.peek(queue)


def poison(queues, queue: str, items) -> list[str]:
    return [queues.enqueue(poison_queue(queue), encode(item)) for item in items]


@pytest.mark.parametrize("queue", WORK_QUEUES)
def test_every_poison_message_goes_back_to_its_work_queue(door, queue):
    items = [work_item(queue, n) for n in range(3)]
    ids = poison(door.queues, queue, items)

    status, body = call_replay({"queue": queue})

    assert status == 200
    assert (body["queue"], body["from"], body["count"], body["dryRun"]) == (queue, poison_queue(queue), 3, False)
    assert sorted((m["messageId"], m["kind"], m["eventId"], m["traceId"]) for m in body["moved"]) == sorted(
        (mid, queue, item.event_id, item.trace_id) for mid, item in zip(ids, items))
    assert sorted(m.text for m in visible(door.queues, queue)) == sorted(encode(i) for i in items)
    assert door.queues.queue_depth(poison_queue(queue)) == 0


def test_only_the_named_messages_move_and_the_rest_stay_visible(door):
    items = [work_item(IMAGE_PUSHED, n) for n in range(3)]
    ids = poison(door.queues, IMAGE_PUSHED, items)

    status, body = call_replay({"queue": IMAGE_PUSHED, "messageIds": [ids[1], "no-such-id"]})

    assert status == 200
    assert [m["messageId"] for m in body["moved"]] == [ids[1]]
    assert body["notFound"] == ["no-such-id"]
    assert [m.text for m in visible(door.queues, IMAGE_PUSHED)] == [encode(items[1])]
    # the others were leased while looking, and released at once: visible again without waiting for the lease
    assert sorted(m.id for m in visible(door.queues, poison_queue(IMAGE_PUSHED))) == sorted([ids[0], ids[2]])


def test_dry_run_lists_and_moves_nothing(door):
    items = [work_item(PR_REVIEW, n) for n in range(2)]
    ids = poison(door.queues, PR_REVIEW, items)

    status, body = call_replay({"queue": PR_REVIEW, "dryRun": True})

    assert status == 200 and body["dryRun"] is True
    assert sorted(m["messageId"] for m in body["moved"]) == sorted(ids)
    assert visible(door.queues, PR_REVIEW) == []
    assert sorted(m.id for m in visible(door.queues, poison_queue(PR_REVIEW))) == sorted(ids)


def test_a_message_that_is_not_a_work_item_is_moved_with_the_reason(door):
    [mid] = [door.queues.enqueue(poison_queue(HLD_CHANGED), "not json at all")]

    status, body = call_replay({"queue": HLD_CHANGED})

    assert status == 200
    [moved] = body["moved"]
    assert moved["messageId"] == mid and "not JSON" in moved["error"]
    assert [m.text for m in visible(door.queues, HLD_CHANGED)] == ["not json at all"]


def test_a_failed_send_leaves_the_message_on_the_poison_queue(door):
    [mid] = poison(door.queues, IMAGE_PUSHED, [work_item(IMAGE_PUSHED, 1)])
    door.queues.broken.add(IMAGE_PUSHED)

    status, body = call_replay({"queue": IMAGE_PUSHED})

    assert status == 503 and "storage unavailable" in body["error"]
    assert body["moved"] == []
    assert [m.id for m in visible(door.queues, poison_queue(IMAGE_PUSHED))] == [mid]


def test_a_work_queue_deleted_under_the_app_leaves_the_message_on_the_poison_queue(app_env, storage):
    """End to end on Azurite: the Azure queue adapter reports the missing queue as storage unavailable."""
    [item] = [work_item(IMAGE_PUSHED, 1)]
    [mid] = poison(storage, IMAGE_PUSHED, [item])
    get_services().storage.ensure()  # the app's clients exist; now the work queue disappears under them
    QueueServiceClient.from_connection_string(app_env).delete_queue(IMAGE_PUSHED)

    status, body = call_replay({"queue": IMAGE_PUSHED})

    assert status == 503 and "storage unavailable" in body["error"]
    assert body["moved"] == []
    assert [m.id for m in visible(storage, poison_queue(IMAGE_PUSHED))] == [mid]


def acr_push() -> func.HttpRequest:
    return func.HttpRequest("POST", "/api/hooks/acr", body=(FIXTURES / "acr_push.json").read_bytes(),
                            headers={"Authorization": f"Bearer {ACR_SECRET}", "Content-Type": "application/json"})


def test_event_replay_enqueues_again_although_the_delivery_is_a_duplicate(door):
    assert call_http("acr_webhook", acr_push())[0].status_code == 202
    resent, _ = call_http("acr_webhook", acr_push())
    assert resent.status_code == 200 and json.loads(resent.get_body())["duplicate"] is True
    [first] = visible(door.queues, IMAGE_PUSHED)

    status, body = call_replay({"eventId": ACR_EVENT_ID})

    assert status == 200
    assert body["queued"] == [IMAGE_PUSHED] and body["replayed"] is True
    first_item, second_item = (decode(m.text, IMAGE_PUSHED) for m in visible(door.queues, IMAGE_PUSHED))
    assert decode(first.text, IMAGE_PUSHED) == first_item
    assert second_item.event_id == first_item.event_id == ACR_EVENT_ID
    assert (second_item.repository, second_item.tag) == ("fabrikam/app", "1.4.0")
    assert second_item.trace_id != first_item.trace_id


def test_event_replay_dry_run_and_unknown_event(door):
    assert call_http("acr_webhook", acr_push())[0].status_code == 202

    status, body = call_replay({"eventId": ACR_EVENT_ID, "dryRun": True})
    assert status == 200
    assert (body["eventId"], body["source"], body["dryRun"]) == (ACR_EVENT_ID, "acr", True)
    assert body["bytes"] == len((FIXTURES / "acr_push.json").read_bytes())
    assert len(visible(door.queues, IMAGE_PUSHED)) == 1

    status, body = call_replay({"eventId": "acr:never-seen"})
    assert status == 404 and "acr:never-seen" in body["error"]


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not valid JSON"),
    ([IMAGE_PUSHED], "JSON object"),
    ({}, "exactly one of queue or eventId"),
    ({"queue": IMAGE_PUSHED, "eventId": "x"}, "exactly one of queue or eventId"),
    ({"queue": "image-pushed-poison"}, "valid: image-pushed, hld-changed, pr-review"),
    ({"queue": IMAGE_PUSHED, "messageIds": "abc"}, "messageIds"),
    ({"queue": IMAGE_PUSHED, "messageIds": []}, "messageIds"),
    ({"queue": IMAGE_PUSHED, "dryRun": "yes"}, "dryRun"),
    ({"eventId": ""}, "eventId"),
    ({"eventId": "x", "messageIds": ["a"]}, "messageIds"),
    ({"queue": IMAGE_PUSHED, "messageId": ["a"]}, "'messageId'"),
])
def test_bad_requests_name_the_field(door, body, fragment):
    status, answer = call_replay(body)
    assert status == 400
    assert fragment in answer["error"]


def test_storage_down_is_503(door):
    reset_services()  # the app's own wiring: Azure Storage clients on the door fixture's closed port

    for request in ({"queue": IMAGE_PUSHED}, {"eventId": ACR_EVENT_ID}, {"eventId": ACR_EVENT_ID, "dryRun": True}):
        status, body = call_replay(request)
        assert status == 503, request
        assert "storage unavailable" in body["error"]
