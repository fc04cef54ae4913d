"""Health per tenant (repos with the tenant's own credentials, the PAT's app setting, expiry) and the fleet's
source and last load error, with a real fleet repository and tenant repos (local bare repos); the stores are the
dict fakes and the store probes answer healthy (storage's own checks are tests/test_health.py's)."""
from __future__ import annotations

import json
from datetime import date

import pytest

from core.ops.health import check_health
from core.settings import load_settings
from core.wiring import Services
from devkit.gitrepos import bare_repo, branches, push_files
from tests.fakes.deliveries import FakeDeliveryJournal
from tests.fakes.env import NO_STORAGE
from tests.fakes.probes import storage_free_probes
from tests.fakes.queues import FakeQueues
from tests.fakes.records import FakeRecords

TODAY = date(2027, 3, 20)
ALPHA_PAT = "alpha-pat-value-1"
GAMMA_PAT = "gamma-pat-value-3"


@pytest.fixture
def repos(tmp_path) -> dict[str, str]:
    made = {name: bare_repo(tmp_path, {"README.md": f"{name}\n"}, name=name)
            for name in ("alpha-hld", "alpha-manifests", "beta-manifests", "gamma-manifests", "delta-manifests")}
    made["delta-hld"] = (tmp_path / "missing.git").resolve().as_uri()   # nothing there: unreachable
    return made


def fleet_text(repos: dict[str, str], gamma_expires: str = "2027-03-25") -> str:
    return f"""tenants:
  - name: alpha
    hld: {{url: "{repos['alpha-hld']}"}}
    manifests: {{url: "{repos['alpha-manifests']}"}}
    credentials: {{patSetting: ALPHA_PAT, expires: 2027-06-30}}
  - name: beta
    manifests: {{url: "{repos['beta-manifests']}"}}
    credentials: {{patSetting: BETA_PAT}}
  - name: gamma
    manifests: {{url: "{repos['gamma-manifests']}"}}
    credentials: {{patSetting: GAMMA_PAT, expires: {gamma_expires}}}
    paused: true
  - name: delta
    hld: {{url: "{repos['delta-hld']}"}}
    manifests: {{url: "{repos['delta-manifests']}"}}
    credentials: {{identity: managed}}
"""


def services_for(tmp_path, **env: str) -> Services:
    values = {"AzureWebJobsStorage": NO_STORAGE, "WORK_DIR": str(tmp_path / "work"), "ALPHA_PAT": ALPHA_PAT,
              "GAMMA_PAT": GAMMA_PAT, **env}
    return Services(load_settings(values), stores={**FakeRecords().stores(), "queues": FakeQueues(),
                                                   "deliveries": FakeDeliveryJournal()})


def health(services: Services) -> tuple[int, dict]:
    report = check_health(lambda: services, storage_free_probes(today=lambda: TODAY))
    text = json.dumps(report.body)
    assert ALPHA_PAT not in text and GAMMA_PAT not in text
    return report.status, report.body


def test_each_tenant_reports_its_repos_and_credentials(tmp_path, repos):
    fleet_repo = bare_repo(tmp_path, {"fleet.yaml": fleet_text(repos)}, name="fleet")
    status, body = health(services_for(tmp_path, FLEET_REPO_URL=fleet_repo))

    assert status == 200, body.get("failing")   # one tenant's trouble does not make the deployment unhealthy
    assert body["fleet"] == {"source": fleet_repo, "branch": "main", "commit": branches(fleet_repo)["main"],
                             "loadedAt": body["fleet"]["loadedAt"]}
    tenants = body["tenants"]
    assert list(tenants) == ["alpha", "beta", "gamma", "delta"]
    assert tenants["alpha"] == {
        "paused": False, "writeMode": "direct",
        "repos": {"hld": {"branch": "main", "reachable": True, "head": branches(repos["alpha-hld"])["main"]},
                  "manifests": {"branch": "main", "reachable": True,
                                "head": branches(repos["alpha-manifests"])["main"]}},
        "credentials": {"kind": "pat", "setting": "ALPHA_PAT", "present": True, "expires": "2027-06-30",
                        "expiresInDays": 102, "expiring": False}}
    assert tenants["beta"]["credentials"] == {"kind": "pat", "setting": "BETA_PAT", "present": False}
    assert tenants["beta"]["repos"] == {"manifests": {"branch": "main", "reachable": None}}
    assert tenants["gamma"]["credentials"]["expiring"] is True and tenants["gamma"]["paused"] is True
    assert tenants["delta"]["credentials"] == {"kind": "managed-identity"}
    assert tenants["delta"]["repos"]["hld"]["reachable"] is False
    assert tenants["delta"]["repos"]["manifests"]["reachable"] is True

    warnings = body["warnings"]
    assert "tenant beta: app setting BETA_PAT (its PAT) is not set: its repos cannot be read or written" in warnings
    assert ("tenant gamma: the PAT in GAMMA_PAT expires in 5 day(s), on 2027-03-25: renew it and update the "
            "setting (and expires)") in warnings
    assert any(w.startswith("tenant delta: hld repo: ") for w in warnings)
    assert not any(w.startswith("tenant alpha") for w in warnings)


