"""The deployments endpoint and `python -m core.ops.cli` (trace, replay, health, setup).

Replay, trace and deployments run on the fake queues, journal and record stores (handed to the CLI through
`main(wire=...)`, to the endpoint through `install_services`); commands that never reach storage get settings naming
a closed port; only the health command reads Azure Storage on Azurite (its store probe is the real one)."""
from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import azure.functions as func
import pytest

from core.adapters import storage as storage_module
from core.ops.cli import load_cli_settings, main
from core.adapters.review_records import ReviewRecord, RuleFailure
from core.wiring import Services, install_services, reset_services
from core.adapters.storage import IMAGE_PUSHED, dev_connection_string, poison_queue
from core.adapters.trace import TraceStore
from core.model.workitems import ImagePushed, encode
from devkit.azurite import free_port
from handlers import ops
from tests.fakes.deliveries import FakeDeliveryJournal
from tests.fakes.queues import AsyncFakeQueues, FakeQueues
from tests.fakes.records import FakeRecords
from tests.azdo_fake import ORG, PAT, PROJECT, PROJECT_ID, azdo  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "myregistry.azurecr.io/fabrikam/app"
HOOK_SECRET = "azdo-hook-secret-cli"
ACR_SECRET = "acr-secret-cli"


@pytest.fixture
def environ(monkeypatch):
    """The CLI copies settings into os.environ (as the app does): put it back afterwards."""
    saved = dict(os.environ)
    for name in ("HLD_REPO_URL", "MANIFEST_REPO_URL", "AZDO_ORG_URL", "AZDO_PROJECT", "AZDO_PAT", "WRITE_MODE",
                 "FUNCTIONS_KEY", "AZDO_WEBHOOK_SECRET", "ACR_WEBHOOK_SECRET", "AzureWebJobsStorage"):
        monkeypatch.delenv(name, raising=False)
    reset_services()
    yield os.environ
    os.environ.clear()
    os.environ.update(saved)
    reset_services()


def write_settings(path: Path, connection: str) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {
        "AzureWebJobsStorage": connection, "ACR_WEBHOOK_SECRET": ACR_SECRET, "AZDO_WEBHOOK_SECRET": HOOK_SECRET,
        "WRITE_MODE": "direct"}}))
    return path


@pytest.fixture
def offline_settings(tmp_path, environ) -> Path:
    """Settings whose storage is a closed port: for commands that never reach storage, or reach the fakes."""
    dead = free_port()
    return write_settings(tmp_path / "local.settings.json", dev_connection_string(queue_port=dead, table_port=dead))


@pytest.fixture
def settings_file(tmp_path, azurite, environ) -> Path:
    return write_settings(tmp_path / "local.settings.json", azurite)


@dataclass
class FakeStores:
    queues: FakeQueues = field(default_factory=FakeQueues)
    journal: FakeDeliveryJournal = field(default_factory=FakeDeliveryJournal)
    records: FakeRecords = field(default_factory=FakeRecords)

    def wire(self, settings) -> Services:
        return Services(settings, stores={"queues": self.queues, "async_queues": AsyncFakeQueues(self.queues),
                                          "deliveries": self.journal, "async_deliveries": self.journal,
                                          **self.records.stores()})


@pytest.fixture
def stores() -> FakeStores:
    return FakeStores()


def cli(settings_file: Path, *args: str, stores: FakeStores | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--settings", str(settings_file), *args], out=out, err=err,
                **({"wire": stores.wire} if stores else {}))
    return code, out.getvalue(), err.getvalue()


def record(trace: TraceStore, trace_id: str, *, service: str, env: str, tag: str, start: str,
           stages: list[tuple[str, str, dict]]) -> None:
    for stage, at, fields in stages:
        trace.record(trace_id, f"{service}/{env}", stage, actor="test", start=start, at=at,
                     fields={"service": service, "env": env, "image": IMAGE, "imageTag": tag, **fields})


