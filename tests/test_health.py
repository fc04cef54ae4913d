"""GET /api/health with real git remotes (file:// bare repos) and the Azure DevOps fake: on Azurite where the check
is about Azure Storage itself (reachable, a table gone), otherwise on the fakes (tests/fakes/)."""
from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func
import pytest

from core.adapters.deliveries import DELIVERIES_TABLE, JOURNAL_TABLE
from core.adapters.git_workspace import GitError, pat_auth_header
from core.ops.health import TABLES, RepoProbe, StoreProbe, check_health, ls_remote
from core.wiring import get_services, reset_services
from core.adapters.storage import DEV_KEY, IMAGE_PUSHED, PR_REVIEW, WORK_QUEUES, dev_connection_string, poison_queue
from devkit.azurite import free_port
from devkit.gitrepos import bare_repo, branches
from handlers import ops
from tests.azdo_fake import BOT_ID, ORG, PAT, PROJECT, azdo  # noqa: F401  (the fixture)
from tests.fakes.env import NO_STORAGE
from tests.fakes.probes import FakeAccount, StoresOf, storage_free_probes
from tests.fakes.queues import FakeQueues
from tests.fakes.records import install

ACR_SECRET = "acr-secret-health-1"
AZDO_SECRET = "azdo-secret-health-2"


@pytest.fixture
def remotes(tmp_path) -> dict[str, str]:
    return {"hld": bare_repo(tmp_path, {"README.md": "hld\n"}, name="hld"),
            "manifest": bare_repo(tmp_path, {"README.md": "manifests\n"}, name="manifests", branch="deploy")}


def _app_settings(monkeypatch, remotes, connection: str):
    monkeypatch.setenv("AzureWebJobsStorage", connection)
    monkeypatch.setenv("ACR_WEBHOOK_SECRET", ACR_SECRET)
    monkeypatch.setenv("AZDO_WEBHOOK_SECRET", AZDO_SECRET)
    monkeypatch.setenv("HLD_REPO_URL", remotes["hld"])
    monkeypatch.setenv("MANIFEST_REPO_URL", remotes["manifest"])
    monkeypatch.setenv("MANIFEST_BRANCH", "deploy")
    monkeypatch.setenv("WRITE_MODE", "direct")
    monkeypatch.delenv("AZDO_ORG_URL", raising=False)
    monkeypatch.delenv("AZDO_PAT", raising=False)
    reset_services()
    yield connection
    reset_services()


@pytest.fixture
def app_env(azurite, monkeypatch, remotes):
    yield from _app_settings(monkeypatch, remotes, azurite)


@pytest.fixture
def checks_env(monkeypatch, remotes):
    """The checks that are not about storage: no storage at all, the store probes answer healthy, the record
    stores are the dict fakes."""
    install(monkeypatch)
    monkeypatch.setattr(ops, "_health_probes", storage_free_probes())
    yield from _app_settings(monkeypatch, remotes, NO_STORAGE)


@pytest.fixture
def offline_env(monkeypatch, remotes):
    """App settings whose storage is a closed port, with the app's own health probes."""
    yield from _app_settings(monkeypatch, remotes, NO_STORAGE)


def get_health() -> tuple[int, dict, str]:
    resp = asyncio.run(ops.health(func.HttpRequest("GET", "/api/health", body=b"")))
    text = resp.get_body().decode()
    return resp.status_code, json.loads(text), text


def assert_no_secrets(text: str) -> None:
    for secret in (ACR_SECRET, AZDO_SECRET, PAT, DEV_KEY):
        assert secret not in text


def test_healthy_reports_queues_repos_and_version(app_env, storage, remotes):
    status, body, text = get_health()

    assert status == 200
    assert body["status"] == "healthy" and body["version"] == "0.1.0"
    assert body["storage"] == {"reachable": True}
    assert body["queues"] == {name: {"depth": 0, "poison": 0} for name in WORK_QUEUES}
    assert body["tools"] == {"git": True}  # helm is only needed (and checked) with HELM_MODE=rendered
    assert body["repos"] == {
        "hld": {"reachable": True, "branch": "main", "head": branches(remotes["hld"])["main"]},
        "manifest": {"reachable": True, "branch": "deploy", "head": branches(remotes["manifest"])["deploy"]}}
    assert "azdo" not in body and "failing" not in body and "warnings" not in body
    assert_no_secrets(text)