def test_an_expired_pat_is_flagged(tmp_path, repos):
    fleet_repo = bare_repo(tmp_path, {"fleet.yaml": fleet_text(repos, gamma_expires="2027-03-01")}, name="fleet")
    _, body = health(services_for(tmp_path, FLEET_REPO_URL=fleet_repo))
    assert body["tenants"]["gamma"]["credentials"]["expiresInDays"] == -19
    assert "tenant gamma: the PAT in GAMMA_PAT expired on 2027-03-01" in body["warnings"]


def test_a_refused_fleet_commit_is_reported_and_the_last_good_one_served(tmp_path, repos):
    fleet_repo = bare_repo(tmp_path, {"fleet.yaml": fleet_text(repos)}, name="fleet")
    good = branches(fleet_repo)["main"]
    services = services_for(tmp_path, FLEET_REPO_URL=fleet_repo)
    services.fleet
    bad = push_files(fleet_repo, "main", {"fleet.yaml": fleet_text(repos).replace("ALPHA_PAT", "GAMMA_PAT", 1)},
                     "share a PAT")
    services.fleet_source.reload()

    status, body = health(services)
    assert status == 200
    assert body["fleet"]["commit"] == good and body["fleet"]["errorCommit"] == bad
    assert body["fleet"]["error"].startswith("fleet.yaml:11: tenant gamma.credentials.patSetting GAMMA_PAT is "
                                             "already tenant alpha's")
    assert f"fleet: commit {bad[:12]} refused, still serving {good[:12]}: {body['fleet']['error']}" in body["warnings"]
    assert list(body["tenants"]) == ["alpha", "beta", "gamma", "delta"]


def test_no_fleet_at_all_is_a_failure(tmp_path):
    fleet_repo = bare_repo(tmp_path, {"fleet.yaml": "tenants: []\n"}, name="fleet")
    status, body = health(services_for(tmp_path, FLEET_REPO_URL=fleet_repo))
    assert status == 503
    assert any(f.startswith(f"fleet: no fleet loaded from {fleet_repo}@main: fleet.yaml:1: tenants is empty")
               for f in body["failing"])
    assert body["fleet"]["commit"] is None and "tenants" not in body


def test_without_a_fleet_repo_the_default_tenant_shows_its_credentials(tmp_path, repos):
    services = services_for(tmp_path, MANIFEST_REPO_URL=repos["beta-manifests"], AZDO_PAT="deploy-pat-9")
    status, body = health(services)
    assert status == 200 and "fleet" not in body
    assert body["tenants"] == {"default": {
        "paused": False, "writeMode": "direct",
        "repos": {"manifests": {"branch": "main", "reachable": True,
                                "head": branches(repos["beta-manifests"])["main"]}},
        "credentials": {"kind": "pat", "setting": "AZDO_PAT", "present": True}}}
    assert "deploy-pat-9" not in json.dumps(body)


# ---------------------------------------------------------------------------------------------- setup per tenant

import base64  # noqa: E402
import io  # noqa: E402

from core.errors import Permanent  # noqa: E402
from core.model.fleet import Fleet, RepoRef, Tenant  # noqa: E402
from core.ops import cli  # noqa: E402
from core.ops.hook_setup import setup_fleet  # noqa: E402
from tests.azdo_fake import ORG, PAT, PROJECT, PROJECT_ID, azdo  # noqa: E402,F401  (the fixture)

BASE = "https://autopilot-func.azurewebsites.net"
HOOK_SECRET = "hook-secret-fleet"


