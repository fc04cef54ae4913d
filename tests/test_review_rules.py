"""The reviewer's pure rules: each one holding and failing, with the reason it gives."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from core.adapters.azdo import ChangedFile, PolicyEvaluation, PullRequest
from core.workers.bump import Outcome, pr_text
from core.workers.manifest_update import manifest_message
from core.rules.policy import load_policy
from core.rules.review_rules import (
    BUILD_POLICY,
    MARKER,
    MAX_BUMP_FILES,
    FileVersions,
    ManifestFacts,
    RuleResult,
    author_rule,
    bump_diff_rule,
    bump_files_rule,
    checks_rule,
    compare_trees,
    completion_message,
    decide,
    hld_commit_in,
    ineligible_comment,
    is_bot_pr,
    manifest_diff_rule,
    manifest_files_rule,
    policy_rule,
    scope_rule,
    target_changes,
    trace_ids,
    with_targets,
)
from core.adapters.checkout_targets import find_all_targets
from core.model.workitems import ImagePushed

BOT = "8c8c7d32-6b1b-47f4-b2e9-30b477b5ab3d"
PERSON = "54d125f7-69f7-4191-904f-c5b96b6261c8"
EXAMPLE_HLD = Path(__file__).resolve().parent.parent / "examples" / "hld"
FRONTEND_DEV = "fabrikam-project/frontend/dev/config/common.yaml"
BACKEND_DEV = "fabrikam-project/backend/dev/config/common.yaml"
BASE = (EXAMPLE_HLD / FRONTEND_DEV).read_text()
POLICY = load_policy("autoApprove: patch\n")
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
        - name: web
          image: fabrikam.azurecr.io/web:1.0.0  # pinned by gitops-autopilot
"""


def pr(**changes) -> PullRequest:
    base = PullRequest(id=7, repository_id="repo-guid", project_id="proj-guid", title="Bump frontend in dev",
                       description="", source_ref="refs/heads/autopilot/frontend/dev", target_ref="refs/heads/main",
                       status="active", is_draft=False, created_by_id=BOT, created_by_name="gitops-autopilot",
                       auto_complete_set_by_id=None, last_merge_source_commit="b" * 40,
                       last_merge_target_commit="a" * 40, last_merge_commit="c" * 40, reviewers=())
    return replace(base, **changes)


def versions(tmp_path: Path | None, path: str, base: str | None, head: str | None, change_type: str = "edit",
             fields=()) -> FileVersions:
    """One changed file with the targets of each side, as `evaluate` finds them (`tmp_path` is not used)."""
    [found] = with_targets([FileVersions(path, change_type, None if base is None else base.encode(),
                                         None if head is None else head.encode())], fields)
    return found


def tag(text: str, new: str) -> str:
    return text.replace('tag: "1.4.0"', f'tag: "{new}"')


def evaluation(status: str, type_id: str = BUILD_POLICY, *, blocking: bool = True, enabled: bool = True,
               name: str = "Build") -> PolicyEvaluation:
    return PolicyEvaluation("e", status, blocking, enabled, type_id, name)


# -- scope and author -------------------------------------------------------------------------------------------

def test_scope_holds_for_an_active_pr_into_the_configured_branch():
    result = scope_rule(pr(), "hld", "refs/heads/main", manifest=False)
    assert result == RuleResult("scope", True, "active pull request into refs/heads/main of hld")


@pytest.mark.parametrize("change, reason", [
    ({"is_draft": True}, "the pull request is a draft"),
    ({"target_ref": "refs/heads/release"}, "it targets refs/heads/release, not refs/heads/main"),
    ({"status": "abandoned"}, "the pull request is abandoned"),
    ({"last_merge_source_commit": None}, "Azure DevOps has not computed its merge yet"),
])
def test_scope_fails_with_the_reason(change, reason):
    result = scope_rule(pr(**change), "hld", "refs/heads/main", manifest=False)
    assert not result.passed and result.reason == reason


