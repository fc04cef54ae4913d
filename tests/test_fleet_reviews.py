"""Review decisions in a fleet: PR numbers are per Azure DevOps organization, so two tenants' PR 7 are two pull
requests. Each tenant's reviewer records under its own keys, and every reader of a trace record (the CLI's
deployments, /api/ops/deployments, the dashboard) shows the decisions of that record's tenant's PR only."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path

import azure.functions as func
import pytest

from core.adapters.review_records import ReviewRecord, RuleFailure
from core.model.fleet import Fleet, RepoRef, Tenant
from core.model.trace_record import TraceStage
from core.ops.cli import deployments
from core.settings import load_settings
from core.wiring import Services, install_services, reset_services
from tests.fakes.env import NO_STORAGE
from tests.fakes.records import FakeRecords

AT = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)
TENANTS = tuple(
    Tenant(name, manifests=RepoRef(f"https://dev.azure.com/{org}/Fabrikam/_git/manifests"),
           hld=RepoRef(f"https://dev.azure.com/{org}/Fabrikam/_git/hld"), write_mode="pull-request",
           azdo_org_url=f"https://dev.azure.com/{org}", azdo_project="Fabrikam", pat_setting=f"PAT_{name.upper()}")
    for name, org in (("a", "contoso"), ("b", "fabrikam")))


class FleetServices(Services):
    @property
    def fleet(self) -> Fleet:
        return Fleet(TENANTS, "test")


@pytest.fixture
def services(tmp_path: Path):
    settings = load_settings({"AzureWebJobsStorage": NO_STORAGE, "WORK_DIR": str(tmp_path / "work"),
                              "FLEET_REPO_URL": "file:///fleet-given-by-test", "PAT_A": "pat-a", "PAT_B": "pat-b"})
    services = FleetServices(settings, stores=FakeRecords().stores())
    for name, action, failed in (("a", "approved", ()), ("b", "ineligible", (RuleFailure("patchOnly", "minor"),))):
        # what each tenant's reviewer writes: through its own services' store
        services.for_tenant(name).reviewer.records.write(ReviewRecord(
            pr=7, repository="hld", iteration=1, passed=("author",), failed=failed, action=action, at=AT))
        services.trace.record(f"{name * 32}", "hld:frontend/prod", TraceStage.HLD_PR, actor="test", tenant=name,
                              fields={"service": "frontend", "env": "prod", "pr": "7"})
    install_services(services)
    yield services
    reset_services()


def test_each_tenants_reviewer_sees_its_own_pr_7_only(services):
    a, b = services.for_tenant("a").reviewer.records, services.for_tenant("b").reviewer.records
    assert [r.action for r in a.for_pr(7)] == ["approved"]
    assert [r.action for r in b.for_pr(7)] == ["ineligible"]
    assert services.review_records.for_pr(7) == []            # tenant default has no PR 7


def test_the_cli_shows_each_deployment_its_tenants_decisions(services):
    by_tenant = {d.record.tenant: [r["action"] for r in d.reviews] for d in deployments(services.trace,
                                                                                          services.review_records)}
    assert by_tenant == {"a": ["approved"], "b": ["ineligible"]}
    [only_b] = deployments(services.trace, services.review_records, tenant="b")
    assert [(r["action"], r["failed"]) for r in only_b.reviews] == [("ineligible", [{"rule": "patchOnly",
                                                                                       "reason": "minor"}])]


def test_ops_deployments_and_the_dashboard_show_each_tenants_decisions(services):
    import handlers.dashboard
    import handlers.ops

    reply = asyncio.run(handlers.ops.deployments(func.HttpRequest("GET", "/api/ops/deployments", body=b"")))
    assert reply.status_code == 200
    got = {d["tenant"]: [r["action"] for r in d["reviews"]] for d in json.loads(reply.get_body())["deployments"]}
    assert got == {"a": ["approved"], "b": ["ineligible"]}

    reply = asyncio.run(handlers.dashboard.data(func.HttpRequest("GET", "/api/ops/dashboard/data", body=b"")))
    assert reply.status_code == 200
    shown = json.loads(reply.get_body())["deployments"]
    assert sorted((d["tenant"], [r["action"] for r in d["reviews"]]) for d in shown) == [("a", ["approved"]),
                                                                                         ("b", ["ineligible"])]
