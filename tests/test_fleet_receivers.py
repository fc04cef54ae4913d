"""Waking Flux per tenant: each tenant of a fleet lists its own Receivers (fleet.yaml `flux.receivers`, checked by
the FLUX_RECEIVERS rules), its view of the settings carries only those, so a tenant's manifest commit wakes its own
clusters, signed with its own tokens, and never another tenant's. Two stand-in Receivers per tenant on 127.0.0.1;
the fleet comes from fleet.yaml in a local bare repo through `get_services()`; the door's stores are dict fakes."""
from __future__ import annotations

from dataclasses import replace

import argparse
import io

import pytest

from core.adapters.flux_receivers import tenant_receiver_name, webhook_path
from core.model.workitems import FluxNotify
from core.ops import cli
from core.ops.health import check_health
from core.rules.fleet_file import FleetFileError, parse_fleet
from core.wiring import get_services
from core.workers.flux_notify import FluxNotifyJob, Notifier
from core.workers.manifest_update import GenerationResult
from core.workers.runners import GenerateJob, _wakes_flux
from devkit.flux_receiver import StandInReceiver, validate_signature
from devkit.gitrepos import bare_repo
from tests.test_fleet_health import storage_free_probes

TOKENS = {"A_RECV_PROD": "a-prod-receiver-token", "A_RECV_DEV": "a-dev-receiver-token",
          "B_RECV_PROD": "b-prod-receiver-token", "B_RECV_DEV": "b-dev-receiver-token"}


def fleet_yaml(urls: dict[str, str]) -> str:
    return f"""\
tenants:
  - name: a
    manifests: {{url: 'https://dev.azure.com/o/p/_git/a-manifests'}}
    flux:
      secretSetting: A_FLUX_KEY
      receivers:
        - {{cluster: a-prod, env: prod, url: "{urls['a-prod']}", secretSetting: A_RECV_PROD}}
        - {{cluster: a-dev, env: dev, url: "{urls['a-dev']}", secretSetting: A_RECV_DEV}}
  - name: b
    manifests: {{url: 'https://dev.azure.com/o/p/_git/b-manifests'}}
    flux:
      secretSetting: B_FLUX_KEY
      receivers:
        - {{cluster: b-prod, env: prod, url: "{urls['b-prod']}", secretSetting: B_RECV_PROD}}
        - {{cluster: b-dev, env: dev, url: "{urls['b-dev']}", secretSetting: B_RECV_DEV}}
  - name: c
    manifests: {{url: 'https://dev.azure.com/o/p/_git/c-manifests'}}
"""


SETTINGS = {"a-prod": "A_RECV_PROD", "a-dev": "A_RECV_DEV", "b-prod": "B_RECV_PROD", "b-dev": "B_RECV_DEV"}


@pytest.fixture
def stand_ins():
    """One stand-in Receiver per cluster, each with its cluster's token and the path Flux would give it."""
    made = {}
    try:
        for cluster, setting in SETTINGS.items():
            tenant = cluster.split("-")[0]
            receiver = StandInReceiver(TOKENS[setting], webhook_path(TOKENS[setting], tenant_receiver_name(tenant)))
            made[cluster] = receiver.__enter__()
        yield made
    finally:
        for receiver in made.values():
            receiver.__exit__(None, None, None)


@pytest.fixture
def fleet(door, monkeypatch, tmp_path, stand_ins):
    """Tenants a and b with two Receivers each, c with none; FLUX_RECEIVERS also set (a fleet must ignore it)."""
    urls = {cluster: r.url for cluster, r in stand_ins.items()}
    monkeypatch.setenv("FLEET_REPO_URL", bare_repo(tmp_path, {"fleet.yaml": fleet_yaml(urls)}, name="fleet"))
    monkeypatch.setenv("WORK_DIR", str(tmp_path / "work"))
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SHARED_RECV", "shared-receiver-token")
    monkeypatch.setenv("FLUX_RECEIVERS", f'[{{"cluster": "shared", "env": "prod", "url": "{urls["a-prod"]}", '
                                         f'"secretSetting": "SHARED_RECV"}}]')
    return door.rewire()


