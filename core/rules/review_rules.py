"""The pull request reviewer's rules: pure functions from gathered facts to named results with reasons.

A bot pull request is approved only when every rule holds:

- ``scope``: the PR is active, not a draft, in the configured HLD or manifest repository and into its branch
  (manifest PRs also come from ``autopilot/manifests``);
- ``author``: created by the service identity or an ``allowedAuthors`` entry, from a branch under ``autopilot/``;
- ``files``: bump PRs only edit existing files that hold image fields at base; manifest PRs only touch the
  generated environment folders;
- ``diff``: a bump changes nothing but image tags/digests, exactly as the service's own edit would, each tag newer
  by at most the target's ``autoApprove`` level, inside its range and filter, the target not paused; a manifest PR's
  environment folders equal what the generator makes from the HLD commit in its ``HLD-Commit`` trailer, which must
  be the HLD branch head (an older commit would roll the cluster back);
- ``checks``: every enabled blocking policy other than reviewer policies is approved (a queued or running build
  validation means "wait");
- ``policy``: the kill switches are off (``AUTO_APPROVE=off``, ``autoApprove: none``).

The worker gathers a PR's facts once (`PrFacts`), `evaluate` judges them (pure: the image targets of a changed
file are discovered from its bytes, with the policy's `fields` shapes), and the worker acts on the `Verdict`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from core.model.pull_request import ChangedFile, PolicyEvaluation, PullRequest
from core.model.images import ImageRefError, same_image
from core.rules.policy import Policy, TargetPolicy, auto_approves
from core.rules.promotion import manual_envs
from core.rules.tag_order import UnorderableTag, change_level, in_range, quoted
from core.rules.targets import ImageFields, Target, discover_targets
from core.rules.yaml_edit import EditError, diff_image_fields, set_image

BOT_BRANCH_PREFIX = "refs/heads/autopilot/"
MANIFEST_SOURCE = "refs/heads/autopilot/manifests"
MARKER = "<!-- gitops-autopilot:review -->"
BUILD_POLICY = "0609b952-1397-4640-95ec-e00a01b2c241"
REVIEWER_POLICIES = frozenset({"fa4e907d-c16b-4a4c-9dfa-4906e5d171dd",    # minimum number of reviewers
                               "fd2167ab-b0be-447a-8ec8-39368250530e"})   # required reviewers
MAX_BUMP_FILES = 20   # the service writes one target per bump PR; more files are never its own
_SHOWN = 10           # differences listed in one reason

RULES = ("scope", "author", "files", "diff", "checks", "policy")


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    reason: str


@dataclass(frozen=True)
class FileVersions:
    """One changed file of a bump PR: content at base and head (None when absent) and the image targets in each."""
    path: str                      # repo-relative, no leading "/"
    change_type: str
    base: bytes | None
    head: bytes | None
    base_targets: tuple[Target, ...] = ()
    head_targets: tuple[Target, ...] = ()


@dataclass(frozen=True)
class TargetChange:
    base: Target
    head: Target


@dataclass(frozen=True)
class ManifestFacts:
    hld_commit: str | None                 # from the HLD-Commit trailer (description, else the head commit)
    hld_head: str                          # the HLD branch head the generation ran on
    source_commit: str | None              # the PR's last merge source commit
    checked_out: str                       # the manifest branch commit whose folders are in `actual`
    expected: Mapping[str, bytes] | None   # generated files; None when generation failed
    actual: Mapping[str, bytes]            # files in the environment folders at `checked_out`
    generation_error: str | None = None


@dataclass(frozen=True)
class PrFacts:
    """Everything the rules judge one pull request by, gathered once; nothing is read after this.

    Gathering stops where the rules stop looking: a PR that is not active has only `pr` and the repository; past a
    failed `scope` (or for a PR that is no bot PR) there is no content; a manifest PR whose files fail `files`
    has no `manifests`."""
    pr: PullRequest
    repository: str                                  # the configured repository's name
    branch: str                                      # its configured branch (the PR must target it)
    manifest: bool                                   # a manifest repository (generated PRs), else image bumps
    auto_approve: bool                               # the AUTO_APPROVE setting
    identity: str = ""                               # the service identity's id
    policy: Policy | None = None                     # autopilot.yaml (bump PRs: as the target branch has it)
    policy_error: str | None = None                  # why there is no policy
    iteration: int = 0
    changed: tuple[ChangedFile, ...] = ()            # the iteration's changed files
    files: tuple[FileVersions, ...] = ()             # bump PRs: each changed file at base and head (no targets)
    manifests: ManifestFacts | None = None           # manifest PRs: the generation and the branch's folders
    evaluations: tuple[PolicyEvaluation, ...] | None = None   # branch policies; None: the project is unknown

    @property
    def allowed_authors(self) -> tuple[str, ...]:
        return self.policy.allowed_authors if self.policy else ()


@dataclass(frozen=True)
class Verdict:
    action: str                            # approve | wait | ineligible | ignore (no bot PR, or not active)
    results: tuple[RuleResult, ...]
    changes: tuple[TargetChange, ...] = ()  # bump PRs: the image fields that change
    hld_commit: str | None = None           # manifest PRs: the HLD commit the generation is of

    @property
    def passed(self) -> tuple[str, ...]:
        return tuple(r.rule for r in self.results if r.passed)

    @property
    def failed(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.results if not r.passed)


# -- who and where ---------------------------------------------------------------------------------------------

def is_trusted_author(pr: PullRequest, identity_id: str, allowed_authors: Sequence[str]) -> bool:
    trusted = {identity_id.lower(), *(a.lower() for a in allowed_authors)}
    return pr.created_by_id.lower() in trusted or (bool(pr.created_by_name)
                                                   and pr.created_by_name.lower() in trusted)


def is_bot_pr(pr: PullRequest, identity_id: str, allowed_authors: Sequence[str]) -> bool:
    """Bot PRs are reviewed (and told why not when they fail); other people's PRs are left alone."""
    return is_trusted_author(pr, identity_id, allowed_authors) or pr.source_ref.startswith(BOT_BRANCH_PREFIX)


