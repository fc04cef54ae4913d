"""`evaluate(facts) -> Verdict` over hand-built facts: every outcome, with no file, network or git access."""
from __future__ import annotations

import builtins
import os
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from unittest.mock import patch

import pytest
import ruamel.yaml

from core.adapters.azdo import ChangedFile, PolicyEvaluation
from core.rules import review_rules
from core.rules.policy import load_policy
from core.rules.review_rules import (
    BUILD_POLICY,
    FileVersions,
    ManifestFacts,
    PrFacts,
    RuleResult,
    Verdict,
)
from tests.test_review_rules import BASE, BOT, FRONTEND_DEV, PERSON, POLICY, pr, tag

HLD = "1" * 40
GENERATED = {"prod/app.yaml": b"---\nkind: ConfigMap\n"}
MANIFEST_POLICY = load_policy("autoApprove: patch\nenvironments: [prod]\n")
WORKER = "svc/config/common.yaml"
WORKER_BASE = ("config:\n  app:\n    replicas: 1\n    image:\n      name: r.io/worker\n      version: '2.0.0'\n")
FIELDS_POLICY = load_policy("autoApprove: patch\nrules:\n  - image: 'r.io/*'\n"
                            "    fields: {repository: app.image.name, tag: app.image.version}\n")


RUAMEL = os.path.dirname(ruamel.yaml.__file__)  # `YAML()` globs its own package for plug-ins: not repo I/O


def evaluate(facts: PrFacts) -> Verdict:
    """`review_rules.evaluate` with opening, listing or creating files refused: it judges the facts alone."""
    def refusing(original):
        def call(*args, **kwargs):
            if args and isinstance(args[0], str) and args[0].startswith(RUAMEL):
                return original(*args, **kwargs)
            raise AssertionError(f"evaluate did I/O: {args[:1]}")
        return call

    with ExitStack() as stack:
        for module, name in ((builtins, "open"), (os, "open"), (os, "scandir"), (os, "listdir"), (os, "stat"),
                             (os, "lstat"), (tempfile, "mkdtemp"), (tempfile, "TemporaryDirectory")):
            stack.enter_context(patch.object(module, name, refusing(getattr(module, name))))
        return review_rules.evaluate(facts)


def build(status: str = "approved") -> PolicyEvaluation:
    return PolicyEvaluation("e", status, True, True, BUILD_POLICY, "Build")


def bump(head: str | None = None, *, base: str = BASE, path: str = FRONTEND_DEV, policy=POLICY,
         **changes) -> PrFacts:
    """A bump PR as gathered: the file's bytes at base and head, the policy of the target branch, a build."""
    files = (FileVersions(path, "edit", base.encode(), (head or tag(base, "1.4.1")).encode()),)
    facts = PrFacts(pr(), "hld", "main", False, True, identity=BOT, policy=policy, iteration=2,
                    changed=(ChangedFile("/" + path, "edit"),), files=files, evaluations=(build(),))
    return replace(facts, **changes)


def manifest(actual: dict[str, bytes] | None = None, **changes) -> PrFacts:
    generated = ManifestFacts(HLD, HLD, "b" * 40, "b" * 40, dict(GENERATED), dict(actual or GENERATED))
    facts = PrFacts(pr(source_ref="refs/heads/autopilot/manifests"), "manifests", "main", True, True,
                    identity=BOT, policy=MANIFEST_POLICY, iteration=1,
                    changed=(ChangedFile("/prod/app.yaml", "edit"),), manifests=generated,
                    evaluations=(build(),))
    return replace(facts, **changes)


def results(verdict: Verdict) -> dict[str, bool]:
    return {r.rule: r.passed for r in verdict.results}


def reason(verdict: Verdict, rule: str) -> str:
    [found] = [r.reason for r in verdict.results if r.rule == rule]
    return found


# -- approve, wait ----------------------------------------------------------------------------------------------

def test_a_patch_bump_is_approved_with_its_change():
    verdict = evaluate(bump())
    assert verdict.action == "approve"
    assert results(verdict) == {"scope": True, "author": True, "files": True, "diff": True, "checks": True,
                                "policy": True}
    [change] = verdict.changes
    assert (change.base.repository, change.base.tag, change.head.tag) == (
        "fabrikam.azurecr.io/fabrikam/frontend", "1.4.0", "1.4.1")
    assert verdict.hld_commit is None


def test_a_running_build_means_wait():
    verdict = evaluate(bump(evaluations=(build("running"),)))
    assert verdict.action == "wait" and all(results(verdict).values())


def test_a_generated_manifest_pr_is_approved_with_its_hld_commit():
    verdict = evaluate(manifest())
    assert verdict.action == "approve" and verdict.hld_commit == HLD and verdict.changes == ()
    assert reason(verdict, "diff") == f"1 file(s) equal the generation of HLD {HLD}"


# -- ignore -----------------------------------------------------------------------------------------------------

def test_a_pr_that_is_not_active_is_left_alone():
    verdict = evaluate(PrFacts(pr(status="completed"), "hld", "main", False, True))
    assert verdict == Verdict("ignore", (RuleResult("scope", False, "the pull request is completed"),))


def test_a_persons_own_pr_is_left_alone():
    verdict = evaluate(bump(pr=pr(created_by_id=PERSON, created_by_name="Jamal", source_ref="refs/heads/fix")))
    assert verdict.action == "ignore" and [r.rule for r in verdict.results] == ["author"]


def test_allowed_authors_make_a_persons_pr_a_bot_pr():
    policy = load_policy(f"autoApprove: patch\nallowedAuthors: [{PERSON}]\n")
    verdict = evaluate(bump(pr=pr(created_by_id=PERSON, created_by_name="Jamal"), policy=policy))
    assert verdict.action == "approve"