def notify(tenant: str, **fields) -> object:
    item = FluxNotify(event_id=f"flux:c0ffee@{tenant}", trace_id="c0ffee", commit="c0ffee" * 6, tenant=tenant,
                      **fields)
    return FluxNotifyJob(get_services(), Notifier(deadline=5.0, backoff=())).process([item])


def calls(stand_ins) -> dict[str, int]:
    return {cluster: len(r.calls) for cluster, r in stand_ins.items()}


def test_a_tenants_commit_wakes_its_own_clusters_only_with_its_own_tokens(fleet, stand_ins):
    result = notify("a")

    assert result.notified == ("a-dev", "a-prod") and result.failed == ()
    assert calls(stand_ins) == {"a-prod": 1, "a-dev": 1, "b-prod": 0, "b-dev": 0}
    for cluster in ("a-prod", "a-dev"):
        [call] = stand_ins[cluster].accepted()
        signature = call.headers["X-Signature"]
        assert validate_signature(signature, call.body, TOKENS[SETTINGS[cluster]].encode()) == ""
        for other in set(TOKENS) - {SETTINGS[cluster]}:   # no other cluster's token (nor tenant's) signs it
            assert validate_signature(signature, call.body, TOKENS[other].encode()) != ""


def test_the_other_tenant_is_woken_on_its_own_and_by_environment(fleet, stand_ins):
    result = notify("b", envs=("prod",))

    assert result.notified == ("b-prod",)
    assert calls(stand_ins) == {"a-prod": 0, "a-dev": 0, "b-prod": 1, "b-dev": 0}
    [call] = stand_ins["b-prod"].accepted()
    assert validate_signature(call.headers["X-Signature"], call.body, TOKENS["B_RECV_PROD"].encode()) == ""


def test_a_retry_naming_another_tenants_cluster_wakes_nothing(fleet, stand_ins):
    result = notify("b", clusters=("a-prod", "a-dev"), round=2)

    assert result.notified == () and result.failed == ()
    assert calls(stand_ins) == {"a-prod": 0, "a-dev": 0, "b-prod": 0, "b-dev": 0}


def test_a_tenant_without_receivers_wakes_nothing_even_with_flux_receivers_set(fleet, stand_ins):
    services = get_services()
    assert [r.cluster for r in services.settings.flux.receivers] == ["shared"]   # the app setting, loaded

    assert services.for_tenant("c").settings.flux.receivers == ()
    assert notify("c").notified == ()
    assert calls(stand_ins) == {"a-prod": 0, "a-dev": 0, "b-prod": 0, "b-dev": 0}


def test_each_view_carries_its_own_receivers_and_tokens(fleet):
    services = get_services()
    for tenant in ("a", "b"):
        receivers = services.for_tenant(tenant).settings.flux.receivers
        assert {r.cluster for r in receivers} == {f"{tenant}-prod", f"{tenant}-dev"}
        assert all(r.secret == TOKENS[SETTINGS[r.cluster]] for r in receivers)


def test_wakes_flux_is_per_tenant(fleet):
    services = get_services()

    assert _wakes_flux(services, "a") and _wakes_flux(services, "b")
    assert not _wakes_flux(services, "c")
    assert not _wakes_flux(services.for_tenant("c"), "c")


def test_a_tenants_manifest_commit_asks_flux_notify_for_that_tenant(fleet):
    """The generation run's follow-up names the run's tenant, so flux-notify wakes that tenant's receivers (an item
    naming `default` would be refused in this fleet, which has no such tenant)."""
    services = get_services()
    result = GenerationResult("h" * 40, "committed", "m" * 40, changed_paths=("prod/web.yaml",), tenant="b")

    [item] = GenerateJob(services).follow_ups(result)
    assert (item.tenant, item.envs, item.commit) == ("b", ("prod",), "m" * 40)
    assert GenerateJob(services).follow_ups(replace(result, tenant="c")) == ()   # c has no receivers


