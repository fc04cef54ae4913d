"""The pull request reviewer end to end: Azure DevOps fake (real SDK over HTTP), the dict fakes of tests/fakes/ for
the review records, the trace, the queues and the delivery journal (tests/contracts/ holds them to the Table and
Queue storage behaviour), real bare git repositories for the HLD and manifest repos where generation is involved."""
from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.adapters.azdo import AzdoAuthError, AzdoTransientError
from core.workers.bump import Outcome, pr_text
from core.workers.manifest_update import GenerationService
from core.adapters.git_workspace import GitWorkspace
from core.adapters.pull_requests import PullRequests
from core.adapters.review_records import RuleFailure
from core.rules.review_rules import MARKER
from core.workers.review_job import ReviewJob
from core.workers.runners import QueuedMessage, QueueWorker, Settled
from core.wiring import Services
from core.settings import load_settings
from core.adapters.storage import PR_REVIEW, dev_connection_string
from core.adapters.checkout_targets import find_all_targets
from core.model.workitems import HldChanged, ImagePushed, PrReview, encode
from devkit.azurite import free_port
from devkit.gitrepos import bare_repo, branches, git, push_files, repo_path
from tests.fakes.deliveries import FakeDeliveryJournal
from tests.fakes.queues import FakeQueues
from tests.fakes.records import FakeRecords
from tests.azdo_fake import BOT_ID, ORG, PAT, PROJECT, PROJECT_ID, FakeIteration, azdo  # noqa: F401

EXAMPLE_HLD = Path(__file__).resolve().parent.parent / "examples" / "hld"
FRONTEND_DEV = "fabrikam-project/frontend/dev/config/common.yaml"
BASE_TEXT = (EXAMPLE_HLD / FRONTEND_DEV).read_text()
POLICY = (EXAMPLE_HLD / "autopilot.yaml").read_text()      # autoApprove: patch, mergeStrategy: squash
BOT_BRANCH = "refs/heads/autopilot/frontend/dev"
PERSON = {"id": "54d125f7-69f7-4191-904f-c5b96b6261c8", "displayName": "Jamal Hartnett"}
TRACE = "0123456789abcdef0123456789abcdef"
_shas = (f"{n:040x}" for n in itertools.count(0xA000))


def tagged(tag: str, text: str = BASE_TEXT) -> str:
    return text.replace('tag: "1.4.0"', f'tag: "{tag}"')


def run_review(services, item: PrReview, sleeps: list | None = None):
    async def sleep(seconds: float) -> None:
        (sleeps if sleeps is not None else []).append(seconds)

    worker = QueueWorker(PR_REVIEW, lambda: ReviewJob(services), batches=False, sleep=sleep)
    return asyncio.run(worker.run(QueuedMessage("m", encode(item))))


@dataclass
class World:
    azdo: object
    services: Services
    hld: object            # FakeRepo
    manifests: object      # FakeRepo
    hld_url: str
    manifest_url: str
    tmp: Path
    sleeps: list
    stores: FakeRecords

    def settle(self, pr, event_type: str = "git.pullrequest.updated", repo=None) -> Settled:
        """One review_worker invocation (without the Functions host): its Settled, or it raises for a retry."""
        repo = repo or self.hld
        item = PrReview(event_id=f"evt-{next(_shas)}", trace_id="t", event_type=event_type,
                        repository_id=repo.id, project_id=PROJECT_ID, pr_id=pr.id, source_ref=pr.source_ref)
        return run_review(self.services, item, self.sleeps)

    def review(self, pr, event_type: str = "git.pullrequest.updated", repo=None):
        settled = self.settle(pr, event_type, repo)
        assert settled.poison == ()
        return settled.result

    def records(self, pr_id: int):
        return self.stores.review_records.for_pr(pr_id)

    def writes(self):
        return [c for c in self.azdo.calls if c.method in ("PUT", "PATCH", "POST")]

    def threads(self, pr_id: int):
        return [t for t in self.azdo.pr(pr_id).threads.values() if MARKER in t.comments[0]["content"]]


