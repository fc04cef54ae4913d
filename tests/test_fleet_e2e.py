"""The whole fleet path as a user runs it: FLEET_REPO_URL names a git repository whose fleet.yaml defines three
tenants, each with its own HLD and manifest repositories (local bare repos). Everything is wired by `get_services()`
from the app settings, and driven through the function app's own functions (tests/functions.py: the HTTP hooks, the
bump queue function, /api/health), with the work queues, delivery journal and record stores as dict fakes.

One ACR push -> three HLD commits; a fleet.yaml commit pausing one tenant + the fleet repo's Azure DevOps push hook
-> reload -> the next push reaches two; a malformed fleet.yaml commit -> the last good fleet stays and /api/health
says why; a commit resuming the tenant, then a replay of that tenant's share of a push, reaches it alone."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import azure.functions as func
import pytest

import handlers.ops
from core.adapters.storage import IMAGE_PUSHED
from core.model.workitems import decode
from core.settings import get_settings
from core.wiring import Services, install_services, reset_services
from devkit.gitrepos import bare_repo, branches, commits, file_at, push_files
from tests.fakes.deliveries import FakeDeliveryJournal
from tests.fakes.env import no_storage_env  # noqa: F401 - a fixture
from tests.fakes.probes import storage_free_probes
from tests.fakes.queues import AsyncFakeQueues, FakeQueues
from tests.fakes.records import FakeRecords
from tests.functions import call_http, invoke

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ACR_SECRET, AZDO_SECRET = "acr-secret-e2e", "azdo-secret-e2e"
IMAGE = "fabrikam.azurecr.io/fabrikam/frontend"
TENANTS = ("north", "south", "west")


def fleet_yaml(repos: dict[str, tuple[str, str]], paused: str = "") -> str:
    lines = ["tenants:"]
    for name, (hld, manifests) in repos.items():
        lines += [f"  - name: {name}", f"    hld: {{url: '{hld}'}}", f"    manifests: {{url: '{manifests}'}}",
                  "    images: ['fabrikam.azurecr.io/*']"]
        if name == paused:
            lines.append("    paused: true")
    return "\n".join(lines) + "\n"


class App:
    def __init__(self, fleet_url: str, repos: dict[str, tuple[str, str]]) -> None:
        self.fleet_url, self.repos = fleet_url, repos
        self.queues = FakeQueues()

    def acr_push(self, tag: str, event_id: str) -> tuple[int, dict]:
        host, _, repository = IMAGE.partition("/")
        body = json.dumps({"id": event_id, "timestamp": datetime.now(timezone.utc).isoformat(), "action": "push",
                           "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                      "digest": "sha256:" + "5" * 64, "repository": repository, "tag": tag},
                           "request": {"host": host}}).encode()
        req = func.HttpRequest("POST", "/api/hooks/acr", body=body, headers={
            "Authorization": f"Bearer {ACR_SECRET}", "Content-Type": "application/json"})
        resp, _ = call_http("acr_webhook", req)
        return resp.status_code, json.loads(resp.get_body())

    def fleet_pushed(self, commit: str, delivery: int) -> tuple[int, dict]:
        """The Azure DevOps `git.push` service hook for the fleet repository."""
        body = json.dumps({
            "subscriptionId": "6f1c1d0e-7c3a-4c1d-9b34-0d2a7a0c9f11", "notificationId": delivery,
            "id": f"03c164c2-8912-4d5e-8009-37073f8{delivery:05d}", "eventType": "git.push", "publisherId": "tfs",
            "resource": {"repository": {"id": "fleet-id", "name": "fleet", "remoteUrl": self.fleet_url},
                         "refUpdates": [{"name": "refs/heads/main", "oldObjectId": "1" * 40,
                                         "newObjectId": commit}]}}).encode()
        token = base64.b64encode(f"hook:{AZDO_SECRET}".encode()).decode()
        req = func.HttpRequest("POST", "/api/hooks/azdo", body=body, headers={
            "Authorization": f"Basic {token}", "Content-Type": "application/json"})
        resp, _ = call_http("azdo_webhook", req)
        return resp.status_code, json.loads(resp.get_body())

    def run_bump_worker(self) -> list[str]:
        """The bump queue function on every waiting image-pushed message (the host's part: take them, call the
        function per message, delete the message when it returned); the tenants of the items it ran."""
        taken = self.queues.receive(IMAGE_PUSHED, 32, visibility_timeout=300)
        ran = []
        for message in taken:
            msg = func.QueueMessage(id=message.id, body=message.text.encode())   # dequeue count: 1 (queued())
            _, outputs = invoke("bump_worker", "msg", msg)
            assert not outputs.get("image-pushed-poison"), outputs
            self.queues.delete(IMAGE_PUSHED, message)
            ran.append(decode(message.text, IMAGE_PUSHED).tenant)
        return sorted(ran)

    def tag_in_hld(self, tenant: str) -> str:
        text = file_at(self.repos[tenant][0], "main", "fabrikam-project/frontend/dev/config/common.yaml").decode()
        return text.split('tag: "')[1].split('"')[0]

    def replay(self, body: dict) -> tuple[int, dict]:
        req = func.HttpRequest("POST", "/api/ops/replay", body=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
        resp, _ = call_http("ops_replay", req)
        return resp.status_code, json.loads(resp.get_body())

    def health(self) -> dict:
        resp, _ = call_http("health", func.HttpRequest("GET", "/api/health", body=b""))
        return json.loads(resp.get_body())


@pytest.fixture
def app(tmp_path, monkeypatch, no_storage_env):  # noqa: F811
    repos = {}
    for name in TENANTS:
        (tmp_path / name).mkdir()
        repos[name] = (bare_repo(tmp_path / name, EXAMPLES / "hld", name="hld"),
                       bare_repo(tmp_path / name, EXAMPLES / "manifests", name="manifests"))
    fleet_url = bare_repo(tmp_path, {"fleet.yaml": fleet_yaml(repos)}, name="fleet")
    for name, value in {"FLEET_REPO_URL": fleet_url, "FLEET_BRANCH": "main", "ACR_WEBHOOK_SECRET": ACR_SECRET,
                        "AZDO_WEBHOOK_SECRET": AZDO_SECRET, "WRITE_MODE": "direct",
                        "WORK_DIR": str(tmp_path / "work")}.items():
        monkeypatch.setenv(name, value)
    for name in ("HLD_REPO_URL", "MANIFEST_REPO_URL", "AZDO_ORG_URL", "FLUX_RECEIVERS"):
        monkeypatch.delenv(name, raising=False)
    app = App(fleet_url, repos)
    reset_services()
    journal = FakeDeliveryJournal()
    install_services(Services(get_settings(), stores={
        "queues": app.queues, "async_queues": AsyncFakeQueues(app.queues), "deliveries": journal,
        "async_deliveries": journal, **FakeRecords().stores()}))
    monkeypatch.setattr(handlers.ops, "_health_probes", storage_free_probes())
    yield app
    reset_services()


def test_a_fleet_from_its_repository_fans_out_pauses_reloads_and_keeps_the_last_good(app):
    seeds = {name: commits(app.repos[name][0], "main")[0].sha for name in TENANTS}

    # one push -> one delivery per tenant -> one HLD commit in each tenant's own repository
    status, reply = app.acr_push("2.0.1", "push-1")
    assert status == 202, reply
    assert reply["eventId"] == [f"acr:push-1@{name}" for name in TENANTS]
    assert app.run_bump_worker() == list(TENANTS)
    for name in TENANTS:
        head = commits(app.repos[name][0], "main")
        assert head[1].sha == seeds[name] and "2.0.1" in head[0].subject, name
        assert app.tag_in_hld(name) == "2.0.1"

    # the fleet repo pauses south; its push hook reloads the fleet at once
    pausing = push_files(app.fleet_url, "main", {"fleet.yaml": fleet_yaml(app.repos, paused="south")}, "pause")
    status, reply = app.fleet_pushed(pausing, 1)
    assert (status, reply["fleet"]) == (200, {"loaded": pausing, "tenants": list(TENANTS)})
    status, reply = app.acr_push("2.0.2", "push-2")
    assert reply == {"eventId": ["acr:push-2@north", "acr:push-2@west", "acr:push-2@south"],
                     "queued": [IMAGE_PUSHED, IMAGE_PUSHED], "ignored": "tenant south is paused"}
    assert app.run_bump_worker() == ["north", "west"]
    assert [app.tag_in_hld(name) for name in TENANTS] == ["2.0.2", "2.0.1", "2.0.2"]
    south_head = branches(app.repos["south"][0])["main"]

    # a malformed fleet.yaml: refused, the pausing commit's fleet stays in use, and health says why
    bad = push_files(app.fleet_url, "main", {"fleet.yaml": fleet_yaml(app.repos) + "    writeMode: sometimes\n"},
                     "typo")
    status, reply = app.fleet_pushed(bad, 2)
    assert status == 200
    assert reply["fleet"]["refused"] == bad and reply["fleet"]["inUse"] == pausing
    assert reply["fleet"]["error"].startswith("fleet.yaml:")
    health = app.health()
    assert health["fleet"]["commit"] == pausing and health["fleet"]["errorCommit"] == bad
    assert "writeMode" in health["fleet"]["error"]
    assert any(bad[:12] in w and "still serving" in w for w in health.get("warnings", [])), health
    status, reply = app.acr_push("2.0.3", "push-3")
    assert reply["ignored"] == "tenant south is paused"                  # still paused: the last good fleet
    assert app.run_bump_worker() == ["north", "west"]
    assert [app.tag_in_hld(name) for name in TENANTS] == ["2.0.3", "2.0.1", "2.0.3"]
    assert branches(app.repos["south"][0])["main"] == south_head

    # resumed by the next good commit; replaying south's share of the last push brings it to south only
    resumed = push_files(app.fleet_url, "main", {"fleet.yaml": fleet_yaml(app.repos)}, "resume south")
    assert app.fleet_pushed(resumed, 3)[1]["fleet"] == {"loaded": resumed, "tenants": list(TENANTS)}
    health = app.health()
    assert health["fleet"]["commit"] == resumed and "error" not in health["fleet"]
    assert not any(w.startswith("fleet:") for w in health.get("warnings", []))
    status, reply = app.replay({"eventId": "acr:push-3@south"})
    assert (status, reply) == (200, {"eventId": "acr:push-3@south", "queued": [IMAGE_PUSHED], "replayed": True})
    assert app.run_bump_worker() == ["south"]
    assert [app.tag_in_hld(name) for name in TENANTS] == ["2.0.3", "2.0.3", "2.0.3"]