def test_manifest_prs_must_come_from_the_manifest_bot_branch():
    assert scope_rule(pr(source_ref="refs/heads/autopilot/manifests"), "m", "refs/heads/main", manifest=True).passed
    result = scope_rule(pr(), "m", "refs/heads/main", manifest=True)
    assert not result.passed and "come from refs/heads/autopilot/manifests" in result.reason


def test_author_holds_for_the_service_identity_on_an_autopilot_branch():
    assert author_rule(pr(), BOT, ()).passed


def test_author_accepts_allowed_authors_by_id_or_name():
    by_person = pr(created_by_id=PERSON, created_by_name="Release Bot")
    assert author_rule(by_person, BOT, (PERSON.upper(),)).passed
    assert author_rule(by_person, BOT, ("release bot",)).passed


def test_a_person_pushing_to_an_autopilot_branch_fails_author_but_is_a_bot_pr():
    by_person = pr(created_by_id=PERSON, created_by_name="Jamal Hartnett")
    result = author_rule(by_person, BOT, ())
    assert not result.passed
    assert result.reason == (f"created by Jamal Hartnett ({PERSON}), who is neither the service identity nor "
                             "listed in autopilot.yaml allowedAuthors")
    assert is_bot_pr(by_person, BOT, ())


def test_the_bot_from_another_branch_fails_author_and_a_person_elsewhere_is_no_bot_pr():
    result = author_rule(pr(source_ref="refs/heads/feature/x"), BOT, ())
    assert not result.passed
    assert result.reason == "source branch refs/heads/feature/x is not under refs/heads/autopilot/"
    assert not is_bot_pr(pr(source_ref="refs/heads/feature/x", created_by_id=PERSON, created_by_name="J"), BOT, ())


# -- files ------------------------------------------------------------------------------------------------------

def test_bump_files_holds_for_edits_of_files_with_image_fields(tmp_path):
    result = bump_files_rule([versions(tmp_path, FRONTEND_DEV, BASE, tag(BASE, "1.4.1"))])
    assert result.passed and FRONTEND_DEV in result.reason


@pytest.mark.parametrize("change_type", ["add", "delete", "rename"])
def test_bump_files_refuses_added_deleted_and_renamed_files(tmp_path, change_type):
    result = bump_files_rule([versions(tmp_path, FRONTEND_DEV, BASE, BASE, change_type)])
    assert not result.passed
    assert result.reason == f"{FRONTEND_DEV} is a {change_type} (a bump only edits existing files)"


def test_bump_files_refuses_a_file_without_image_fields_and_too_many_files(tmp_path):
    result = bump_files_rule([versions(tmp_path, "autopilot.yaml", "autoApprove: none\n", "autoApprove: major\n")])
    assert not result.passed and result.reason == "autopilot.yaml holds no image field at base"
    many = [FileVersions(f"f{i}.yaml", "edit", None, None) for i in range(MAX_BUMP_FILES + 1)]
    assert bump_files_rule(many).reason == f"{MAX_BUMP_FILES + 1} files changed; a bump changes at most 20"
    assert bump_files_rule([]).reason == "the pull request changes no file"


def test_manifest_files_must_stay_inside_the_environment_folders():
    inside = [ChangedFile("/prod/app/chart.yaml", "edit"), ChangedFile("/prod/old.yaml", "delete"),
              ChangedFile("/prod/new.yaml", "add")]
    assert manifest_files_rule(inside, ("prod",)).passed
    result = manifest_files_rule(inside + [ChangedFile("/README.md", "edit"),
                                           ChangedFile("/prod/moved.yaml", "rename")], ("prod",))
    assert not result.passed
    assert result.reason == ("README.md is outside the generated folders prod/; "
                             "prod/moved.yaml is a rename (renames are not verified)")
    assert not manifest_files_rule([ChangedFile("/production/x.yaml", "edit")], ("prod",)).passed


# -- bump diff --------------------------------------------------------------------------------------------------

def test_a_patch_bump_within_autoapprove_patch_holds(tmp_path):
    result = bump_diff_rule([versions(tmp_path, FRONTEND_DEV, BASE, tag(BASE, "1.4.1"))], POLICY)
    assert result == RuleResult("diff", True, "only image tags change: fabrikam.azurecr.io/fabrikam/frontend "
                                              "1.4.0 -> 1.4.1")


