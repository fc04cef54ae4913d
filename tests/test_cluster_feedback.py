"""Cluster feedback: the Flux events hook (signature, bad input, duplicates), revision formats, and the worker that
marks pushes applied/failed per cluster with git ancestry (direct commit, later commit, PR merge commit)."""
from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import azure.functions as func
import pytest

import function_app
from core.workers.cluster_feedback import (
    FeedbackJob,
    FluxEventError,
    Ignored,
    parse_event,
    parse_revision,
    sign,
    signature_ok,
)
from core.adapters.git_workspace import GitWorkspace
from core.settings import load_settings
from core.adapters.storage import CLUSTER_EVENTS
from core.telemetry import in_memory_metrics, metric_points
from core.adapters.trace import TraceStore
from core.model.trace_record import TraceStage
from core.model.workitems import ClusterEvent, decode, encode
from devkit.gitrepos import bare_repo, git, push_files
from tests.fakes.env import no_storage_env  # noqa: F401 - a fixture
from tests.fakes.records import fake_services

SECRET = "flux-hmac-key"
SHA = "a" * 40


def flux_event(revision: str = f"main@sha1:{SHA}", *, cluster: str = "prod-1", env: str = "prod",
               severity: str = "info", reason: str = "ReconciliationSucceeded", message: str = "Applied revision",
               kind: str = "Kustomization", revision_key: str = "revision", **extra) -> dict:
    metadata = {revision_key: revision, "cluster": cluster, **({"env": env} if env else {})}
    return {"involvedObject": {"kind": kind, "namespace": "flux-system", "name": "apps", "uid": "u-1",
                               "apiVersion": "kustomize.toolkit.fluxcd.io/v1"},
            "severity": severity, "timestamp": "2026-11-30T00:00:05Z", "message": message, "reason": reason,
            "metadata": metadata, "reportingController": "kustomize-controller", "reportingInstance": "kc-1", **extra}


def flux_body(event: dict) -> bytes:
    # Go's json.Marshal: compact, no spaces (the exact bytes are what is signed)
    return json.dumps(event, separators=(",", ":")).encode()


def post(body: bytes, signature: str | None) -> tuple[int, dict, list[str]]:
    fn = function_app.flux_events_webhook.build().get_user_function()
    headers = {"Content-Type": "application/json", **({"X-Signature": signature} if signature is not None else {})}
    req = func.HttpRequest("POST", "/api/hooks/flux", headers=headers, params={}, body=body)
    out = _Out()
    resp = asyncio.run(fn(req, out))
    return resp.status_code, json.loads(resp.get_body() or b"{}"), out.values


class _Out:
    def __init__(self):
        self.values: list[str] = []

    def set(self, value: str) -> None:
        self.values.append(value)

    def get(self):
        return self.values[-1] if self.values else None


@pytest.fixture
def flux_env(door, monkeypatch):
    """The hook on the door's fakes: the cases that reach the delivery journal."""
    monkeypatch.setenv("FLUX_WEBHOOK_SECRET", SECRET)
    door.rewire()
    yield door


@pytest.fixture
def flux_checks_env(no_storage_env, monkeypatch):
    """The hook's checks, which refuse before any storage call."""
    from core.wiring import reset_services

    monkeypatch.setenv("FLUX_WEBHOOK_SECRET", SECRET)
    reset_services()
    yield no_storage_env
    reset_services()


# -- signature ------------------------------------------------------------------------------------------------------

def test_signature_is_hmac_sha256_hex_of_the_raw_body():
    body = flux_body(flux_event())
    good = sign(body, SECRET)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert signature_ok(SECRET, good, body)
    assert signature_ok(SECRET, good.upper().replace("SHA256", "sha256"), body)   # hex case does not matter
    assert not signature_ok(SECRET, good, body + b" ")
    assert not signature_ok("other", good, body)
    assert not signature_ok(SECRET, "sha1=" + good[7:], body)
    assert not signature_ok(SECRET, good[7:], body)
    assert not signature_ok(SECRET, "", body)