def make_world(azdo, tmp_path, **env) -> World:
    hld_url = bare_repo(tmp_path, EXAMPLE_HLD, name="hld")
    manifest_url = bare_repo(tmp_path, {"README.md": "# Cluster manifests\n"}, name="manifests")
    settings = load_settings({
        "AzureWebJobsStorage": dev_connection_string(blob_port=free_port(), queue_port=free_port(),
                                                     table_port=free_port()),   # nothing there: the fakes answer
        "HLD_REPO_URL": hld_url, "MANIFEST_REPO_URL": manifest_url,
        "AZDO_ORG_URL": ORG, "AZDO_PROJECT": PROJECT, "AZDO_PAT": PAT, "WORK_DIR": str(tmp_path / "work"), **env})
    stores = FakeRecords()
    services = Services(settings, stores={**stores.stores(), "queues": FakeQueues(), "deliveries": FakeDeliveryJournal()})
    return World(azdo, services, azdo.add_repo("hld"), azdo.add_repo("manifests"), hld_url, manifest_url,
                 tmp_path, [], stores)


@pytest.fixture
def world(azdo, tmp_path) -> World:
    return make_world(azdo, tmp_path)


def bump_description() -> str:
    [target] = [t for t in find_all_targets(EXAMPLE_HLD) if t.file == FRONTEND_DEV]
    item = ImagePushed("acr:1", TRACE, "fabrikam.azurecr.io", "fabrikam/frontend", "1.4.1", "sha256:" + "0" * 64,
                       "application/vnd.docker.distribution.manifest.v2+json", "2026-01-01T00:00:00Z", "1")
    return pr_text(Outcome(target, "bump", "newer", item))[1]


def bump_pr(world: World, head_text: str | None = None, *, build: str | None = "approved", policy: str = POLICY,
            changes=None, source_ref: str = BOT_BRANCH, target_ref: str = "refs/heads/main",
            file: str = FRONTEND_DEV, base_text: str = BASE_TEXT, **pr_args):
    """A bump PR as the service opens it: the file at base and head in the fake repo, one iteration."""
    base, head = next(_shas), next(_shas)
    world.azdo.add_commit(world.hld, base, {file: base_text, "autopilot.yaml": policy})
    world.azdo.add_commit(world.hld, head, {file: head_text or tagged("1.4.1"), "autopilot.yaml": policy})
    pr_args.setdefault("description", bump_description())
    pr = world.azdo.add_pr(world.hld, source_ref, target_ref, title="Bump frontend in dev: 1.4.0 -> 1.4.1",
                           changes=changes or [("/" + file, "edit")], source_commit=head, target_commit=base,
                           **pr_args)
    if build:
        world.azdo.add_policy_evaluation(pr.id, build)
    return pr


def push_iteration(world: World, pr, head_text: str) -> None:
    head = next(_shas)
    world.azdo.add_commit(world.hld, head, {FRONTEND_DEV: head_text, "autopilot.yaml": POLICY})
    world.azdo.add_iteration(pr.id, [("/" + FRONTEND_DEV, "edit")], source_commit=head)


def set_build(world: World, pr, status: str) -> None:
    [record] = world.azdo.policy_evaluations[f"vstfs:///CodeReview/CodeReviewId/{PROJECT_ID}/{pr.id}"]
    record["status"] = status


# -- the done-when: approve after the build -------------------------------------------------------------------