def scope_rule(pr: PullRequest, repository: str, target_ref: str, manifest: bool) -> RuleResult:
    problems = []
    if pr.status != "active":
        problems.append(f"the pull request is {pr.status or 'not active'}")
    if pr.is_draft:
        problems.append("the pull request is a draft")
    if pr.target_ref != target_ref:
        problems.append(f"it targets {pr.target_ref or '(no branch)'}, not {target_ref}")
    if not (pr.last_merge_source_commit and pr.last_merge_target_commit):
        problems.append("Azure DevOps has not computed its merge yet")
    if manifest and pr.source_ref != MANIFEST_SOURCE:
        problems.append(f"manifest pull requests come from {MANIFEST_SOURCE}, not {pr.source_ref}")
    if problems:
        return RuleResult("scope", False, "; ".join(problems))
    return RuleResult("scope", True, f"active pull request into {target_ref} of {repository}")


def author_rule(pr: PullRequest, identity_id: str, allowed_authors: Sequence[str]) -> RuleResult:
    problems = []
    if not is_trusted_author(pr, identity_id, allowed_authors):
        problems.append(f"created by {pr.created_by_name or '?'} ({pr.created_by_id}), who is neither the service "
                        f"identity nor listed in autopilot.yaml allowedAuthors")
    if not pr.source_ref.startswith(BOT_BRANCH_PREFIX):
        problems.append(f"source branch {pr.source_ref} is not under {BOT_BRANCH_PREFIX}")
    if problems:
        return RuleResult("author", False, "; ".join(problems))
    return RuleResult("author", True, f"created by {pr.created_by_name or pr.created_by_id} from {pr.source_ref}")


