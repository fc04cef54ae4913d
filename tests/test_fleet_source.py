"""Loading fleet.yaml from its own git repository (a real local bare repo): first load, reload on change, the last
good fleet kept (and the refusal said) when a commit is malformed, head checks that converge instances, and the
fleet repo's push hook answering what it loaded."""
from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from core.adapters.fleet_source import FleetSource, FleetUnavailable
from core.adapters.git_workspace import GitWorkspace
from core.model.fleet import DEFAULT_TENANT
from core.settings import load_settings
from core.wiring import Services
from core.workers.intake import Intake
from devkit.gitrepos import bare_repo, branches, push_files

SECRET = "azdo-secret-fleet"


def fleet_yaml(*names: str, paused: str = "") -> str:
    lines = ["tenants:"]
    for name in names:
        lines += [f"  - name: {name}", f"    manifests: {{url: 'https://dev.azure.com/o/p/_git/{name}-manifests'}}"]
        if name == paused:
            lines.append("    paused: true")
    return "\n".join(lines) + "\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fleet_repo(tmp_path) -> str:
    return bare_repo(tmp_path, {"fleet.yaml": fleet_yaml("alpha", "beta")}, name="fleet")


def source(url: str, tmp_path: Path, clock: Clock | None = None, instance: str = "one") -> FleetSource:
    """Each `instance` has its own working copy, as each scaled-out host has its own disk."""
    workspace = GitWorkspace(url, "main", base_dir=tmp_path / f"work-{instance}" / "fleet")
    return FleetSource(url, "main", workspace, clock=clock or Clock(), background=lambda work: work())


def test_first_use_loads_the_fleet_from_its_repository(fleet_repo, tmp_path):
    fleet = source(fleet_repo, tmp_path).current()

    head = branches(fleet_repo)["main"]
    assert fleet.names == ("alpha", "beta")
    assert fleet.source == f"{fleet_repo}@{head}"


def test_reload_after_a_push_loads_the_new_commit(fleet_repo, tmp_path):
    loader = source(fleet_repo, tmp_path)
    assert loader.current().names == ("alpha", "beta")

    new = push_files(fleet_repo, "main", {"fleet.yaml": fleet_yaml("alpha", "beta", "gamma")}, "add gamma")
    result = loader.reload()

    assert result.loaded and not result.retryable
    assert result.body() == {"fleet": {"loaded": new, "tenants": ["alpha", "beta", "gamma"]}}
    assert loader.current().names == ("alpha", "beta", "gamma")
    assert loader.status().commit == new and loader.status().error == ""


def test_a_malformed_commit_keeps_the_last_good_fleet_and_says_why(fleet_repo, tmp_path):
    loader = source(fleet_repo, tmp_path)
    good = branches(fleet_repo)["main"]
    loader.current()

    bad = push_files(fleet_repo, "main", {"fleet.yaml": fleet_yaml("alpha") + "    writeMode: sometimes\n"}, "oops")
    result = loader.reload()

    assert not result.loaded and not result.retryable
    assert result.body() == {"fleet": {
        "refused": bad, "error": "fleet.yaml:4: tenant alpha.writeMode 'sometimes' is not one of direct, pull-request",
        "inUse": good, "tenants": ["alpha", "beta"]}}
    assert loader.current().names == ("alpha", "beta")
    status = loader.status()
    assert (status.commit, status.error_commit) == (good, bad)
    assert status.error.startswith("fleet.yaml:4: ")

    fixed = push_files(fleet_repo, "main", {"fleet.yaml": fleet_yaml("alpha")}, "fix")
    assert loader.reload().body() == {"fleet": {"loaded": fixed, "tenants": ["alpha"]}}
    assert loader.status().error == "" and loader.current().names == ("alpha",)


def test_a_deleted_fleet_file_keeps_the_last_good_fleet(fleet_repo, tmp_path):
    loader = source(fleet_repo, tmp_path)
    loader.current()
    push_files(fleet_repo, "main", {"fleet.yaml": None, "README.md": "moved\n"}, "delete")

    result = loader.reload()
    assert result.status.error == "fleet.yaml: not found at the root of the fleet repository"
    assert loader.current().names == ("alpha", "beta")


def test_a_symlinked_fleet_file_is_refused(tmp_path):
    url = bare_repo(tmp_path, {"real.yaml": fleet_yaml("alpha")}, name="linked")
    work = tmp_path / "clone"
    from devkit.gitrepos import git
    git("clone", "--quiet", url, str(work))
    (work / "fleet.yaml").symlink_to("/etc/passwd")
    git("add", "fleet.yaml", cwd=work)
    git("commit", "--quiet", "-m", "link", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)

    with pytest.raises(FleetUnavailable, match="fleet.yaml: is a symbolic link"):
        source(url, tmp_path).current()


