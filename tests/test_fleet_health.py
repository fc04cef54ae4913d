"""Health per tenant (repos with the tenant's own credentials, the PAT's app setting, expiry) and the fleet's
source and last load error, on Azurite with a real fleet repository and tenant repos (local bare repos)."""
from __future__ import annotations

import json
from datetime import date

import pytest

from core.ops.health import HealthProbes, check_health
from core.settings import load_settings
from core.wiring import Services
from devkit.gitrepos import bare_repo, branches, push_files

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


def services_for(azurite: str, tmp_path, **env: str) -> Services:
    values = {"AzureWebJobsStorage": azurite, "WORK_DIR": str(tmp_path / "work"), "ALPHA_PAT": ALPHA_PAT,
              "GAMMA_PAT": GAMMA_PAT, **env}
    return Services(load_settings(values))


def health(services: Services) -> tuple[int, dict]:
    report = check_health(lambda: services, HealthProbes(today=lambda: TODAY))
    text = json.dumps(report.body)
    assert ALPHA_PAT not in text and GAMMA_PAT not in text
    return report.status, report.body


def test_each_tenant_reports_its_repos_and_credentials(azurite, tmp_path, repos):
    fleet_repo = bare_repo(tmp_path, {"fleet.yaml": fleet_text(repos)}, name="fleet")
    status, body = health(services_for(azurite, tmp_path, FLEET_REPO_URL=fleet_repo))

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


def test_an_expired_pat_is_flagged(azurite, tmp_path, repos):
    fleet_repo = bare_repo(tmp_path, {"fleet.yaml": fleet_text(repos, gamma_expires="2027-03-01")}, name="fleet")
    _, body = health(services_for(azurite, tmp_path, FLEET_REPO_URL=fleet_repo))
    assert body["tenants"]["gamma"]["credentials"]["expiresInDays"] == -19
    assert "tenant gamma: the PAT in GAMMA_PAT expired on 2027-03-01" in body["warnings"]


def test_a_refused_fleet_commit_is_reported_and_the_last_good_one_served(azurite, tmp_path, repos):
    fleet_repo = bare_repo(tmp_path, {"fleet.yaml": fleet_text(repos)}, name="fleet")
    good = branches(fleet_repo)["main"]
    services = services_for(azurite, tmp_path, FLEET_REPO_URL=fleet_repo)
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


def test_no_fleet_at_all_is_a_failure(azurite, tmp_path):
    fleet_repo = bare_repo(tmp_path, {"fleet.yaml": "tenants: []\n"}, name="fleet")
    status, body = health(services_for(azurite, tmp_path, FLEET_REPO_URL=fleet_repo))
    assert status == 503
    assert any(f.startswith(f"fleet: no fleet loaded from {fleet_repo}@main: fleet.yaml:1: tenants is empty")
               for f in body["failing"])
    assert body["fleet"]["commit"] is None and "tenants" not in body


def test_without_a_fleet_repo_the_default_tenant_shows_its_credentials(azurite, tmp_path, repos):
    services = services_for(azurite, tmp_path, MANIFEST_REPO_URL=repos["beta-manifests"], AZDO_PAT="deploy-pat-9")
    status, body = health(services)
    assert status == 200 and "fleet" not in body
    assert body["tenants"] == {"default": {
        "paused": False, "writeMode": "direct",
        "repos": {"manifests": {"branch": "main", "reachable": True,
                                "head": branches(repos["beta-manifests"])["main"]}},
        "credentials": {"kind": "pat", "setting": "AZDO_PAT", "present": True}}}
    assert "deploy-pat-9" not in json.dumps(body)