class FakeGateway:
    """Subscriptions of one organization (shared by the gateways of its projects), repositories by name."""

    def __init__(self, store: dict, project_id: str, repos: dict[str, str]):
        self.store, self._project_id, self.repos = store, project_id, repos

    def project_id(self) -> str:
        return self._project_id

    def repository_id(self, name_or_id: str) -> str:
        return self.repos[name_or_id]

    def list_subscriptions(self) -> list[dict]:
        return [dict(s) for s in self.store.values()]

    def create_subscription(self, body: dict) -> dict:
        created = {**body, "id": f"sub-{len(self.store) + 1}"}
        self.store[created["id"]] = created
        return created

    def replace_subscription(self, subscription_id: str, body: dict) -> dict:
        self.store[subscription_id] = {**body, "id": subscription_id}
        return self.store[subscription_id]


def azdo_tenant(name: str, org: str, project: str, hld: bool = True, **kwargs) -> Tenant:
    return Tenant(name, manifests=RepoRef(f"{org}/{project}/_git/{name}-manifests", "deploy"),
                  hld=RepoRef(f"{org}/{project}/_git/{name}-hld") if hld else None,
                  azdo_org_url=org, azdo_project=project, **kwargs)


def test_setup_creates_each_tenants_hooks_in_its_own_project_with_its_own_gateway():
    contoso_org, fabrikam_org = {}, {}
    gateways = {
        "contoso": FakeGateway(contoso_org, "p-contoso", {"contoso-hld": "r-ch", "contoso-manifests": "r-cm"}),
        "fabrikam": FakeGateway(fabrikam_org, "p-fab", {"fabrikam-manifests": "r-fm"}),
        "tailspin": FakeGateway(fabrikam_org, "p-fab", {"tailspin-hld": "r-th", "tailspin-manifests": "r-tm"}),
    }
    fleet = Fleet((azdo_tenant("contoso", "https://dev.azure.com/contoso", "gitops"),
                   azdo_tenant("fabrikam", "https://dev.azure.com/fabrikam", "ops", hld=False, paused=True),
                   azdo_tenant("tailspin", "https://dev.azure.com/fabrikam", "ops"),
                   Tenant("local", manifests=RepoRef("file:///srv/m.git")),
                   azdo_tenant("broken", "https://dev.azure.com/broken", "x", pat_setting="BROKEN_PAT")))
    asked = []

    def gateway_for(tenant: Tenant):
        asked.append(tenant.name)
        if tenant.name == "broken":
            raise cli.HookSetupError("app setting BROKEN_PAT (tenant broken's PAT) is not set")
        return gateways[tenant.name]

    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "AZDO_WEBHOOK_SECRET": HOOK_SECRET,
                              "FLEET_REPO_URL": "https://dev.azure.com/platform/ops/_git/fleet"})
    fleet_store: dict = {}
    fleet_gateway = FakeGateway(fleet_store, "p-platform", {"fleet": "r-fleet"})
    results = setup_fleet(fleet, gateway_for, settings, base_url=BASE, fleet_gateway=fleet_gateway)

    assert asked == ["contoso", "fabrikam", "tailspin", "broken"]       # local has no azureDevOps: not asked
    by_scope = {r.scope: r for r in results}
    assert by_scope["tenant local"].skipped == "no azureDevOps in fleet.yaml: no service hooks"
    assert by_scope["tenant broken"].error == "app setting BROKEN_PAT (tenant broken's PAT) is not set"
    assert by_scope["tenant contoso"].result.count("create") == 8       # 4 on the HLD, 3 on manifests, build
    assert by_scope["tenant fabrikam"].result.count("create") == 4      # light-weight: manifests PRs + build
    assert by_scope["tenant tailspin"].result.count("create") == 7      # shares fabrikam's build subscription
    assert by_scope["tenant tailspin"].result.count("unchanged") == 1

    def made(store):
        return sorted((s["eventType"], s["publisherInputs"]["projectId"], s["publisherInputs"].get("repository", ""))
                      for s in store.values())
    assert {r for _, _, r in made(contoso_org)} == {"r-ch", "r-cm", ""}
    assert {p for _, p, _ in made(fabrikam_org)} == {"p-fab"}
    assert {r for _, _, r in made(fabrikam_org)} == {"r-fm", "r-th", "r-tm", ""}
    assert made(fleet_store) == [("git.push", "p-platform", "r-fleet")]    # no project-wide build hook there
    assert fleet_store["sub-1"]["publisherInputs"]["branch"] == "main"
    assert all(s["consumerInputs"]["basicAuthPassword"] == HOOK_SECRET
               for store in (contoso_org, fabrikam_org, fleet_store) for s in store.values())

    again = setup_fleet(fleet, gateway_for, settings, base_url=BASE, fleet_gateway=fleet_gateway)
    assert all(r.result.count("create") == r.result.count("update") == 0 for r in again if r.result)