@pytest.fixture
def history(stores):
    trace = stores.records.trace
    record(trace, "t-app-prod", service="fabrikam-app", env="prod", tag="1.4.0", start="2024-05-01T10:00:00+00:00",
           stages=[("received", "2024-05-01T10:00:00.020000+00:00", {}),
                   ("hld-commit", "2024-05-01T10:00:00.410000+00:00", {"hldCommitId": "a1b2c3d4e5f6" * 3}),
                   ("manifest-commit", "2024-05-01T10:00:01.200000+00:00", {"manifestCommitId": "f9e8d7c6b5" * 4})])
    record(trace, "t-api-dev", service="fabrikam-api", env="dev", tag="2.0.0", start="2024-04-30T09:00:00+00:00",
           stages=[("received", "2024-04-30T09:00:00.050000+00:00", {}),
                   ("hld-pr", "2024-04-30T09:00:02+00:00", {"hldCommitId": "0123456789ab" * 3, "pr": "12"})])
    record(trace, "t-app-dev", service="fabrikam-app", env="dev", tag="1.5.0", start="2024-05-02T08:00:00+00:00",
           stages=[("received", "2024-05-02T08:00:00.100000+00:00", {})])
    reviews = stores.records.review_records
    reviews.write(ReviewRecord(12, "hld", 1, ("only-image-tags",), (RuleFailure("build", "policy pending"),),
                               "waiting", datetime(2024, 4, 30, 9, 0, 5, tzinfo=timezone.utc), ("t-api-dev",)))
    reviews.write(ReviewRecord(12, "hld", 1, ("only-image-tags", "build"), (), "approved",
                               datetime(2024, 4, 30, 9, 4, 0, tzinfo=timezone.utc), ("t-api-dev",)))
    reviews.write(ReviewRecord(13, "hld", 1, (), (), "ignored", datetime(2024, 4, 30, 9, 5, tzinfo=timezone.utc)))
    return trace


def get_deployments(**params: str) -> tuple[int, dict]:
    resp = asyncio.run(ops.deployments(func.HttpRequest("GET", "/api/ops/deployments", params=params, body=b"")))
    return resp.status_code, json.loads(resp.get_body())


@pytest.fixture
def app_env(offline_settings):
    load_cli_settings(offline_settings)
    reset_services()
    return offline_settings


@pytest.fixture
def fake_app_env(offline_settings, stores):
    """The app's services on the fake stores."""
    install_services(stores.wire(load_cli_settings(offline_settings)))
    yield offline_settings
    reset_services()


# -- the deployments endpoint ---------------------------------------------------------------------------------------

def test_deployments_newest_first_with_filters_and_top(fake_app_env, history):
    status, body = get_deployments()
    assert status == 200
    assert [d["traceId"] for d in body["deployments"]] == ["t-app-dev", "t-app-prod", "t-api-dev"]

    assert [d["traceId"] for d in get_deployments(service="fabrikam-app")[1]["deployments"]] == [
        "t-app-dev", "t-app-prod"]
    assert [d["traceId"] for d in get_deployments(env="dev")[1]["deployments"]] == ["t-app-dev", "t-api-dev"]
    assert [d["traceId"] for d in get_deployments(tag="1.4.0", image=IMAGE)[1]["deployments"]] == ["t-app-prod"]
    assert get_deployments(image="other.azurecr.io/x")[1] == {"deployments": [], "running": [], "paused": []}
    assert [d["traceId"] for d in get_deployments(top="2")[1]["deployments"]] == ["t-app-dev", "t-app-prod"]

    prod = body["deployments"][1]
    assert [(s["stage"], s["latencySeconds"]) for s in prod["stages"]] == [
        ("received", 0.02), ("hld-commit", 0.41), ("manifest-commit", 1.2)]
    assert "reviews" not in prod


