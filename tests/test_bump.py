"""The image bump worker end to end: real bare git repos, the dict record stores and queues (tests/fakes/;
Azurite only where several processes share the high-water marks), Azure DevOps fake."""
from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

import pytest

from core.workers.bump import BumpService
from core.adapters.git_workspace import GitContention, GitError, GitWorkspace
from core.rules.policy import PolicyError
from core.adapters.pull_requests import PullRequests
from core.workers.runners import BumpJob, QueuedMessage, QueueWorker
from core.adapters.storage import IMAGE_PUSHED, Storage
from core.model.workitems import HldChanged, ImagePushed, encode
from devkit.gitrepos import bare_repo, branches, commits, file_at, push_files
from tests.azdo_fake import azdo  # noqa: F401
from tests.fakes.queues import FakeQueues
from tests.fakes.records import FakeRecords, records, table_records  # noqa: F401  (records: a fixture)
from tests.fakes.workers import worker_services

EXAMPLE_HLD = Path(__file__).resolve().parent.parent / "examples" / "hld"
REGISTRY = "fabrikam.azurecr.io"
FRONTEND_DEV = "fabrikam-project/frontend/dev/config/common.yaml"
FRONTEND_PROD = "fabrikam-project/frontend/prod/config/common.yaml"
BACKEND_DEV = "fabrikam-project/backend/dev/config/common.yaml"
BACKEND_PROD = "fabrikam-project/backend/prod/config/common.yaml"

_counter = iter(range(1, 1_000_000))


def run_one(services, item, dequeue_count: int = 1):
    """What one bump_worker invocation for `item` does (without the Functions host): its Settled, or it raises."""
    worker = QueueWorker(IMAGE_PUSHED, lambda: BumpJob(services))
    return asyncio.run(worker.run(QueuedMessage(f"m-{item.event_id}", encode(item), dequeue_count)))


def push(repository: str, tag: str, *, registry: str = REGISTRY, pushed_at: str = "2026-01-01T00:00:00Z",
         event: str | None = None) -> ImagePushed:
    n = next(_counter)
    event = event or f"evt-{n}"
    return ImagePushed(event_id=f"acr:{event}", trace_id=f"trace{n:027d}", registry=registry,
                       repository=repository, tag=tag, digest=f"sha256:{n:064d}",
                       media_type="application/vnd.docker.distribution.manifest.v2+json", pushed_at=pushed_at,
                       acr_event_id=event, received_at="2026-01-01T00:00:01+00:00")


@pytest.fixture
def hld(tmp_path) -> str:
    return bare_repo(tmp_path, EXAMPLE_HLD, name="hld")


def make_service(url: str, records: FakeRecords | Storage, tmp_path: Path, *, mode: str = "direct",
                 is_hld: bool = True, prs: PullRequests | None = None, work: str = "work") -> BumpService:
    """The bump service on `records` (the fakes), or on Table storage when given a `Storage`."""
    records = table_records(records) if isinstance(records, Storage) else records
    return BumpService(repo_url=url, branch="main", workspace=GitWorkspace(url, "main", base_dir=tmp_path / work),
                       high_water=records.high_water, trace=records.trace, mode=mode, is_hld=is_hld,
                       pull_requests=prs)


def changed_lines(url: str, path: str, old_ref: str = "main~1", new_ref: str = "main") -> list[tuple[str, str]]:
    old = file_at(url, old_ref, path).decode().splitlines()
    new = file_at(url, new_ref, path).decode().splitlines()
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new) if a != b]


