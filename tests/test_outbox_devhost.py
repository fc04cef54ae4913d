"""Issue #16.2 end to end under devhost: the host fails to write the webhook's output binding after the claim, the
sender's resend is a duplicate, and the outbox timer's re-enqueue ends with the push applied exactly once."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.adapters.deliveries import DELIVERIES_TABLE, OUTBOX_PREFIX, row_key
from core.adapters.storage import Storage
from devhost import invocation
from devkit.gitrepos import bare_repo, commits, file_at
from tests.apphost import hosted_app
from tests.test_operations_chain import KEY, MASTER, request, wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FRONTEND_PROD = "fabrikam-project/frontend/prod/config/common.yaml"


@pytest.fixture
def host(azurite, tmp_path, monkeypatch):
    hld = bare_repo(tmp_path, EXAMPLES / "hld", name="hld")
    settings = {"AzureWebJobsStorage": azurite, "ACR_WEBHOOK_SECRET": "acr-secret", "AZDO_WEBHOOK_SECRET": "x",
                "HLD_REPO_URL": hld, "MANIFEST_REPO_URL": "", "WRITE_MODE": "direct", "HELM_MODE": "helmrelease",
                "WORK_DIR": str(tmp_path / "work"), "FUNCTIONS_KEY": KEY, "FUNCTIONS_MASTER_KEY": MASTER,
                "OUTBOX_REENQUEUE_AFTER_SECONDS": "0", "AzureWebJobs.generate_worker.Disabled": "true"}
    with hosted_app(monkeypatch, settings) as running:
        yield running, hld, Storage(azurite)


def push_body(tag: str) -> dict:
    return {"id": "outbox-e2e-1", "timestamp": "2026-01-01T00:00:00Z", "action": "push",
            "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "digest": "sha256:" + "1" * 64, "repository": "fabrikam/frontend", "tag": tag},
            "request": {"host": "fabrikam.azurecr.io"}}


def markers(storage: Storage) -> list:
    return [e for e in storage.table(DELIVERIES_TABLE).list_entities() if e["RowKey"].startswith(OUTBOX_PREFIX)]


def test_output_write_lost_after_the_claim_is_applied_exactly_once(host, monkeypatch):
    running, hld, storage = host
    head = commits(hld, "main")[0].sha
    real_enqueue = invocation.Invoker.enqueue
    lost: list[str] = []

    def crash_once(self, binding, bodies):
        if bodies and not lost:
            lost.append(binding.queue_name)
            raise ConnectionError("host died before writing the output binding")
        return real_enqueue(self, binding, bodies)

    monkeypatch.setattr(invocation.Invoker, "enqueue", crash_once)
    hook = f"{running.url}/api/hooks/acr?code={KEY}"
    auth = {"Authorization": "Bearer acr-secret"}
    status, _ = request(hook, "POST", push_body("1.4.9"), auth)
    assert lost == ["image-pushed"] and status >= 500  # the sender sees a failure and retries
    status, body = request(hook, "POST", push_body("1.4.9"), auth)
    assert (status, body["duplicate"]) == (200, True)  # claimed already: nothing queued by the resend
    assert storage.queue_depth("image-pushed") == 0 and commits(hld, "main")[0].sha == head

    admin = f"{running.url}/admin/functions/outbox_timer"
    assert request(admin, "POST", {"input": ""}, {"x-functions-key": MASTER})[0] == 202
    bumped = wait_for(lambda: commits(hld, "main")[0].sha != head and commits(hld, "main")[0], "the bump", 60)
    assert b'tag: "1.4.9"' in file_at(hld, "main", FRONTEND_PROD)
    assert [c.sha for c in commits(hld, "main")][1] == head  # exactly one commit

    # the worker took it (its run ends after the commit), so the next timer run drops the marker, sends nothing
    key = row_key("acr:outbox-e2e-1")
    wait_for(lambda: storage.table(DELIVERIES_TABLE).get_entity(key[0], key)["state"] == "done", "done", 30)
    [marker] = markers(storage)
    assert json.loads(marker["members"]) == ["acr:outbox-e2e-1"] and marker["attempts"] == 1
    assert request(admin, "POST", {"input": ""}, {"x-functions-key": MASTER})[0] == 202
    wait_for(lambda: markers(storage) == [], "the marker dropped", 30)
    assert storage.queue_depth("image-pushed") == 0
    assert commits(hld, "main")[0].sha == bumped.sha
