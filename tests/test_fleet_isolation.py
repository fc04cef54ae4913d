"""Three tenants, one deployment: a push fans out per tenant (each its own delivery, HLD commit and trace), one
tenant's broken repo or pause leaves the others alone, Azure DevOps hooks reach the tenant owning the repository,
and a tenant's git calls carry its own credentials only.

The services run on the dict fakes of tests/fakes/ (queues, delivery journal, record stores); the last test wires
the same tenant views on Table storage (Azurite) to prove their per-tenant keys there."""
from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from core.adapters.storage import HLD_CHANGED, IMAGE_PUSHED, PR_REVIEW
from core.model.fleet import DEFAULT_TENANT, Fleet, ForeignRepository, RepoRef, Tenant, UnknownTenant
from core.model.workitems import ImagePushed, decode, encode
from core.settings import load_settings
from core.wiring import Services
from core.workers.runners import BumpJob, QueuedMessage, reason_of, settle
from devkit.gitrepos import bare_repo, commits, file_at
from tests.fakes.deliveries import FakeDeliveryJournal
from tests.fakes.env import NO_STORAGE
from tests.fakes.queues import AsyncFakeQueues, FakeQueues
from tests.fakes.records import FakeRecords

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ACR_SECRET, AZDO_SECRET = "acr-secret", "azdo-secret"
FRONTEND = "fabrikam.azurecr.io/fabrikam/frontend"
BACKEND = "fabrikam.azurecr.io/fabrikam/backend"


class FleetServices(Services):
    """The process's services with a fleet given by the test (fleet-def loads it from fleet.yaml)."""
    the_fleet: Fleet = Fleet(())

    @property
    def fleet(self) -> Fleet:
        return self.the_fleet


def fleet_services(tmp_path: Path, tenants: tuple[Tenant, ...], *, storage: str = "", **env: str) -> FleetServices:
    """On the fakes (a closed storage port behind them, so a store not faked fails at once); on Table storage when
    `storage` names a connection string."""
    settings = load_settings({"AzureWebJobsStorage": storage or NO_STORAGE, "ACR_WEBHOOK_SECRET": ACR_SECRET,
                              "AZDO_WEBHOOK_SECRET": AZDO_SECRET, "WRITE_MODE": "direct",
                              "WORK_DIR": str(tmp_path / "work"), "FLEET_REPO_URL": "file:///fleet-given-by-test",
                              **env})
    stores = {}
    if not storage:
        queues, journal = FakeQueues(), FakeDeliveryJournal()
        journal.reenqueue_after = settings.outbox_reenqueue_after
        stores = {"queues": queues, "async_queues": AsyncFakeQueues(queues), "deliveries": journal,
                  "async_deliveries": journal, **FakeRecords().stores()}
    services = FleetServices(settings, stores=stores)
    services.the_fleet = Fleet(tenants, "test")
    return services


def queued(services: Services, queue: str) -> list[str]:
    """The messages waiting on a work queue (the fake's)."""
    return services.stores["queues"].texts(queue)


def local_tenants(tmp_path: Path, **overrides: dict) -> tuple[Tenant, ...]:
    """a takes every image of the fabrikam registry, b its fabrikam/ ones, c the frontend only; each its own bare
    HLD and manifest repos."""
    images = {"a": ("fabrikam.azurecr.io/*",), "b": ("fabrikam.azurecr.io/fabrikam/*",), "c": (FRONTEND,)}
    tenants = []
    for name in "abc":
        base = tmp_path / name
        base.mkdir()
        hld = bare_repo(base, EXAMPLES / "hld", name="hld")
        manifests = bare_repo(base, EXAMPLES / "manifests", name="manifests")
        tenant = Tenant(name, manifests=RepoRef(manifests), hld=RepoRef(hld), images=images[name])
        tenants.append(replace(tenant, **overrides.get(name, {})))
    return tuple(tenants)


def acr_push(image: str, tag: str, event_id: str) -> bytes:
    host, _, repository = image.partition("/")
    return json.dumps({"id": event_id, "timestamp": datetime.now(timezone.utc).isoformat(), "action": "push",
                       "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                  "digest": "sha256:" + "4" * 64, "repository": repository, "tag": tag},
                       "request": {"host": host}}).encode()


