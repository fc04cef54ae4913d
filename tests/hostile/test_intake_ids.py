"""Issue #16.9 and #16.11: ids that are no usable key, a bad event inside an Event Grid batch, CloudEvents
`specversion`, and other malformed deliveries answer 400 naming the field (never 503 or 500) with nothing
claimed or enqueued.
"""
from __future__ import annotations

import json

import pytest

from core.model.payloads import MAX_ID
from tests.hostile.intake_calls import claimed, enqueued, fixture, post

LONG = "x" * (64 * 1024 + 1)


def refused(door, source: str, body, fragment: str, content_type: str = "application/json") -> dict:
    status, reply = post(source, body, content_type)
    assert status == 400, reply
    assert reply["error"].startswith(fragment), reply
    assert enqueued(door) == 0 and claimed(door) == 0
    return reply


@pytest.mark.parametrize("value", [LONG, "x" * (MAX_ID + 1), "a\nb", "a\x00b", "\x7f", "a\u0085b", "\ufffe"])
def test_acr_event_id(door, value):
    body = fixture("acr_push.json")
    body["id"] = value
    refused(door, "acr", body, "id: ")


def test_unpaired_surrogate_in_an_id(door):
    raw = json.dumps(fixture("acr_push.json")).replace("cb8c3971-9adc-488b-bdd8-43cbb4974ff5", "\\ud800")
    refused(door, "acr", raw.encode(), "id: ")


def test_id_at_the_limit_is_accepted(door):
    body = fixture("acr_push.json")
    body["id"] = "i" * MAX_ID
    assert post("acr", body)[0] == 202
    assert enqueued(door) == 1


def batch(n: int = 3) -> list:
    one = fixture("eventgrid_push.json")[0]
    events = []
    for i in range(n):
        event = json.loads(json.dumps(one))
        event["id"], event["data"]["id"], event["data"]["target"]["tag"] = f"ev-{i}", f"acr-{i}", f"v{i}"
        events.append(event)
    return events


@pytest.mark.parametrize("mutate,fragment", [
    (lambda e: e.update(id=LONG), "[2].id: "),
    (lambda e: e.update(id=""), "[2].id is missing"),
    (lambda e: e["data"].update(id=LONG), "[2].data.id: "),
    (lambda e: e["data"]["target"].update(tag="v1\nx: y"), "[2].data.target.tag: "),
    (lambda e: e["data"]["target"].update(repository="../x"), "[2].data.target.repository: "),
    (lambda e: e.update(eventType="x" * 70_000), "[2].eventType: "),
])
def test_one_bad_event_in_a_batch_enqueues_nothing(door, mutate, fragment):
    events = batch()
    mutate(events[2])
    refused(door, "eventgrid", events, fragment)
    assert post("eventgrid", batch())[0] == 202  # the same batch without the bad event goes through whole
    assert enqueued(door) == 3


@pytest.mark.parametrize("version", ["0.3", "1.0.1", "1", "", " 1.0", "1.0\n", 1.0, None, ["1.0"]])
def test_cloudevents_specversion_must_be_1_0(door, version):
    event = fixture("cloudevent_push.json")
    event["specversion"] = version
    refused(door, "eventgrid", event, "specversion", "application/cloudevents+json")
    refused(door, "eventgrid", [event], "[0].specversion", "application/cloudevents-batch+json")


def test_cloudevent_without_specversion_is_refused(door):
    event = fixture("cloudevent_push.json")
    del event["specversion"]
    reply = refused(door, "eventgrid", event, "specversion", "application/cloudevents+json")
    assert reply["error"] == "specversion is missing"


def test_cloudevents_1_0_is_accepted(door):
    assert post("eventgrid", fixture("cloudevent_push.json"), "application/cloudevents+json")[0] == 202
    assert post("eventgrid", [fixture("eventgrid_push.json")[0]])[0] == 202  # Event Grid schema: no specversion
    assert enqueued(door) == 2


def test_number_too_long_for_python_is_400_not_500(door):
    raw = json.dumps(fixture("acr_push.json")).replace('"size": 524', '"size": ' + "9" * 5000)
    refused(door, "acr", raw.encode(), "body is not valid JSON")


@pytest.mark.parametrize("mutate,fragment", [
    (lambda d: d.update(id=LONG, subscriptionId=None), "id: "),
    (lambda d: d.update(subscriptionId="s" * (MAX_ID + 1)), "subscriptionId: "),
    (lambda d: d.update(subscriptionId="a\nb"), "subscriptionId: "),
    (lambda d: d.update(notificationId=10 ** 30), "notificationId"),
    (lambda d: d.update(eventType="git.push\n" + "x" * 300), "eventType: "),
    (lambda d: d["resource"]["repository"].update(id=LONG), "resource.repository.id: "),
    (lambda d: d["resource"]["project"].update(id={"x": 1}), "resource.project.id"),
    (lambda d: d["resource"].update(id=10 ** 30), "resource.id"),
])
def test_azdo_build_ids(door, mutate, fragment):
    data = fixture("azdo_build_complete.json")
    mutate(data)
    refused(door, "azdo", data, fragment)


@pytest.mark.parametrize("number", ["\u00b2", "9" * 5000, "-1", "4" * 20])
def test_azdo_pr_number_that_is_no_id_is_not_a_crash(door, number):
    data = fixture("azdo_build_complete.json")
    data["resource"]["triggerInfo"]["pr.number"] = number
    status, reply = post("azdo", data)
    assert status == 202, reply
    assert enqueued(door) == 1


@pytest.mark.parametrize("name,mutate,fragment", [
    ("azdo_push.json", lambda d: d["resource"]["repository"].update(remoteUrl="https://[x"),
     "resource.repository.remoteUrl: "),
    ("azdo_push.json", lambda d: d["resource"]["refUpdates"][0].update(newObjectId="HEAD~1; rm -rf"),
     "resource.refUpdates[0].newObjectId: "),
    ("azdo_push.json", lambda d: d["resource"]["refUpdates"][0].update(name="refs/heads/main\n" + "x" * 2000),
     "resource.refUpdates[0].name: "),
    ("azdo_pr_created.json", lambda d: d["resource"].update(pullRequestId=10 ** 30), "resource.pullRequestId"),
    ("azdo_pr_created.json", lambda d: d["resource"].update(pullRequestId=0), "resource.pullRequestId"),
    ("azdo_pr_created.json", lambda d: d["resource"]["repository"].update(id="r" * (MAX_ID + 1)),
     "resource.repository.id: "),
    ("azdo_pr_created.json", lambda d: d["resource"].update(sourceRefName="refs/heads/a\x00b"),
     "resource.sourceRefName: "),
    ("azdo_pr_merged.json", lambda d: d["resource"]["lastMergeCommit"].update(commitId="x" * 70_000),
     "resource.lastMergeCommit.commitId: "),
])
def test_azdo_ids_and_refs(door, name, mutate, fragment):
    data = fixture(name)
    mutate(data)
    refused(door, "azdo", data, fragment)