def test_a_service_bump_pr_gets_auto_complete_while_building_and_the_vote_after_the_build(world):
    pr = bump_pr(world, build="running")

    first = world.review(pr)
    assert first.action == "waiting"
    assert pr.auto_complete_set_by == BOT_ID and BOT_ID not in pr.reviewers
    assert world.azdo.find_calls("PUT", r"/reviewers/") == []
    options = pr.completion_options
    assert options["mergeStrategy"] == "squash" and options["deleteSourceBranch"] is True
    assert options["mergeCommitMessage"] == (
        f"Merged PR {pr.id}: Bump frontend in dev: 1.4.0 -> 1.4.1\n\n"
        f"Image: fabrikam.azurecr.io/fabrikam/frontend:1.4.1\nTrace-Id: {TRACE}")

    set_build(world, pr, "approved")
    second = world.review(pr, event_type="build.complete")
    assert second.action == "approved"
    assert pr.reviewers[BOT_ID] == 10
    [vote] = world.azdo.find_calls("PUT", rf"/pullRequests/{pr.id}/reviewers/{BOT_ID}")
    assert vote.body == {"vote": 10}
    assert len(world.azdo.find_calls("PATCH", rf"/pullRequests/{pr.id}$")) == 1   # auto-complete set once
    assert world.threads(pr.id) == []

    [waiting, approved] = world.records(pr.id)
    assert (waiting.action, approved.action) == ("waiting", "approved")
    assert approved.passed == ("scope", "author", "files", "diff", "checks", "policy") and approved.failed == ()
    assert approved.iteration == 1 and approved.trace_ids == (TRACE,) and approved.repository == "hld"
    [row] = world.stores.trace.rows_for_trace(TRACE)
    assert row.target_key == f"pr:hld:{pr.id}" and [s.name for s in row.stages] == ["pr-approved"]


def test_a_pr_already_approved_with_our_auto_complete_costs_only_reads(world):
    pr = bump_pr(world)
    assert world.review(pr).action == "approved"
    writes = len(world.writes())
    again = world.review(pr)
    assert again.action == "already-approved"
    assert len(world.writes()) == writes
    assert [r.action for r in world.records(pr.id)] == ["approved", "already-approved"]


def test_approval_is_appended_to_the_trace_of_the_push_that_opened_the_pr(world):
    pr = bump_pr(world)
    trace = world.stores.trace
    key = "fabrikam-project/fabrikam/dev/config/common.yaml#subcomponents.chart.config.image"
    trace.record(TRACE, key, "received", actor="acr")
    trace.record(TRACE, key, "hld-pr", actor="gitops-autopilot", fields={"pr": str(pr.id)}, detail={"pr": pr.id})
    assert world.review(pr).action == "approved"
    [row] = trace.rows_for_trace(TRACE)
    assert row.target_key == key
    assert [s.name for s in row.stages] == ["received", "hld-pr", "pr-approved"]


def test_a_build_event_without_pr_number_finds_the_pr_by_source_branch(world):
    pr = bump_pr(world)
    item = PrReview("evt-b", "t", "build.complete", repository_id=world.hld.id, project_id=PROJECT_ID,
                    build_id=42, source_ref=BOT_BRANCH)
    assert run_review(world.services, item).result.action == "approved"
    assert pr.reviewers[BOT_ID] == 10


def test_a_build_event_without_any_pr_is_finished_without_a_record(world, caplog):
    item = PrReview("evt-c", "t", "build.complete", repository_id=world.hld.id, project_id=PROJECT_ID, build_id=43)
    with caplog.at_level("INFO", logger="autopilot.review"):
        assert run_review(world.services, item).result is None
    assert "no PR involved" in caplog.text
    assert world.writes() == []


# -- adversarial pull requests --------------------------------------------------------------------------------

def test_a_person_pushing_to_an_autopilot_branch_fails_author_and_gets_one_comment(world):
    pr = bump_pr(world, created_by=PERSON)
    outcome = world.review(pr)
    assert outcome.action == "ineligible"
    assert world.azdo.find_calls("PUT", r"/reviewers/") == [] and pr.auto_complete_set_by is None
    [thread] = world.threads(pr.id)
    text = thread.comments[0]["content"]
    assert "- `author`: created by Jamal Hartnett" in text
    [record] = world.records(pr.id)
    assert record.action == "ineligible"
    assert record.failed == (RuleFailure("author", (
        f"created by Jamal Hartnett ({PERSON['id']}), who is neither the service identity nor listed in "
        "autopilot.yaml allowedAuthors")),)
    assert record.passed == ("scope", "files", "diff", "checks", "policy")
    [row] = world.stores.trace.rows_for_trace(TRACE)
    assert [s.name for s in row.stages] == ["review-ineligible"]