def test_a_new_instance_starting_on_a_malformed_head_serves_the_newest_good_commit(fleet_repo, tmp_path):
    good = push_files(fleet_repo, "main", {"fleet.yaml": fleet_yaml("alpha", "beta", "gamma")}, "good")
    push_files(fleet_repo, "main", {"fleet.yaml": "tenants: [\n"}, "broken")
    bad = push_files(fleet_repo, "main", {"fleet.yaml": "tenants: []\n"}, "still broken")

    loader = source(fleet_repo, tmp_path, instance="started-late")
    fleet = loader.current()

    assert fleet.names == ("alpha", "beta", "gamma") and fleet.source.endswith(f"@{good}")
    assert loader.status().error_commit == bad and "tenants is empty" in loader.status().error


def test_no_good_fleet_at_all_is_unavailable_and_retried(tmp_path):
    url = bare_repo(tmp_path, {"fleet.yaml": "tenants: nope\n"}, name="bad")
    clock = Clock()
    loader = source(url, tmp_path, clock)

    with pytest.raises(FleetUnavailable, match="fleet.yaml:1: tenants must be a list"):
        loader.current()
    push_files(url, "main", {"fleet.yaml": fleet_yaml("alpha")}, "fix")
    with pytest.raises(FleetUnavailable):
        loader.current()          # not asked again before the retry interval
    clock.now += 5
    assert loader.current().names == ("alpha",)


def test_an_unreachable_repository_keeps_the_fleet_and_is_retryable(fleet_repo, tmp_path):
    loader = source(fleet_repo, tmp_path)
    loader.current()
    moved = tmp_path / "fleet.git"
    moved.rename(tmp_path / "gone.git")

    result = loader.reload()
    assert result.retryable and "cannot read the fleet repository" in result.status.error
    assert loader.current().names == ("alpha", "beta")
    assert result.body()["fleet"]["inUse"] == loader.status().commit


def test_instances_converge_through_the_head_check(fleet_repo, tmp_path):
    """The push hook reaches one instance; the other sees the new head at its next check (every check_seconds)."""
    clock = Clock()
    hooked, other = (source(fleet_repo, tmp_path, clock, "a"), source(fleet_repo, tmp_path, clock, "b"))
    assert hooked.current().names == other.current().names == ("alpha", "beta")

    push_files(fleet_repo, "main", {"fleet.yaml": fleet_yaml("alpha", "beta", "gamma", paused="beta")}, "pause")
    hooked.reload()
    assert hooked.current().tenant("beta").paused

    clock.now += 30
    assert not other.current().tenant("beta").paused     # not due yet: no git call at all
    clock.now += 31
    other.current()                                       # due: the check runs (here: inline) and loads the head
    assert other.current().tenant("beta").paused and other.current().names == ("alpha", "beta", "gamma")
    assert other.status().commit == hooked.status().commit


def test_a_due_check_runs_in_the_background_and_callers_do_not_wait(fleet_repo, tmp_path):
    clock = Clock()
    started: list = []
    workspace = GitWorkspace(fleet_repo, "main", base_dir=tmp_path / "bg")
    loader = FleetSource(fleet_repo, "main", workspace, clock=clock, background=started.append)
    first = loader.current()
    push_files(fleet_repo, "main", {"fleet.yaml": fleet_yaml("alpha")}, "shrink")

    clock.now += 61
    assert loader.current() is first and loader.current() is first
    assert len(started) == 1                              # one check at a time
    started[0]()
    assert loader.current().names == ("alpha",)


def test_callers_never_wait_for_a_running_check(fleet_repo, tmp_path):
    import threading

    class SlowHead:
        """The real workspace, whose head check blocks until released."""
        def __init__(self, workspace):
            self.workspace, self.entered, self.release = workspace, threading.Event(), threading.Event()

        def head(self):
            self.entered.set()
            assert self.release.wait(30)
            return self.workspace.head()

        def __getattr__(self, name):
            return getattr(self.workspace, name)

    clock = Clock()
    slow = SlowHead(GitWorkspace(fleet_repo, "main", base_dir=tmp_path / "slow"))
    slow.release.set()
    loader = FleetSource(fleet_repo, "main", slow, clock=clock)   # the real background thread
    first = loader.current()
    slow.release.clear()
    clock.now += 61
    assert loader.current() is first                      # starts the background check
    assert slow.entered.wait(30)
    done = threading.Event()
    threading.Thread(target=lambda: (loader.current(), done.set()), daemon=True).start()
    assert done.wait(10)                                  # answered while the check holds the lock
    slow.release.set()


