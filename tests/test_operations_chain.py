"""The whole function app under devhost, over HTTP: push -> HLD commit -> manifest commit -> trace, and a poisoned
message replayed through the ops endpoint is processed exactly once."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from core.adapters.storage import IMAGE_PUSHED, Storage, poison_queue
from core.model.workitems import ImagePushed, encode
from devkit.gitrepos import bare_repo, commits
from tests.apphost import hosted_app

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KEY = "test-function-key"
MASTER = "test-master-key"  # admin-level routes (ops/*) take the master key only, as in the Functions host


@pytest.fixture
def host(azurite, tmp_path, monkeypatch):
    hld = bare_repo(tmp_path, EXAMPLES / "hld", name="hld")
    manifests = bare_repo(tmp_path, EXAMPLES / "manifests", name="manifests")
    settings = {"AzureWebJobsStorage": azurite, "ACR_WEBHOOK_SECRET": "acr-secret", "AZDO_WEBHOOK_SECRET": "x",
                "HLD_REPO_URL": hld, "MANIFEST_REPO_URL": manifests, "WRITE_MODE": "direct",
                "HELM_MODE": "helmrelease", "WORK_DIR": str(tmp_path / "work"), "FUNCTIONS_KEY": KEY,
                "FUNCTIONS_MASTER_KEY": MASTER}
    with hosted_app(monkeypatch, settings) as running:
        yield running, hld, manifests, Storage(azurite)


def request(url: str, method: str = "GET", body: dict | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text or b"{}")
        except json.JSONDecodeError:
            return exc.code, {"text": text.decode(errors="replace")}


def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def subjects(url: str) -> list[str]:
    return [c.subject for c in commits(url, "main")]


def test_push_flows_to_manifests_and_the_trace_shows_every_stage(host):
    running, hld, manifests, _ = host
    now = datetime.now(timezone.utc).isoformat()
    push = {"id": "chain-1", "timestamp": now, "action": "push",
            "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "digest": "sha256:" + "3" * 64, "repository": "fabrikam/frontend", "tag": "1.4.2"},
            "request": {"host": "fabrikam.azurecr.io"}}
    status, body = request(f"{running.url}/api/hooks/acr?code={KEY}", "POST", push,
                           {"Authorization": "Bearer acr-secret"})
    assert (status, body["queued"]) == (202, ["image-pushed"])
    wait_for(lambda: any(s.startswith("Generate manifests from HLD") and "1.4.2" in s for s in subjects(manifests)),
             "the manifest commit")
    assert subjects(hld)[0] == "Bump 2 images: frontend/dev 1.4.2, frontend/prod 1.4.2"

    assert request(f"{running.url}/api/ops/deployments?service=frontend")[0] == 401
    assert request(f"{running.url}/api/ops/deployments?service=frontend&code={KEY}")[0] == 401

    def traced() -> list | None:
        # The manifest-commit stage is recorded just after the push lands, so the commit can be seen first.
        status, body = request(f"{running.url}/api/ops/deployments?service=frontend&code={MASTER}")
        assert status == 200
        rows = body["deployments"]
        return rows if len(rows) == 2 and all(len(r["stages"]) == 3 for r in rows) else None

    rows = wait_for(traced, "the manifest-commit stage in the trace")
    assert {r["env"] for r in rows} == {"dev", "prod"}
    for row in rows:
        assert [s["stage"] for s in row["stages"]] == ["received", "hld-commit", "manifest-commit"]
        assert all(s["latencySeconds"] is not None and s["latencySeconds"] >= 0 for s in row["stages"])
        assert row["imageTag"] == "1.4.2" and row["hldCommitId"] and row["manifestCommitId"]


def test_a_poisoned_push_replayed_by_the_endpoint_is_processed_exactly_once(host):
    running, hld, _, storage = host
    now = datetime.now(timezone.utc).isoformat()
    item = ImagePushed(event_id="acr:poisoned", trace_id="p" * 32, registry="fabrikam.azurecr.io",
                       repository="fabrikam/backend", tag="2.0.9", digest="sha256:" + "4" * 64,
                       media_type="application/vnd.docker.distribution.manifest.v2+json", pushed_at=now,
                       acr_event_id="poisoned", received_at=now)
    storage.enqueue(poison_queue(IMAGE_PUSHED), encode(item))

    status, body = request(f"{running.url}/api/ops/replay?code={MASTER}", "POST", {"queue": IMAGE_PUSHED})
    assert status == 200 and body["count"] == 1 and body["moved"][0]["eventId"] == "acr:poisoned"
    wait_for(lambda: "Bump backend in dev: 2.0.3 -> 2.0.9" in subjects(hld), "the replayed bump")
    wait_for(lambda: storage.queue_depth(IMAGE_PUSHED) == 0, "the queue to drain")

    status, body = request(f"{running.url}/api/ops/replay?code={MASTER}", "POST", {"queue": IMAGE_PUSHED})
    assert status == 200 and body["count"] == 0
    storage.enqueue(IMAGE_PUSHED, encode(item))  # the same work delivered again changes nothing
    wait_for(lambda: storage.queue_depth(IMAGE_PUSHED) == 0, "the duplicate to be consumed")
    time.sleep(0.5)
    assert subjects(hld).count("Bump backend in dev: 2.0.3 -> 2.0.9") == 1
    assert storage.queue_depth(poison_queue(IMAGE_PUSHED)) == 0