def test_a_persons_own_pr_is_left_alone(world):
    pr = bump_pr(world, created_by=PERSON, source_ref="refs/heads/feature/tweak", description="my change")
    outcome = world.review(pr)
    assert outcome.action == "ignored"
    assert world.writes() == [] and pr.threads == {}
    [record] = world.records(pr.id)
    assert record.action == "ignored" and record.failed[0].rule == "author"


def test_a_bump_that_also_edits_another_key_is_ineligible(world):
    pr = bump_pr(world, tagged("1.4.1").replace("replicaCount: 1", "replicaCount: 3"))
    assert world.review(pr).action == "ineligible"
    [record] = world.records(pr.id)
    assert record.failed == (RuleFailure("diff", f"{FRONTEND_DEV}: subcomponents.chart.config.replicaCount: 1 -> 3"),)
    assert world.azdo.find_calls("PUT", r"/reviewers/") == []


def test_a_bump_past_the_allowed_level_is_ineligible(world):
    pr = bump_pr(world, tagged("2.0.0"))
    assert world.review(pr).action == "ineligible"
    [record] = world.records(pr.id)
    assert record.failed == (RuleFailure("diff", f"{FRONTEND_DEV} (subcomponents.chart.config.image): 1.4.0 -> 2.0.0 "
                                                 "is a major change; autopilot.yaml allows at most patch"),)


def test_a_policy_change_in_the_pr_itself_is_not_a_bump(world):
    pr = bump_pr(world, changes=[("/" + FRONTEND_DEV, "edit"), ("/autopilot.yaml", "edit")])
    world.azdo.add_commit(world.hld, pr.last_merge_source_commit, {"autopilot.yaml": "autoApprove: major\n"})
    assert world.review(pr).action == "ineligible"
    [record] = world.records(pr.id)
    assert record.failed == (RuleFailure("files", "autopilot.yaml holds no image field at base"),)


def test_an_added_file_disqualifies_a_bump(world):
    pr = bump_pr(world, changes=[("/" + FRONTEND_DEV, "edit"), ("/fabrikam-project/extra.yaml", "add")])
    assert world.review(pr).action == "ineligible"
    assert world.records(pr.id)[0].failed == (
        RuleFailure("files", "fabrikam-project/extra.yaml is a add (a bump only edits existing files)"),)


def test_a_pr_retargeted_to_another_branch_fails_scope(world):
    pr = bump_pr(world, target_ref="refs/heads/release")
    assert world.review(pr).action == "ineligible"
    [record] = world.records(pr.id)
    assert record.failed == (RuleFailure("scope", "it targets refs/heads/release, not refs/heads/main"),)
    assert len(world.threads(pr.id)) == 1


def test_a_draft_pr_fails_scope(world):
    pr = bump_pr(world, is_draft=True)
    assert world.review(pr).action == "ineligible"
    assert world.records(pr.id)[0].failed == (RuleFailure("scope", "the pull request is a draft"),)


def test_a_rejected_build_makes_it_ineligible(world):
    pr = bump_pr(world, build="rejected")
    assert world.review(pr).action == "ineligible"
    assert world.records(pr.id)[0].failed == (RuleFailure("checks", "Build is rejected"),)
    assert pr.auto_complete_set_by is None


def test_a_push_arriving_during_the_review_stops_the_approval(world):
    pr = bump_pr(world)
    routes = world.azdo._routes
    [index] = [i for i, route in enumerate(routes) if route[2] == world.azdo._list_policy_evaluations]
    method, pattern, evaluations = routes[index]

    def push_then_answer(call, **groups):
        push_iteration(world, pr, tagged("1.4.1").replace("replicaCount: 1", "replicaCount: 4"))
        return evaluations(call, **groups)

    routes[index] = (method, pattern, push_then_answer)
    assert world.review(pr).action == "superseded"
    assert world.azdo.find_calls("PUT", r"/reviewers/") == [] and pr.auto_complete_set_by is None


