"""Flux cluster events per tenant: each tenant of a fleet has its own hook route (`/api/hooks/flux/<tenant>`) and its
own key (the app setting its fleet.yaml `flux.secretSetting` names); the event names that tenant; one tenant's key
never validates another tenant's events; without a fleet `/api/hooks/flux` and FLUX_WEBHOOK_SECRET work as before.
The fleet comes from fleet.yaml in a local bare repo through `get_services()`; the door's stores are dict fakes."""
from __future__ import annotations

import json
import types

import azure.functions as func
import pytest

from core.model.workitems import ClusterEvent, decode
from core.adapters.storage import CLUSTER_EVENTS
from core.ops import cli
from core.workers.cluster_feedback import sign
from devkit.gitrepos import bare_repo
from tests.functions import call_http
from tests.test_cluster_feedback import flux_body, flux_event

A_KEY, B_KEY, SHARED_KEY = "tenant-a-flux-key", "tenant-b-flux-key", "the-single-tenant-key"

FLEET = """\
tenants:
  - name: a
    manifests: {url: 'https://dev.azure.com/o/p/_git/a-manifests'}
    flux:
      secretSetting: A_FLUX_KEY
      clusters: [{name: a-prod, env: prod}, {name: a-dev}]
  - name: b
    manifests: {url: 'https://dev.azure.com/o/p/_git/b-manifests'}
    flux: {secretSetting: B_FLUX_KEY}
  - name: c
    manifests: {url: 'https://dev.azure.com/o/p/_git/c-manifests'}
"""