def test_a_bump_past_the_allowed_level_fails(tmp_path):
    result = bump_diff_rule([versions(tmp_path, FRONTEND_DEV, BASE, tag(BASE, "1.5.0"))], POLICY)
    assert not result.passed
    assert result.reason == (f"{FRONTEND_DEV} (subcomponents.chart.config.image): 1.4.0 -> 1.5.0 is a minor change; "
                             "autopilot.yaml allows at most patch")


def test_a_rule_can_allow_a_larger_level_for_one_image(tmp_path):
    policy = load_policy("autoApprove: patch\nrules:\n  - image: '*/fabrikam/frontend'\n    autoApprove: minor\n")
    assert bump_diff_rule([versions(tmp_path, FRONTEND_DEV, BASE, tag(BASE, "1.5.0"))], policy).passed


def test_a_bump_that_also_edits_another_key_fails_naming_it(tmp_path):
    head = tag(BASE, "1.4.1").replace("replicaCount: 1", "replicaCount: 5")
    result = bump_diff_rule([versions(tmp_path, FRONTEND_DEV, BASE, head)], POLICY)
    assert not result.passed and result.reason == f"{FRONTEND_DEV}: subcomponents.chart.config.replicaCount: 1 -> 5"


def test_a_bump_that_also_edits_a_comment_fails(tmp_path):
    head = tag(BASE, "1.4.1").replace("# the Kubernetes Service", "# approved by me, the Kubernetes Service")
    result = bump_diff_rule([versions(tmp_path, FRONTEND_DEV, BASE, head)], POLICY)
    assert not result.passed and "differs from the service's own edit" in result.reason


@pytest.mark.parametrize("new, reason", [
    ("1.3.9", "1.3.9 is not newer than 1.4.0 under semver ordering"),
    ("1.4.0-rc.1", "1.4.0-rc.1 is not newer than 1.4.0 under semver ordering"),
    ("latest", "tag 'latest' is not orderable under semver ordering"),
])
def test_downgrades_and_unorderable_tags_fail(tmp_path, new, reason):
    result = bump_diff_rule([versions(tmp_path, FRONTEND_DEV, BASE, tag(BASE, new))], POLICY)
    assert not result.passed and result.reason == f"{FRONTEND_DEV} (subcomponents.chart.config.image): {reason}"


@pytest.mark.parametrize("policy_text, reason", [
    ("autoApprove: patch\npaused: true\n", "fabrikam.azurecr.io/fabrikam/frontend is paused by autopilot.yaml"),
    ("autoApprove: patch\nrules:\n  - image: '*/fabrikam/frontend'\n    paused: true\n",
     "fabrikam.azurecr.io/fabrikam/frontend is paused by autopilot.yaml rules[0]"),
    ("autoApprove: patch\ndefaults:\n  range: '<1.4.1'\n", "tag '1.4.1' is outside range '<1.4.1'"),
    ("autoApprove: patch\ndefaults:\n  tagFilter: '^1\\.3\\.'\n",
     "tag '1.4.1' is filtered out by tagFilter '^1\\.3\\.'"),
])
def test_paused_targets_and_tags_outside_range_or_filter_fail(tmp_path, policy_text, reason):
    result = bump_diff_rule([versions(tmp_path, FRONTEND_DEV, BASE, tag(BASE, "1.4.1"))], load_policy(policy_text))
    assert not result.passed and result.reason == f"{FRONTEND_DEV} (subcomponents.chart.config.image): {reason}"


def test_changing_the_image_repository_fails(tmp_path):
    head = tag(BASE, "1.4.1").replace("fabrikam/frontend", "evil/frontend")
    result = bump_diff_rule([versions(tmp_path, FRONTEND_DEV, BASE, head)], POLICY)
    assert not result.passed
    assert "the image changes from fabrikam.azurecr.io/fabrikam/frontend to fabrikam.azurecr.io/evil/frontend" \
        in result.reason