# -- re-evaluation: withdrawal and the one comment thread ----------------------------------------------------

def test_a_new_iteration_after_approval_resets_the_vote_and_clears_auto_complete(world):
    pr = bump_pr(world)
    assert world.review(pr).action == "approved"
    push_iteration(world, pr, tagged("1.4.2").replace("replicaCount: 1", "replicaCount: 9"))

    outcome = world.review(pr)
    assert outcome.action == "ineligible" and outcome.iteration == 2
    assert pr.reviewers[BOT_ID] == 0 and pr.auto_complete_set_by is None
    assert [c.body for c in world.azdo.find_calls("PUT", r"/reviewers/")] == [{"vote": 10}, {"vote": 0}]
    clear = world.azdo.find_calls("PATCH", rf"/pullRequests/{pr.id}$")[-1]
    assert clear.body == {"autoCompleteSetBy": {"id": "00000000-0000-0000-0000-000000000000"}}
    assert len(world.threads(pr.id)) == 1
    assert [r.action for r in world.records(pr.id)] == ["approved", "ineligible"]


def test_the_comment_thread_is_created_once_updated_on_change_and_left_alone_when_unchanged(world):
    pr = bump_pr(world, tagged("1.5.0"))
    world.review(pr)
    world.review(pr)
    [thread] = world.threads(pr.id)
    assert len(world.azdo.find_calls("POST", r"/threads$")) == 1
    assert world.azdo.find_calls("PATCH", r"/comments/") == []
    assert "(iteration 1)" in thread.comments[0]["content"] and "1.4.0 -> 1.5.0" in thread.comments[0]["content"]

    push_iteration(world, pr, tagged("1.6.0"))
    world.review(pr)
    assert world.threads(pr.id) == [thread]
    assert len(world.azdo.find_calls("PATCH", r"/comments/")) == 1
    assert "(iteration 2)" in thread.comments[0]["content"] and "1.4.0 -> 1.6.0" in thread.comments[0]["content"]

    push_iteration(world, pr, tagged("1.4.1"))
    assert world.review(pr).action == "approved"
    assert "Every gitops-autopilot review rule holds** (iteration 3)" in thread.comments[0]["content"]
    assert len(world.azdo.find_calls("POST", r"/threads$")) == 1


# -- kill switches --------------------------------------------------------------------------------------------

def test_auto_approve_off_makes_bot_prs_ineligible_with_the_policy_rule(azdo, tmp_path):
    world = make_world(azdo, tmp_path, AUTO_APPROVE="off")
    pr = bump_pr(world)
    assert world.review(pr).action == "ineligible"
    assert world.records(pr.id)[0].failed == (
        RuleFailure("policy", "auto-approval is switched off (AUTO_APPROVE=off)"),)
    assert world.azdo.find_calls("PUT", r"/reviewers/") == [] and len(world.threads(pr.id)) == 1


def test_autoapprove_none_for_the_target_makes_it_ineligible(world):
    policy = POLICY + "  - image: 'fabrikam.azurecr.io/fabrikam/frontend'\n    autoApprove: none\n"
    pr = bump_pr(world, policy=policy)
    assert world.review(pr).action == "ineligible"
    assert world.records(pr.id)[0].failed == (RuleFailure(
        "policy", f"autopilot.yaml rules[1] gives autoApprove: none for fabrikam.azurecr.io/fabrikam/frontend in "
                  f"{FRONTEND_DEV}"),)


def test_the_policy_is_read_from_the_target_branch_not_the_pr(world):
    pr = bump_pr(world, tagged("1.5.0"))
    world.azdo.add_commit(world.hld, pr.last_merge_source_commit, {"autopilot.yaml": "autoApprove: major\n"})
    assert world.review(pr).action == "ineligible"


# -- a policy's `fields` shapes ----------------------------------------------------------------------------------