# ---------------------------------------------------------------------------------------------- wiring + hook


def settings_for(fleet_url: str = "", **extra: str):
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "AZDO_WEBHOOK_SECRET": SECRET,
           "HLD_REPO_URL": "https://dev.azure.com/o/p/_git/hld", "FLEET_REPO_URL": fleet_url, **extra}
    return load_settings({k: v for k, v in env.items() if v})


def test_services_fleet_comes_from_the_repository_when_configured(fleet_repo, tmp_path):
    services = Services(settings_for(fleet_repo, WORK_DIR=str(tmp_path / "w")))
    assert services.fleet.names == ("alpha", "beta")
    assert services.fleet_source.workspace is services.workspace(fleet_repo, "main", purpose="fleet")


def test_without_a_fleet_repository_the_app_settings_define_the_default_tenant():
    services = Services(settings_for())
    assert services.fleet_source is None and services.fleet.names == (DEFAULT_TENANT,)


def push_event(repo_url: str, commit: str, branch: str = "main", delivery: int = 1) -> bytes:
    return json.dumps({
        "subscriptionId": "6f1c1d0e-7c3a-4c1d-9b34-0d2a7a0c9f11", "notificationId": delivery,
        "id": "03c164c2-8912-4d5e-8009-3707d5f83734", "eventType": "git.push", "publisherId": "tfs",
        "resource": {"repository": {"id": "r1", "name": "fleet", "remoteUrl": repo_url},
                     "refUpdates": [{"name": f"refs/heads/{branch}", "oldObjectId": "0" * 40,
                                     "newObjectId": commit}]}}).encode()


def hook(intake: Intake, body: bytes) -> tuple[int, dict]:
    token = base64.b64encode(f"autopilot:{SECRET}".encode()).decode()
    headers = {"authorization": f"Basic {token}", "content-type": "application/json"}
    accepted = asyncio.run(intake.receive("azdo", headers, {}, body))
    assert accepted.outputs == {}                         # a reload is no work item
    return accepted.reply.status, accepted.reply.body


def intake_for(loader: FleetSource, url: str) -> Intake:
    def no_storage():
        raise AssertionError("a fleet reload touches no storage")
    return Intake(settings_for(url), None, None, no_storage, no_storage, loader.current, fleet_source=loader)


def test_a_push_to_the_fleet_repository_reloads_it_and_says_what_was_loaded(fleet_repo, tmp_path):
    loader = source(fleet_repo, tmp_path)
    loader.current()
    intake = intake_for(loader, fleet_repo)

    new = push_files(fleet_repo, "main", {"fleet.yaml": fleet_yaml("alpha", "gamma")}, "swap")
    status, body = hook(intake, push_event(fleet_repo + "/", new))
    assert status == 200
    assert body["fleet"] == {"loaded": new, "tenants": ["alpha", "gamma"]}
    assert loader.current().names == ("alpha", "gamma")

    bad = push_files(fleet_repo, "main", {"fleet.yaml": "tenants:\n  - name: Gamma\n"}, "bad")
    status, body = hook(intake, push_event(fleet_repo, bad, delivery=2))
    assert status == 200
    assert body["fleet"]["refused"] == bad and body["fleet"]["inUse"] == new
    assert body["fleet"]["error"].startswith("fleet.yaml:2: tenants[0].name 'Gamma' is not a slug")
    assert loader.current().names == ("alpha", "gamma")


def test_fleet_push_hook_edge_cases(fleet_repo, tmp_path):
    loader = source(fleet_repo, tmp_path)
    intake = intake_for(loader, fleet_repo)
    head = branches(fleet_repo)["main"]

    status, body = hook(intake, push_event(fleet_repo, head, branch="feature"))
    assert (status, body["ignored"]) == (200, "push to the fleet repository did not update refs/heads/main")
    status, body = hook(intake, push_event(fleet_repo, "0" * 40))
    assert status == 200 and "deleted the fleet branch" in body["ignored"]
    status, body = hook(intake, push_event(fleet_repo, "not-a-sha"))
    assert status == 400 and "is not a commit id" in body["error"]

    (tmp_path / "fleet.git").rename(tmp_path / "elsewhere.git")
    status, body = hook(intake, push_event(fleet_repo, head))
    assert status == 503 and "cannot read the fleet repository" in body["fleet"]["error"]
