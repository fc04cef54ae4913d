"""Issue #16.8: tags, repositories, registry hosts and digests no registry allows are refused at the door.

Every hostile value goes through the real intake functions (ACR webhook, Event Grid schema, CloudEvents) wired on
the fake queues and journal (the `door` fixture): 400 naming the field, nothing claimed, nothing enqueued.
"""
from __future__ import annotations

import copy

import pytest

from core.adapters.storage import IMAGE_PUSHED
from tests.hostile.grammar_oracle import HOSTILE, valid_repository, valid_tag
from tests.hostile.intake_calls import claimed, enqueued, fixture, post


def acr(field: str, value: str) -> dict:
    body = fixture("acr_push.json")
    body["target"][field] = value
    return body


def eventgrid(field: str, value: str) -> list:
    body = fixture("eventgrid_push.json")
    body[0]["data"]["target"][field] = value
    return body


def cloudevent(field: str, value: str) -> dict:
    body = fixture("cloudevent_push.json")
    body["data"]["target"][field] = value
    return body


# (source, body builder, the field prefix the error names, content type)
SENDERS = [
    ("acr", acr, "target.", "application/json"),
    ("eventgrid", eventgrid, "[0].data.target.", "application/json"),
    ("eventgrid", cloudevent, "data.target.", "application/cloudevents+json"),
]
WHAT = {"tag": "is not a valid tag", "repository": "is not a valid repository"}


def assert_refused(door, field: str, value: str) -> None:
    for source, build, prefix, content_type in SENDERS:
        status, body = post(source, build(field, value), content_type)
        assert status == 400, (source, value, body)
        assert body["error"].startswith(f"{prefix}{field}: ") and WHAT[field] in body["error"], body
        assert "\n" not in body["error"] and "\x00" not in body["error"]
    assert enqueued(door) == 0 and claimed(door) == 0


@pytest.mark.parametrize("value", HOSTILE, ids=[repr(v) for v in HOSTILE])
def test_hostile_tag_and_repository_are_400_and_nothing_enqueued(door, value):
    assert not valid_tag(value) and not valid_repository(value)
    assert_refused(door, "tag", value)
    assert_refused(door, "repository", value)


@pytest.mark.parametrize("field,value", [
    ("tag", "a" * 129), ("tag", ".hidden"), ("tag", "-1.0"), ("tag", "a/b"), ("tag", "v1:2"), ("tag", "1.0@x"),
    ("repository", "a" * 256), ("repository", "/".join(["ab"] * 86)), ("repository", "Fabrikam/App"),
    ("repository", "_app"), ("repository", "app-"), ("repository", "a//b"), ("repository", "/app"),
    ("repository", "app/"), ("repository", "a___b"), ("repository", "a..b"), ("repository", "app:1.0"),
    ("repository", "host.io/app@sha256:" + "1" * 64),
])
def test_length_and_shape_limits(door, field, value):
    assert not (valid_tag if field == "tag" else valid_repository)(value)
    assert_refused(door, field, value)


@pytest.mark.parametrize("field,value", [
    ("tag", "a" * 128), ("tag", "_"), ("tag", "V1.0-RC_2"), ("tag", "1..--__"),
    ("repository", "a" * 255), ("repository", "a-b--c__d.e_f/g0"), ("repository", "/".join(["ab"] * 85)),
])
def test_values_at_the_limits_are_accepted(door, field, value):
    assert (valid_tag if field == "tag" else valid_repository)(value)
    status, body = post("acr", acr(field, value))
    assert status == 202, body
    [message] = door.queues.peek(IMAGE_PUSHED)
    assert value in message.text


@pytest.mark.parametrize("where,value,fragment", [
    (("request", "host"), "my registry.io", "request.host: "),
    (("request", "host"), "registry.io\n", "request.host: "),
    (("request", "host"), "-registry.io", "request.host: "),
    (("request", "host"), "registry.io:80:80", "request.host: "),
    (("request", "host"), "registry.io/evil", "request.host: "),
    (("request", "host"), "a" * 300 + ".io", "request.host: "),
    (("target", "digest"), "sha256:short", "target.digest: "),
    (("target", "digest"), "sha256:" + "A" * 64, "target.digest: "),
    (("target", "digest"), "sha256:" + "a" * 64 + "\n", "target.digest: "),
    (("target", "digest"), "md5:" + "a" * 32, "target.digest: "),
    (("target", "digest"), "sha256:" + "a" * 100_000, "target.digest: "),
    (("target", "mediaType"), "application/json\nInjected: 1", "target.mediaType: "),
    (("target", "mediaType"), "x" * 300, "target.mediaType: "),
    (("timestamp",), "2024-01-01T00:00:00Z\r\n", "timestamp: "),
])
def test_registry_host_digest_and_text_fields(door, where, value, fragment):
    body = fixture("acr_push.json")
    node = body
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    status, reply = post("acr", body)
    assert status == 400 and reply["error"].startswith(fragment), reply
    assert enqueued(door) == 0 and claimed(door) == 0


def test_good_registry_forms_are_accepted(door):
    for i, host in enumerate(["MyRegistry.azurecr.io", "localhost:5000", "10.0.0.1:443", "registry"]):
        body = fixture("acr_push.json")
        body["id"], body["request"]["host"] = f"event-{i}", host
        assert post("acr", body)[0] == 202, host
    body = copy.deepcopy(fixture("acr_push.json"))
    body["id"], body["target"]["digest"] = "event-sha512", "sha512:" + "ab" * 64
    assert post("acr", body)[0] == 202
    assert enqueued(door) == 5