def test_without_a_fleet_flux_receivers_works_as_before(door, monkeypatch, stand_ins):
    monkeypatch.setenv("A_RECV_PROD", TOKENS["A_RECV_PROD"])
    monkeypatch.setenv("FLUX_RECEIVERS", f'[{{"cluster": "only", "env": "prod", "url": "{stand_ins["a-prod"].url}", '
                                         f'"secretSetting": "A_RECV_PROD"}}]')
    door.rewire()

    assert _wakes_flux(get_services(), "default")
    result = notify("default")

    assert result.notified == ("only",)
    assert calls(stand_ins) == {"a-prod": 1, "a-dev": 0, "b-prod": 0, "b-dev": 0}


def test_health_names_a_tenants_missing_receiver_secrets(fleet, monkeypatch, door):
    monkeypatch.delenv("B_RECV_DEV")
    services = door.rewire()

    body = check_health(lambda: services, storage_free_probes()).body

    assert body["tenants"]["a"]["fluxReceivers"] == {"clusters": ["a-prod", "a-dev"], "missingSecrets": []}
    assert body["tenants"]["b"]["fluxReceivers"] == {"clusters": ["b-prod", "b-dev"], "missingSecrets": ["B_RECV_DEV"]}
    assert "fluxReceivers" not in body["tenants"]["c"]
    assert any("tenant b:" in w and "B_RECV_DEV" in w and "b-dev" in w for w in body.get("warnings", []))
    assert not any("tenant a:" in w and "RECV" in w for w in body.get("warnings", []))
    assert all(token not in str(body) for token in TOKENS.values())
    assert any(w.startswith("FLUX_RECEIVERS is not used with a fleet") for w in body["warnings"])
    # the tenant's other receiver is still woken
    assert [r.cluster for r in services.for_tenant("b").settings.flux.receivers] == ["b-prod"]


def test_setup_prints_each_tenants_receivers_with_their_own_names_and_paths(fleet, monkeypatch, door):
    monkeypatch.delenv("B_RECV_DEV")
    services = door.rewire()
    out = io.StringIO()
    args = argparse.Namespace(flux_namespace="flux-system", flux_source="flux-system")

    cli._print_fleet_receivers(args, services, out)
    text = out.getvalue()

    assert "FLUX_RECEIVERS is not used with a fleet" in text
    for tenant, clusters in (("a", ("a-prod", "a-dev")), ("b", ("b-prod",))):
        name = tenant_receiver_name(tenant)
        for cluster in clusters:
            expected = webhook_path(TOKENS[SETTINGS[cluster]], name)
            assert (f"# tenant {tenant}, cluster {cluster}: url path matches the expected status.webhookPath "
                    f"{expected}") in text
        assert f"  name: {name}\n" in text and f"  name: {name}-token\n" in text
    assert "tenant b receiver b-dev: app setting B_RECV_DEV (its secretSetting) is not set" in text
    assert "# tenant b, cluster b-dev" not in text
    assert all(token not in text for token in TOKENS.values())


# -- fleet.yaml: the receivers' rules ---------------------------------------------------------------------------------

GOOD_URL = "https://flux.example/hook/" + "ab" * 32


def tenant(name: str, receivers: str, extra: str = "") -> str:
    return f"""\
  - name: {name}
    manifests: {{url: 'https://dev.azure.com/o/p/_git/{name}-manifests'}}
    credentials: {{patSetting: {name.upper()}_PAT}}
    flux:
      secretSetting: {name.upper()}_FLUX
      receivers:
{receivers}{extra}"""