# -- files ------------------------------------------------------------------------------------------------------

def bump_files_rule(files: Sequence[FileVersions]) -> RuleResult:
    if not files:
        return RuleResult("files", False, "the pull request changes no file")
    if len(files) > MAX_BUMP_FILES:
        return RuleResult("files", False, f"{len(files)} files changed; a bump changes at most {MAX_BUMP_FILES}")
    problems = []
    for f in files:
        if f.change_type.lower() != "edit":
            problems.append(f"{f.path} is a {f.change_type} (a bump only edits existing files)")
        elif f.base is None or f.head is None:
            problems.append(f"{f.path} is missing at {'base' if f.base is None else 'head'}")
        elif not f.base_targets:
            problems.append(f"{f.path} holds no image field at base")
    if problems:
        return RuleResult("files", False, _listing(problems))
    return RuleResult("files", True, "edits only files holding image fields: " + ", ".join(f.path for f in files))


def manifest_files_rule(changed: Sequence[ChangedFile], environments: Sequence[str]) -> RuleResult:
    if not changed:
        return RuleResult("files", False, "the pull request changes no file")
    folders = tuple(f"{env}/" for env in environments)
    problems = []
    for f in changed:
        path = f.path.lstrip("/")
        if f.change_type.lower() not in ("add", "edit", "delete"):
            problems.append(f"{path} is a {f.change_type} (renames are not verified)")
        elif not path.startswith(folders):
            problems.append(f"{path} is outside the generated folders {', '.join(folders)}")
    if problems:
        return RuleResult("files", False, _listing(problems))
    return RuleResult("files", True, f"{len(changed)} file(s), all inside {', '.join(folders)}")


# -- diff -------------------------------------------------------------------------------------------------------

def target_changes(files: Sequence[FileVersions]) -> tuple[list[TargetChange], list[str]]:
    """Image targets whose repository, tag or digest differ between base and head, paired by locator; and the
    files whose set of image fields itself changed."""
    changes, problems = [], []
    for f in files:
        if f.base is None or f.head is None:
            continue
        base = {t.locator: t for t in f.base_targets}
        head = {t.locator: t for t in f.head_targets}
        if base.keys() != head.keys():
            moved = sorted(base.keys() ^ head.keys())
            problems.append(f"{f.path}: image fields appear or disappear at {', '.join(moved)}")
            continue
        changes += [TargetChange(base[key], head[key]) for key in base
                    if (base[key].repository, base[key].tag, base[key].digest)
                    != (head[key].repository, head[key].tag, head[key].digest)]
    return changes, problems


def bump_diff_rule(files: Sequence[FileVersions], policy: Policy) -> RuleResult:
    """Call once `bump_files_rule` holds: every file then exists at base and head."""
    changes, problems = target_changes(files)
    for f in files:
        problems += _file_diff_problems(f, [c for c in changes if c.base.file == f.path], policy.image_fields)
    manual = manual_envs(policy.promotion)
    for change in changes:
        if change.base.env in manual:
            # approval: manual (core.rules.promotion): a person completes this promotion; the service never approves it
            problems.append(f"{change.base.file}: {change.base.env} is a promotion stage with approval: manual")
            continue
        problem = _tag_change_problem(change, policy.for_target(change.base.repository, change.base.file))
        if problem:
            problems.append(problem)
    if problems:
        return RuleResult("diff", False, _listing(problems))
    return RuleResult("diff", True, "only image tags change: " + ", ".join(
        f"{c.base.repository} {c.base.tag or '(none)'} -> {c.head.tag}" for c in changes))