def receive(services: Services, source: str, body: bytes):
    headers = {"content-type": "application/json"}
    if source == "azdo":
        headers["authorization"] = "Basic " + base64.b64encode(f"hook:{AZDO_SECRET}".encode()).decode()
    else:
        headers["authorization"] = f"Bearer {ACR_SECRET}"

    async def run():
        try:
            return await services.intake.receive(source, headers, {}, body)
        finally:
            await services.aclose()

    return asyncio.run(run())


def bump(services: Services, texts: list[str]):
    """One bump-queue run with these trigger messages (first deliveries)."""
    return settle(BumpJob(services), [QueuedMessage(f"m{i}", t, 1) for i, t in enumerate(texts)])


def hld_subject(tenant: Tenant) -> str:
    return commits(tenant.hld.url, "main")[0].subject


def tag_in(tenant: Tenant, service: str, env: str) -> str:
    text = file_at(tenant.hld.url, "main", f"fabrikam-project/{service}/{env}/config/common.yaml").decode()
    return text.split('tag: "')[1].split('"')[0]


# -- fan-out ----------------------------------------------------------------------------------------------------

def test_one_push_becomes_one_delivery_and_one_hld_commit_per_tenant(tmp_path):
    tenants = local_tenants(tmp_path)
    services = fleet_services(tmp_path, tenants)
    accepted = receive(services, "acr", acr_push(FRONTEND, "1.4.2", "push-1"))
    assert accepted.reply.status == 202
    assert accepted.reply.body["eventId"] == ["acr:push-1@a", "acr:push-1@b", "acr:push-1@c"]
    texts = accepted.outputs[IMAGE_PUSHED]
    items = [decode(t, IMAGE_PUSHED) for t in texts]
    assert [i.tenant for i in items] == ["a", "b", "c"]
    assert len({i.trace_id for i in items}) == 3          # each tenant's push has a trace of its own

    verdicts = bump(services, texts)
    assert all(v.error is None for v in verdicts)
    follow_ups = [f for v in verdicts for f in v.settled.follow_ups]
    assert sorted((f.queue, f.tenant) for f in follow_ups) == [(HLD_CHANGED, "a"), (HLD_CHANGED, "b"),
                                                                (HLD_CHANGED, "c")]
    for tenant in tenants:
        assert hld_subject(tenant) == "Bump 2 images: frontend/dev 1.4.2, frontend/prod 1.4.2"
        assert tag_in(tenant, "frontend", "prod") == "1.4.2"
    rows = services.trace.query(tenant="b")
    assert {r.tenant for r in rows} == {"b"} and {r.env for r in rows} == {"dev", "prod"}
    assert {r.trace_id for r in rows} == {items[1].trace_id}


def test_the_images_filter_decides_which_tenants_get_a_push(tmp_path):
    tenants = local_tenants(tmp_path)
    services = fleet_services(tmp_path, tenants)
    accepted = receive(services, "acr", acr_push(BACKEND, "2.1.0", "push-2"))
    assert accepted.reply.body["eventId"] == ["acr:push-2@a", "acr:push-2@b"]     # c takes the frontend only
    before_c = hld_subject(tenants[2])
    bump(services, accepted.outputs[IMAGE_PUSHED])
    assert tag_in(tenants[0], "backend", "dev") == tag_in(tenants[1], "backend", "dev") == "2.1.0"
    assert hld_subject(tenants[2]) == before_c

    nobody = receive(services, "acr", acr_push("other.azurecr.io/tools/lint", "1.0.0", "push-3"))
    assert nobody.reply.status == 200 and nobody.outputs == {}
    assert nobody.reply.body["ignored"] == "no tenant takes image other.azurecr.io/tools/lint"


def test_a_redelivered_push_is_a_duplicate_for_every_tenant(tmp_path):
    services = fleet_services(tmp_path, local_tenants(tmp_path))
    receive(services, "acr", acr_push(FRONTEND, "1.4.2", "push-4"))
    again = receive(services, "acr", acr_push(FRONTEND, "1.4.2", "push-4"))
    assert again.reply.status == 200 and again.reply.body["duplicate"] is True and again.outputs == {}


def test_replaying_one_tenants_delivery_enqueues_that_tenant_only(tmp_path):
    services = fleet_services(tmp_path, local_tenants(tmp_path))
    receive(services, "acr", acr_push(FRONTEND, "1.4.2", "push-5"))
    reply = services.intake.replay("acr:push-5@b")
    assert (reply.status, reply.body["eventId"]) == (202, "acr:push-5@b")
    [message] = queued(services, IMAGE_PUSHED)
    assert decode(message, IMAGE_PUSHED).tenant == "b"