WORKER = "fabrikam-project/worker/dev/config/common.yaml"
WORKER_TEXT = "config:\n  app:\n    replicas: 1\n    image:\n      name: r.io/worker\n      version: '2.0.0'\n"
FIELDS = "  - image: 'r.io/*'\n    fields: {repository: app.image.name, tag: app.image.version}\n"


def test_a_tag_bump_in_a_fields_declared_shape_is_approved_and_nothing_else_is(world):
    bumped = WORKER_TEXT.replace("'2.0.0'", "'2.0.1'")
    pr = bump_pr(world, bumped, file=WORKER, base_text=WORKER_TEXT, policy=POLICY + FIELDS)
    assert world.review(pr).action == "approved"
    assert "Image: r.io/worker:2.0.1" in world.azdo.pr(pr.id).completion_options["mergeCommitMessage"]

    more = bump_pr(world, bumped.replace("replicas: 1", "replicas: 3"), file=WORKER, base_text=WORKER_TEXT,
                   policy=POLICY + FIELDS)
    assert world.review(more).action == "ineligible"
    assert world.records(more.id)[0].failed == (RuleFailure("diff", f"{WORKER}: config.app.replicas: 1 -> 3"),)

    unknown_shape = bump_pr(world, bumped, file=WORKER, base_text=WORKER_TEXT)   # no `fields` rule: no image field
    assert world.review(unknown_shape).action == "ineligible"
    assert world.records(unknown_shape.id)[0].failed == (
        RuleFailure("files", f"{WORKER} holds no image field at base"),)


# -- failures of Azure DevOps: retry, never approve -----------------------------------------------------------

@pytest.mark.parametrize("method, path, status, retry_after", [
    ("GET", r"/iterations/\d+/changes", 429, 7),
    ("GET", r"/policy/Evaluations", 503, None),
    ("GET", r"/items", 503, 2),
])
def test_azure_devops_errors_raise_for_a_retry_and_never_approve(world, method, path, status, retry_after):
    pr = bump_pr(world)
    world.azdo.fail_next(method, path, status=status, retry_after=retry_after)
    with pytest.raises(AzdoTransientError):
        world.review(pr)
    assert world.azdo.find_calls("PUT", r"/reviewers/") == [] and pr.auto_complete_set_by is None
    assert world.sleeps == ([retry_after] if retry_after else [])
    assert world.records(pr.id) == []
    assert world.review(pr).action == "approved"      # the queue's retry


def test_refused_credentials_poison_the_message_at_once_with_the_reason_on_the_trace(world):
    pr = bump_pr(world)
    world.azdo.fail_next("GET", r"/pullRequests/\d+$", status=401)
    settled = world.settle(pr)
    [poisoned] = settled.poison
    assert settled.result is None and json.loads(poisoned)["poisonReason"].startswith(f"{AzdoAuthError.__name__}: ")
    assert world.azdo.find_calls("PUT", r"/reviewers/") == [] and world.records(pr.id) == []
    [row] = world.stores.trace.rows_for_trace("t")
    [failed] = [s for s in row.stages if s.name == "failed"]
    assert failed.detail["reason"].startswith("AzdoAuthError: ") and failed.detail["queue"] == PR_REVIEW
    assert world.review(pr).action == "approved"      # a replay after the fix


def test_a_failure_while_acting_is_retried_to_completion(world):
    pr = bump_pr(world)
    world.azdo.fail_next("PATCH", rf"/pullRequests/{pr.id}$", status=503)
    with pytest.raises(AzdoTransientError):
        world.review(pr)
    assert pr.reviewers[BOT_ID] == 10 and pr.auto_complete_set_by is None
    assert world.review(pr).action == "approved"
    assert pr.auto_complete_set_by == BOT_ID
    assert len(world.azdo.find_calls("PUT", r"/reviewers/")) == 1


# -- manifest generation PRs ----------------------------------------------------------------------------------