def test_hook_signature_rules(flux_env):
    body = flux_body(flux_event())
    assert post(body, None)[:2] == (401, {"error": "missing or wrong X-Signature"})
    assert post(body, sign(body, "wrong"))[0] == 401
    status, reply, out = post(body, sign(body, SECRET))   # accepted: the journal records it
    assert status == 202 and reply["cluster"] == "prod-1" and reply["outcome"] == "applied"
    [item] = [decode(text, CLUSTER_EVENTS) for text in out]
    assert isinstance(item, ClusterEvent) and item.revision == SHA and item.envs == ("prod",)
    assert flux_env.journal.claimed() == 1


def test_hook_without_secret_is_503(no_storage_env):
    body = flux_body(flux_event())
    status, reply, out = post(body, sign(body, ""))
    assert status == 503 and "FLUX_WEBHOOK_SECRET" in reply["error"] and out == []


def test_a_resend_is_a_duplicate(flux_env):
    body = flux_body(flux_event())
    assert post(body, sign(body, SECRET))[0] == 202
    status, reply, out = post(body, sign(body, SECRET))
    assert status == 200 and reply["duplicate"] is True and out == []


@pytest.mark.parametrize("event, field", [
    ({**flux_event(), "involvedObject": "x"}, "involvedObject"),
    ({**flux_event(), "severity": "fatal"}, "severity"),
    ({**flux_event(), "timestamp": "yesterday"}, "timestamp"),
    ({**flux_event(), "reason": 5}, "reason"),
    ({**flux_event(), "metadata": {"revision": f"main@sha1:{SHA}"}}, "metadata.cluster"),
    ({**flux_event(), "metadata": {"revision": f"main@sha1:{SHA}", "cluster": "Prod_1"}}, "metadata.cluster"),
    ({**flux_event(), "metadata": {"revision": 1, "cluster": "p"}}, "metadata"),
    (flux_event("main@sha1:1234"), "metadata.revision"),
    (flux_event(env="prod,../x"), "metadata.env"),
])
def test_bad_events_are_400_naming_the_field(flux_checks_env, event, field):
    body = flux_body(event)
    status, reply, out = post(body, sign(body, SECRET))
    assert status == 400 and field in reply["error"] and out == []


def test_not_json_is_400_and_too_big_is_413(flux_checks_env):
    assert post(b"{nope", sign(b"{nope", SECRET))[:2] == (400, {"error": "body is not valid JSON"})
    big = b"x" * (256 * 1024 + 1)
    assert post(big, sign(big, SECRET))[0] == 413


@pytest.mark.parametrize("event, why", [
    (flux_event(kind="GitRepository"), "GitRepository"),
    (flux_event(severity="info", reason="Progressing"), "Progressing"),
    (flux_event("1.2.3", kind="HelmRelease", reason="UpgradeSucceeded"), "not a git commit"),
])
def test_events_that_say_nothing_about_a_revision_are_ignored(flux_checks_env, event, why):
    body = flux_body(event)
    status, reply, out = post(body, sign(body, SECRET))
    assert status == 200 and why in reply["ignored"] and out == []


# -- revision formats -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (f"main@sha1:{SHA}", ("main", SHA)),
    (f"release/v2@sha1:{SHA}", ("release/v2", SHA)),
    (f"main/{SHA}", ("main", SHA)),
    (f"sha1:{SHA}", ("", SHA)),
    (SHA, ("", SHA)),
])
def test_revision_formats(text, expected):
    assert parse_revision(text) == expected


def test_group_revision_key_and_failure_outcome():
    event = parse_event(flux_event(f"main/{SHA}", revision_key="kustomize.toolkit.fluxcd.io/revision",
                                   severity="error", reason="HealthCheckFailed", message="timeout waiting for web"),
                        "flux:x")
    assert isinstance(event, ClusterEvent)
    assert (event.outcome, event.revision, event.branch, event.message) == ("failed", SHA, "main",
                                                                           "timeout waiting for web")
    assert isinstance(parse_revision("sha256:" + "b" * 64), Ignored)
    with pytest.raises(FluxEventError):
        parse_revision("main@sha1:XYZ")
    no_env = parse_event(flux_event(env=""), "flux:y")
    assert no_env.envs == ()


# -- the worker: ancestry and the trace -----------------------------------------------------------------------------

@pytest.fixture
def manifests(tmp_path):
    return bare_repo(tmp_path, {"prod/web.yaml": "image: web:1.0\n", "dev/web.yaml": "image: web:1.0\n"},
                     name="manifests")


