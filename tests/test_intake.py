"""Webhook intake through the real function app functions, on the fake queues and journal (the `door` fixture);
the first three also on Azurite, proving the wiring end to end."""
from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.wiring import reset_services
from core.adapters.storage import HLD_CHANGED, IMAGE_PUSHED, PR_REVIEW, WORK_QUEUES
from core.model.workitems import decode

FIXTURES = Path(__file__).parent / "fixtures" / "deliveries"
from tests.conftest import ACR_SECRET, AZDO_SECRET
from tests.functions import call_http


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def call(fn_name: str, body: bytes, headers: dict[str, str] | None = None,
         params: dict[str, str] | None = None) -> tuple[int, dict]:
    """Invoke the HTTP function as the host does; its queue outputs are written after it returned."""
    req = func.HttpRequest("POST", f"/api/{fn_name}", headers=headers or {}, params=params or {}, body=body)
    resp, _ = call_http(fn_name, req)
    return resp.status_code, json.loads(resp.get_body() or b"{}")


def acr_headers(secret: str = ACR_SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}


def azdo_headers(secret: str = AZDO_SECRET) -> dict[str, str]:
    token = base64.b64encode(f"ignored-user:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json; charset=utf-8"}


def messages(queues, queue: str) -> list:
    return [decode(m.text, queue) for m in queues.peek(queue)]


@pytest.fixture(params=["fake", "azurite"])
def queues(request):
    """The app's work queues: the door's fakes, or Azure Storage on Azurite (end to end)."""
    if request.param == "fake":
        return request.getfixturevalue("door").queues
    request.getfixturevalue("app_env")
    return request.getfixturevalue("storage")


def test_acr_push_enqueues_one_typed_work_item(queues):
    status, body = call("acr_webhook", fixture("acr_push.json"), acr_headers())
    assert status == 202
    assert body["eventId"] == "acr:cb8c3971-9adc-488b-bdd8-43cbb4974ff5"
    assert body["queued"] == [IMAGE_PUSHED]
    [item] = messages(queues, IMAGE_PUSHED)
    assert (item.registry, item.repository, item.tag) == ("myregistry.azurecr.io", "fabrikam/app", "1.4.0")
    assert item.digest.startswith("sha256:80f0d5c8")
    assert item.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert item.acr_event_id == "cb8c3971-9adc-488b-bdd8-43cbb4974ff5"
    assert item.pushed_at == "2017-11-17T16:52:01.343145347Z"
    assert len(item.trace_id) == 32


def test_resend_is_a_duplicate_and_enqueued_once(queues):
    assert call("acr_webhook", fixture("acr_push.json"), acr_headers())[0] == 202
    status, body = call("acr_webhook", fixture("acr_push.json"), acr_headers())
    assert (status, body["duplicate"]) == (200, True)
    assert len(messages(queues, IMAGE_PUSHED)) == 1


def test_concurrent_copies_are_enqueued_once(queues):
    results: list[int] = []
    barrier = threading.Barrier(8)

    def send():
        barrier.wait()
        results.append(call("acr_webhook", fixture("acr_push.json"), acr_headers())[0])

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] * 7 + [202]
    assert len(messages(queues, IMAGE_PUSHED)) == 1


@pytest.mark.parametrize("name,reason", [
    ("acr_delete.json", "action delete is not acted on"),
    ("acr_chart_push.json", "action chart_push is not acted on"),
])
def test_acr_actions_not_acted_on(door, name, reason):
    status, body = call("acr_webhook", fixture(name), acr_headers())
    assert (status, body["ignored"]) == (200, reason)
    assert messages(door.queues, IMAGE_PUSHED) == []


def test_acr_ping_and_push_by_digest(door):
    assert call("acr_webhook", b'{"action": "ping"}', acr_headers()) == (200, {"eventId": "", "ignored": "ping"})
    data = json.loads(fixture("acr_push.json"))
    del data["target"]["tag"]
    status, body = call("acr_webhook", json.dumps(data).encode(), acr_headers())
    assert (status, body["ignored"]) == (200, "push by digest without a tag")
    assert messages(door.queues, IMAGE_PUSHED) == []


