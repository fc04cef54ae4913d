"""Malformed and hostile request bodies through the real intake functions (on the fake stores of the `door`
fixture): every one answers a 4xx naming what is wrong (never a 500, never a 503), and leaves nothing claimed or
enqueued."""
from __future__ import annotations

import json

import pytest

from tests.hostile.intake_calls import claimed, enqueued, fixture, post

ACR = json.dumps(fixture("acr_push.json"))
GRID = fixture("eventgrid_push.json")


def grid_with(**fields) -> bytes:
    event = dict(GRID[0], **fields)
    return json.dumps([event]).encode()


CASES = [
    # (source, body, status, fragment of the error)
    ("acr", b"", 400, "not valid JSON"),
    ("acr", b"   ", 400, "not valid JSON"),
    ("acr", b"\xff\xfe\x00", 400, "not valid JSON"),
    ("acr", b"[" * 100_000 + b"]" * 100_000, 400, "not valid JSON"),
    ("acr", b'{"a": ' + b"1" * 5000 + b"}", 400, "not valid JSON"),
    ("acr", b'"' + b"x" * 500_000 + b'"', 400, "body must be a JSON object"),
    ("acr", b"NaN", 400, "body must be a JSON object"),
    ("acr", b"null", 400, "body must be a JSON object"),
    ("acr", ACR.replace('"push"', '["push"]').encode(), 400, "action must be a string"),
    ("acr", ACR.replace('"1.4.0"', "1.4").encode(), 400, "target.tag must be a string"),
    ("acr", ACR.replace('"1.4.0"', '{"$ne": 1}').encode(), 400, "target.tag must be a string"),
    ("acr", ACR.replace('"fabrikam/app"', "null").encode(), 400, "target.repository is missing"),
    ("acr", ACR.replace('"MyRegistry.azurecr.io"', "[]").encode(), 400, "request.host must be a string"),
    ("acr", ACR.replace('"cb8c3971-9adc-488b-bdd8-43cbb4974ff5"', "42").encode(), 400, "id must be a string"),
    ("acr", ACR.replace('"cb8c3971-9adc-488b-bdd8-43cbb4974ff5"', '"x\\u0000"').encode(), 400, "id: "),
    ("acr", ACR.replace('"1.4.0"', '"1.4.0\\n"').encode(), 400, "target.tag: "),
    ("acr", ACR.replace('"1.4.0"', '"\\ud800"').encode(), 400, "target.tag: "),
    ("eventgrid", b"[]", 400, "empty array"),
    ("eventgrid", b"[1, 2]", 400, "[0] must be a JSON object"),
    ("eventgrid", grid_with(data=None), 400, "[0].data must be a JSON object"),
    ("eventgrid", grid_with(data="push"), 400, "[0].data must be a JSON object"),
    ("eventgrid", grid_with(id=None), 400, "[0].id is missing"),
    ("eventgrid", grid_with(id=["a"]), 400, "[0].id must be a string"),
    ("eventgrid", grid_with(eventType=None), 400, "[0].eventType is missing"),
    ("eventgrid", grid_with(eventType="Microsoft.EventGrid.SubscriptionValidationEvent", data={}), 400,
     "data.validationCode is missing"),
    ("eventgrid", json.dumps(dict(GRID[0], specversion="2.0", type="x")).encode(), 400, "specversion"),
    ("azdo", b'{"eventType": "git.push"}', 400, "id is missing"),
    ("azdo", b'{"eventType": ["git.push"], "id": "x"}', 400, "eventType must be a string"),
    ("azdo", b'{"eventType": "git.push", "id": "x", "resource": []}', 400, "resource must be a JSON object"),
    ("azdo", b'{"eventType": "git.push", "id": "x", "resource": {"repository": {"remoteUrl": "https://[::1"}}}',
     400, "resource.repository.remoteUrl: "),
    ("azdo", b'{"eventType": "git.pullrequest.created", "id": "x", "resource": {"repository": {"name": "hld"},'
             b' "pullRequestId": true}}', 400, "resource.pullRequestId must be an integer"),
]


@pytest.mark.parametrize("source,body,status,fragment", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_malformed_body_is_refused_and_leaves_nothing(door, source, body, status, fragment):
    got, reply = post(source, body)
    assert (got, fragment in reply.get("error", "")) == (status, True), reply
    assert "\n" not in reply["error"]
    assert enqueued(door) == 0 and claimed(door) == 0


def test_validation_handshake_alone_answers_and_enqueues_nothing(door):
    handshake = fixture("eventgrid_validation.json")
    status, reply = post("eventgrid", handshake)
    assert status == 200 and "validationResponse" in reply
    assert enqueued(door) == 0 and claimed(door) == 0