# -- isolation --------------------------------------------------------------------------------------------------

def test_one_tenants_unreachable_repo_fails_its_items_only(tmp_path):
    tenants = local_tenants(tmp_path, b={"hld": RepoRef((tmp_path / "gone" / "hld.git").as_uri())})
    services = fleet_services(tmp_path, tenants)
    texts = receive(services, "acr", acr_push(FRONTEND, "1.4.2", "push-6")).outputs[IMAGE_PUSHED]
    texts += receive(services, "acr", acr_push(BACKEND, "2.1.0", "push-7")).outputs[IMAGE_PUSHED]
    by_tenant = {decode(t, IMAGE_PUSHED).tenant for t in texts}
    assert by_tenant == {"a", "b", "c"}

    verdicts = bump(services, texts)
    for text, verdict in zip(texts, verdicts):
        tenant = decode(text, IMAGE_PUSHED).tenant
        if tenant == "b":   # its own failure: retried by the host, then poisoned after maxDequeueCount
            assert verdict.error is not None or verdict.settled.poison, tenant
        else:
            assert verdict.error is None and not verdict.settled.poison, (tenant, verdict)
    assert tag_in(tenants[0], "frontend", "prod") == tag_in(tenants[2], "frontend", "prod") == "1.4.2"
    assert tag_in(tenants[0], "backend", "dev") == "2.1.0"
    assert hld_subject(tenants[0]).startswith("Bump")


def test_an_item_of_an_unknown_tenant_is_poisoned(tmp_path):
    services = fleet_services(tmp_path, local_tenants(tmp_path))
    text = receive(services, "acr", acr_push(FRONTEND, "1.4.2", "push-8")).outputs[IMAGE_PUSHED][0]
    forged = encode(replace(decode(text, IMAGE_PUSHED), tenant="mallory"))
    [verdict] = bump(services, [forged])
    [poisoned] = verdict.settled.poison
    assert json.loads(poisoned)["poisonReason"].startswith("UnknownTenant: no tenant named 'mallory'")


def test_a_tenant_view_refuses_repositories_of_other_tenants(tmp_path):
    tenants = local_tenants(tmp_path)
    services = fleet_services(tmp_path, tenants)
    view = services.for_tenant("a")
    assert view.workspace(tenants[0].hld.url, "main") is not None
    with pytest.raises(ForeignRepository, match="tenant 'a' does not own"):
        view.workspace(tenants[1].hld.url, "main")
    with pytest.raises(UnknownTenant):
        view.for_tenant("b")
    with pytest.raises(UnknownTenant):
        services.for_tenant("nobody")


def test_same_service_in_two_tenants_has_separate_working_copies_and_marks(tmp_path):
    tenants = local_tenants(tmp_path)
    services = fleet_services(tmp_path, tenants)
    a, b = services.for_tenant("a"), services.for_tenant("b")
    assert a.bump.workspace.workdir != b.bump.workspace.workdir
    assert a.work_base != b.work_base
    texts = receive(services, "acr", acr_push(FRONTEND, "1.4.2", "push-9")).outputs[IMAGE_PUSHED]
    bump(services, [t for t in texts if decode(t, IMAGE_PUSHED).tenant == "a"])
    marks = list(services.stores["high_water"].marks)
    assert len(marks) == 2 and {repo for repo, _ in marks} == {tenants[0].hld.url}   # a's marks; b's untouched
    assert all(services.high_water.get(tenants[1].hld.url, key) is None for _, key in marks)


# -- pause ------------------------------------------------------------------------------------------------------