def _file_diff_problems(f: FileVersions, changes: Sequence[TargetChange],
                        fields: Sequence[ImageFields] = ()) -> list[str]:
    try:
        base, head = f.base.decode("utf-8"), f.head.decode("utf-8")
    except UnicodeDecodeError:
        return [f"{f.path} is not UTF-8 text"]
    diff = diff_image_fields(base, head, f.path, fields)
    if not diff.only_image_fields:
        return [f"{f.path}: {difference}" for difference in diff.other_differences]
    if not changes:
        return [f"{f.path}: no image tag or digest changes"]
    expected = base
    try:
        for c in changes:
            digest = c.head.digest if c.head.digest != c.base.digest else None
            expected = set_image(expected, c.base, c.head.tag or "", new_digest=digest).text
    except EditError as exc:
        return [f"{f.path}: {exc}"]
    if expected != head:
        return [f"{f.path}: the text differs from the service's own edit of these image fields "
                "(comments, quoting or layout changed too)"]
    return []


def _tag_change_problem(change: TargetChange, tp: TargetPolicy) -> str | None:
    base, head = change.base, change.head
    where = f"{base.file} ({base.locator})"
    try:
        if not same_image(base.repository, head.repository):
            return f"{where}: the image changes from {base.repository} to {head.repository}"
    except ImageRefError as exc:
        return f"{where}: {exc}"
    if head.tag is None:
        return f"{where}: the tag of {base.repository} is removed"
    if tp.paused:
        return f"{where}: {base.repository} is paused by {_source(tp)}"
    if tp.tag_filter is not None and tp.tag_filter.search(head.tag) is None:
        return f"{where}: tag {head.tag!r} is filtered out by tagFilter {quoted(tp.tag_filter.pattern)}"
    if tp.range is not None and not in_range(head.tag, tp.range):
        return f"{where}: tag {head.tag!r} is outside range {tp.range!r}"
    try:
        level = change_level(base.tag or "", head.tag, tp.order)
    except UnorderableTag as exc:
        return f"{where}: {exc}"
    if level is None:
        return f"{where}: {head.tag} is not newer than {base.tag} under {tp.order.ordering.value} ordering"
    if tp.auto_approve != "none" and not auto_approves(tp.auto_approve, level):
        return (f"{where}: {base.tag} -> {head.tag} is a {level} change; {_source(tp)} allows at most "
                f"{tp.auto_approve}")
    return None


def manifest_diff_rule(facts: ManifestFacts) -> RuleResult:
    if facts.hld_commit is None:
        return RuleResult("diff", False, "no HLD-Commit trailer in the description or the head commit")
    if facts.hld_commit != facts.hld_head:
        return RuleResult("diff", False, f"HLD-Commit {facts.hld_commit} is not the HLD branch head "
                                         f"{facts.hld_head}; a newer generation is due")
    if facts.expected is None:
        return RuleResult("diff", False, f"generation from HLD {facts.hld_head} failed: {facts.generation_error}")
    if facts.checked_out != facts.source_commit:
        return RuleResult("diff", False, f"the source branch moved to {facts.checked_out} after "
                                         f"{facts.source_commit}; the next iteration is reviewed")
    problems = compare_trees(facts.expected, facts.actual)
    if problems:
        return RuleResult("diff", False, f"differs from the generation of HLD {facts.hld_head}: "
                                         + _listing(problems))
    return RuleResult("diff", True, f"{len(facts.expected)} file(s) equal the generation of HLD {facts.hld_head}")


def compare_trees(expected: Mapping[str, bytes], actual: Mapping[str, bytes]) -> list[str]:
    problems = []
    for path in sorted(expected.keys() | actual.keys()):
        if path not in actual:
            problems.append(f"{path} is missing")
        elif path not in expected:
            problems.append(f"{path} is not generated")
        elif expected[path] != actual[path]:
            problems.append(f"{path} is edited")
    return problems


# -- checks and switches ----------------------------------------------------------------------------------------

