"""What runs where in `python -m core.ops.cli trace --matrix` and /api/ops/deployments; the Flux Provider/Alert YAML
`setup` prints."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import azure.functions as func
import pytest
from ruamel.yaml import YAML

from core.adapters.cluster_records import Marked, RunningStore
from core.ops.cli import load_cli_settings
from core.wiring import reset_services
from handlers import ops
from tests.fakes.env import NO_STORAGE
from tests.fakes.probes import storage_free_probes
from tests.fakes.records import FakeRecords, install
from tests.test_admin_cli import cli, environ  # noqa: F401  (a fixture)


@pytest.fixture
def fake_settings_file(tmp_path, environ, monkeypatch) -> Path:  # noqa: F811
    """The CLI's settings with no reachable storage, and the fake record stores wired in every Services."""
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {
        "AzureWebJobsStorage": NO_STORAGE, "ACR_WEBHOOK_SECRET": "a", "AZDO_WEBHOOK_SECRET": "b",
        "WRITE_MODE": "direct"}}))
    return path


@pytest.fixture
def records(monkeypatch) -> FakeRecords:
    return install(monkeypatch)


def seed(log: RunningStore) -> None:
    one = Marked("t1", "k", "web", "prod", "1.1", "c1", 3.0)
    two = Marked("t2", "k", "web", "prod", "1.2", "c2", 3.0)
    log.update("prod-1", one, state="healthy", at="2026-11-30T00:00:05+00:00", start="2026-11-30T00:00:00+00:00",
               image="acr.io/web", revision="c1")
    log.update("prod-2", one, state="healthy", at="2026-11-30T00:00:06+00:00", start="2026-11-30T00:00:00+00:00",
               image="acr.io/web", revision="c1")
    log.update("prod-2", two, state="failed", at="2026-11-30T00:01:00+00:00", start="2026-11-30T00:00:30+00:00",
               image="acr.io/web", revision="c2", message="Deployment/web not ready")
    # a late event about the older push changes nothing
    log.update("prod-2", one, state="healthy", at="2026-11-30T00:00:07+00:00", start="2026-11-30T00:00:00+00:00",
               image="acr.io/web", revision="c1")


def test_trace_matrix(fake_settings_file, records):
    settings_file = fake_settings_file
    seed(records.running)
    code, out, _ = cli(settings_file, "trace", "--matrix")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["Service", "Env", "prod-1", "prod-2"]
    assert lines[1].split() == ["web", "prod", "1.1", "since", "00:00:05", "1.1", "FAILED", "1.2"]
    assert lines[2].strip() == "web@prod-2: Deployment/web not ready"
    code, out, _ = cli(settings_file, "trace", "--matrix", "--json")
    assert {(r["cluster"], r["state"]) for r in json.loads(out)["running"]} == {("prod-1", "healthy"),
                                                                                ("prod-2", "failed")}
    assert cli(settings_file, "trace", "--matrix", "--service", "api")[1] == \
        "no cluster has reported an applied push yet\n"


def test_deployments_endpoint_carries_the_matrix(fake_settings_file, records):
    load_cli_settings(fake_settings_file)
    reset_services()
    seed(records.running)
    resp = asyncio.run(ops.deployments(func.HttpRequest("GET", "/api/ops/deployments", params={"service": "web"},
                                                          body=b"")))
    body = json.loads(resp.get_body())
    assert resp.status_code == 200 and len(body["running"]) == 2


def test_setup_prints_provider_secret_and_alert(fake_settings_file):
    code, out, _ = cli(fake_settings_file, "setup", "--url", "https://app.example", "--function-key", "k1",
                       "--flux-cluster", "prod-1", "--flux-env", "prod")
    assert code == 0
    docs = [d for d in YAML(typ="safe").load_all(out.split("\n", 1)[1].split("\n\n", 1)[1]) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Secret", "Provider", "Alert"}
    assert kinds["Provider"]["spec"]["type"] == "generic-hmac"
    assert kinds["Secret"]["stringData"]["address"] == "https://app.example/api/hooks/flux?code=k1"
    assert kinds["Alert"]["spec"]["eventMetadata"] == {"cluster": "prod-1", "env": "prod"}
    assert "FLUX_WEBHOOK_SECRET is not set" in out


def test_resume_cli_and_endpoint(fake_settings_file, records):
    from handlers import promotion

    settings_file = fake_settings_file
    records.pauses.pause("web", "prod", "a person rolled web back to 1.0.0")
    code, out, _ = cli(settings_file, "trace", "--matrix")
    assert "paused: web in prod" in out and "resume --service web --env prod" in out
    assert cli(settings_file, "resume", "--service", "web", "--env", "prod")[:2] == (
        0, "resumed web in prod: automation updates it again\n")
    code, _, err = cli(settings_file, "resume", "--service", "web", "--env", "prod")
    assert (code, err) == (1, "error: web in prod is not paused\n")

    def post(body: bytes, headers: dict | None = None):
        resp = asyncio.run(promotion.resume(func.HttpRequest("POST", "http://127.0.0.1:7071/api/ops/resume", body=body,
                                                             headers=headers or {})))
        return resp.status_code, json.loads(resp.get_body())

    load_cli_settings(settings_file)
    reset_services()
    records.pauses.pause("web", "prod", "rollback")
    assert post(b'{"service": "web"}') == (400, {"error": "env must be a non-empty string"})
    assert post(b"nope")[0] == 400
    # the dashboard's Resume button posts from its own origin; another site's page may not
    assert post(b'{"service": "web", "env": "prod"}', {"Origin": "https://evil.example"})[0] == 403
    assert post(b'{"service": "web", "env": "prod"}', {"Origin": "http://127.0.0.1:7071"}) == (
        200, {"service": "web", "env": "prod", "resumed": True})
    assert post(b'{"service": "web", "env": "prod"}')[0] == 404


def test_health_warns_about_paused_targets(door, monkeypatch):
    """Health reads the pause store itself (the store probes answer healthy; storage's own checks are
    tests/test_health.py's)."""
    monkeypatch.setattr(ops, "_health_probes", storage_free_probes())
    door.records.pauses.pause("web", "prod", "a person set prod/web.yaml to 1.0.0 below 1.1.0")
    resp = asyncio.run(ops.health(func.HttpRequest("GET", "/api/health", body=b"")))
    warnings = json.loads(resp.get_body()).get("warnings", [])
    assert any(w.startswith("paused: web in prod: a person set") and "resume --service web --env prod" in w
               for w in warnings)