def test_a_deployment_with_a_pr_carries_its_review_decisions(fake_app_env, history):
    [api] = get_deployments(service="fabrikam-api")[1]["deployments"]
    assert api["pr"] == "12"
    assert api["reviews"] == [
        {"pr": 12, "iteration": 1, "action": "waiting", "passed": ["only-image-tags"],
         "failed": [{"rule": "build", "reason": "policy pending"}], "at": "2024-04-30T09:00:05+00:00",
         "traceIds": ["t-api-dev"]},
        {"pr": 12, "iteration": 1, "action": "approved", "passed": ["only-image-tags", "build"], "failed": [],
         "at": "2024-04-30T09:04:00+00:00", "traceIds": ["t-api-dev"]}]


@pytest.mark.parametrize("top", ["0", "-1", "abc", "1001", "2.5"])
def test_bad_top_is_400(app_env, top):
    status, body = get_deployments(top=top)
    assert status == 400 and "top=" in body["error"] and "1 to 1000" in body["error"]


def test_deployments_with_storage_down_is_503(app_env):
    status, body = get_deployments()
    assert status == 503 and "storage unavailable" in body["error"]


# -- trace ----------------------------------------------------------------------------------------------------------

def test_trace_prints_a_table_with_stage_latencies_and_reviews(offline_settings, stores, history):
    code, out, err = cli(offline_settings, "trace", stores=stores)

    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["Start", "Service", "Env", "Image", "Tag", "HLD", "commit", "PR", "Manifest",
                                "commit"]
    assert lines[3].split() == ["2024-05-01", "10:00:00", "fabrikam-app", "prod", "1.4.0", "a1b2c3d4", "-",
                                "f9e8d7c6"]
    assert lines[4].strip() == "received +0.02s | hld-commit +0.41s | manifest-commit +1.20s"
    assert lines[5].split()[:6] == ["2024-04-30", "09:00:00", "fabrikam-api", "dev", "2.0.0", "01234567"]
    assert lines[7:] == [
        "    review PR 12 iteration 1: waiting at 2024-04-30 09:00:05 (passed: only-image-tags;"
        " failed: build: policy pending)",
        "    review PR 12 iteration 1: approved at 2024-04-30 09:04:00 (passed: only-image-tags, build; failed: -)"]


def test_trace_filters_json_and_empty(offline_settings, stores, history):
    code, out, _ = cli(offline_settings, "trace", "--env", "prod", "--json", stores=stores)
    assert code == 0
    [row] = json.loads(out)["deployments"]
    assert row["traceId"] == "t-app-prod"

    code, out, _ = cli(offline_settings, "trace", "--service", "nothing-here", stores=stores)
    assert (code, out) == (0, "no deployments recorded matching the filters\n")


def test_trace_bad_top_exits_2(offline_settings):
    code, out, err = cli(offline_settings, "trace", "--top", "zero")
    assert (code, out) == (2, "")
    assert err == "error: top='zero' must be an integer from 1 to 1000\n"


# -- replay ---------------------------------------------------------------------------------------------------------

def pushed(n: int) -> ImagePushed:
    return ImagePushed(f"acr:e{n}", f"trace{n}", "myregistry.azurecr.io", "fabrikam/app", f"1.{n}.0",
                       "sha256:" + "0" * 64, "application/vnd.docker.distribution.manifest.v2+json",
                       "2024-05-01T10:00:00Z", f"e{n}")


def test_replay_moves_and_prints_each_message(offline_settings):
    stores = FakeStores()
    ids = [stores.queues.enqueue(poison_queue(IMAGE_PUSHED), encode(pushed(n))) for n in (1, 2)]

    code, out, err = cli(offline_settings, "replay", "--queue", IMAGE_PUSHED, "--dry-run", stores=stores)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == ("would move 2 message(s) from image-pushed-poison to image-pushed "
                                   "(dry run: nothing moved)")
    assert stores.queues.queue_depth(IMAGE_PUSHED) == 0

    code, out, err = cli(offline_settings, "replay", "--queue", IMAGE_PUSHED, "--message-id", ids[1],
                         stores=stores)
    assert (code, err) == (0, "")
    assert out.splitlines() == ["moved 1 message(s) from image-pushed-poison to image-pushed",
                                f"  {ids[1]}  image-pushed  event acr:e2  trace trace2"]
    assert stores.queues.queue_depth(IMAGE_PUSHED) == 1
    assert stores.queues.texts(poison_queue(IMAGE_PUSHED)) == [encode(pushed(1))]