def checks_rule(evaluations: Sequence[PolicyEvaluation]) -> tuple[RuleResult, bool]:
    """The rule, and whether a build validation is still queued or running (meaningful when it passed)."""
    problems, pending = [], []
    for e in evaluations:
        if not (e.is_enabled and e.is_blocking) or e.type_id in REVIEWER_POLICIES:
            continue
        name = e.type_name or e.type_id
        if e.status in ("approved", "notApplicable"):
            continue
        if e.type_id == BUILD_POLICY and e.status in ("queued", "running"):
            pending.append(f"{name} is {e.status}")
        else:
            problems.append(f"{name} is {e.status}")
    if problems:
        return RuleResult("checks", False, _listing(problems)), False
    if pending:
        return RuleResult("checks", True, _listing(pending) + "; auto-complete waits for it"), True
    return RuleResult("checks", True, "every blocking policy is approved"), False


def policy_rule(auto_approve_setting: bool, policy: Policy | None, policy_error: str | None, manifest: bool,
                changes: Sequence[TargetChange]) -> RuleResult:
    if not auto_approve_setting:
        return RuleResult("policy", False, "auto-approval is switched off (AUTO_APPROVE=off)")
    if policy is None:
        return RuleResult("policy", False, f"autopilot.yaml cannot be used: {policy_error}")
    if manifest:
        if policy.auto_approve == "none":
            return RuleResult("policy", False, "autopilot.yaml sets autoApprove: none")
        return RuleResult("policy", True, f"autopilot.yaml autoApprove: {policy.auto_approve}")
    problems = []
    for change in changes:
        tp = policy.for_target(change.base.repository, change.base.file)
        if tp.auto_approve == "none":
            problems.append(f"{_source(tp)} gives autoApprove: none for {change.base.repository} "
                            f"in {change.base.file}")
    if problems:
        return RuleResult("policy", False, _listing(problems))
    return RuleResult("policy", True, "autoApprove is on for every changed image")


def evaluate(facts: PrFacts) -> Verdict:
    """Every rule over the gathered facts; past a failed scope only the ones that need no content (the rest would
    judge the wrong branch). A PR that is not active, or no bot PR, is left alone ("ignore")."""
    pr = facts.pr
    if pr.status != "active":
        return Verdict("ignore", (RuleResult("scope", False, f"the pull request is {pr.status}"),))
    author = author_rule(pr, facts.identity, facts.allowed_authors)
    if not is_bot_pr(pr, facts.identity, facts.allowed_authors):
        return Verdict("ignore", (author,))
    scope = scope_rule(pr, facts.repository, f"refs/heads/{facts.branch}", facts.manifest)
    results = [scope, author]
    changes: list[TargetChange] = []
    hld_commit, pending = None, False
    if scope.passed:
        if facts.manifest:
            content, hld_commit = _manifest_rules(facts)
        else:
            content, changes = _bump_rules(facts)
        results += content
        if facts.evaluations is None:
            checks = RuleResult("checks", False, "the project id is unknown: branch policies cannot be read")
        else:
            checks, pending = checks_rule(facts.evaluations)
        results.append(checks)
    results.append(policy_rule(facts.auto_approve, facts.policy, facts.policy_error, facts.manifest, changes))
    return replace(decide(results, pending), changes=tuple(changes), hld_commit=hld_commit)


def _bump_rules(facts: PrFacts) -> tuple[list[RuleResult], list[TargetChange]]:
    files = with_targets(facts.files, facts.policy.image_fields if facts.policy else ())
    changes, _ = target_changes(files)
    rule = bump_files_rule(files)
    if rule.passed and facts.policy:
        return [rule, bump_diff_rule(files, facts.policy)], changes
    return [rule], changes


def _manifest_rules(facts: PrFacts) -> tuple[list[RuleResult], str | None]:
    if facts.policy is None:
        return [], None
    files = manifest_files_rule(facts.changed, facts.policy.environments)
    if not files.passed:
        return [files], None
    if facts.manifests is None:
        return [files, RuleResult("diff", False, "the manifest branch was not read")], None
    return [files, manifest_diff_rule(facts.manifests)], facts.manifests.hld_commit