def test_a_manifest_image_bump_keeps_the_rest_of_the_line(tmp_path):
    path = "prod/web.yaml"
    good = DEPLOYMENT.replace("web:1.0.0", "web:1.0.1")
    assert bump_diff_rule([versions(tmp_path / "a", path, DEPLOYMENT, good)], POLICY).passed
    no_comment = good.replace("  # pinned by gitops-autopilot", "")
    assert not bump_diff_rule([versions(tmp_path / "b", path, DEPLOYMENT, no_comment)], POLICY).passed


def test_a_text_change_that_parses_the_same_but_changes_no_image_fails(tmp_path):
    result = bump_diff_rule([versions(tmp_path, FRONTEND_DEV, BASE, BASE + "\n")], POLICY)
    assert not result.passed and result.reason == f"{FRONTEND_DEV}: no image tag or digest changes"


def test_target_changes_pair_fields_by_locator(tmp_path):
    changes, problems = target_changes([versions(tmp_path, FRONTEND_DEV, BASE, tag(BASE, "1.4.1"))])
    assert problems == []
    [change] = changes
    assert (change.base.tag, change.head.tag, change.base.locator) == ("1.4.0", "1.4.1",
                                                                       "subcomponents.chart.config.image")


# -- manifest diff ----------------------------------------------------------------------------------------------

HLD = "1" * 40
FILES = {"prod/app.yaml": b"---\nkind: ConfigMap\n", "prod/root.yaml": b""}


def facts(**changes) -> ManifestFacts:
    base = ManifestFacts(hld_commit=HLD, hld_head=HLD, source_commit="2" * 40, checked_out="2" * 40,
                         expected=dict(FILES), actual=dict(FILES))
    return replace(base, **changes)


def test_manifest_diff_holds_when_the_folders_equal_the_generation():
    assert manifest_diff_rule(facts()) == RuleResult("diff", True, f"2 file(s) equal the generation of HLD {HLD}")


@pytest.mark.parametrize("change, reason", [
    ({"hld_commit": None}, "no HLD-Commit trailer in the description or the head commit"),
    ({"hld_head": "3" * 40}, f"HLD-Commit {HLD} is not the HLD branch head {'3' * 40}; a newer generation is due"),
    ({"expected": None, "generation_error": "chart/: not found"},
     f"generation from HLD {HLD} failed: chart/: not found"),
    ({"checked_out": "4" * 40}, f"the source branch moved to {'4' * 40} after {'2' * 40}; the next iteration is "
                                "reviewed"),
    ({"actual": {**FILES, "prod/app.yaml": b"---\nkind: Secret\n"}},
     f"differs from the generation of HLD {HLD}: prod/app.yaml is edited"),
])
def test_manifest_diff_fails_with_the_reason(change, reason):
    result = manifest_diff_rule(facts(**change))
    assert not result.passed and result.reason == reason


def test_compare_trees_names_missing_extra_and_edited_files():
    actual = {"prod/app.yaml": b"x", "prod/extra.yaml": b""}
    assert compare_trees(FILES, actual) == ["prod/app.yaml is edited", "prod/extra.yaml is not generated",
                                            "prod/root.yaml is missing"]


# -- checks, policy, verdict ------------------------------------------------------------------------------------

def test_checks_hold_when_blocking_policies_are_approved_ignoring_reviewer_and_optional_ones():
    result, pending = checks_rule([
        evaluation("approved"),
        evaluation("rejected", "fa4e907d-c16b-4a4c-9dfa-4906e5d171dd", name="Minimum number of reviewers"),
        evaluation("rejected", "fd2167ab-b0be-447a-8ec8-39368250530e", name="Required reviewers"),
        evaluation("rejected", blocking=False, name="Optional build"),
        evaluation("rejected", enabled=False, name="Disabled build"),
    ])
    assert result.passed and not pending


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_running_build_means_wait(status):
    result, pending = checks_rule([evaluation(status)])
    assert result.passed and pending and result.reason == f"Build is {status}; auto-complete waits for it"