def test_push_changes_exactly_the_tag_lines_of_every_ring_using_the_image(hld, records, tmp_path):
    service = make_service(hld, records, tmp_path)
    result = service.process([push("fabrikam/frontend", "1.4.1")])
    assert {o.target.file for o in result.bumped} == {FRONTEND_DEV, FRONTEND_PROD}
    assert changed_lines(hld, FRONTEND_DEV) == [('        tag: "1.4.0"', '        tag: "1.4.1"')]
    assert changed_lines(hld, FRONTEND_PROD) == [('        tag: "1.3.2"', '        tag: "1.4.1"')]
    assert file_at(hld, "main", BACKEND_DEV) == file_at(hld, "main~1", BACKEND_DEV)
    head = commits(hld, "main", 1)[0]
    assert head.sha == result.commit
    assert head.subject.startswith("Bump 2 images: frontend/")
    assert head.trailers["Image"] == f"{REGISTRY}/fabrikam/frontend:1.4.1"
    assert head.trailers["Trace-Id"] == result.outcomes[0].item.trace_id
    assert head.trailers["ACR-Event"] == result.outcomes[0].item.acr_event_id
    assert head.trailers["Image-Digest"] == result.outcomes[0].item.digest
    [changed] = result.follow_ups
    assert isinstance(changed, HldChanged) and changed.commit == result.commit and changed.reason == "bump"


def test_single_target_commit_message_names_service_env_and_tags(hld, records, tmp_path):
    service = make_service(hld, records, tmp_path)
    result = service.process([push("fabrikam/backend", "2.0.4")])
    head = commits(hld, "main", 1)[0]
    assert head.subject == "Bump backend in dev: 2.0.3 -> 2.0.4"
    skipped = [o for o in result.outcomes if o.action == "skip"]
    assert [o.target.file for o in skipped] == [BACKEND_PROD]
    assert "not among the allowed environments" in skipped[0].reason


def test_out_of_order_duplicate_and_replayed_deliveries_change_nothing(hld, records, tmp_path):
    service = make_service(hld, records, tmp_path)
    newer = push("fabrikam/frontend", "1.5.0")
    first = service.process([newer])
    head = branches(hld)["main"]
    older = service.process([push("fabrikam/frontend", "1.4.9")])
    assert {o.action for o in older.outcomes} == {"skip"} and older.commit is None and older.follow_ups == ()
    again = service.process([newer])
    assert {o.action for o in again.outcomes} == {"noop"} and again.commit is None
    assert branches(hld)["main"] == head
    assert [f.commit for f in first.follow_ups] == [head]
    # A redelivery may be the retry of a run whose generation request was never written: generation is asked to
    # check again (it finds the HLD head already generated and does nothing).
    [recheck] = again.follow_ups
    assert isinstance(recheck, HldChanged) and recheck.commit is None and recheck.trace_id == newer.trace_id


def test_high_water_mark_survives_a_manual_rollback_in_the_hld(hld, records, tmp_path):
    service = make_service(hld, records, tmp_path)
    service.process([push("fabrikam/frontend", "1.6.0")])
    text = file_at(hld, "main", FRONTEND_DEV).decode().replace('"1.6.0"', '"1.4.0"')
    push_files(hld, "main", {FRONTEND_DEV: text}, "Roll frontend dev back to 1.4.0")
    late = service.process([push("fabrikam/frontend", "1.5.0")])
    dev = next(o for o in late.outcomes if o.target.file == FRONTEND_DEV)
    assert dev.action == "skip" and "high-water mark 1.6.0" in dev.reason
    assert b'"1.4.0"' in file_at(hld, "main", FRONTEND_DEV)


def test_burst_of_fifty_pushes_for_five_services_is_one_commit(tmp_path, records):
    files = {}
    for i in range(5):
        files[f"apps/svc{i}/deploy.yaml"] = (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: svc{0}\nspec:\n  template:\n    spec:\n"
            "      containers:\n      - name: app\n        image: {1}/svc{0}:1.0.0\n").format(i, REGISTRY)
    url = bare_repo(tmp_path, files, name="manifests")
    service = make_service(url, records, tmp_path, is_hld=False)
    pushes = [push(f"svc{i % 5}", f"1.0.{1 + i // 5}") for i in range(50)]
    before = len(commits(url, "main"))
    result = service.process(pushes)
    assert len(commits(url, "main")) == before + 1
    for i in range(5):
        assert f"image: {REGISTRY}/svc{i}:1.0.10\n".encode() in file_at(url, "main", f"apps/svc{i}/deploy.yaml")
    assert len(result.bumped) == 5