@pytest.fixture
def fleet(door, monkeypatch, tmp_path):
    """A deployment serving tenants a, b (each with its Flux key) and c (none), FLUX_WEBHOOK_SECRET also set."""
    monkeypatch.setenv("FLEET_REPO_URL", bare_repo(tmp_path, {"fleet.yaml": FLEET}, name="fleet"))
    monkeypatch.setenv("WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("A_FLUX_KEY", A_KEY)
    monkeypatch.setenv("B_FLUX_KEY", B_KEY)
    monkeypatch.setenv("FLUX_WEBHOOK_SECRET", SHARED_KEY)
    return door.rewire()


@pytest.fixture
def single(door, monkeypatch):
    monkeypatch.setenv("FLUX_WEBHOOK_SECRET", SHARED_KEY)
    return door.rewire()


def post(tenant: str | None, body: bytes, key: str) -> tuple[int, dict, list[str]]:
    route = "/api/hooks/flux" + (f"/{tenant}" if tenant else "")
    req = func.HttpRequest("POST", route, headers={"Content-Type": "application/json", "X-Signature": sign(body, key)},
                           params={}, route_params={"tenant": tenant} if tenant else {}, body=body)
    resp, messages = call_http("flux_events_webhook", req)
    return resp.status_code, json.loads(resp.get_body() or b"{}"), messages.get(CLUSTER_EVENTS, [])


BODY = flux_body(flux_event(cluster="a-prod"))


def test_a_tenants_event_on_its_route_with_its_key_names_that_tenant(fleet):
    status, reply, queued = post("a", BODY, A_KEY)

    assert status == 202, reply
    assert reply["tenant"] == "a" and reply["eventId"].endswith("@a")
    [event] = [decode(text, CLUSTER_EVENTS) for text in queued]
    assert isinstance(event, ClusterEvent) and event.tenant == "a" and event.cluster == "a-prod"


@pytest.mark.parametrize("route, key", [("a", B_KEY), ("b", A_KEY), ("a", SHARED_KEY), ("b", SHARED_KEY)])
def test_one_tenants_key_never_validates_another_tenants_events(fleet, door, route, key):
    status, reply, queued = post(route, BODY, key)

    assert (status, queued) == (401, [])
    assert reply == {"error": "missing or wrong X-Signature"}
    assert door.enqueued() == 0


def test_the_same_event_bytes_for_two_tenants_are_two_deliveries(fleet):
    assert post("a", BODY, A_KEY)[0] == 202
    status, reply, queued = post("b", BODY, B_KEY)
    assert status == 202 and reply["tenant"] == "b"
    assert decode(queued[0], CLUSTER_EVENTS).tenant == "b"
    # a resend to a is a duplicate of a's delivery only
    assert post("a", BODY, A_KEY)[1] == {"eventId": reply["eventId"].replace("@b", "@a"), "duplicate": True}


def test_a_fleet_refuses_the_bare_route_even_with_flux_webhook_secret(fleet):
    status, reply, queued = post(None, BODY, SHARED_KEY)

    assert (status, queued) == (404, [])
    assert "/api/hooks/flux/<tenant>" in reply["error"]


def test_a_tenant_without_a_flux_key_is_not_configured_and_names_what_is_missing(fleet):
    status, reply, _ = post("c", BODY, SHARED_KEY)

    assert status == 503
    assert reply["error"] == "hook not configured: tenant c has no flux.secretSetting in fleet.yaml"


def test_a_tenants_empty_key_setting_is_503_naming_the_setting_not_a_fall_back(fleet, door, monkeypatch):
    monkeypatch.setenv("A_FLUX_KEY", "")
    door.rewire()

    for key in ("", SHARED_KEY, B_KEY):
        status, reply, queued = post("a", BODY, key)
        assert (status, queued) == (503, [])
        assert reply["error"] == "hook not configured: A_FLUX_KEY is empty"


@pytest.mark.parametrize("route", ["nobody", "Not-A-Slug", "a%2Fb"])
def test_an_unknown_tenant_is_404(fleet, route):
    status, reply, queued = post(route, BODY, A_KEY)

    assert (status, queued) == (404, [])
    assert "tenant" in reply["error"]


def test_without_a_fleet_the_single_tenant_route_works_as_before(single):
    status, reply, queued = post(None, BODY, SHARED_KEY)

    assert status == 202, reply
    assert reply["tenant"] == "default" and "@" not in reply["eventId"]
    assert decode(queued[0], CLUSTER_EVENTS).tenant == "default"
    assert post("default", BODY, SHARED_KEY)[1]["duplicate"] is True     # the same delivery, named or not
    assert post("other", BODY, SHARED_KEY)[0] == 404


def test_a_tenant_view_carries_its_own_flux_key_only(fleet):
    assert fleet.for_tenant("a").settings.flux_webhook_secret == A_KEY
    assert fleet.for_tenant("b").settings.flux_webhook_secret == B_KEY
    assert fleet.for_tenant("c").settings.flux_webhook_secret == ""


def test_setup_prints_each_tenants_provider_with_its_own_address_and_key_setting(fleet):
    args = types.SimpleNamespace(url="https://app.example.net", function_key="fkey", flux_cluster="x", flux_env="",
                                 flux_namespace="flux-system")
    out = _Lines()
    cli._print_fleet_feedback(args, fleet, out)
    text = "".join(out.lines)

    a_block = text.split("# cluster a-prod")[1].split("# cluster")[0]
    assert 'address: "https://app.example.net/api/hooks/flux/a?code=fkey"' in a_block
    assert "app setting A_FLUX_KEY" in a_block and "cluster: a-prod\n    env: prod" in a_block
    assert "# cluster a-dev" in text and "# cluster x" not in text and "--flux-cluster x is for" in text
    assert "tenant b: " in text and "/api/hooks/flux/b?code=fkey" in text    # no clusters listed: told how
    assert "tenant c: " in text and "flux.secretSetting" in text
    assert A_KEY not in text and B_KEY not in text and SHARED_KEY not in text


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.append(text)
        return len(text)


def test_health_shows_each_tenants_flux_key_setting_and_warns_when_it_is_empty(fleet, door, monkeypatch):
    from core.ops.health import check_health
    from tests.fakes.probes import storage_free_probes

    monkeypatch.setenv("B_FLUX_KEY", "")
    services = door.rewire()
    body = check_health(lambda: services, storage_free_probes(which=lambda _: None)).body

    assert body["tenants"]["a"]["fluxHook"] == {"setting": "A_FLUX_KEY", "present": True}
    assert body["tenants"]["b"]["fluxHook"] == {"setting": "B_FLUX_KEY", "present": False}
    assert "fluxHook" not in body["tenants"]["c"]
    assert any(w.startswith("tenant b: app setting B_FLUX_KEY (its Flux events key) is not set")
               for w in body["warnings"]), body["warnings"]
    assert A_KEY not in json.dumps(body)


def test_a_tenants_flux_delivery_is_set_done_when_its_worker_took_it(fleet, door):
    """Otherwise the outbox re-enqueues every accepted Flux event and health reports them stuck."""
    status, reply, _ = post("a", BODY, A_KEY)
    assert status == 202

    door.journal.mark_done([reply["eventId"]])      # what the cluster-events runner does after its run

    assert door.journal.deliveries[reply["eventId"]].state == "done"
