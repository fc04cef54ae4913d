"""The pauses and claims contract, against Table storage (Azurite) and the dict fakes."""
from __future__ import annotations

import threading

import pytest

from core.adapters.promotion_records import Claims, Pauses
from tests.fakes.records import FakeClaims, FakePauses


@pytest.fixture(params=["table", "fake"])
def pauses(request):
    if request.param == "fake":
        return FakePauses()
    return Pauses(request.getfixturevalue("storage"))


@pytest.fixture(params=["table", "fake"])
def claims(request):
    if request.param == "fake":
        return FakeClaims()
    return Claims(request.getfixturevalue("storage"))


def test_pause_resume_acknowledge(pauses):
    assert pauses.reason("web", "prod") == "" and pauses.listed() == [] and not pauses.resume("web", "prod")
    pauses.pause("web", "prod", "a person set 1.0 below 1.1", "1.0")
    assert pauses.reason("web", "prod") == "a person set 1.0 below 1.1"
    pauses.acknowledge("web", "prod", "0.9")   # automation's own rollback does not lift a person's pause
    assert pauses.reason("web", "prod") and pauses.acknowledged("web", "prod") == ""
    [listed] = pauses.listed()
    assert (listed["service"], listed["env"], listed["reason"]) == ("web", "prod", "a person set 1.0 below 1.1")
    assert pauses.resume("web", "prod") and not pauses.resume("web", "prod")
    assert pauses.reason("web", "prod") == "" and pauses.acknowledged("web", "prod") == "1.0"
    assert pauses.listed() == []
    pauses.acknowledge("web", "dev", "2.0")
    assert pauses.acknowledged("web", "dev") == "2.0" and pauses.reason("web", "dev") == ""
    pauses.pause("api", "prod", "")
    assert pauses.reason("api", "prod") == "paused"


def test_claim_once_release_claim_again(claims):
    assert not claims.claimed("web", "prod", "1.2")
    assert claims.claim("web", "prod", "1.2", "t1")
    assert not claims.claim("web", "prod", "1.2", "t2") and claims.claimed("web", "prod", "1.2")
    assert claims.claim("web", "prod", "1.3", "t1") and claims.claim("web", "dev", "1.2", "t1")
    claims.settle("web", "prod", "1.2", {"commit": "abc", "pr": None})
    assert claims.claimed("web", "prod", "1.2")
    claims.release("web", "prod", "1.3")
    claims.release("web", "prod", "9.9")   # nothing to release: no error
    assert not claims.claimed("web", "prod", "1.3") and claims.claim("web", "prod", "1.3", "t3")


def test_concurrent_claims_have_one_winner(claims):
    wins = []
    threads = [threading.Thread(target=lambda n=n: wins.append(claims.claim("web", "prod", "2.0", f"t{n}")))
               for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


def test_pauses_and_claims_are_per_tenant(pauses, claims):
    """A tenant's view (what its services use) of the same store: the same (service, env, tag) in two tenants is two
    keys; `default`'s view is the store as it was before the fleet; `listed` names every tenant's pauses."""
    a, b, default = pauses.for_tenant("a"), pauses.for_tenant("b"), pauses.for_tenant("default")
    a.pause("frontend", "prod", "a person rolled back", "1.0.0")
    assert a.reason("frontend", "prod") and not b.reason("frontend", "prod") and not default.reason("frontend", "prod")
    assert not pauses.reason("frontend", "prod")
    assert [p["tenant"] for p in default.listed()] == ["a"] and [p["tenant"] for p in b.listed()] == ["a"]
    default.pause("frontend", "prod", "the default tenant's own")
    assert pauses.reason("frontend", "prod") == "the default tenant's own"
    assert sorted(p["tenant"] for p in a.listed()) == ["a", "default"]
    assert not b.resume("frontend", "prod") and a.resume("frontend", "prod")
    assert a.acknowledged("frontend", "prod") == "1.0.0" and b.acknowledged("frontend", "prod") == ""

    assert claims.for_tenant("a").claim("frontend", "prod", "1.2.0", "t1")
    assert claims.for_tenant("b").claim("frontend", "prod", "1.2.0", "t2")      # not taken by a's claim
    assert not claims.for_tenant("a").claim("frontend", "prod", "1.2.0", "t3")
    assert not claims.claimed("frontend", "prod", "1.2.0")                     # default's key is its own
    claims.for_tenant("b").release("frontend", "prod", "1.2.0")
    assert claims.for_tenant("a").claimed("frontend", "prod", "1.2.0")
    assert not claims.for_tenant("b").claimed("frontend", "prod", "1.2.0")