def test_a_paused_tenant_takes_no_new_push_and_its_queued_items_are_poisoned_until_resumed(tmp_path):
    tenants = local_tenants(tmp_path)
    services = fleet_services(tmp_path, tenants)
    queued_before = receive(services, "acr", acr_push(FRONTEND, "1.4.2", "push-10")).outputs[IMAGE_PUSHED]

    services.the_fleet = Fleet(tuple(replace(t, paused=t.name == "c") for t in tenants), "test")
    during = receive(services, "acr", acr_push(BACKEND, "2.1.0", "push-11"))
    assert [decode(t, IMAGE_PUSHED).tenant for t in during.outputs[IMAGE_PUSHED]] == ["a", "b"]
    during = receive(services, "acr", acr_push(FRONTEND, "1.5.0", "push-12"))
    assert during.reply.status == 202 and during.reply.body["ignored"] == "tenant c is paused"

    verdicts = bump(services, queued_before)
    by_tenant = {decode(t, IMAGE_PUSHED).tenant: v for t, v in zip(queued_before, verdicts)}
    [poisoned] = by_tenant["c"].settled.poison
    assert json.loads(poisoned)["poisonReason"] == "TenantPaused: tenant 'c' is paused"
    assert not by_tenant["a"].settled.poison and tag_in(tenants[0], "frontend", "prod") == "1.4.2"
    assert tag_in(tenants[2], "frontend", "prod") != "1.4.2"

    services.the_fleet = Fleet(tenants, "test")           # resumed: the poisoned copy replays as it was
    [verdict] = bump(services, [poisoned])
    assert verdict.error is None and not verdict.settled.poison
    assert tag_in(tenants[2], "frontend", "prod") == "1.4.2"
    # the push c did not take while paused: a replay of c's share of it brings it (another tenant's share is journaled)
    reply = services.intake.replay("acr:push-12@c")
    assert (reply.status, reply.body["eventId"]) == (202, "acr:push-12@c")
    [message] = queued(services, IMAGE_PUSHED)
    assert (decode(message, IMAGE_PUSHED).tenant, decode(message, IMAGE_PUSHED).tag) == ("c", "1.5.0")
    assert services.intake.replay("acr:never@c").status == 404


# -- Azure DevOps hooks routed by repository ---------------------------------------------------------------------

AZDO_TENANTS = tuple(
    Tenant(name, manifests=RepoRef(f"https://dev.azure.com/{org}/{project}/_git/manifests"),
           hld=RepoRef(f"https://dev.azure.com/{org}/{project}/_git/hld"), write_mode="pull-request",
           azdo_org_url=f"https://dev.azure.com/{org}", azdo_project=project, pat_setting=f"PAT_{name.upper()}")
    for name, org, project in (("a", "contoso", "Alpha"), ("b", "fabrikam", "Fabrikam"), ("c", "fabrikam", "Gamma")))
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "deliveries"


def azdo_fixture(name: str, **resource) -> bytes:
    data = json.loads((FIXTURES / name).read_text())
    data["resource"].update(resource)
    return json.dumps(data).encode()


@pytest.mark.parametrize("project, owner", [("Alpha", "a"), ("Fabrikam", "b"), ("Gamma", "c")])
def test_pull_request_hooks_go_to_the_tenant_owning_the_repository(tmp_path, project, owner):
    services = fleet_services(tmp_path, AZDO_TENANTS)
    org = "contoso" if owner == "a" else "fabrikam"
    body = json.loads(azdo_fixture("azdo_pr_created.json"))
    body["resource"]["repository"].update(remoteUrl=f"https://{org}@dev.azure.com/{org}/{project}/_git/hld",
                                          project={"id": "p", "name": project})
    accepted = receive(services, "azdo", json.dumps(body).encode())
    assert accepted.reply.status == 202
    [text] = accepted.outputs[PR_REVIEW]
    assert decode(text, PR_REVIEW).tenant == owner


def test_build_hooks_are_routed_by_repository_name_within_the_project(tmp_path):
    services = fleet_services(tmp_path, AZDO_TENANTS)
    body = azdo_fixture("azdo_build_complete.json", project={"id": "g", "name": "Gamma"})
    [text] = receive(services, "azdo", body).outputs[PR_REVIEW]
    assert decode(text, PR_REVIEW).tenant == "c"


def test_a_push_to_a_tenants_hld_asks_that_tenant_for_generation(tmp_path):
    services = fleet_services(tmp_path, AZDO_TENANTS)
    body = json.loads(azdo_fixture("azdo_push.json"))
    body["resource"]["repository"]["remoteUrl"] = "https://dev.azure.com/contoso/Alpha/_git/hld"
    [text] = receive(services, "azdo", json.dumps(body).encode()).outputs[HLD_CHANGED]
    assert decode(text, HLD_CHANGED).tenant == "a"