def test_oci_media_type_and_unknown_fields_accepted(door):
    data = json.loads(fixture("acr_push.json"))
    data["target"]["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    data["somethingNew"] = {"x": 1}
    data["target"]["annotations"] = ["a"]
    assert call("acr_webhook", json.dumps(data).encode(), acr_headers())[0] == 202
    [item] = messages(door.queues, IMAGE_PUSHED)
    assert item.media_type == "application/vnd.oci.image.manifest.v1+json"


@pytest.mark.parametrize("headers,params,status", [
    ({}, {}, 401),
    ({"Authorization": "Bearer wrong"}, {}, 401),
    ({"Authorization": f"Basic {ACR_SECRET}"}, {}, 401),
])
def test_acr_auth(door, headers, params, status):
    assert call("acr_webhook", fixture("acr_push.json"), headers, params)[0] == status
    assert messages(door.queues, IMAGE_PUSHED) == []


def test_unconfigured_secret_refuses_with_503(door, monkeypatch):
    monkeypatch.setenv("ACR_WEBHOOK_SECRET", "")
    door.rewire()
    status, body = call("acr_webhook", fixture("acr_push.json"), acr_headers(""))
    assert status == 503 and "ACR_WEBHOOK_SECRET" in body["error"]


@pytest.mark.parametrize("body,headers,status,fragment", [
    (b"not json", None, 400, "not valid JSON"),
    (b'{"action": "push"}', None, 400, "id is missing"),
    (b'{"action": "push", "id": "x", "target": []}', None, 400, "target must be a JSON object"),
    (b'{"action": "push", "id": "x", "target": {"tag": "1"}}', None, 400, "target.repository is missing"),
    (b'{"action": 7}', None, 400, "action must be a string"),
    (b"[]", None, 400, "body must be a JSON object"),
    (b'{"action":"ping"}', {"Content-Type": "text/xml"}, 415, "text/xml"),
    (b"x" * ((1 << 20) + 1), None, 413, "limit"),
])
def test_acr_bad_input(door, body, headers, status, fragment):
    h = acr_headers()
    if headers:
        h.update(headers)
    got_status, got = call("acr_webhook", body, h)
    assert got_status == status
    assert fragment in got["error"]
    assert messages(door.queues, IMAGE_PUSHED) == []


def test_storage_unreachable_is_503_not_500(door):
    door.journal.down = True
    status, body = call("acr_webhook", fixture("acr_push.json"), acr_headers())
    assert status == 503 and "storage unavailable" in body["error"]
    assert door.enqueued() == 0


def test_storage_unreachable_through_the_azure_adapters_is_503_not_500(door):
    reset_services()  # the app's own wiring: Azure Storage clients on the door fixture's closed port
    status, body = call("acr_webhook", fixture("acr_push.json"), acr_headers())
    assert status == 503 and "storage unavailable" in body["error"]


def test_eventgrid_validation_handshake(door):
    status, body = call("eventgrid_webhook", fixture("eventgrid_validation.json"), acr_headers())
    assert (status, body) == (200, {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})


def options(headers: dict[str, str], params: dict[str, str] | None = None) -> func.HttpResponse:
    req = func.HttpRequest("OPTIONS", "/api/hooks/eventgrid", headers=headers, params=params or {}, body=b"")
    return call_http("eventgrid_webhook", req)[0]


def test_cloudevents_abuse_protection_handshake_allows_the_requesting_origin(door):
    """Event Grid with the CloudEvents schema validates the endpoint with OPTIONS, not a validation event."""
    resp = options({"WebHook-Request-Origin": "eventgrid.azure.net"}, {"secret": ACR_SECRET})
    assert resp.status_code == 200
    assert resp.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert resp.headers["WebHook-Allowed-Rate"] == "*"
    assert options({"WebHook-Request-Origin": "eventgrid.azure.net"}, {"secret": "wrong"}).status_code == 401
    missing = options(acr_headers())
    assert missing.status_code == 400 and "WebHook-Request-Origin" in json.loads(missing.get_body())["error"]
    smuggled = options({**acr_headers(), "WebHook-Request-Origin": "a.example\r\nSet-Cookie: x=1"})
    assert smuggled.status_code == 400 and "WebHook-Allowed-Origin" not in smuggled.headers
    assert all(messages(door.queues, q) == [] for q in WORK_QUEUES)


def test_eventgrid_push_with_query_secret(door):
    status, body = call("eventgrid_webhook", fixture("eventgrid_push.json"),
                        {"Content-Type": "application/json"}, {"secret": ACR_SECRET})
    assert status == 202 and body["eventId"] == "eventgrid:831e1650-001e-001b-66ab-eeb76e069631"
    [item] = messages(door.queues, IMAGE_PUSHED)
    assert (item.registry, item.repository, item.tag, item.source) == ("demo.azurecr.io", "aci-helloworld", "v1",
                                                                      "eventgrid")
    assert item.acr_event_id == "31c51664-e5bd-416a-a5df-e5206bc47ed0"
    assert call("eventgrid_webhook", fixture("eventgrid_push.json"), {}, {"secret": "nope"})[0] == 401


def test_eventgrid_batch_and_cloudevents(door):
    one = json.loads(fixture("eventgrid_push.json"))[0]
    two = json.loads(json.dumps(one))
    two["id"], two["data"]["target"]["tag"] = "second-event", "v2"
    other = dict(one, id="deleted", eventType="Microsoft.ContainerRegistry.ImageDeleted")
    status, body = call("eventgrid_webhook", json.dumps([one, two, other]).encode(), acr_headers())
    assert status == 202 and body["queued"] == [IMAGE_PUSHED, IMAGE_PUSHED]
    status, body = call("eventgrid_webhook", fixture("cloudevent_push.json"),
                        {**acr_headers(), "Content-Type": "application/cloudevents+json"})
    assert status == 202
    assert sorted(i.tag for i in messages(door.queues, IMAGE_PUSHED)) == ["2.0.0", "v1", "v2"]


def test_azdo_pr_created_on_hld_is_reviewed(door):
    status, body = call("azdo_webhook", fixture("azdo_pr_created.json"), azdo_headers())
    assert status == 202 and body["queued"] == [PR_REVIEW]
    assert body["eventId"] == "azdo:6f1c1d0e-7c3a-4c1d-9b34-0d2a7a0c9f12:3"
    [item] = messages(door.queues, PR_REVIEW)
    assert (item.pr_id, item.repository_id, item.source_ref) == (
        42, "4bc14d40-c903-45e2-872e-0462c7748079", "refs/heads/autopilot/fabrikam/dev")
    assert item.project_id == "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c"


@pytest.mark.parametrize("name", ["azdo_pr_merged.json"])
def test_azdo_completed_pr_into_hld_branch_regenerates(door, name):
    status, body = call("azdo_webhook", fixture(name), azdo_headers())
    assert status == 202 and body["queued"] == [HLD_CHANGED]
    [item] = messages(door.queues, HLD_CHANGED)
    assert (item.reason, item.pr_id, item.commit) == ("pr-completed", 42, "eef717f69257a6333f221566c1c987dc94cc0d72")


def test_azdo_merge_attempted_spelling_and_updated_completed(door):
    data = json.loads(fixture("azdo_pr_merged.json"))
    data["eventType"], data["notificationId"] = "git.pullrequest.merge.attempted", 90
    assert call("azdo_webhook", json.dumps(data).encode(), azdo_headers())[1]["queued"] == [HLD_CHANGED]
    data["eventType"], data["notificationId"] = "git.pullrequest.updated", 91
    assert call("azdo_webhook", json.dumps(data).encode(), azdo_headers())[1]["queued"] == [HLD_CHANGED]


def test_azdo_push_to_hld_branch(door):
    status, body = call("azdo_webhook", fixture("azdo_push.json"), azdo_headers())
    assert status == 202 and body["queued"] == [HLD_CHANGED]
    [item] = messages(door.queues, HLD_CHANGED)
    assert (item.reason, item.commit) == ("push", "33b55f7cb7e7e245323987634f960cf4a6e6bc74")


def test_azdo_build_complete_goes_to_review(door):
    status, body = call("azdo_webhook", fixture("azdo_build_complete.json"), azdo_headers())
    assert status == 202
    [item] = messages(door.queues, PR_REVIEW)
    assert (item.build_id, item.pr_id, item.event_type) == (2727068, 42, "build.complete")


@pytest.mark.parametrize("mutate,reason_fragment", [
    (lambda d: d["resource"]["repository"].update(remoteUrl="https://dev.azure.com/fabrikam/Other/_git/app"),
     "other than the configured"),
    (lambda d: d["resource"]["refUpdates"][0].update(name="refs/heads/feature"), "did not update refs/heads/main"),
    (lambda d: d.update(eventType="workitem.created"), "not handled"),
])
def test_azdo_other_repo_branch_or_event_is_ignored(door, mutate, reason_fragment):
    data = json.loads(fixture("azdo_push.json"))
    mutate(data)
    status, body = call("azdo_webhook", json.dumps(data).encode(), azdo_headers())
    assert status == 200 and reason_fragment in body["ignored"]
    assert all(messages(door.queues, q) == [] for q in WORK_QUEUES)


def test_azdo_auth(door):
    assert call("azdo_webhook", fixture("azdo_push.json"), azdo_headers("wrong"))[0] == 401
    assert call("azdo_webhook", fixture("azdo_push.json"), {"Authorization": "Basic %%%"})[0] == 401
    assert call("azdo_webhook", fixture("azdo_push.json"), acr_headers(AZDO_SECRET))[0] == 401


def test_azdo_wrong_shape_names_the_field(door):
    data = json.loads(fixture("azdo_pr_created.json"))
    data["resource"]["pullRequestId"] = "42"
    status, body = call("azdo_webhook", json.dumps(data).encode(), azdo_headers())
    assert status == 400 and "resource.pullRequestId" in body["error"]


def test_secrets_never_logged(door, caplog):
    caplog.set_level("DEBUG")
    call("acr_webhook", fixture("acr_push.json"), acr_headers())
    call("azdo_webhook", fixture("azdo_push.json"), azdo_headers())
    call("acr_webhook", fixture("acr_push.json"), acr_headers("wrong-secret-value"))
    text = caplog.text
    assert ACR_SECRET not in text and AZDO_SECRET not in text and "wrong-secret-value" not in text
    assert "Bearer" not in text and "Basic" not in text


def test_journal_replay_bypasses_duplicate_check(door):
    from core.wiring import get_services

    call("acr_webhook", fixture("acr_push.json"), acr_headers())
    reply = get_services().intake.replay("acr:cb8c3971-9adc-488b-bdd8-43cbb4974ff5")
    assert reply.status == 202 and reply.body["queued"] == [IMAGE_PUSHED]
    assert len(messages(door.queues, IMAGE_PUSHED)) == 2
    assert get_services().intake.replay("acr:unknown").status == 404


def test_journal_holds_large_bodies_exactly(door):
    from core.wiring import get_services

    data = json.loads(fixture("acr_push.json"))
    data["padding"] = "p" * 300_000
    raw = json.dumps(data).encode()
    assert call("acr_webhook", raw, acr_headers())[0] == 202
    assert get_services().deliveries.journaled("acr:cb8c3971-9adc-488b-bdd8-43cbb4974ff5").body == raw


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20)
shaped = st.fixed_dictionaries({
    "action": st.sampled_from(["push", "ping", "delete", 3, None]),
    "id": st.one_of(st.text(max_size=10), st.integers()),
    "target": json_values,
    "request": json_values,
    "eventType": st.sampled_from(["git.push", "git.pullrequest.created", "git.pullrequest.merged",
                                  "build.complete", "Microsoft.ContainerRegistry.ImagePushed", 7]),
    "resource": json_values,
})


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fn=st.sampled_from(["acr_webhook", "eventgrid_webhook", "azdo_webhook"]),
       body=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                      shaped.map(lambda v: json.dumps(v).encode()),
                      shaped.map(lambda v: json.dumps([v]).encode())),
       auth=st.sampled_from(["good", "bad", "none"]),
       content_type=st.sampled_from(["application/json", "text/html", "", "application/json; charset=utf-8"]))
