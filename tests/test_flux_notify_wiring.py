"""Waking Flux, wired in: a manifest commit by the generation worker (or a light-weight bump, or a manifest PR merge
through the Azure DevOps hook) hands a flux-notify item on; bad FLUX_RECEIVERS entries in /api/health; the Flux
YAML `setup` prints."""
from __future__ import annotations

import asyncio
import io
import json
import os
from types import SimpleNamespace

import azure.functions as func
import pytest
from ruamel.yaml import YAML

from core.ops.cli import main
from core.workers.flux_notify import FluxNotifyJob
from core.adapters.flux_receivers import webhook_path
from core.workers.runners import BumpJob, GenerateJob, QueueWorker
from core.wiring import reset_services
from core.settings import load_settings
from core.adapters.storage import FLUX_NOTIFY, HLD_CHANGED
from core.model.workitems import FluxNotify, HldChanged, decode, encode
from devkit.flux_receiver import StandInReceiver
from handlers import ops
from tests.fakes.deliveries import FakeDeliveryJournal
from tests.fakes.env import NO_STORAGE
from tests.fakes.probes import storage_free_probes
from tests.fakes.queues import FakeQueues
from tests.fakes.records import FakeTrace, install, records  # noqa: F401  (records: the fixture)
from tests.test_generation import make_generation, repos  # noqa: F401  (the fixture)
from tests.test_intake import azdo_headers, call, fixture, messages

MANIFESTS_URL = "https://dev.azure.com/fabrikam/Fabrikam/_git/manifests"


def settings_for(connection: str, receivers: list[dict], secrets: dict[str, str], **more: str):
    return load_settings({"AzureWebJobsStorage": connection, "FLUX_RECEIVERS": json.dumps(receivers), **secrets,
                          **more})


def test_a_generated_manifest_commit_wakes_the_clusters_of_its_folders(repos, records, tmp_path):  # noqa: F811
    """The two jobs as the queue runner chains them (its own storage is core.workers.runners' tests' business)."""
    with StandInReceiver("t-prod") as prod, StandInReceiver("t-qa") as qa:
        settings = settings_for(NO_STORAGE, [
            {"cluster": "prod-1", "env": "prod", "url": prod.url, "secretSetting": "T_PROD"},
            {"cluster": "qa-1", "env": "qa", "url": qa.url, "secretSetting": "T_QA"}],
            {"T_PROD": "t-prod", "T_QA": "t-qa"}, MANIFEST_REPO_URL=repos[1])
        services = SimpleNamespace(settings=settings, trace=records.trace,
                                   generation=make_generation(repos, records, tmp_path))
        job = GenerateJob(services)
        result = job.process([decode(encode(HldChanged(event_id="e-1", trace_id="t" * 32, reason="push")),
                                     HLD_CHANGED)])
        assert result.action == "committed"
        [notify] = job.follow_ups(result)      # handed on through the generate_worker's flux-notify output binding
        assert isinstance(notify, FluxNotify) and notify.commit == result.manifest_commit
        assert "prod" in notify.envs and "qa" not in notify.envs

        done = FluxNotifyJob(services).process([decode(encode(notify), FLUX_NOTIFY)])
    assert done.notified == ("prod-1",) and qa.calls == []
    assert json.loads(prod.accepted()[0].body)["commit"] == result.manifest_commit


def test_no_receivers_configured_no_follow_up():
    services = SimpleNamespace(settings=load_settings({"AzureWebJobsStorage": NO_STORAGE}))
    result = SimpleNamespace(action="committed", manifest_commit="a" * 40, changed_paths=("prod/x",), trace_ids=())
    assert GenerateJob(services).follow_ups(result) == ()
    assert GenerateJob(SimpleNamespace()).follow_ups(result) == ()   # a test double without settings


def test_a_light_weight_bump_is_itself_the_manifest_commit():
    settings = settings_for(NO_STORAGE, [{"cluster": "p", "env": "prod", "url": "https://f.example/hook/x",
                                       "secretSetting": "T"}], {"T": "t"})
    outcome = lambda path, trace: SimpleNamespace(target=SimpleNamespace(file=path),  # noqa: E731
                                                  item=SimpleNamespace(trace_id=trace))
    result = SimpleNamespace(commit="b" * 40, follow_ups=(), bumped=(outcome("prod/web.yaml", "t1"),
                                                                      outcome("dev/web.yaml", "t2")))
    light = SimpleNamespace(settings=settings, bump=SimpleNamespace(is_hld=False))
    [notify] = BumpJob(light).follow_ups(result)
    assert (notify.commit, notify.envs, notify.image_trace_ids) == ("b" * 40, ("dev", "prod"), ("t1", "t2"))
    assert BumpJob(SimpleNamespace(settings=settings, bump=SimpleNamespace(is_hld=True))).follow_ups(result) == ()