def test_hooks_for_a_repository_no_tenant_owns_are_ignored(tmp_path):
    services = fleet_services(tmp_path, AZDO_TENANTS)
    body = json.loads(azdo_fixture("azdo_pr_created.json"))
    body["resource"]["repository"]["remoteUrl"] = "https://dev.azure.com/fabrikam/Other/_git/hld"
    accepted = receive(services, "azdo", json.dumps(body).encode())
    assert accepted.reply.status == 200 and accepted.outputs == {}
    assert "other than the configured HLD or manifest repos" in accepted.reply.body["ignored"]
    build = azdo_fixture("azdo_build_complete.json", project={"id": "x", "name": "Unknown"})
    assert receive(services, "azdo", build).reply.status == 200


# -- credentials ---------------------------------------------------------------------------------------------------

class FakeCredential:
    def get_token(self, *scopes):
        return type("Token", (), {"token": "managed-identity-token"})()


def test_each_tenants_git_calls_carry_its_own_credentials_only(tmp_path, monkeypatch):
    from core.adapters import git_workspace
    from core.adapters.git_runner import GitResult, GitRunner

    tenants = tuple(replace(t, pat_setting="") if t.name == "c" else t for t in AZDO_TENANTS)
    services = fleet_services(tmp_path, tenants, PAT_A="pat-of-a", PAT_B="pat-of-b",
                              AZDO_PAT="the-apps-own-pat", AZDO_ORG_URL="https://dev.azure.com/x",
                              AZDO_PROJECT="x")
    services.__dict__["_credential"] = FakeCredential()
    calls: list[tuple[list[str], str | None]] = []

    def run(self, *args, network=False, **kwargs):   # every git command of the workspace goes through the runner
        if network:
            calls.append(([a for a in args if "://" in a], self._auth_header() if self._auth_header else None))
        return GitResult(128, "", "fatal: unable to access (test)")

    monkeypatch.setattr(GitRunner, "run", run)
    expected = {"a": "Basic " + base64.b64encode(b":pat-of-a").decode(),
                "b": "Basic " + base64.b64encode(b":pat-of-b").decode(),
                "c": "Bearer managed-identity-token"}
    for tenant in tenants:
        view = services.for_tenant(tenant.name)
        assert view.settings.azdo_pat == {"a": "pat-of-a", "b": "pat-of-b", "c": ""}[tenant.name]
        calls.clear()
        with pytest.raises(git_workspace.GitError):
            view.bump.process([ImagePushed("acr:x", "t", "fabrikam.azurecr.io", "fabrikam/frontend", "1.0.0",
                                           "sha256:" + "1" * 64, "m", "", "x", tenant=tenant.name)])
        headers = {header for _, header in calls}
        assert calls and all(tenant.owns_repo(url) for urls, _ in calls for url in urls)
        assert headers == {expected[tenant.name]}, tenant.name
    gateway_pats = {t.name: services.for_tenant(t.name).settings.azdo_pat for t in tenants}
    assert "the-apps-own-pat" not in gateway_pats.values()


def test_a_tenant_whose_pat_setting_is_empty_is_refused_not_given_the_managed_identity(tmp_path):
    from core.settings import SettingsError

    tenants = tuple(replace(t, pat_setting="PAT_" + t.name.upper()) for t in local_tenants(tmp_path))
    services = fleet_services(tmp_path, tenants, PAT_A="pat-of-a", PAT_C="pat-of-c")
    with pytest.raises(SettingsError, match="app setting PAT_B \\(tenant b's PAT\\) is not set"):
        services.for_tenant("b")
    texts = receive(services, "acr", acr_push(FRONTEND, "1.4.2", "push-15")).outputs[IMAGE_PUSHED]
    verdicts = dict(zip((decode(t, IMAGE_PUSHED).tenant for t in texts), bump(services, texts)))
    assert "PAT_B" in json.loads(verdicts["b"].settled.poison[0])["poisonReason"]
    assert tag_in(tenants[0], "frontend", "prod") == tag_in(tenants[2], "frontend", "prod") == "1.4.2"


def test_the_app_settings_are_tenant_default_unchanged(door):
    from core.wiring import get_services

    services = get_services()
    assert services.fleet.names == (DEFAULT_TENANT,)
    assert services.for_tenant(DEFAULT_TENANT) is services
    assert services.for_work(DEFAULT_TENANT) is services


# -- filters --------------------------------------------------------------------------------------------------------