def entry(cluster: str = "prod", url: str = GOOD_URL, setting: str = "A_RECV", env: str = "prod") -> str:
    return f"        - {{cluster: {cluster}, env: {env}, url: \"{url}\", secretSetting: {setting}}}\n"


def parse(*tenants: str):
    return parse_fleet(("tenants:\n" + "".join(tenants)).encode(), "test")


def refused(*tenants: str) -> str:
    with pytest.raises(FleetFileError) as caught:
        parse(*tenants)
    return str(caught.value)


def test_receivers_parse_with_loopback_http():
    fleet = parse(tenant("a", entry() + entry("dev", "http://127.0.0.1:8080/hook/x", "A_RECV_DEV", "dev")))

    [a] = fleet.tenants
    assert [(r.cluster, r.env, r.secret_setting) for r in a.flux_receivers] == [("prod", "prod", "A_RECV"),
                                                                                ("dev", "dev", "A_RECV_DEV")]
    assert a.flux_receivers[0].url == GOOD_URL


@pytest.mark.parametrize("bad, line, says", [
    (entry(url="http://flux.example/hook/x"), 8, "url must use https (http only for 127.0.0.1/localhost)"),
    (entry(url="https://u:p@flux.example/hook/x"), 8, "url must not carry credentials"),
    (entry(url="https://flux.example/other"), 8, "status.webhookPath"),
    (entry(url="https://flux.example/hook/x?a=1"), 8, "query or fragment"),
    (entry(cluster="Prod"), 8, "cluster must be a lowercase name"),
    (entry(env=".."), 8, "env must be the name of one top-level folder"),
    (entry(setting="'not a name'"), 8, "secretSetting must be the name of the app setting"),
    (entry(setting="FLUX_RECEIVERS"), 8, "one of the service's own settings"),
    (entry(setting="A_PAT"), 8, "already its patSetting"),
    (entry(setting="A_FLUX"), 8, "already its secretSetting"),
    (entry() + entry(url=GOOD_URL + "0", setting="A_RECV2"), 9, "names cluster prod twice"),
    (entry() + entry("dev", setting="A_RECV2"), 9, "is already named by this tenant"),
    (entry() + entry("dev", GOOD_URL + "0"), 9, "already its secretSetting"),
    ("        - {cluster: prod, env: prod, url: 'https://x/hook/y', secretSetting: S, name: t}\n", 8, "unknown key"),
    ("        - {cluster: prod, env: prod}\n", 8, "needs url, secretSetting"),
    ("        - 'prod'\n", 8, "must be a mapping"),
])
def test_a_bad_receiver_is_refused_with_its_line(bad, line, says):
    message = refused(tenant("a", bad))

    assert message.startswith(f"fleet.yaml:{line}: ") and says in message, message


def test_receivers_must_be_a_list():
    message = refused(tenant("a", "", extra="").replace("      receivers:\n", "      receivers: nope\n"))
    assert message.startswith("fleet.yaml:7: ") and "receivers must be a list" in message


def test_two_tenants_never_share_a_receiver_token_setting_or_url():
    a = tenant("a", entry())
    by_setting = refused(a, tenant("b", entry(url=GOOD_URL + "0", setting="A_RECV")))
    by_url = refused(a, tenant("b", entry(setting="B_RECV")))

    assert by_setting.startswith("fleet.yaml:15: ") and "already tenant a's" in by_setting
    assert by_url.startswith("fleet.yaml:15: ") and "already tenant a's" in by_url
    # the same cluster name in two tenants is fine: each tenant's list is its own
    assert len(parse(a, tenant("b", entry(url=GOOD_URL + "0", setting="B_RECV"))).tenants) == 2


def test_a_token_in_place_of_the_setting_name_is_refused_and_not_repeated():
    token = "Zx8Qw3Lp9Rt2Vb7Nm4Kd6Hs1Jf5Gc0Ya8Ue3Io"
    message = refused(tenant("a", entry(setting=token)))

    assert message.startswith("fleet.yaml:8: ") and token not in message