def test_replay_failures_exit_non_zero_with_one_line(offline_settings):
    stores = FakeStores()
    code, _, err = cli(offline_settings, "replay", "--queue", IMAGE_PUSHED, "--message-id", "missing-id",
                       stores=stores)
    assert (code, err) == (1, "error: not on image-pushed-poison: missing-id\n")

    code, _, err = cli(offline_settings, "replay", "--event-id", "acr:unknown", stores=stores)
    assert (code, err) == (1, "error: no journaled delivery with eventId acr:unknown\n")

    code, _, err = cli(offline_settings, "replay", "--queue", "images")
    assert code == 2 and err == ("error: queue 'images' is not a work queue "
                                 "(valid: image-pushed, hld-changed, pr-review, flux-notify, cluster-events)\n")

    code, _, err = cli(offline_settings, "replay", "--event-id", "x", "--message-id", "y")
    assert (code, err) == (2, "error: --message-id goes with --queue, not with --event-id\n")


def test_storage_down_exits_1(offline_settings, environ, monkeypatch):
    monkeypatch.setattr(storage_module, "_CLIENT_OPTIONS", {**storage_module._CLIENT_OPTIONS, "initial_backoff": 0,
                                                            "increment_base": 0, "random_jitter_range": 0})
    dead = free_port()
    environ["AzureWebJobsStorage"] = dev_connection_string(queue_port=dead, table_port=dead)
    for args in (["trace"], ["replay", "--queue", IMAGE_PUSHED]):
        code, out, err = cli(offline_settings, *args)
        assert code == 1, args
        assert err.startswith("error: storage unavailable") and err.count("\n") == 1


# -- settings, health, setup ----------------------------------------------------------------------------------------

def test_settings_come_from_the_environment_then_the_file_then_the_sample(tmp_path, environ):
    (tmp_path / "local.settings.sample.json").write_text(json.dumps({"Values": {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true", "HLD_BRANCH": "from-sample"}}))
    assert load_cli_settings(folder=tmp_path).hld_branch == "from-sample"

    for name in ("AzureWebJobsStorage", "HLD_BRANCH"):
        environ.pop(name, None)
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true", "HLD_BRANCH": "from-local", "GIT_AUTHOR_NAME": "file"}}))
    environ["HLD_BRANCH"] = "from-env"
    loaded = load_cli_settings(folder=tmp_path)
    assert (loaded.hld_branch, loaded.git_author_name) == ("from-env", "file")


def test_bad_settings_exit_2(tmp_path, environ):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                                           "WRITE_MODE": "sideways"}}))
    code, _, err = cli(path, "trace")
    assert (code, err) == (2, "error: WRITE_MODE='sideways' is not one of direct, pull-request\n")
    code, _, err = cli(tmp_path / "missing.json", "trace")
    assert code == 2 and "settings file not found" in err


def test_health_command(settings_file, storage):
    code, out, _ = cli(settings_file, "health")
    assert code == 0 and json.loads(out)["status"] == "healthy"

    storage.enqueue(poison_queue(IMAGE_PUSHED), "{}")
    code, out, _ = cli(settings_file, "health")
    assert code == 0 and json.loads(out)["warnings"]