@pytest.mark.parametrize("evaluations, reason", [
    ([evaluation("rejected")], "Build is rejected"),
    ([evaluation("broken")], "Build is broken"),
    ([evaluation("running"), evaluation("rejected", "c6a1889d-b943-4856-b76f-9e46bb6b0df2", name="Comments")],
     "Comments is rejected"),
    ([evaluation("queued", "cbdc66da-9728-4af8-aada-9a5a32e4a226", name="Status check")], "Status check is queued"),
])
def test_checks_fail_for_rejected_or_broken_policies(evaluations, reason):
    result, pending = checks_rule(evaluations)
    assert not result.passed and not pending and result.reason == reason


def test_policy_kill_switches(tmp_path):
    changes, _ = target_changes([versions(tmp_path, FRONTEND_DEV, BASE, tag(BASE, "1.4.1"))])
    assert policy_rule(True, POLICY, None, False, changes).passed
    assert policy_rule(False, POLICY, None, False, changes).reason == \
        "auto-approval is switched off (AUTO_APPROVE=off)"
    assert policy_rule(True, None, "autopilot.yaml:3: unknown key", False, changes).reason == \
        "autopilot.yaml cannot be used: autopilot.yaml:3: unknown key"
    default = policy_rule(True, load_policy(None), None, False, changes)
    assert not default.passed and default.reason == (
        "autopilot.yaml gives autoApprove: none for fabrikam.azurecr.io/fabrikam/frontend in " + FRONTEND_DEV)
    per_target = load_policy("autoApprove: major\nrules:\n  - path: '**/frontend/**'\n    autoApprove: none\n")
    assert policy_rule(True, per_target, None, False, changes).reason.startswith(
        "autopilot.yaml rules[0] gives autoApprove: none")
    assert not policy_rule(True, load_policy("autoApprove: none\n"), None, True, []).passed
    assert policy_rule(True, POLICY, None, True, []).passed


def test_decide():
    ok, bad = RuleResult("scope", True, ""), RuleResult("diff", False, "x")
    assert decide([ok], False).action == "approve"
    assert decide([ok], True).action == "wait"
    verdict = decide([ok, bad], True)
    assert verdict.action == "ineligible" and verdict.passed == ("scope",) and verdict.failed == (bad,)


# -- texts ------------------------------------------------------------------------------------------------------

def test_trace_ids_come_from_bump_and_manifest_descriptions():
    [target] = [t for t in find_all_targets(EXAMPLE_HLD) if t.file == FRONTEND_DEV]
    item = ImagePushed("acr:1", "0123456789abcdef0123456789abcdef", "fabrikam.azurecr.io", "fabrikam/frontend",
                       "1.4.1", "sha256:" + "0" * 64, "m", "2026-01-01T00:00:00Z", "1")
    _, description = pr_text(Outcome(target, "bump", "newer", item))
    assert trace_ids(description) == ("0123456789abcdef0123456789abcdef",)
    message = manifest_message(HLD, "Merged PR 3", [3], ["t1", "t2"])
    assert trace_ids(message) == ("t1", "t2")
    assert hld_commit_in(message) == HLD
    assert hld_commit_in(description) is None


def test_completion_message_carries_images_hld_commit_and_trace_ids(tmp_path):
    changes, _ = target_changes([versions(tmp_path, FRONTEND_DEV, BASE, tag(BASE, "1.4.1"))])
    assert completion_message(pr(), changes, ["t1"], None) == (
        "Merged PR 7: Bump frontend in dev\n\nImage: fabrikam.azurecr.io/fabrikam/frontend:1.4.1\nTrace-Id: t1")
    assert completion_message(pr(title="Generate"), [], ["t1", "t2"], HLD) == (
        f"Merged PR 7: Generate\n\nHLD-Commit: {HLD}\nTrace-Id: t1 t2")


def test_the_ineligible_comment_starts_with_the_marker_and_lists_failures():
    verdict = decide([RuleResult("scope", True, "ok"), RuleResult("author", False, "created by J")], False)
    text = ineligible_comment(verdict, 3)
    assert text.splitlines()[0] == MARKER
    assert "- `author`: created by J" in text and "Passed: `scope`" in text and "(iteration 3)" in text


def test_author_ids_compare_case_insensitively():
    assert is_bot_pr(pr(created_by_id=BOT.upper(), source_ref="refs/heads/x"), BOT, ())