def open_manifest_pr(world: World):
    """The generation worker's own manifest PR, with the fake told which commits and changes it has."""
    work = world.tmp / "generator"
    service = GenerationService(
        hld=GitWorkspace(world.hld_url, "main", base_dir=work), manifests=GitWorkspace(world.manifest_url, "main",
                                                                                       base_dir=work),
        hld_url=world.hld_url, manifest_url=world.manifest_url, mode="pull-request", helm_mode="rendered",
        helm_bin="", trace=world.stores.trace,
        pull_requests=PullRequests(world.azdo.gateway(), "manifests"))
    result = service.process([HldChanged("h1", TRACE, "push", image_trace_ids=(TRACE,))])
    pr = world.azdo.pr(result.pr_id)
    pr.last_merge_target_commit = branches(world.manifest_url)["main"]
    record_manifest_head(world, pr)
    world.azdo.add_policy_evaluation(pr.id, "approved")
    return pr


def record_manifest_head(world: World, pr) -> None:
    head = branches(world.manifest_url)["autopilot/manifests"]
    listing = git("--git-dir", str(repo_path(world.manifest_url)), "diff", "--name-status", "--no-renames",
                  pr.last_merge_target_commit, head).decode()
    kinds = {"A": "add", "M": "edit", "D": "delete"}
    changes = [("/" + line.split("\t")[1], kinds[line[0]]) for line in listing.splitlines()]
    pr.iterations.append(FakeIteration(len(pr.iterations) + 1, changes, head))
    pr.last_merge_source_commit = head


def review_manifest(world: World, pr):
    return world.review(pr, repo=world.manifests)


def test_a_generated_manifest_pr_is_approved(world):
    pr = open_manifest_pr(world)
    outcome = review_manifest(world, pr)
    assert outcome.action == "approved", world.records(pr.id)
    assert pr.reviewers[BOT_ID] == 10 and pr.auto_complete_set_by == BOT_ID
    hld_head = branches(world.hld_url)["main"]
    assert pr.completion_options["mergeCommitMessage"].endswith(f"HLD-Commit: {hld_head}\nTrace-Id: {TRACE}")
    [record] = world.records(pr.id)
    assert record.passed == ("scope", "author", "files", "diff", "checks", "policy")


def test_a_manifest_pr_with_one_hand_edited_line_is_ineligible(world):
    pr = open_manifest_pr(world)
    path = "prod/fabrikam-project/frontend/dev/static.yaml"
    original = git("--git-dir", str(repo_path(world.manifest_url)), "show", f"autopilot/manifests:{path}").decode()
    push_files(world.manifest_url, "autopilot/manifests", {path: original.replace("frontend", "frontend-x", 1)},
               "tweak")
    record_manifest_head(world, pr)
    assert review_manifest(world, pr).action == "ineligible"
    [record] = world.records(pr.id)
    assert record.failed == (RuleFailure(
        "diff", f"differs from the generation of HLD {branches(world.hld_url)['main']}: {path} is edited"),)
    assert world.azdo.find_calls("PUT", r"/reviewers/") == []


def test_a_manifest_pr_for_an_older_hld_commit_is_ineligible(world):
    pr = open_manifest_pr(world)
    generated_from = branches(world.hld_url)["main"]
    moved = push_files(world.hld_url, "main", {"docs.md": "notes\n"}, "docs")
    assert review_manifest(world, pr).action == "ineligible"
    assert world.records(pr.id)[0].failed == (RuleFailure(
        "diff", f"HLD-Commit {generated_from} is not the HLD branch head {moved}; a newer generation is due"),)


def test_a_manifest_pr_touching_files_outside_the_environment_folders_is_ineligible(world):
    pr = open_manifest_pr(world)
    push_files(world.manifest_url, "autopilot/manifests", {"README.md": "# edited\n"}, "readme")
    record_manifest_head(world, pr)
    assert review_manifest(world, pr).action == "ineligible"
    assert world.records(pr.id)[0].failed == (
        RuleFailure("files", "README.md is outside the generated folders prod/"),)
