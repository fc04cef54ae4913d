"""The hld-changed worker: HLD branch head -> manifest repo, on real bare repos and the dict record stores and
queues (tests/fakes/)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.workers.bump import BumpService
from core.generate import GenerationError
from core.workers.manifest_update import MANIFEST_BOT_BRANCH, GenerationService
from core.adapters.git_workspace import GitWorkspace
from core.adapters.pull_requests import PullRequests
from core.workers.runners import GenerateJob, QueuedMessage, QueueWorker
from core.adapters.storage import HLD_CHANGED, Storage
from core.model.workitems import HldChanged, encode
from devkit.gitrepos import bare_repo, branches, commits, file_at, push_files
from tests.azdo_fake import azdo  # noqa: F401
from tests.fakes.records import FakeRecords, records, table_records  # noqa: F401  (records: a fixture)
from tests.fakes.queues import FakeQueues
from tests.fakes.workers import worker_services
from tests.test_bump import EXAMPLE_HLD, FRONTEND_DEV, push

EXAMPLES = EXAMPLE_HLD.parent


@pytest.fixture
def repos(tmp_path):
    return (bare_repo(tmp_path, EXAMPLE_HLD, name="hld"),
            bare_repo(tmp_path, EXAMPLES / "manifests", name="manifests"))


def make_generation(repos, records: FakeRecords | Storage, tmp_path: Path, mode: str = "direct",
                    prs=None) -> GenerationService:
    """The generation service on `records` (the fakes), or on Table storage when given a `Storage`."""
    records = table_records(records) if isinstance(records, Storage) else records
    hld, manifests = repos
    return GenerationService(hld=GitWorkspace(hld, "main", base_dir=tmp_path / "gen"),
                             manifests=GitWorkspace(manifests, "main", base_dir=tmp_path / "write"),
                             hld_url=hld, manifest_url=manifests, mode=mode, helm_mode="rendered", helm_bin="",
                             trace=records.trace, cache_dir=tmp_path / "cache", pull_requests=prs)


def changed(reason: str = "push", **kw) -> HldChanged:
    return HldChanged(event_id=f"e-{reason}", trace_id="t" * 32, reason=reason, **kw)


def frontend_release(manifests: str, ring: str) -> str:
    path = f"prod/fabrikam-project/frontend/{ring}/chart.yaml"
    content = file_at(manifests, "main", path)
    assert content is not None, f"{path} missing"
    return content.decode()


def test_generates_prod_folder_in_helmrelease_mode_with_trailers(repos, records, tmp_path):
    hld, manifests = repos
    result = make_generation(repos, records, tmp_path).process([changed(pr_id=7)])
    assert result.action == "committed"
    head = commits(manifests, "main", 1)[0]
    assert head.trailers["HLD-Commit"] == branches(hld)["main"] == result.hld_commit
    assert head.trailers["HLD-PR"] == "7"
    assert head.subject == f"Generate manifests from HLD {result.hld_commit[:7]}: seed"
    release = frontend_release(manifests, "dev")
    assert "kind: HelmRelease" in release and "tag: 1.4.0" in release.replace('"', "")
    assert file_at(manifests, "main", "README.md") is not None  # top-level files survive


def test_regenerating_the_same_hld_commits_nothing_and_ten_items_make_one_generation(repos, records, tmp_path):
    hld, manifests = repos
    service = make_generation(repos, records, tmp_path)
    assert service.process([changed(f"r{i}") for i in range(10)]).action == "committed"
    before = branches(manifests)["main"]
    assert service.process([changed()]).action == "up-to-date"
    assert branches(manifests)["main"] == before


def run_one(services, item: HldChanged, dequeue_count: int = 1):
    """What one generate_worker invocation for `item` does (without the Functions host): its Settled, or it raises."""
    worker = QueueWorker(HLD_CHANGED, lambda: GenerateJob(services))
    return asyncio.run(worker.run(QueuedMessage(f"m-{item.event_id}", encode(item), dequeue_count)))


def test_queued_items_for_one_hld_are_taken_into_one_run(repos, records, tmp_path):
    hld, manifests = repos
    queues = FakeQueues()
    for i in range(9):
        queues.enqueue(HLD_CHANGED, encode(changed(f"q{i}")))
    services = worker_services(records, queues, generation=make_generation(repos, records, tmp_path))
    settled = run_one(services, changed("first"))
    assert settled.result.action == "committed" and settled.poison == ()
    assert queues.queue_depth(HLD_CHANGED) == 0
    assert len(commits(manifests, "main")) == 2


def test_hld_change_that_renders_the_same_makes_no_commit(repos, records, tmp_path):
    hld, manifests = repos
    service = make_generation(repos, records, tmp_path)
    service.process([changed()])
    push_files(hld, "main", {"NOTES.md": "nothing that renders\n"}, "Add notes")
    before = branches(manifests)["main"]
    assert service.process([changed()]).action == "unchanged"
    assert branches(manifests)["main"] == before


def test_broken_component_fails_and_leaves_manifests_untouched(repos, records, tmp_path):
    hld, manifests = repos
    push_files(hld, "main", {"fabrikam-project/frontend/dev/component.yaml":
                             "name: dev\nsubcomponents:\n- name: evil\n  method: local\n  path: ../../../../etc\n"},
               "Point a component outside the checkout")
    before = branches(manifests)["main"]
    with pytest.raises(GenerationError, match="evil|outside|\\.\\."):
        make_generation(repos, records, tmp_path).process([changed()])
    assert branches(manifests)["main"] == before


def test_pull_request_mode_uses_one_superseded_bot_branch(repos, records, tmp_path, azdo):  # noqa: F811
    hld, manifests = repos
    azdo.add_repo("manifests")
    service = make_generation(repos, records, tmp_path, mode="pull-request",
                              prs=PullRequests(azdo.gateway(), "manifests"))
    first = service.process([changed()])
    assert first.action == "pull-request" and MANIFEST_BOT_BRANCH in branches(manifests)
    push_files(hld, "main", {FRONTEND_DEV: file_at(hld, "main", FRONTEND_DEV).decode().replace('"1.4.0"', '"1.4.5"')},
               "Bump frontend by hand")
    second = service.process([changed()])
    assert second.pr_id == first.pr_id and len(azdo.prs) == 1
    assert "1.4.5" in file_at(manifests, MANIFEST_BOT_BRANCH, "prod/fabrikam-project/frontend/dev/chart.yaml").decode()
    assert service.process([changed()]).action == "up-to-date"


def test_acr_push_flows_through_bump_and_generation_with_trace(repos, records, tmp_path):
    """Issue 4 done-when: bump + generation in direct mode; prod/ holds the new tag; regenerating commits nothing."""
    hld, manifests = repos
    bump = BumpService(repo_url=hld, branch="main", workspace=GitWorkspace(hld, "main", base_dir=tmp_path / "w"),
                       high_water=records.high_water, trace=records.trace, mode="direct")
    item = push("fabrikam/frontend", "1.4.7")
    queued = list(bump.process([item]).follow_ups)
    generation = make_generation(repos, records, tmp_path)
    result = generation.process(queued)
    assert result.action == "committed" and result.hld_commit == branches(hld)["main"]
    assert "tag: 1.4.7" in frontend_release(manifests, "dev").replace('"', "")
    assert "tag: 1.4.7" in frontend_release(manifests, "prod").replace('"', "")
    assert item.trace_id in commits(manifests, "main", 1)[0].trailers["Trace-Id"]
    before = branches(manifests)["main"]
    assert generation.process(queued).action == "up-to-date"
    assert branches(manifests)["main"] == before
    rows = records.trace.rows_for_trace(item.trace_id)
    dev = next(r for r in rows if r.env == "dev")
    assert [s.name for s in dev.stages] == ["received", "hld-commit", "manifest-commit"]
    assert dev.manifest_commit_id == result.manifest_commit


def test_a_completed_hld_pr_adds_merge_and_manifest_stages_to_the_push_trace(repos, records, tmp_path):
    hld, manifests = repos
    trace = records.trace
    key = f"{FRONTEND_DEV}#subcomponents.chart.config.image"
    trace.record("a" * 32, key, "received", actor="acr")
    trace.record("a" * 32, key, "hld-pr", actor="gitops-autopilot", fields={"pr": "5"}, detail={"pr": 5})
    text = file_at(hld, "main", FRONTEND_DEV).decode().replace('"1.4.0"', '"1.4.4"')
    merge = push_files(hld, "main", {FRONTEND_DEV: text},
                       "Merged PR 5: Bump frontend in dev: 1.4.0 -> 1.4.4\n\nTrace-Id: " + "a" * 32)
    result = make_generation(repos, records, tmp_path).process([changed("pr-completed", pr_id=5, commit=merge)])
    assert result.action == "committed" and result.trace_ids == ("a" * 32,)
    [row] = trace.rows_for_trace("a" * 32)
    assert [s.name for s in row.stages] == ["received", "hld-pr", "hld-merge", "manifest-commit"]
    assert row.hld_commit_id == merge and row.manifest_commit_id == result.manifest_commit
