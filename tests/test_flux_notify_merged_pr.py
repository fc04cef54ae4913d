"""A merged manifest pull request wakes only the clusters of the folders it changed (its merge commit against the
first parent), and every cluster when the manifest repo cannot tell."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

from core.adapters.git_workspace import GitWorkspace
from core.model.workitems import FluxNotify, decode, encode
from core.adapters.storage import FLUX_NOTIFY
from core.settings import load_settings
from core.workers.flux_notify import FluxNotifyJob
from devkit import gitrepos
from devkit.flux_receiver import StandInReceiver
from tests.fakes.records import FakeTrace


def merged_pr(url: str, files: dict[str, str]) -> str:
    """Merge a branch that changes `files` into main with a merge commit (as Azure DevOps completes a PR)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "clone"
        gitrepos.git("clone", "--quiet", "--branch", "main", url, str(work))
        gitrepos.git("checkout", "--quiet", "-b", "pr", cwd=work)
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        gitrepos.git("add", "--all", cwd=work)
        gitrepos.git("commit", "--quiet", "-m", "the PR", cwd=work)
        gitrepos.git("checkout", "--quiet", "main", cwd=work)
        gitrepos.git("merge", "--quiet", "--no-ff", "-m", "Merged PR 7", "pr", cwd=work)
        gitrepos.git("push", "--quiet", "origin", "main", cwd=work)
        return gitrepos.git("rev-parse", "HEAD", cwd=work).decode().strip()


def run(tmp_path: Path, manifest_url: str, commit: str, stand_ins: dict) -> object:
    entries = [{"cluster": name, "env": env, "url": s.url, "secretSetting": f"TOKEN_{i}"}
               for i, (name, (env, s)) in enumerate(stand_ins.items())]
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "FLUX_RECEIVERS": json.dumps(entries),
           "MANIFEST_REPO_URL": manifest_url}
    env.update({f"TOKEN_{i}": s.token.decode() for i, (_, s) in enumerate(stand_ins.values())})
    settings = load_settings(env)
    services = SimpleNamespace(
        settings=settings, trace=FakeTrace(),
        workspace=lambda url, branch, purpose: GitWorkspace(url, branch, base_dir=tmp_path / "work" / purpose))
    item = FluxNotify("azdo:pr-7", "t" * 32, commit, reason="manifest-pr-merged", pr_id=7)
    return FluxNotifyJob(services).process([decode(encode(item), FLUX_NOTIFY)])


def seeded(tmp_path: Path) -> str:
    return gitrepos.bare_repo(tmp_path, {"dev/web.yaml": "a: 1\n", "prod/web.yaml": "a: 1\n"}, name="manifests")


def test_a_merged_pr_wakes_the_clusters_of_the_folders_it_changed_only(tmp_path):
    url = seeded(tmp_path)
    commit = merged_pr(url, {"prod/web.yaml": "a: 2\n"})
    with StandInReceiver("t-prod") as prod, StandInReceiver("t-dev") as dev:
        result = run(tmp_path, url, commit, {"prod-1": ("prod", prod), "dev-1": ("dev", dev)})
    assert result.notified == ("prod-1",) and len(dev.calls) == 0
    assert json.loads(prod.accepted()[0].body)["environments"] == ["prod"]


def test_a_change_at_the_top_level_or_an_unknown_commit_wakes_every_cluster(tmp_path):
    url = seeded(tmp_path)
    top = merged_pr(url, {"kustomization.yaml": "resources: []\n"})
    with StandInReceiver("t-prod") as prod, StandInReceiver("t-dev") as dev:
        assert run(tmp_path, url, top, {"prod-1": ("prod", prod), "dev-1": ("dev", dev)}).notified == (
            "dev-1", "prod-1")
    with StandInReceiver("t-prod") as prod, StandInReceiver("t-dev") as dev:
        result = run(tmp_path / "again", url, "f" * 40, {"prod-1": ("prod", prod), "dev-1": ("dev", dev)})
    assert result.notified == ("dev-1", "prod-1")


def test_an_unreachable_manifest_repo_still_wakes_every_cluster(tmp_path):
    gone = (tmp_path / "missing.git").resolve().as_uri()
    with StandInReceiver("t-prod") as prod:
        assert run(tmp_path, gone, "a" * 40, {"prod-1": ("prod", prod)}).notified == ("prod-1",)