def test_poison_messages_are_a_warning_not_a_failure(checks_env, monkeypatch):
    queues = FakeQueues()
    monkeypatch.setattr(ops, "_health_probes", storage_free_probes(stores=StoresOf(FakeAccount(queues), StoreProbe())))
    queues.enqueue(IMAGE_PUSHED, "{}")
    queues.enqueue(poison_queue(PR_REVIEW), "{}")
    queues.enqueue(poison_queue(PR_REVIEW), "{}")

    status, body, _ = get_health()

    assert status == 200 and body["status"] == "healthy"
    assert body["queues"][IMAGE_PUSHED] == {"depth": 1, "poison": 0}
    assert body["queues"][PR_REVIEW] == {"depth": 0, "poison": 2}
    [warning] = body["warnings"]
    assert "pr-review-poison holds 2 message(s)" in warning


def test_storage_down_is_503_without_secrets(offline_env, monkeypatch):
    dead = free_port()
    monkeypatch.setenv("AzureWebJobsStorage", dev_connection_string(queue_port=dead, table_port=dead))
    reset_services()

    status, body, text = get_health()

    assert status == 503 and body["status"] == "unhealthy"
    assert body["storage"] == {"reachable": False}
    storage_failures = [f for f in body["failing"] if f.startswith("storage: ")]
    assert storage_failures[0].startswith(f"storage: queue {WORK_QUEUES[0]}: ")
    assert storage_failures[1].startswith(f"storage: table {TABLES[0]}: ")
    assert body["repos"]["hld"]["reachable"] is True  # the other checks still ran
    assert_no_secrets(text)


def port_of(connection: str, service: str) -> int:
    return int(re.search(rf"{service}Endpoint=http://127\.0\.0\.1:(\d+)/", connection).group(1))


def test_table_storage_down_is_503_naming_the_table(app_env, monkeypatch):
    """#16.10: the queues answer but Table storage does not (intake answers 503 then): so must health."""
    monkeypatch.setenv("AzureWebJobsStorage", dev_connection_string(queue_port=port_of(app_env, "Queue"),
                                                                    table_port=free_port()))
    reset_services()

    status, body, text = get_health()

    assert status == 503 and body["storage"] == {"reachable": False}
    assert body["queues"] == {name: {"depth": 0, "poison": 0} for name in WORK_QUEUES}
    [failure] = body["failing"]  # one line for the table service, not one timeout per table
    assert failure == f"storage: table {DELIVERIES_TABLE}: ServiceRequestError"
    assert_no_secrets(text)


def test_every_table_intake_and_workers_use_is_checked(app_env):
    assert get_health()[0] == 200
    services = get_services()
    services.storage.service_clients[1].delete_table(JOURNAL_TABLE)
    ops._health_probes.stores = StoreProbe()  # the handler's probe caches its last answer for a few seconds

    status, body, _ = get_health()

    assert status == 503
    assert body["failing"] == [f"storage: table {JOURNAL_TABLE} was deleted (restart the app: it creates its tables "
                               "on first use)"]


def test_store_answers_are_cached_for_the_ttl_per_storage():
    now = [50.0]
    probe = StoreProbe(ttl=10, clock=lambda: now[0])
    queues = FakeQueues()
    storage = FakeAccount(queues)

    first = probe.check(storage)
    queues.enqueue(IMAGE_PUSHED, "{}")
    now[0] += 9
    cached = probe.check(storage)
    fresh_storage = probe.check(FakeAccount(queues))
    now[0] += 2
    expired = probe.check(storage)

    assert not first.failing and first.queues[IMAGE_PUSHED]["depth"] == 0
    assert cached is first
    assert fresh_storage.queues[IMAGE_PUSHED]["depth"] == 1 and expired.queues[IMAGE_PUSHED]["depth"] == 1


def test_no_git_executable_is_503_naming_the_fix_and_skips_the_repos(checks_env):
    no_git = storage_free_probes(which=lambda name: None if name == "git" else f"/bin/{name}")
    report = check_health(get_services, no_git)

    assert report.status == 503 and report.body["tools"] == {"git": False}
    [failure] = report.body["failing"]
    assert failure.startswith("git: git executable not found") and "container image" in failure
    assert report.body["repos"] == {}  # asking a remote needs git: no second, confusing failure per repo