def merged_manifest_pr(description: str, target: str = "refs/heads/main") -> bytes:
    data = json.loads(fixture("azdo_pr_merged.json"))
    data["resource"]["repository"]["remoteUrl"] = MANIFESTS_URL
    data["resource"]["repository"]["name"] = "manifests"
    data["resource"]["targetRefName"] = target
    data["resource"]["description"] = description
    return json.dumps(data).encode()


def test_a_merged_manifest_pr_wakes_every_cluster(door):
    description = ("Generate manifests from HLD 1234567: x\n\nHLD-Commit: " + "1" * 40 +
                   "\nTrace-Id: " + "a" * 32 + " " + "b" * 32 + "\nTrace-Id: <script>\n")
    status, body = call("azdo_webhook", merged_manifest_pr(description), azdo_headers())
    assert status == 202 and body["queued"] == [FLUX_NOTIFY]
    [notify] = messages(door.queues, FLUX_NOTIFY)
    assert (notify.reason, notify.pr_id, notify.commit, notify.envs) == (
        "manifest-pr-merged", 42, "eef717f69257a6333f221566c1c987dc94cc0d72", ())
    assert notify.image_trace_ids == ("a" * 32, "b" * 32)


def test_a_merged_manifest_pr_into_another_branch_is_ignored(door):
    status, body = call("azdo_webhook", merged_manifest_pr("", "refs/heads/feature"), azdo_headers())
    assert status == 200 and "manifest branch main" in body["ignored"] and door.enqueued() == 0


# -- health ----------------------------------------------------------------------------------------------------------

def _app_settings(monkeypatch, connection: str):
    """App settings in os.environ; the whole environment is put back afterwards (the CLI copies a settings file's
    values into it, as the app does)."""
    saved = dict(os.environ)
    for name in ("HLD_REPO_URL", "MANIFEST_REPO_URL", "AZDO_ORG_URL", "AZDO_PAT", "FLUX_RECEIVERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AzureWebJobsStorage", connection)
    monkeypatch.setenv("WRITE_MODE", "direct")
    monkeypatch.setenv("FLUX_TOKEN_PROD", "health-token-Zx81")
    reset_services()
    yield monkeypatch
    os.environ.clear()
    os.environ.update(saved)
    reset_services()


@pytest.fixture
def flux_env(monkeypatch):
    """The receivers' checks, not storage's: no storage, the store probes answer healthy, the record stores are
    the dict fakes."""
    install(monkeypatch)
    monkeypatch.setattr(ops, "_health_probes", storage_free_probes())
    yield from _app_settings(monkeypatch, NO_STORAGE)


@pytest.fixture
def setup_env(monkeypatch):
    """`setup` reads settings only."""
    yield from _app_settings(monkeypatch, NO_STORAGE)


def get_health() -> tuple[int, dict, str]:
    resp = asyncio.run(ops.health(func.HttpRequest("GET", "/api/health", body=b"")))
    return resp.status_code, json.loads(resp.get_body()), resp.get_body().decode()


def test_health_names_each_bad_receiver_entry_and_lists_the_good(flux_env):
    flux_env.setenv("FLUX_RECEIVERS", json.dumps([
        {"cluster": "prod-1", "env": "prod", "url": "https://f.example/hook/abc", "secretSetting": "FLUX_TOKEN_PROD"},
        {"cluster": "prod-2", "env": "prod", "url": "https://f.example/hook/abd", "secretSetting": "FLUX_TOKEN_NONE"},
        {"cluster": "dev-1", "env": "dev", "url": "ftp://f.example/hook/x", "secretSetting": "FLUX_TOKEN_PROD"}]))
    status, body, text = get_health()
    assert status == 503 and body["flux"] == {"receivers": ["prod-1"]}
    assert body["failing"] == [
        "flux: FLUX_RECEIVERS[1] (cluster prod-2): app setting FLUX_TOKEN_NONE (its secretSetting) is not set",
        "flux: FLUX_RECEIVERS[2] (cluster dev-1): url must be https://<host>/hook/..."]
    assert "health-token-Zx81" not in text and "hook/abc" not in text


