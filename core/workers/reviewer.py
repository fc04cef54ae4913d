"""The pull request reviewer: gather the facts of one PR (through the Azure DevOps gateway, and git for manifest
PRs), evaluate the rules of `core.rules.review_rules`, act (vote, auto-complete, one comment thread), and record.

Acting is idempotent: a PR already approved by us with our auto-complete set costs only the reads. Before it
approves, the reviewer re-reads the PR and gives up ("superseded") when the source moved past what it verified;
the push's own event brings the next review.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence


from core.adapters.azdo import AzdoGateway, AzdoNotFound, ChangedFile, PullRequest
from core.adapters.git_workspace import GitWorkspace, checkout_head
from core.adapters.review_records import ReviewRecord, ReviewStore, RuleFailure
from core.adapters.trace import TraceLog
from core.generate import GenerationError, generate
from core.model.payloads import repo_name_from_url
from core.model.workitems import PrReview
from core.rules.policy import POLICY_FILE, Policy, PolicyError, load_policy, read_policy_file
from core.rules.review_rules import (
    MANIFEST_SOURCE,
    MARKER,
    MAX_BUMP_FILES,
    FileVersions,
    ManifestFacts,
    PrFacts,
    RuleResult,
    Verdict,
    completion_message,
    eligible_comment,
    evaluate,
    hld_commit_in,
    ineligible_comment,
    is_bot_pr,
    manifest_files_rule,
    scope_rule,
    trace_ids,
)
from core.settings import Settings

log = logging.getLogger("autopilot.review")

APPROVE = 10
WORKSPACE_PURPOSE = "review"   # the reviewer's own working copies: it never waits for a writer's lock


@dataclass(frozen=True)
class ReviewedRepo:
    name: str
    url: str
    branch: str
    manifest: bool     # PRs here are manifest generations (an HLD is configured), else image bumps


@dataclass(frozen=True)
class ReviewOutcome:
    pr_id: int
    repository: str
    iteration: int
    action: str        # approved | already-approved | waiting | ineligible | ignored | superseded
    results: tuple[RuleResult, ...]
    trace_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Policy:
    policy: Policy | None
    error: str | None

    @property
    def allowed_authors(self) -> tuple[str, ...]:
        return self.policy.allowed_authors if self.policy else ()


@dataclass(frozen=True)
class _HldSnapshot:
    head: str
    policy: _Policy
    files: dict[str, bytes] | None     # the generation; None when not asked for or failed
    error: str | None = None


class ReviewService:
    def __init__(self, *, gateway: AzdoGateway, settings: Settings, records: ReviewStore, trace: TraceLog,
                 workspace: Callable[[str, str], GitWorkspace], cache_dir: Path | None = None):
        self.gateway = gateway
        self.settings = settings
        self.records = records
        self.trace = trace
        self.workspace = workspace
        self.cache_dir = cache_dir

    # -- the work ---------------------------------------------------------------------------------------------

    def review(self, item: PrReview) -> ReviewOutcome | None:
        repos = functools.cache(self._repos)   # resolved once per review, only when needed
        pr = self._find_pr(item, repos)
        if pr is None:
            return None
        repo = repos().get(pr.repository_id.lower())
        if repo is None:
            return self._ignore(pr, pr.repository_id, (RuleResult(
                "scope", False, "the repository is not the configured HLD or manifest repository"),))
        facts = self.gather(item, pr, repo)
        return self.act(facts, evaluate(facts))

    # -- gather: every read, once -------------------------------------------------------------------------------

    def gather(self, item: PrReview, pr: PullRequest, repo: ReviewedRepo) -> PrFacts:
        """The facts `evaluate` judges; reads only what the rules will look at (see `PrFacts`)."""
        facts = PrFacts(pr, repo.name, repo.branch, repo.manifest, self.settings.auto_approve)
        if pr.status != "active":
            return facts
        identity = self.gateway.identity_id()
        scope = scope_rule(pr, repo.name, f"refs/heads/{repo.branch}", repo.manifest)
        hld = self._hld_snapshot(generation=scope.passed) if repo.manifest else None
        policy = hld.policy if hld else self._bump_policy(pr)
        facts = replace(facts, identity=identity, policy=policy.policy, policy_error=policy.error)
        if not (scope.passed and is_bot_pr(pr, identity, policy.allowed_authors)):
            return facts
        iteration = self.gateway.latest_iteration(pr.repository_id, pr.id)
        changed = tuple(self.gateway.changed_files(pr.repository_id, pr.id, iteration))
        facts = replace(facts, iteration=iteration, changed=changed)
        if not repo.manifest:
            facts = replace(facts, files=self._bump_files(pr, changed))
        elif policy.policy is not None and manifest_files_rule(changed, policy.policy.environments).passed:
            facts = replace(facts, manifests=self._manifest_facts(pr, repo, hld, policy.policy.environments))
        project = pr.project_id or item.project_id
        if project:
            facts = replace(facts, evaluations=tuple(self.gateway.policy_evaluations(project, pr.id)))
        return facts

    def _repos(self) -> dict[str, ReviewedRepo]:
        """The configured repositories by Azure DevOps id (resolved from the name in the configured URL)."""
        s = self.settings
        repos = {}
        for url, branch, manifest in ((s.hld_repo_url, s.hld_branch, False),
                                      (s.manifest_repo_url, s.manifest_branch, bool(s.hld_repo_url))):
            if not url:
                continue
            name = repo_name_from_url(url)
            try:
                repo_id = self.gateway.repository_id(name)
            except AzdoNotFound:
                log.warning("configured repository %s is not in the Azure DevOps project; its PRs are not reviewed",
                            name)
                continue
            repos[repo_id.lower()] = ReviewedRepo(name, url, branch, manifest)
        return repos

    def _find_pr(self, item: PrReview, repos: Callable[[], dict[str, ReviewedRepo]]) -> PullRequest | None:
        if item.pr_id is not None and item.repository_id:
            try:
                return self.gateway.get_pr(item.repository_id, item.pr_id)
            except AzdoNotFound:
                log.info("pull request %s in %s no longer exists", item.pr_id, item.repository_id,
                         extra={"trace_id": item.trace_id})
                return None
        repo = repos().get(item.repository_id.lower()) if item.repository_id else None
        if item.source_ref and repo is not None:
            pr = self.gateway.find_active_pr(item.repository_id, item.source_ref, f"refs/heads/{repo.branch}")
            if pr is None:
                log.info("no active pull request from %s in %s", item.source_ref, repo.name,
                         extra={"trace_id": item.trace_id})
            return pr
        log.info("%s (build %s): no PR involved", item.event_type, item.build_id, extra={"trace_id": item.trace_id})
        return None

    def _bump_policy(self, pr: PullRequest) -> _Policy:
        """autopilot.yaml as the target branch has it: a PR cannot loosen the policy that judges it."""
        if not pr.last_merge_target_commit:
            return _Policy(None, "the target commit of the pull request is not known yet")
        text = self.gateway.file_at_commit(pr.repository_id, "/" + POLICY_FILE, pr.last_merge_target_commit)
        return _parse_policy(None if text is None else text.decode("utf-8", errors="replace"))

    def _hld_snapshot(self, generation: bool) -> _HldSnapshot:
        s = self.settings
        with self.workspace(s.hld_repo_url, s.hld_branch).read() as tree:
            head = checkout_head(tree).sha
            try:
                policy = _parse_policy(read_policy_file(tree))
            except PolicyError as exc:  # a symlinked, oversized or non-UTF-8 autopilot.yaml
                policy = _Policy(None, str(exc))
            if not generation or policy.policy is None:
                return _HldSnapshot(head, policy, None)
            try:
                generated = generate(tree, policy.policy.environments,
                                     helm_mode=policy.policy.helm_mode or s.helm_mode, helm_bin=s.helm_bin or None,
                                     cache_dir=self.cache_dir, hld_repo_url=s.hld_repo_url,
                                     allowed_sources=s.allowed_source_hosts)
            except GenerationError as exc:
                return _HldSnapshot(head, policy, None, str(exc))
        return _HldSnapshot(head, policy, {f.path: f.content for f in generated.files})

    def _manifest_facts(self, pr: PullRequest, repo: ReviewedRepo, hld: _HldSnapshot,
                        environments: Sequence[str]) -> ManifestFacts:
        with self.workspace(repo.url, MANIFEST_SOURCE.removeprefix("refs/heads/")).read() as tree:
            head = checkout_head(tree)
            hld_commit = hld_commit_in(pr.description) or hld_commit_in(head.message)
            actual = _files_under(tree, environments)
        return ManifestFacts(hld_commit, hld.head, pr.last_merge_source_commit, head.sha, hld.files, actual,
                             hld.error)

    def _bump_files(self, pr: PullRequest, changed: Sequence[ChangedFile]) -> tuple[FileVersions, ...]:
        """Each changed file at base and head, as bytes (the rules find the image targets in them)."""
        if len(changed) > MAX_BUMP_FILES:
            return tuple(FileVersions(c.path.lstrip("/"), c.change_type, None, None) for c in changed)
        versions = []
        for c in changed:
            path = c.path.lstrip("/")
            if c.change_type.lower() != "edit":
                versions.append(FileVersions(path, c.change_type, None, None))
                continue
            base = self.gateway.file_at_commit(pr.repository_id, c.path, pr.last_merge_target_commit)
            head = self.gateway.file_at_commit(pr.repository_id, c.path, pr.last_merge_source_commit)
            versions.append(FileVersions(path, c.change_type, base, head))
        return tuple(versions)

    # -- act: vote, auto-complete, comment, record ----------------------------------------------------------------

    def act(self, facts: PrFacts, verdict: Verdict) -> ReviewOutcome:
        pr = facts.pr
        if verdict.action == "ignore":
            return self._ignore(pr, facts.repository, verdict.results)
        trace = trace_ids(pr.description)
        merge_strategy = facts.policy.merge_strategy if facts.policy else "squash"
        action, changed_anything = self._vote(pr, verdict, facts.iteration, merge_strategy, completion_message(
            pr, verdict.changes, trace, verdict.hld_commit))
        outcome = ReviewOutcome(pr.id, facts.repository, facts.iteration, action, verdict.results, trace)
        self._record(outcome)
        if action == "approved" or (action == "ineligible" and changed_anything):
            self._trace(outcome, verdict)
        return outcome

    def _vote(self, pr: PullRequest, verdict: Verdict, iteration: int, merge_strategy: str,
              message: str) -> tuple[str, bool]:
        """(action, whether anything was written)."""
        me = self.gateway.identity_id().lower()
        my_vote = next((r.vote for r in pr.reviewers if r.id.lower() == me), 0)
        auto_complete_ours = (pr.auto_complete_set_by_id or "").lower() == me
        if verdict.action == "ineligible":
            withdrawn = False
            if my_vote > 0:
                self.gateway.vote(pr.repository_id, pr.id, 0)
                withdrawn = True
            if auto_complete_ours:
                self.gateway.clear_auto_complete(pr.repository_id, pr.id)
                withdrawn = True
            commented = self._comment(pr, ineligible_comment(verdict, iteration), create=True, status="active")
            return "ineligible", withdrawn or commented
        approve = verdict.action == "approve"
        if auto_complete_ours and (my_vote == APPROVE or not approve):
            action, wrote = ("already-approved" if approve else "waiting"), False
        else:
            current = self.gateway.get_pr(pr.repository_id, pr.id)
            if (current.last_merge_source_commit, current.target_ref) != (pr.last_merge_source_commit,
                                                                          pr.target_ref):
                log.info("PR %s moved to %s while it was reviewed; its own event brings the next review", pr.id,
                         current.last_merge_source_commit)
                return "superseded", False
            if approve and my_vote != APPROVE:
                self.gateway.vote(pr.repository_id, pr.id, APPROVE)
            if not auto_complete_ours:
                self.gateway.set_auto_complete(pr.repository_id, pr.id, merge_strategy, message)
            action, wrote = ("approved" if approve else "waiting"), True
        self._comment(pr, eligible_comment(iteration), create=False, status="fixed")
        return action, wrote

    def _comment(self, pr: PullRequest, text: str, *, create: bool, status: str) -> bool:
        """Keep one marked thread: create it (when asked), else update its text and status when they differ
        (resolved once the PR is eligible, so a "comments must be resolved" policy does not block it)."""
        threads = self.gateway.list_threads(pr.repository_id, pr.id)
        mine = next((t for t in threads if MARKER in t.first_comment), None)
        if mine is None:
            if create:
                self.gateway.create_thread(pr.repository_id, pr.id, text, status=status)
            return create
        changed = False
        if mine.first_comment.replace("\r\n", "\n") != text:
            self.gateway.update_thread_comment(pr.repository_id, pr.id, mine.id, text)
            changed = True
        if mine.status != status:
            self.gateway.set_thread_status(pr.repository_id, pr.id, mine.id, status)
            changed = True
        return changed

    # -- records ----------------------------------------------------------------------------------------------

    def _ignore(self, pr: PullRequest, repository: str, why: tuple[RuleResult, ...]) -> ReviewOutcome:
        log.info("PR %s left alone: %s", pr.id, "; ".join(r.reason for r in why))
        outcome = ReviewOutcome(pr.id, repository, 0, "ignored", why)
        self._record(outcome)
        return outcome

    def _record(self, outcome: ReviewOutcome) -> None:
        self.records.write(ReviewRecord(
            pr=outcome.pr_id, repository=outcome.repository, iteration=outcome.iteration,
            passed=tuple(r.rule for r in outcome.results if r.passed),
            failed=tuple(RuleFailure(r.rule, r.reason) for r in outcome.results if not r.passed),
            action=outcome.action, at=datetime.now(timezone.utc), trace_ids=outcome.trace_ids))

    def _trace(self, outcome: ReviewOutcome, verdict: Verdict) -> None:
        stage = "pr-approved" if outcome.action == "approved" else "review-ineligible"
        detail = {"pr": outcome.pr_id, "iteration": outcome.iteration}
        if verdict.failed:
            detail["failed"] = [r.rule for r in verdict.failed]
        for trace_id in outcome.trace_ids:
            # Append to the push's own records (bump or manifest rows that opened this PR) so one trace shows
            # the whole chain; a PR whose pushes were never traced here gets a record of its own.
            keys = [row.target_key for row in self.trace.rows_for_trace(trace_id)
                    if any(stage_.detail.get("pr") == outcome.pr_id for stage_ in row.stages)]
            for key in keys or [f"pr:{outcome.repository}:{outcome.pr_id}"]:
                self.trace.record(trace_id, key, stage, actor="gitops-autopilot",
                                  fields={"pr": str(outcome.pr_id)}, detail=detail)


def _parse_policy(text: str | None) -> _Policy:
    try:
        return _Policy(load_policy(text), None)
    except PolicyError as exc:
        return _Policy(None, str(exc))


_SYMLINK = b"\0symlink to "   # never the start of generated YAML, so a symlink never equals a generated file


def _files_under(tree: Path, folders: Sequence[str]) -> dict[str, bytes]:
    """Every file in the given top-level folders of a checkout; symlinks (to files or folders) as themselves."""
    files = {}
    for folder in folders:
        top = tree / folder
        if top.is_symlink():
            files[folder] = _SYMLINK + os.readlink(top).encode()
            continue
        for root, dirs, names in os.walk(top):
            for name in names + [d for d in dirs if Path(root, d).is_symlink()]:
                full = Path(root, name)
                rel = full.relative_to(tree).as_posix()
                files[rel] = _SYMLINK + os.readlink(full).encode() if full.is_symlink() else full.read_bytes()
    return files


__all__ = ["WORKSPACE_PURPOSE", "ReviewOutcome", "ReviewService", "ReviewedRepo"]