def test_rendered_mode_needs_helm(checks_env, monkeypatch):
    monkeypatch.setenv("HELM_MODE", "rendered")
    monkeypatch.setenv("HELM_BIN", "/opt/helm/helm")
    reset_services()
    found = {"git": "/usr/bin/git"}

    report = check_health(get_services, storage_free_probes(which=found.get))
    assert report.status == 503 and report.body["tools"] == {"git": True, "helm": False}
    [failure] = report.body["failing"]
    assert failure.startswith("helm: helm executable '/opt/helm/helm' not found") and "HELM_MODE=helmrelease" in failure

    found["/opt/helm/helm"] = "/opt/helm/helm"
    report = check_health(get_services, storage_free_probes(which=found.get))
    assert report.status == 200 and report.body["tools"] == {"git": True, "helm": True}


def test_missing_branch_and_missing_repo_fail(checks_env, monkeypatch, remotes, tmp_path):
    monkeypatch.setenv("HLD_BRANCH", "release")
    monkeypatch.setenv("MANIFEST_REPO_URL", (tmp_path / "gone.git").as_uri())
    reset_services()

    status, body, _ = get_health()

    assert status == 503
    assert body["repos"]["hld"] == {"reachable": False, "branch": "release"}
    hld_failure, manifest_failure = body["failing"]
    assert hld_failure.startswith("hld repo: ") and "'release' not found" in hld_failure
    assert manifest_failure.startswith("manifest repo: ") and "gone.git" in manifest_failure


def test_settings_error_is_503(checks_env, monkeypatch):
    monkeypatch.setenv("WRITE_MODE", "sideways")
    reset_services()
    status, body, _ = get_health()
    assert status == 503
    assert body["failing"] == ["settings: WRITE_MODE='sideways' is not one of direct, pull-request"]


def test_azdo_identity_is_checked_when_configured(checks_env, monkeypatch, azdo):  # noqa: F811
    monkeypatch.setenv("AZDO_ORG_URL", ORG)
    monkeypatch.setenv("AZDO_PROJECT", PROJECT)
    monkeypatch.setenv("AZDO_PAT", PAT)
    reset_services()

    status, body, text = get_health()
    assert status == 200
    assert body["azdo"] == {"reachable": True, "identityId": BOT_ID}
    assert_no_secrets(text)

    reset_services()
    azdo.fail_next("GET", "/_apis/ConnectionData", status=401)
    status, body, text = get_health()
    assert status == 503
    assert body["azdo"] == {"reachable": False}
    [failure] = body["failing"]
    assert failure.startswith("azdo: ") and "401" in failure
    assert_no_secrets(text)


def test_repo_answers_are_cached_for_the_ttl(tmp_path):
    url = bare_repo(tmp_path, {"a.txt": "a\n"}, name="cached")
    now = [1000.0]
    probe = RepoProbe(ttl=60, clock=lambda: now[0])

    first = probe.check(url, "main", None)
    shutil.rmtree(urlsplit(url).path)
    now[0] += 59
    cached = probe.check(url, "main", None)
    now[0] += 2
    expired = probe.check(url, "main", None)

    assert first.reachable and first.head == cached.head and cached.reachable
    assert not expired.reachable and "cached.git" in expired.error


def test_ls_remote_never_shows_the_credential(tmp_path):
    dead = free_port()
    with pytest.raises(GitError) as raised:
        ls_remote(f"https://127.0.0.1:{dead}/fabrikam/Fabrikam/_git/hld", "main", pat_auth_header(PAT), timeout=10)
    message = str(raised.value)
    assert f"127.0.0.1:{dead}" in message
    assert PAT not in message and "Basic" not in message


def test_ls_remote_reads_the_branch_head(tmp_path):
    url = bare_repo(tmp_path, {"a.txt": "a\n"}, name="heads", branch="trunk")
    assert ls_remote(url, "trunk") == branches(url)["trunk"]
    assert Path(urlsplit(url).path).is_dir()


def test_the_outbox_count_is_asked_once_per_ttl_per_journal():
    from core.ops import health

    calls = []

    class Journal:
        def stuck(self, limit: int) -> list[str]:
            calls.append(limit)
            return ["acr:x"]

    now = [100.0]
    probe = health.OutboxProbe(ttl=10, clock=lambda: now[0])
    journal, other = Journal(), Journal()
    assert probe.stuck(journal, 3) == ["acr:x"] and probe.stuck(journal, 3) == ["acr:x"]
    assert calls == [3]                     # cached: health stays cheap to poll
    probe.stuck(other, 3)                   # new settings, new journal: asked at once
    now[0] += 11
    probe.stuck(other, 3)                   # the ttl passed
    assert calls == [3, 3, 3]