def services_for(url, work: Path) -> SimpleNamespace:
    """The worker's services: the dict record stores (tests/fakes/records.py) and real git."""
    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MANIFEST_REPO_URL": url})
    workspaces: dict = {}

    def workspace(u, branch, purpose="write"):
        return workspaces.setdefault((u, branch, purpose), GitWorkspace(u, branch, base_dir=work / purpose))

    return fake_services(settings, workspace=workspace)


def push_record(trace: TraceStore, trace_id: str, env: str, tag: str, commit: str, start: str) -> None:
    trace.record(trace_id, f"{env}/web.yaml#web", TraceStage.RECEIVED, actor="acr", start=start, at=start,
                 fields={"service": "web", "env": env, "image": "acr.io/web", "imageTag": tag,
                         "targetFile": f"{env}/web.yaml", "manifestRepo": "x"})
    trace.record(trace_id, f"{env}/web.yaml#web", TraceStage.MANIFEST_COMMIT, actor="gitops-autopilot",
                 fields={"manifestCommitId": commit}, detail={"commit": commit})


def run_event(services, event: ClusterEvent):
    """The job as the queue runner runs it (the runner's own storage is core.workers.runners' tests' business)."""
    [item] = [decode(encode(event), CLUSTER_EVENTS)]
    job = FeedbackJob(services)
    result = job.process([item])
    job.report(result, [item])
    return result


def cluster_event(revision: str, outcome: str = "applied", cluster: str = "prod-1", envs=("prod",),
                  message: str = "", at: str = "2026-11-30T00:00:05+00:00") -> ClusterEvent:
    return ClusterEvent(event_id=f"flux:{revision}{outcome}{cluster}", trace_id="e" * 32, cluster=cluster,
                        revision=revision, outcome=outcome, envs=envs, reason="ReconciliationSucceeded"
                        if outcome == "applied" else "HealthCheckFailed", message=message, at=at)


def stages(trace: TraceStore, trace_id: str) -> list[str]:
    [row] = trace.rows_for_trace(trace_id)
    return [s.name for s in row.stages]


def test_direct_and_later_commits_are_applied_others_not(manifests, tmp_path):
    services = services_for(manifests, tmp_path / "work")
    c1 = push_files(manifests, "main", {"prod/web.yaml": "image: web:1.1\n"}, "bump 1.1")
    c2 = push_files(manifests, "main", {"prod/web.yaml": "image: web:1.2\n"}, "bump 1.2")
    c3 = push_files(manifests, "main", {"prod/web.yaml": "image: web:1.3\n"}, "bump 1.3")
    trace = services.trace
    push_record(trace, "t1", "prod", "1.1", c1, "2026-11-30T00:00:00+00:00")
    push_record(trace, "t2", "prod", "1.2", c2, "2026-11-30T00:00:01+00:00")
    push_record(trace, "t3", "prod", "1.3", c3, "2026-11-30T00:00:02+00:00")
    push_record(trace, "td", "dev", "1.2", c2, "2026-11-30T00:00:01+00:00")   # a dev push: not on prod-1
    reader = in_memory_metrics()

    result = run_event(services, cluster_event(c2))   # c2 includes c1 (later commit) and itself (direct)
    assert sorted(m.trace_id for m in result.marked) == ["t1", "t2"]
    assert stages(trace, "t1")[-1] == "applied@prod-1" and stages(trace, "t2")[-1] == "applied@prod-1"
    assert "applied@prod-1" not in stages(trace, "t3") and "applied@prod-1" not in stages(trace, "td")
    [row] = trace.rows_for_trace("t2")
    applied = row.stages[-1]
    assert applied.detail["revision"] == c2 and applied.latency_seconds == pytest.approx(4.0)
    assert metric_points(reader, "autopilot.push_to_applied") == {(("env", "prod"),): 2}

    [running] = services.running.matrix()
    assert (running["service"], running["cluster"], running["tag"], running["state"]) == ("web", "prod-1", "1.2",
                                                                                        "healthy")
    # a replay of the same event marks nothing twice
    assert run_event(services, cluster_event(c2)).marked == ()
    assert stages(trace, "t1").count("applied@prod-1") == 1