def test_arbitrary_input_never_500_and_only_202_enqueues(door, fn, body, auth, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    if auth == "good":
        headers.update({k: v for k, v in (azdo_headers() if fn == "azdo_webhook" else acr_headers()).items()
                        if k == "Authorization"})
    elif auth == "bad":
        headers["Authorization"] = "Bearer nope"
    before = sum(door.queues.queue_depth(q) for q in WORK_QUEUES)
    status, _ = call(fn, body, headers)
    after = sum(door.queues.queue_depth(q) for q in WORK_QUEUES)
    assert status < 500
    if status != 202:
        assert after == before


def test_dead_storage_answers_503_within_acrs_five_seconds(door):
    import time

    from core.adapters.storage import dev_connection_string
    from devkit.azurite import free_port

    dead = free_port()
    reset_services()  # the app's own wiring: Azure Storage clients on the door fixture's closed port
    started = time.monotonic()
    status, _ = call("acr_webhook", fixture("acr_push.json"), acr_headers())
    assert status == 503 and time.monotonic() - started < 5
    from core.adapters.storage import Storage, StorageUnavailable

    store = Storage(dev_connection_string(queue_port=dead, table_port=dead))
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        store.enqueue(IMAGE_PUSHED, "{}")
    assert time.monotonic() - started < 5