def targets_in(path: str, content: bytes | None, fields: Sequence[ImageFields] = ()) -> tuple[Target, ...]:
    """Image targets in one file's content, found as target discovery would find them at this path (the file
    alone: a tag-only environment file, whose repository is in another file, holds none)."""
    if content is None:
        return ()
    return tuple(t for t in discover_targets([(path, content)], fields=fields) if t.file == path)


def with_targets(files: Sequence[FileVersions], fields: Sequence[ImageFields] = ()) -> tuple[FileVersions, ...]:
    """The changed files with the image targets of each side (`fields`: the policy's extra image shapes)."""
    return tuple(replace(f, base_targets=targets_in(f.path, f.base, fields),
                         head_targets=targets_in(f.path, f.head, fields)) for f in files)


def decide(results: Sequence[RuleResult], build_pending: bool) -> Verdict:
    if not all(r.passed for r in results):
        return Verdict("ineligible", tuple(results))
    return Verdict("wait" if build_pending else "approve", tuple(results))


def _source(tp: TargetPolicy) -> str:
    return "autopilot.yaml" if tp.rule_index is None else f"autopilot.yaml rules[{tp.rule_index}]"


def _listing(problems: Sequence[str]) -> str:
    shown = "; ".join(problems[:_SHOWN])
    return shown if len(problems) <= _SHOWN else f"{shown}; and {len(problems) - _SHOWN} more"


# -- texts: description parsing, comment, completion message ----------------------------------------------------

_TRACE_LINE = re.compile(r"^[\s>*-]*trace[ -]?id:(?P<ids>.*)$", re.IGNORECASE | re.MULTILINE)
_HLD_COMMIT = re.compile(r"^[\s>*-]*HLD[ -]Commit:\s*`?(?P<sha>[0-9a-f]{40})`?\s*$", re.IGNORECASE | re.MULTILINE)


def trace_ids(description: str) -> tuple[str, ...]:
    """Trace ids named in a PR description: ``- Trace id: `<id>` `` lines (bump PRs) or ``Trace-Id: <id> <id>``
    trailers (manifest PRs)."""
    found: list[str] = []
    for match in _TRACE_LINE.finditer(description):
        for token in re.split(r"[\s,`]+", match.group("ids")):
            if token and token not in found:
                found.append(token)
    return tuple(found)


def hld_commit_in(text: str) -> str | None:
    match = _HLD_COMMIT.search(text)
    return match.group("sha").lower() if match else None


def ineligible_comment(verdict: Verdict, iteration: int) -> str:
    lines = [MARKER, f"**gitops-autopilot will not approve this pull request** (iteration {iteration}).", "",
             "Failed rules:"]
    lines += [f"- `{r.rule}`: {r.reason}" for r in verdict.failed]
    if verdict.passed:
        lines += ["", "Passed: " + ", ".join(f"`{name}`" for name in verdict.passed)]
    lines += ["", "Every update of this pull request is reviewed again."]
    return "\n".join(lines)


def eligible_comment(iteration: int) -> str:
    return "\n".join([MARKER, f"**Every gitops-autopilot review rule holds** (iteration {iteration}): it approves "
                              "this pull request and lets it complete once the branch policies pass."])


def completion_message(pr: PullRequest, changes: Sequence[TargetChange], trace: Sequence[str],
                       hld_commit: str | None) -> str:
    """Squash/merge commit message; its trailers carry the trace ids (and images, or the HLD commit) onwards."""
    trailers = []
    images = []
    for c in changes:
        image = f"{c.base.repository}:{c.head.tag}"
        if image not in images:
            images.append(image)
    if images:
        trailers.append("Image: " + " ".join(images))
    if hld_commit:
        trailers.append(f"HLD-Commit: {hld_commit}")
    if trace:
        trailers.append("Trace-Id: " + " ".join(trace))
    subject = f"Merged PR {pr.id}: {pr.title}"
    return "\n".join([subject, "", *trailers]) if trailers else subject