def test_the_trace_the_cli_and_the_dashboard_filter_by_tenant(tmp_path):
    from core.ops.cli import _parser, deployments
    from core.ops.dashboard import _matches, parse_filters

    services = fleet_services(tmp_path, local_tenants(tmp_path))
    bump(services, receive(services, "acr", acr_push(FRONTEND, "1.4.2", "push-13")).outputs[IMAGE_PUSHED])
    every = deployments(services.trace, services.review_records)
    assert sorted(d.record.tenant for d in every) == ["a", "a", "b", "b", "c", "c"]
    rows = deployments(services.trace, services.review_records, tenant="c")
    assert len(rows) == 2 and {d.record.tenant for d in rows} == {"c"}
    filters = parse_filters({"tenant": "a"})
    assert filters.as_dict()["tenant"] == "a"
    assert [d.record.tenant for d in every if _matches(d.record, "", filters)] == ["a", "a"]
    assert _parser().parse_args(["trace", "--tenant", "b"]).tenant == "b"


def test_a_tenants_view_of_the_trace_holds_its_own_records_only(tmp_path):
    """What promotion, cluster feedback and generation read through a tenant's services: never another's pushes."""
    services = fleet_services(tmp_path, local_tenants(tmp_path))
    texts = receive(services, "acr", acr_push(FRONTEND, "1.4.2", "push-14")).outputs[IMAGE_PUSHED]
    bump(services, texts)
    trace_of_b = decode(texts[1], IMAGE_PUSHED).trace_id
    a, b = services.for_tenant("a").trace, services.for_tenant("b").trace
    assert {r.tenant for r in a.query(service="frontend")} == {"a"}
    assert a.rows_for_trace(trace_of_b) == [] and len(b.rows_for_trace(trace_of_b)) == 2
    services.trace.record(trace_of_b, "manifest:x", "manifest-commit", actor="test", tenant="b",
                          fields={"manifestCommitId": "c" * 40})
    assert a.with_manifest_commit() == [] and len(b.with_manifest_commit()) == 1


@pytest.mark.parametrize("stores", ["fake", "table"])
def test_tenant_views_keep_pauses_claims_and_review_records_apart(tmp_path, request, stores):
    """What a tenant's promoter, bump and reviewer use: its own keys, on the fakes and on Table storage (the one
    Azurite case here: the wiring of the Table stores' tenant views)."""
    from core.adapters.review_records import ReviewRecord

    storage = request.getfixturevalue("storage") if stores == "table" else None
    services = fleet_services(tmp_path, local_tenants(tmp_path),
                              storage=request.getfixturevalue("azurite") if storage else "")
    a, b = services.for_tenant("a"), services.for_tenant("b")
    a.pauses.pause("frontend", "prod", "a person rolled back", "1.0.0")
    assert a.pauses.reason("frontend", "prod") and not b.pauses.reason("frontend", "prod")
    assert not services.pauses.reason("frontend", "prod")
    assert [p["tenant"] for p in services.pauses.listed()] == ["a"]
    assert not b.pauses.resume("frontend", "prod") and a.pauses.resume("frontend", "prod")
    assert a.claims.claim("frontend", "prod", "1.2.0", "t1")
    assert b.claims.claim("frontend", "prod", "1.2.0", "t2")      # not taken by a's claim
    assert not a.claims.claim("frontend", "prod", "1.2.0", "t3")
    assert not services.claims.claimed("frontend", "prod", "1.2.0")
    at = datetime(2026, 11, 30, tzinfo=timezone.utc)
    a.review_records.write(ReviewRecord(7, "hld", 1, ("patchOnly",), (), "approved", at))
    assert [r.action for r in a.review_records.for_pr(7)] == ["approved"]
    assert b.review_records.for_pr(7) == [] and services.review_records.for_pr(7) == []


def test_the_promotion_timer_evaluates_every_active_tenant_despite_one_failing(tmp_path, monkeypatch):
    from core.workers import promoter as promotion

    tenants = local_tenants(tmp_path, c={"paused": True})
    services = fleet_services(tmp_path, tenants)
    seen = []

    class Promoter:
        def __init__(self, tenant):
            self.tenant = tenant

        def evaluate(self):
            seen.append(self.tenant)
            if self.tenant == "a":
                raise RuntimeError("a's repo is gone")
            return [type("Evaluated", (), {"promoted": True})()]

    monkeypatch.setattr(promotion, "promoter_for", lambda view: Promoter(view.tenant))
    with pytest.raises(RuntimeError, match="a's repo is gone"):
        promotion.promote_fleet(services)
    assert seen == ["a", "b"]                                  # b after a's failure; c is paused