def test_cli_setup_uses_each_tenants_own_pat(azdo, tmp_path, monkeypatch):  # noqa: F811
    hld, manifests = azdo.add_repo("fab-hld"), azdo.add_repo("fab-manifests")
    fleet_repo_in_azdo = azdo.add_repo("fleet")
    fleet_repo = bare_repo(tmp_path, {"fleet.yaml": f"""tenants:
  - name: fab
    hld: {{url: "{ORG}/{PROJECT}/_git/fab-hld"}}
    manifests: {{url: "{ORG}/{PROJECT}/_git/fab-manifests"}}
    azureDevOps: {{org: "{ORG}", project: {PROJECT}}}
    credentials: {{patSetting: FAB_PAT}}
  - name: solo
    manifests: {{url: "file:///srv/solo.git"}}
"""}, name="fleet")
    for name, value in {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "AZDO_WEBHOOK_SECRET": HOOK_SECRET,
                        "FLEET_REPO_URL": fleet_repo, "WORK_DIR": str(tmp_path / "work"), "AZDO_ORG_URL": ORG,
                        "AZDO_PROJECT": PROJECT, "AZDO_PAT": "deployment-pat-0", "FAB_PAT": PAT}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()

    assert cli.main(["setup", "--url", BASE, "--function-key", ""], out, err) == 0, err.getvalue()

    text = out.getvalue()
    assert "tenant fab:\n" in text and "tenant solo: skipped: no azureDevOps in fleet.yaml" in text
    assert "fleet repo:\n" in text
    posts = azdo.find_calls("POST", "/hooks/subscriptions$")
    fab_auth = "Basic " + base64.b64encode(f":{PAT}".encode()).decode()
    deployment_auth = "Basic " + base64.b64encode(b":deployment-pat-0").decode()
    tenant_posts = [p for p in posts if p.body["publisherInputs"].get("repository") != fleet_repo_in_azdo.id]
    assert len(tenant_posts) == 8 and all(p.headers["Authorization"] == fab_auth for p in tenant_posts)
    (fleet_post,) = [p for p in posts if p.body["publisherInputs"].get("repository") == fleet_repo_in_azdo.id]
    assert fleet_post.body["eventType"] == "git.push" and fleet_post.headers["Authorization"] == deployment_auth
    assert {p.body["publisherInputs"]["projectId"] for p in posts} == {PROJECT_ID}
    assert {hld.id, manifests.id} <= {p.body["publisherInputs"].get("repository") for p in tenant_posts}
    assert PAT not in text and "deployment-pat-0" not in text


def test_cli_setup_reports_a_tenant_without_its_pat_setting(azdo, tmp_path, monkeypatch):  # noqa: F811
    azdo.add_repo("fab-manifests")
    fleet_repo = bare_repo(tmp_path, {"fleet.yaml": f"""tenants:
  - name: fab
    manifests: {{url: "{ORG}/{PROJECT}/_git/fab-manifests"}}
    azureDevOps: {{org: "{ORG}", project: {PROJECT}}}
    credentials: {{patSetting: FAB_PAT}}
"""}, name="fleet")
    for name, value in {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "AZDO_WEBHOOK_SECRET": HOOK_SECRET,
                        "FLEET_REPO_URL": fleet_repo, "WORK_DIR": str(tmp_path / "work")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FAB_PAT", raising=False)
    monkeypatch.delenv("AZDO_ORG_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()

    assert cli.main(["setup", "--url", BASE], out, err) == 1
    assert "tenant fab: FAILED: app setting FAB_PAT (tenant fab's PAT) is not set" in out.getvalue()
    assert "fleet repo: skipped: AZDO_ORG_URL is not set" in out.getvalue()
    assert err.getvalue().strip() == "error: setup failed for tenant fab; the others are set up"
    assert azdo.find_calls("POST", "/hooks/subscriptions$") == []
    assert issubclass(cli.HookSetupError, Permanent)