# -- ineligible, one rule at a time -----------------------------------------------------------------------------

def test_a_failed_scope_judges_no_content():
    verdict = evaluate(bump(pr=pr(is_draft=True), files=(), changed=(), evaluations=None))
    assert verdict.action == "ineligible"
    assert results(verdict) == {"scope": False, "author": True, "policy": True}


def test_a_person_pushing_to_an_autopilot_branch_fails_author():
    verdict = evaluate(bump(pr=pr(created_by_id=PERSON, created_by_name="Jamal")))
    assert verdict.action == "ineligible" and results(verdict)["author"] is False


def test_an_added_file_fails_files():
    facts = bump()
    added = FileVersions("new.yaml", "add", None, None)
    verdict = evaluate(replace(facts, files=facts.files + (added,)))
    assert verdict.action == "ineligible" and "diff" not in results(verdict)
    assert reason(verdict, "files") == "new.yaml is a add (a bump only edits existing files)"


def test_another_key_edited_fails_diff():
    verdict = evaluate(bump(tag(BASE, "1.4.1").replace("replicaCount: 1", "replicaCount: 5")))
    assert verdict.action == "ineligible"
    assert reason(verdict, "diff") == f"{FRONTEND_DEV}: subcomponents.chart.config.replicaCount: 1 -> 5"


def test_a_bump_past_the_allowed_level_fails_diff():
    verdict = evaluate(bump(tag(BASE, "1.5.0")))
    assert verdict.action == "ineligible" and "1.4.0 -> 1.5.0 is a minor change" in reason(verdict, "diff")


@pytest.mark.parametrize("evaluations, expected", [
    ((build("rejected"),), "Build is rejected"),
    (None, "the project id is unknown: branch policies cannot be read"),
])
def test_checks_fail(evaluations, expected):
    verdict = evaluate(bump(evaluations=evaluations))
    assert verdict.action == "ineligible" and reason(verdict, "checks") == expected


def test_policy_kill_switches_and_an_unusable_policy():
    assert reason(evaluate(bump(auto_approve=False)), "policy") == "auto-approval is switched off (AUTO_APPROVE=off)"
    broken = evaluate(bump(policy=None, policy_error="autopilot.yaml:1: unknown key 'x'"))
    assert broken.action == "ineligible" and results(broken) == {
        "scope": True, "author": True, "files": True, "checks": True, "policy": False}
    assert reason(evaluate(bump(policy=load_policy(None))), "policy").startswith(
        "autopilot.yaml gives autoApprove: none")


def test_manifest_prs_fail_on_files_diff_and_policy():
    outside = evaluate(manifest(changed=(ChangedFile("/README.md", "edit"),), manifests=None))
    assert reason(outside, "files") == "README.md is outside the generated folders prod/"
    assert "diff" not in results(outside)
    edited = evaluate(manifest({"prod/app.yaml": b"---\nkind: Secret\n"}))
    assert reason(edited, "diff") == f"differs from the generation of HLD {HLD}: prod/app.yaml is edited"
    not_read = evaluate(manifest(manifests=None))
    assert reason(not_read, "diff") == "the manifest branch was not read"
    off = evaluate(manifest(policy=load_policy("autoApprove: none\nenvironments: [prod]\n")))
    assert off.action == "ineligible" and reason(off, "policy") == "autopilot.yaml sets autoApprove: none"


# -- a policy's `fields` shapes (the gap: such PRs were refused) -------------------------------------------------

def test_a_tag_bump_in_a_fields_declared_shape_is_approved():
    verdict = evaluate(bump(WORKER_BASE.replace("'2.0.0'", "'2.0.1'"), base=WORKER_BASE, path=WORKER,
                            policy=FIELDS_POLICY))
    assert verdict.action == "approve", verdict.failed
    [change] = verdict.changes
    assert (change.base.repository, change.base.tag, change.head.tag, change.base.locator) == (
        "r.io/worker", "2.0.0", "2.0.1", "config.app.image")
    assert reason(verdict, "diff") == "only image tags change: r.io/worker 2.0.0 -> 2.0.1"


def test_without_the_fields_rule_the_same_shape_holds_no_image_field():
    verdict = evaluate(bump(WORKER_BASE.replace("'2.0.0'", "'2.0.1'"), base=WORKER_BASE, path=WORKER))
    assert reason(verdict, "files") == f"{WORKER} holds no image field at base"


@pytest.mark.parametrize("head, expected", [
    (WORKER_BASE.replace("'2.0.0'", "'2.0.1'").replace("replicas: 1", "replicas: 3"),
     f"{WORKER}: config.app.replicas: 1 -> 3"),
    (WORKER_BASE.replace("r.io/worker", "r.io/other").replace("'2.0.0'", "'2.0.1'"),
     f"{WORKER} (config.app.image): the image changes from r.io/worker to r.io/other"),
    (WORKER_BASE.replace("'2.0.0'", "'2.1.0'"),
     f"{WORKER} (config.app.image): 2.0.0 -> 2.1.0 is a minor change; autopilot.yaml rules[0] allows at most patch"),
    (WORKER_BASE.replace("'2.0.0'", "'2.0.1'  # bumped"),
     f"{WORKER}: the text differs from the service's own edit of these image fields "
     "(comments, quoting or layout changed too)"),
])
def test_anything_else_in_a_fields_declared_shape_is_refused(head, expected):
    verdict = evaluate(bump(head, base=WORKER_BASE, path=WORKER, policy=FIELDS_POLICY))
    assert verdict.action == "ineligible" and expected in reason(verdict, "diff")