def test_health_with_good_receivers_is_healthy(flux_env):
    flux_env.setenv("FLUX_RECEIVERS", json.dumps([
        {"cluster": "prod-1", "env": "prod", "url": "https://f.example/hook/abc", "secretSetting": "FLUX_TOKEN_PROD"}]))
    status, body, _ = get_health()
    assert status == 200 and body["flux"] == {"receivers": ["prod-1"]} and "failing" not in body


# -- setup -----------------------------------------------------------------------------------------------------------

def test_setup_prints_the_secret_and_receiver_per_cluster(tmp_path, setup_env):
    token = "health-token-Zx81"
    path = tmp_path / "local.settings.json"
    good_path = webhook_path(token, "gitops-autopilot", "flux")
    path.write_text(json.dumps({"Values": {"FLUX_RECEIVERS": json.dumps([
        {"cluster": "prod-1", "env": "prod", "url": f"https://f.example{good_path}", "secretSetting": "FLUX_TOKEN_PROD"},
        {"cluster": "prod-2", "env": "prod", "url": "https://g.example/hook/old", "secretSetting": "FLUX_TOKEN_PROD"},
        {"cluster": "bad", "env": "prod", "url": "https://g.example/hook/old", "secretSetting": "NOPE"}])}}))
    out, err = io.StringIO(), io.StringIO()
    code = main(["--settings", str(path), "setup", "--url", "https://app.example", "--flux-namespace", "flux",
                 "--flux-source", "manifests"], out=out, err=err)
    text = out.getvalue()
    assert code == 0, err.getvalue()
    assert token not in text
    assert "kubectl -n flux get receiver gitops-autopilot -o jsonpath='{.status.webhookPath}'" in text
    assert "skipped: FLUX_RECEIVERS[2] (cluster bad)" in text
    assert f"# prod-1: url path matches the expected status.webhookPath {good_path}" in text
    assert "# prod-2: url path /hook/old differs from the expected status.webhookPath" in text
    chunk = text.split("\n# prod-1:", 1)[1].split("\n", 1)[1].split("\n# prod-2:")[0]
    documents = [d for d in YAML(typ="safe").load_all(chunk) if d]
    secret, receiver = documents
    assert secret == {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                      "metadata": {"name": "gitops-autopilot-receiver-token", "namespace": "flux"},
                      "stringData": {"token": "<value of app setting FLUX_TOKEN_PROD>"}}
    assert receiver == {
        "apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
        "metadata": {"name": "gitops-autopilot", "namespace": "flux"},
        "spec": {"type": "generic-hmac", "secretRef": {"name": "gitops-autopilot-receiver-token"},
                 "resources": [{"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                                "name": "manifests"}]}}


def test_webhook_path_is_flux_s_digest():
    # sha256("tok" + "gitops-autopilot" + "flux-system"), as GetWebhookPath computes it
    import hashlib
    assert webhook_path("tok") == "/hook/" + hashlib.sha256(b"tokgitops-autopilotflux-system").hexdigest()


# -- the queue functions' bindings -------------------------------------------------------------------------------------

class Out:
    def __init__(self):
        self.value = None

    def set(self, value):
        self.value = value


def test_generate_worker_writes_the_notification_to_its_flux_notify_binding(monkeypatch):
    import function_app
    from handlers import generate

    notify = FluxNotify("flux:" + "c" * 40, "c" * 32, "c" * 40, envs=("prod",))

    class Job:
        queue, stage, batches = HLD_CHANGED, "generate", False

        def __init__(self):
            self.queues, self.deliveries, self.trace = FakeQueues(), FakeDeliveryJournal(), FakeTrace()

        def process(self, items):
            return "done"

        def follow_ups(self, result):
            return (notify,)

        def report(self, result, items):
            pass

    monkeypatch.setattr(generate, "worker", QueueWorker(HLD_CHANGED, Job, batches=False))
    flux_out, poison_out = Out(), Out()
    message = func.QueueMessage(id="m1", body=encode(HldChanged("e", "t", "push")).encode())
    function_app.app.functions_bindings = {}  # get_functions() refuses names an earlier call (a DevHost) recorded
    user_function = {f.get_function_name(): f for f in function_app.app.get_functions()}["generate_worker"]
    asyncio.run(user_function.get_user_function()(message, flux_out, poison_out))
    assert [json.loads(text)["commit"] for text in flux_out.value] == ["c" * 40] and poison_out.value is None
