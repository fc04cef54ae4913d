"""Pure checks of the payload parsers and the registry grammar they apply (no storage)."""
from __future__ import annotations

import pytest

from core.rules.azdo_routing import RepoConfig, route_azdo
from core.model.images import is_registered_digest, is_registry_host, is_registry_repository, is_registry_tag
from core.model.payloads import (MAX_ID, AcrPush, AzdoEvent, Ignored, PayloadError, check_text, parse_acr_event,
                           parse_azdo, parse_eventgrid, show)


def push(**target) -> dict:
    return {"action": "push", "id": "e1", "timestamp": "2024-01-01T00:00:00Z", "request": {"host": "r.azurecr.io"},
            "target": {"repository": "team/app", "tag": "1.0", "digest": "sha256:" + "a" * 64, **target}}


@pytest.mark.parametrize("text,ok", [
    ("r.azurecr.io", True), ("localhost:5000", True), ("a", True), ("a-b.c", True), ("10.0.0.1:65535", True),
    ("x" * 63 + ".io", True), ("x" * 64 + ".io", False), (".".join(["abc"] * 63) + "x", True),
    (".".join(["abc"] * 64), False), ("r.io:65536", False), ("r.io:", False), ("-r.io", False), ("r-.io", False),
    ("r..io", False), ("[::1]:5000", False), ("r.io/x", False), ("r io", False), ("", False),
])
def test_registry_host(text, ok):
    assert is_registry_host(text) is ok


@pytest.mark.parametrize("text,ok", [
    ("sha256:" + "0" * 64, True), ("sha512:" + "f" * 128, True), ("sha256:" + "F" * 64, False),
    ("sha256:" + "0" * 63, False), ("sha256:" + "0" * 65, False), ("sha512:" + "0" * 64, False),
    ("SHA256:" + "0" * 64, False), ("md5:" + "0" * 32, False), ("sha256:" + "0" * 64 + "\n", False),
])
def test_registered_digest(text, ok):
    assert is_registered_digest(text) is ok


def test_grammar_checks_refuse_non_strings():
    for check in (is_registry_tag, is_registry_repository, is_registry_host, is_registered_digest):
        assert check(None) is False and check(b"app") is False  # type: ignore[arg-type]
    assert is_registry_repository("") is False and is_registry_tag("") is False


def test_a_good_push_parses_and_the_registry_is_lower_cased():
    parsed = parse_acr_event(push() | {"request": {"host": "MyReg.AzureCR.io:443"}})
    assert isinstance(parsed, AcrPush)
    assert (parsed.registry, parsed.repository, parsed.tag) == ("myreg.azurecr.io:443", "team/app", "1.0")


def test_push_by_digest_is_still_checked_before_it_is_ignored():
    assert parse_acr_event(push(tag="")) == Ignored("push by digest without a tag")
    with pytest.raises(PayloadError, match=r"^target\.repository: "):
        parse_acr_event(push(tag="", repository="Bad"))


def test_errors_show_values_escaped_and_short():
    assert show("a\nb") == "'a\\nb'"
    assert show("x" * 100) == repr("x" * 40) + "... (100 characters)"
    with pytest.raises(PayloadError) as caught:
        parse_acr_event(push(tag="1\n" + "y" * 10_000))
    message = str(caught.value)
    assert message.startswith("target.tag: '1\\n") and "\n" not in message and len(message) < 200


@pytest.mark.parametrize("char", ["\x00", "\x1f", "\x7f", "\x9f", "\ud800", "\udfff", "\ufdd0", "\ufffe",
                                  "\U0001fffe", "\U0010ffff"])
def test_check_text_refuses_what_cloudevents_strings_may_not_hold(char):
    with pytest.raises(PayloadError, match=f"U\\+{ord(char):04X}"):
        check_text(f"a{char}b", "id", MAX_ID)


def test_check_text_lets_printable_unicode_through():
    assert check_text("événement 1 \u2028 \U0001f600", "id", MAX_ID)


def test_eventgrid_schema_and_cloudevents_are_told_apart():
    grid = {"id": "1", "eventType": "Microsoft.ContainerRegistry.ImagePushed", "data": {}}
    cloud = {"id": "1", "type": "Microsoft.ContainerRegistry.ImagePushed", "source": "/x", "data": {}}
    assert parse_eventgrid([grid])[0].event_type == "Microsoft.ContainerRegistry.ImagePushed"
    with pytest.raises(PayloadError, match=r"^\[1\]\.specversion is missing$"):
        parse_eventgrid([grid, cloud])
    assert parse_eventgrid(cloud | {"specversion": "1.0"})[0].event_id == "1"
    with pytest.raises(PayloadError, match=r"^specversion: '0\.3' is not supported"):
        parse_eventgrid(cloud | {"specversion": "0.3"})


def test_azdo_delivery_ids():
    base = {"eventType": "git.push", "resource": {}}
    assert parse_azdo(base | {"subscriptionId": "s", "notificationId": 7}).delivery_id == "s:7"
    assert parse_azdo(base | {"id": "guid"}).delivery_id == "guid"
    with pytest.raises(PayloadError, match="^notificationId must be an integer"):
        parse_azdo(base | {"subscriptionId": "s", "notificationId": -1})
    with pytest.raises(PayloadError, match="^id: .* too long"):
        parse_azdo(base | {"id": "i" * (MAX_ID + 1)})


CONFIG = RepoConfig("https://dev.azure.com/o/p/_git/hld", "main", "https://dev.azure.com/o/p/_git/manifests", "main")


def build(**resource) -> AzdoEvent:
    return AzdoEvent("d", "build.complete", {"id": 5, "repository": {"id": "r"}, "project": {"id": "p"},
                                             "triggerInfo": {"pr.number": "42"}, **resource})


def test_azdo_build_ids_are_int32_and_a_pr_number_is_plain_digits():
    [item] = route_azdo(build(), CONFIG, "azdo:d", "t")
    assert (item.build_id, item.pr_id, item.repository_id, item.project_id) == (5, 42, "r", "p")
    for number in ("\u00b2", "\u0664\u0662", "9" * 11, "0", " 42", "42\n"):
        [item] = route_azdo(build(triggerInfo={"pr.number": number}), CONFIG, "azdo:d", "t")
        assert item.pr_id is None, number
    for bad in (0, 2**31, True, "5", 5.0):
        with pytest.raises(PayloadError, match=r"^resource\.id must be an integer"):
            route_azdo(build(id=bad), CONFIG, "azdo:d", "t")
    with pytest.raises(PayloadError, match=r"^resource\.repository\.id must be a string"):
        route_azdo(build(repository={"id": 7}), CONFIG, "azdo:d", "t")


def test_azdo_push_commit_ids_are_hex():
    def push_event(new: str) -> AzdoEvent:
        return AzdoEvent("d", "git.push", {"repository": {"remoteUrl": CONFIG.hld_url},
                                           "refUpdates": [{"name": "refs/heads/main", "newObjectId": new}]})
    [item] = route_azdo(push_event("ab" * 20), CONFIG, "azdo:d", "t")
    assert item.commit == "ab" * 20
    assert isinstance(route_azdo(push_event("0" * 40), CONFIG, "azdo:d", "t"), Ignored)  # branch deleted
    for bad in ("ab" * 19, "HEAD", "ab" * 20 + "\n", "g" * 40):
        with pytest.raises(PayloadError, match=r"^resource\.refUpdates\[0\]\.newObjectId: "):
            route_azdo(push_event(bad), CONFIG, "azdo:d", "t")