def test_queue_batching_takes_waiting_messages_into_one_run(tmp_path, records):
    url = bare_repo(tmp_path, {"k/kustomization.yaml": f"images:\n- name: {REGISTRY}/api\n  newTag: 1.0.0\n",
                               "k/other.yaml": "a: 1\n"}, name="manifests")
    service = make_service(url, records, tmp_path, is_hld=False)
    queues = FakeQueues()
    for i in range(1, 20):
        queues.enqueue(IMAGE_PUSHED, encode(push("api", f"1.0.{i}")))
    settled = run_one(worker_services(records, queues, bump=service), push("api", "1.0.20"))
    assert settled.poison == () and settled.result.commit is not None
    assert queues.queue_depth(IMAGE_PUSHED) == 0
    assert [c.subject for c in commits(url, "main")][0] == "Bump api in k: 1.0.0 -> 1.0.20"
    assert len(commits(url, "main")) == 2
    assert b"newTag: 1.0.20" in file_at(url, "main", "k/kustomization.yaml")


def test_numeric_ordering_from_autopilot_yaml(tmp_path, records):
    url = bare_repo(tmp_path, {
        "autopilot.yaml": "rules:\n  - image: '*/web'\n    ordering: numeric\n    tagFilter: '^main-(?P<n>\\d+)$'\n",
        "prod/web.yaml": f"kind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - image: {REGISTRY}/web:main-9\n",
    }, name="m")
    service = make_service(url, records, tmp_path, is_hld=False)
    assert service.process([push("web", "main-10")]).commit is not None
    skipped = service.process([push("web", "feature-99"), push("web", "main-8")])
    assert skipped.commit is None
    assert b"web:main-10" in file_at(url, "main", "prod/web.yaml")


def test_malformed_policy_fails_naming_file_and_line_and_writes_nothing(tmp_path, records):
    url = bare_repo(tmp_path, {
        "autopilot.yaml": "defaults:\n  ordering: semver\nrules:\n  - image: x\n    ordering: sideways\n",
        "prod/web.yaml": f"kind: Pod\nspec:\n  containers:\n  - image: {REGISTRY}/web:1.0.0\n"}, name="m")
    service = make_service(url, records, tmp_path, is_hld=False)
    head = branches(url)["main"]
    with pytest.raises(PolicyError, match=r"autopilot\.yaml:5"):
        service.process([push("web", "1.0.1")])
    assert branches(url)["main"] == head


def test_paused_policy_is_a_recorded_skip(tmp_path, records):
    url = bare_repo(tmp_path, {"autopilot.yaml": "paused: true\n",
                               "prod/web.yaml": f"kind: Pod\nspec:\n  containers:\n  - image: {REGISTRY}/web:1.0.0\n"},
                    name="m")
    service = make_service(url, records, tmp_path, is_hld=False)
    result = service.process([push("web", "1.0.1")])
    assert result.commit is None and "paused" in result.outcomes[0].reason


def test_image_no_target_uses_is_recorded_not_an_error(hld, records, tmp_path):
    service = make_service(hld, records, tmp_path)
    item = push("fabrikam/unknown", "1.0.0")
    result = service.process([item])
    assert result.no_target == (item,) and result.commit is None and result.follow_ups == ()
    [row] = records.trace.rows_for_trace(item.trace_id)
    assert row.stages[0].name == "no-target"


def test_trace_records_received_and_hld_commit(hld, records, tmp_path):
    service = make_service(hld, records, tmp_path)
    item = push("fabrikam/backend", "2.0.9")
    result = service.process([item])
    rows = records.trace.rows_for_trace(item.trace_id)
    dev = next(r for r in rows if r.env == "dev")
    assert [s.name for s in dev.stages] == ["received", "hld-commit"]
    assert dev.hld_commit_id == result.commit and dev.service == "backend" and dev.image_tag == "2.0.9"
    prod = next(r for r in rows if r.env == "prod")
    assert [s.name for s in prod.stages] == ["received", "skipped"]