def test_pr_merge_commit_includes_the_bot_branch_commit(manifests, tmp_path):
    services = services_for(manifests, tmp_path / "work")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "c"
        git("clone", "--quiet", manifests, str(work))
        git("checkout", "--quiet", "-b", "autopilot/manifests", cwd=work)
        (work / "prod" / "web.yaml").write_text("image: web:2.0\n")
        git("commit", "--quiet", "-am", "generate", cwd=work)
        bot = git("rev-parse", "HEAD", cwd=work).decode().strip()
        git("push", "--quiet", "origin", "autopilot/manifests", cwd=work)
        git("checkout", "--quiet", "main", cwd=work)
        (work / "README").write_text("someone else\n")
        git("add", "README", cwd=work)
        git("commit", "--quiet", "-m", "other work", cwd=work)
        git("merge", "--quiet", "--no-ff", "-m", "Merged PR 7", "autopilot/manifests", cwd=work)
        merge = git("rev-parse", "HEAD", cwd=work).decode().strip()
        git("push", "--quiet", "origin", "main", cwd=work)
    push_record(services.trace, "tp", "prod", "2.0", bot, "2026-11-30T00:00:00+00:00")
    result = run_event(services, cluster_event(f"{merge}"))
    assert [m.trace_id for m in result.marked] == ["tp"]


def test_failure_is_recorded_with_flux_message_and_the_matrix_says_failed(manifests, tmp_path):
    services = services_for(manifests, tmp_path / "work")
    c1 = push_files(manifests, "main", {"prod/web.yaml": "image: web:1.1\n"}, "bump 1.1")
    c2 = push_files(manifests, "main", {"prod/web.yaml": "image: web:1.2\n"}, "bump 1.2")
    push_record(services.trace, "t1", "prod", "1.1", c1, "2026-11-30T00:00:00+00:00")
    run_event(services, cluster_event(c1))
    push_record(services.trace, "t2", "prod", "1.2", c2, "2026-11-30T00:00:01+00:00")
    failed = cluster_event(c2, "failed", message="Health check failed: Deployment/web not ready",
                           at="2026-11-30T00:01:00+00:00")
    result = run_event(services, failed)
    assert [m.trace_id for m in result.marked] == ["t2"]   # t1 stays applied: it was, before
    [row] = services.trace.rows_for_trace("t2")
    last = row.stages[-1]
    assert last.name == "failed@prod-1" and "Deployment/web not ready" in last.detail["reason"]
    [running] = services.running.matrix()
    assert (running["tag"], running["state"], running["failedTag"]) == ("1.1", "failed", "1.2")
    assert run_event(services, failed).marked == ()      # the same failure again: recorded once

    run_event(services, cluster_event(c2, at="2026-11-30T00:02:00+00:00"))    # fixed: applied after all
    [running] = services.running.matrix()
    assert (running["tag"], running["state"]) == ("1.2", "healthy")


def test_a_cluster_without_env_serves_every_environment(manifests, tmp_path):
    services = services_for(manifests, tmp_path / "work")
    c1 = push_files(manifests, "main", {"dev/web.yaml": "image: web:1.1\n"}, "bump dev")
    push_record(services.trace, "td", "dev", "1.1", c1, "2026-11-30T00:00:00+00:00")
    assert run_event(services, cluster_event(c1, cluster="all-1", envs=("prod",))).marked == ()
    assert [m.trace_id for m in run_event(services, cluster_event(c1, cluster="all-1", envs=())).marked] == ["td"]


def test_an_event_quicker_than_the_trace_write_of_our_commit_waits_for_it(manifests, tmp_path):
    import threading

    services = services_for(manifests, tmp_path / "work")
    ours = GitWorkspace(manifests, "main", base_dir=tmp_path / "bot")

    def edit(root: Path) -> str:
        (root / "dev" / "web.yaml").write_text("image: web:1.1\n")
        return "bump"

    commit = ours.land(edit).commit
    later = threading.Timer(0.5, push_record, (services.trace, "tw", "dev", "1.1", commit, "2026-11-30T00:00:00+00:00"))
    later.start()
    result = run_event(services, cluster_event(commit, envs=("dev",)))
    later.join()
    assert [m.trace_id for m in result.marked] == ["tw"]
    # a person's commit nobody recorded: no wait, nothing marked
    theirs = push_files(manifests, "main", {"README": "x\n"}, "docs")
    assert run_event(services, cluster_event(theirs, envs=("dev",))).marked == ()