def test_setup_creates_once_and_prints_the_acr_commands(offline_settings, environ, azdo):  # noqa: F811
    azdo.add_repo("hld")
    environ.update({"AZDO_ORG_URL": ORG, "AZDO_PROJECT": PROJECT, "AZDO_PAT": PAT,
                    "HLD_REPO_URL": f"{ORG}/{PROJECT}/_git/hld", "FUNCTIONS_KEY": "the-function-key"})
    args = ("setup", "--url", "https://autopilot.azurewebsites.net", "--project-id", PROJECT_ID,
            "--registry", "myregistry")

    code, out, err = cli(offline_settings, *args, "--dry-run")
    assert (code, err) == (0, "")
    assert out.splitlines()[0].startswith("would create  git.pullrequest.created")
    assert "0 to update, 0 unchanged (dry run: nothing changed)" in out
    assert azdo.subscriptions == {}

    code, out, err = cli(offline_settings, *args)
    assert (code, err) == (0, "")
    assert "5 to create, 0 to update, 0 unchanged" in out
    assert '--headers "Authorization=Bearer $ACR_WEBHOOK_SECRET"' in out
    assert "?code=$FUNCTIONS_KEY" in out
    for secret in (HOOK_SECRET, ACR_SECRET, PAT, "the-function-key"):
        assert secret not in out
    assert {s["consumerInputs"]["url"] for s in azdo.subscriptions.values()} == {
        "https://autopilot.azurewebsites.net/api/hooks/azdo?code=the-function-key"}

    code, out, _ = cli(offline_settings, *args)
    assert code == 0 and "0 to create, 0 to update, 5 unchanged" in out
    assert len(azdo.subscriptions) == 5


def test_setup_looks_up_the_project_id_when_not_given(offline_settings, environ, azdo):  # noqa: F811
    azdo.add_repo("hld")
    environ.update({"AZDO_ORG_URL": ORG, "AZDO_PROJECT": PROJECT, "AZDO_PAT": PAT,
                    "HLD_REPO_URL": f"{ORG}/{PROJECT}/_git/hld"})
    code, out, err = cli(offline_settings, "setup", "--url", "https://autopilot.azurewebsites.net")
    assert (code, err) == (0, "")
    assert {s["publisherInputs"]["projectId"] for s in azdo.subscriptions.values()} == {PROJECT_ID}
    assert azdo.find_calls("GET", r"/_apis/projects/")


def test_setup_needs_azure_devops(offline_settings):
    code, _, err = cli(offline_settings, "setup", "--url", "https://a.example", "--project-id", PROJECT_ID)
    assert (code, err) == (2, "error: AZDO_ORG_URL is not set: setup creates Azure DevOps service hooks\n")


def test_setup_azure_devops_failure_exits_1(offline_settings, environ, azdo):  # noqa: F811
    environ.update({"AZDO_ORG_URL": ORG, "AZDO_PROJECT": PROJECT, "AZDO_PAT": PAT,
                    "HLD_REPO_URL": f"{ORG}/{PROJECT}/_git/hld"})
    azdo.add_repo("hld")
    azdo.fail_next("GET", "/hooks/subscriptions", status=401)
    code, out, err = cli(offline_settings, "setup", "--url", "https://a.example", "--project-id", PROJECT_ID)
    assert code == 1 and out == ""
    assert err.startswith("error: Azure DevOps GET ") and "401" in err and err.count("\n") == 1


def test_runs_as_a_module(offline_settings):
    run = subprocess.run([sys.executable, "-m", "core.ops.cli", "--settings", str(offline_settings), "trace",
                          "--top", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr == "error: top='0' must be an integer from 1 to 1000\n"


def test_trace_prints_why_a_push_was_skipped(offline_settings, stores):
    trace = stores.records.trace
    trace.record("t-skip", "prod/app.yaml#doc[0].spec.containers[0].image", "received", actor="acr",
                 start="2024-05-02T10:00:00+00:00", at="2024-05-02T10:00:00+00:00",
                 fields={"service": "app", "env": "prod", "imageTag": "1.3.0"})
    trace.record("t-skip", "prod/app.yaml#doc[0].spec.containers[0].image", "skipped", actor="gitops-autopilot",
                 at="2024-05-02T10:00:01+00:00", detail={"action": "skip",
                                                        "reason": "1.3.0 is older than current 1.4.0; never downgrade"})
    code, out, _ = cli(offline_settings, "trace", stores=stores)
    assert code == 0
    assert "    skipped: 1.3.0 is older than current 1.4.0; never downgrade" in out.splitlines()