def test_unreachable_repo_raises_so_the_queue_retries(tmp_path, records):
    service = make_service((tmp_path / "missing.git").as_uri(), records, tmp_path)
    with pytest.raises(GitError):
        service.process([push("fabrikam/frontend", "1.4.1")])


def _bump_in_process(url: str, conn: str, work: str, service_name: str, tags: list[str]) -> None:
    from core.adapters.storage import Storage

    service = make_service(url, table_records(Storage(conn)), Path(work), work="w")
    for tag in tags:
        item = push(service_name, tag)
        for _ in range(5):  # what the queue does when every push attempt lost the race
            try:
                service.process([item])
                break
            except GitContention:
                continue
        else:
            raise AssertionError("still contended after five deliveries")


def test_four_processes_bumping_different_services_lose_nothing(tmp_path, storage):
    files = {f"prod/svc{i}.yaml": f"kind: Pod\nspec:\n  containers:\n  - image: {REGISTRY}/svc{i}:1.0.0\n"
             for i in range(4)}
    url = bare_repo(tmp_path, files, name="m")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_bump_in_process,
                         args=(url, storage.connection_string, str(tmp_path / f"p{i}"), f"svc{i}",
                               [f"1.0.{n}" for n in range(1, 6)]))
             for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    for i in range(4):
        assert f"svc{i}:1.0.5".encode() in file_at(url, "main", f"prod/svc{i}.yaml")
    assert len(commits(url, "main")) == 1 + 4 * 5


# -- pull-request mode -------------------------------------------------------------------------------------------

@pytest.fixture
def pr_service(hld, records, tmp_path, azdo):  # noqa: F811
    azdo.add_repo("hld")
    prs = PullRequests(azdo.gateway(), "hld")
    service = make_service(hld, records, tmp_path, mode="pull-request", prs=prs)
    return service, azdo


def test_pull_request_mode_pushes_a_bot_branch_and_opens_one_pr(pr_service, hld):
    service, fake = pr_service
    result = service.process([push("fabrikam/backend", "2.0.4")])
    assert branches(hld)["autopilot/backend/dev"] != branches(hld)["main"]
    assert b'"2.0.4"' in file_at(hld, "autopilot/backend/dev", BACKEND_DEV)
    assert b'"2.0.3"' in file_at(hld, "main", BACKEND_DEV)
    [(branch, pr_id)] = result.pull_requests
    pr = fake.pr(pr_id)
    assert (pr.source_ref, pr.target_ref) == ("refs/heads/autopilot/backend/dev", "refs/heads/main")
    assert pr.title == "Bump backend in dev: 2.0.3 -> 2.0.4"
    assert "Trace id: `" in pr.description and result.outcomes[0].item.acr_event_id in pr.description
    assert result.follow_ups == ()


def test_newer_push_supersedes_the_open_pr_instead_of_opening_another(pr_service, hld):
    service, fake = pr_service
    first = service.process([push("fabrikam/backend", "2.0.4")])
    second = service.process([push("fabrikam/backend", "2.0.5")])
    assert first.pull_requests[0][1] == second.pull_requests[0][1]
    assert len([p for p in fake.prs.values() if p.status == "active"]) == 1
    assert fake.pr(second.pull_requests[0][1]).title.endswith("2.0.3 -> 2.0.5")
    assert b'"2.0.5"' in file_at(hld, "autopilot/backend/dev", BACKEND_DEV)
    assert len(commits(hld, "autopilot/backend/dev")) == 2  # seed + one force-updated bot commit


def test_crash_between_push_and_pr_creation_then_retry_yields_one_pr(pr_service, hld):
    from core.adapters.azdo import AzdoTransientError

    service, fake = pr_service
    item = push("fabrikam/backend", "2.0.4")
    fake.fail_next("POST", r"/pullRequests$", status=503)
    with pytest.raises(AzdoTransientError):
        service.process([item])
    assert "autopilot/backend/dev" in branches(hld)
    result = service.process([item])
    assert len(fake.prs) == 1 and result.pull_requests[0][1] == 1
