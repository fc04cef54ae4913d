"""The image bump: from pushed images to a forward-only change of the desired-state repository.

`plan_bumps` is the pure part (which target gets which tag, and why not the others); `BumpService` applies a plan
through the git workspace, as one commit (direct) or one force-updated bot branch + PR per target (pull-request),
and records high-water marks and the trace.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Sequence

from core.rules.bump_decision import BumpDecision, decide_bump
from core.adapters.git_workspace import Edited, GitWorkspace, files_mentioning
from core.adapters.highwater import HighWaterMark, HighWaterStore
from core.adapters.promotion_records import PauseStore
from core.model.images import same_image
from core.rules.policy import Policy, load_policy_from
from core.rules.promotion import push_skip_reason
from core.rules.tag_order import TagOrder, sort_key
from core.rules.targets import Target
from core.adapters.checkout_targets import find_all_targets
from core.adapters.trace import TraceStore
from core.model.trace_record import TraceStage, parse_time
from core.model.workitems import HldChanged, ImagePushed, WorkItem
from core.rules.yaml_edit import apply_to_tree

log = logging.getLogger("autopilot.bump")
ROLLBACK = "rollback"   # ImagePushed.source of a promotion stage's rollback to its previous good tag

@dataclass(frozen=True)
class Outcome:
    """What happened to one target for the images of one run."""
    target: Target
    action: str                   # bump | noop | skip
    reason: str
    item: ImagePushed | None      # the push that decided it (the newest applied one for a bump)
    items: tuple[ImagePushed, ...] = ()   # every push in the run that concerned this target


@dataclass(frozen=True)
class BumpResult:
    outcomes: tuple[Outcome, ...]
    no_target: tuple[ImagePushed, ...]       # pushes whose image no target uses
    commit: str | None = None                # direct mode
    pull_requests: tuple[tuple[str, int], ...] = ()   # (bot branch, PR id) in pull-request mode
    attempts: int = 0
    follow_ups: tuple[WorkItem, ...] = ()    # work the caller must enqueue (generation of a new HLD commit)

    @property
    def bumped(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.action == "bump")


def _dt(value: str) -> datetime | None:
    return parse_time(value)


def push_time(item: ImagePushed) -> str:
    """When the push happened, for latencies: ACR's timestamp unless it is missing or implausible against our
    own receive time (clock skew, or a hand-made delivery), then the time intake received it."""
    pushed, received = _dt(item.pushed_at), _dt(item.received_at)
    if pushed is None or received is None:
        return item.pushed_at or item.received_at
    lag = (received - pushed).total_seconds()
    return item.pushed_at if -5 <= lag <= 600 else item.received_at


def plan_bumps(targets: Sequence[Target], items: Sequence[ImagePushed], policy: Policy,
               high_water: Callable[[Target], HighWaterMark | None],
               only_env: str | None = None) -> tuple[list[Outcome], list[ImagePushed]]:
    """Decide, for every target using a pushed image, the newest allowed tag (folding the pushes in order). With a
    `promotion:` policy a push bumps only the first stage's targets; `only_env` (a promotion) bumps only that
    environment's targets."""
    outcomes: list[Outcome] = []
    used: set[str] = set()
    for target in targets:
        mine = [i for i in items if same_image(target.repository, i.image)]
        if not mine:
            continue
        used.update(i.event_id for i in mine)
        if only_env is not None and target.env != only_env:
            continue
        if only_env is not None and mine[-1].source == ROLLBACK:
            # promotion's onFailure: rollback: an explicit, recorded step back, outside the forward-only rule (the
            # high-water mark keeps the failed tag, so a replay of it stays refused)
            back = mine[-1]
            if target.tag == back.tag:
                outcomes.append(Outcome(target, "noop", f"{back.tag} is already current", back, tuple(mine)))
            else:
                outcomes.append(Outcome(target, "bump", f"rollback: {target.tag} failed in {target.env}; back to "
                                                        f"{back.tag}", back, tuple(mine)))
            continue
        staged = None if only_env is not None else push_skip_reason(policy.promotion, target.env)
        if staged:
            outcomes.append(Outcome(target, "skip", staged, mine[-1], tuple(mine)))
            continue
        if target.overridden_by:
            outcomes.append(Outcome(target, "skip", f"{target.file} is overridden by {target.overridden_by}; "
                                                   f"an edit here would never take effect", mine[-1], tuple(mine)))
            continue
        if target.skip_reason:
            outcomes.append(Outcome(target, "skip", target.skip_reason, mine[-1], tuple(mine)))
            continue
        tp = policy.for_target(target.repository, target.file)
        mark = high_water(target)
        current, current_pushed = target.tag, None
        bumped: Outcome | None = None
        others: list[Outcome] = []
        for item in mine:
            decision: BumpDecision = decide_bump(
                item.tag, current, mark.tag if mark else None, tp, target.env,
                candidate_pushed=_dt(item.pushed_at), current_pushed=current_pushed,
                high_water_pushed=_dt(mark.pushed_at) if mark else None)
            if decision.action == "bump":
                current, current_pushed = item.tag, _dt(item.pushed_at)
                bumped = Outcome(target, "bump", decision.reason, item, tuple(mine))
            else:
                others.append(Outcome(target, decision.action, decision.reason, item, tuple(mine)))
        noops = [o for o in others if o.action == "noop"]
        outcomes.append(bumped or (noops[0] if noops else others[-1]))
    no_target = [i for i in items if i.event_id not in used]
    return outcomes, no_target


def _lower(tag: str, than: str, order: TagOrder) -> bool:
    a, b = sort_key(tag, order, None), sort_key(than, order, None)
    return a is not None and b is not None and a < b


def is_newer_mark(order: TagOrder) -> Callable[[HighWaterMark, HighWaterMark], bool]:
    """Compare high-water marks under a target's ordering; an unorderable stored mark never blocks."""
    def newer(candidate: HighWaterMark, stored: HighWaterMark) -> bool:
        a = sort_key(candidate.tag, order, _dt(candidate.pushed_at))
        b = sort_key(stored.tag, order, _dt(stored.pushed_at))
        if a is None:
            return False
        return b is None or a > b
    return newer


def commit_message(bumps: Sequence[Outcome]) -> str:
    """Subject says service, environment, old -> new; trailers carry digest, ACR event id and trace ids."""
    if len(bumps) == 1:
        o = bumps[0]
        subject = f"Bump {o.target.service} in {o.target.env}: {o.target.tag or '(none)'} -> {o.item.tag}"
        body = [f"{o.target.file} ({o.target.locator}): {o.item.image}:{o.item.tag}"]
    else:
        subject = f"Bump {len(bumps)} images: " + ", ".join(
            f"{o.target.service}/{o.target.env} {o.item.tag}" for o in bumps)
        if len(subject) > 200:
            subject = subject[:197] + "..."
        body = [f"- {o.target.service}/{o.target.env}: {o.target.tag or '(none)'} -> {o.item.tag} "
                f"in {o.target.file} ({o.target.locator})" for o in bumps]
    items = _distinct(o.item for o in bumps)
    trailers = [
        "Image: " + " ".join(f"{i.image}:{i.tag}" for i in items),
        "Image-Digest: " + " ".join(i.digest or "-" for i in items),
        "ACR-Event: " + " ".join(i.acr_event_id for i in items),
        "Trace-Id: " + " ".join(i.trace_id for i in items),
    ]
    return "\n".join([subject, "", *body, "", *trailers]) + "\n"


def _distinct(items: Iterable[ImagePushed]) -> list[ImagePushed]:
    seen, result = set(), []
    for item in items:
        if item.event_id not in seen:
            seen.add(item.event_id)
            result.append(item)
    return result


_BRANCH_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def bot_branch(target: Target) -> str:
    def safe(text: str) -> str:
        return _BRANCH_UNSAFE.sub("-", text).strip("-.") or "default"
    branch = f"autopilot/{safe(target.service)}/{safe(target.env)}"
    stem = PurePosixPath(target.file).stem
    if target.kind == "fabrikate" and stem != "common":  # config/<env>.yaml beside the ring's common.yaml
        branch += f"/{safe(stem)}"
    return branch


def pr_text(outcome: Outcome) -> tuple[str, str]:
    o, item = outcome, outcome.item
    title = f"Bump {o.target.service} in {o.target.env}: {o.target.tag or '(none)'} -> {item.tag}"
    description = "\n".join([
        "Automated image bump by gitops-autopilot.",
        "",
        f"- Image: `{item.image}`",
        f"- Old tag: `{o.target.tag or '(none)'}`",
        f"- New tag: `{item.tag}`",
        f"- Digest: `{item.digest or '-'}`",
        f"- File: `{o.target.file}` (`{o.target.locator}`)",
        f"- ACR event id: `{item.acr_event_id}`",
        f"- Trace id: `{item.trace_id}`",
        "",
        "A newer push supersedes this pull request by updating its branch.",
    ])
    return title, description


@dataclass
class _Attempt:
    """State of one edit attempt inside GitWorkspace.land (re-run from scratch after a push race)."""
    outcomes: list[Outcome] = field(default_factory=list)
    no_target: list[ImagePushed] = field(default_factory=list)


class BumpService:
    def __init__(self, *, repo_url: str, branch: str, workspace: GitWorkspace, high_water: HighWaterStore,
                 trace: TraceStore, mode: str, is_hld: bool = True, pull_requests=None,
                 pauses: PauseStore | None = None):
        self.repo_url = repo_url
        self.branch = branch
        self.workspace = workspace
        self.high_water = high_water
        self.trace = trace
        self.mode = mode
        self.is_hld = is_hld
        self.pull_requests = pull_requests   # core.adapters.pull_requests.PullRequests in pull-request mode
        self.pauses = pauses                 # targets a person's rollback paused
        # One run at a time per service object (the queue runner already runs one batch at a time; callers such
        # as the CLI or tests may not).
        self.lock = threading.RLock()

    # -- helpers ------------------------------------------------------------------------------------------------
    def _plan(self, worktree: Path, items: Sequence[ImagePushed],
              only_env: str | None = None) -> tuple[list[Outcome], list[ImagePushed], Policy]:
        policy = load_policy_from(worktree)
        names = sorted({i.repository.rsplit("/", 1)[-1] for i in items})
        targets = [t for t in find_all_targets(worktree, candidates=files_mentioning(worktree, names),
                                               environments=policy.environments, fields=policy.image_fields)
                   if any(same_image(t.repository, i.image) for i in items)]
        outcomes, no_target = plan_bumps(targets, items, policy,
                                         lambda t: self.high_water.get(self.repo_url, t.key), only_env)
        return self._respect_people(outcomes, policy), no_target, policy

    def _respect_people(self, outcomes: list[Outcome], policy: Policy) -> list[Outcome]:
        """Under a `promotion:` policy, a tag lower than the one automation last applied (a person's manual
        rollback) pauses the target until `core.ops.cli resume`; a paused target is not bumped."""
        if self.pauses is None or not policy.promotion:
            return outcomes
        result = []
        for o in outcomes:
            if o.action == "bump" and o.item.source == ROLLBACK:
                # our own step back: the lower tag it leaves in the file is not a person's rollback
                self.pauses.acknowledge(o.target.service, o.target.env, o.item.tag)
            elif o.action == "bump":
                reason = self.pauses.reason(o.target.service, o.target.env)
                mark = self.high_water.get(self.repo_url, o.target.key)
                order = policy.for_target(o.target.repository, o.target.file).order
                if not reason and mark and o.target.tag and _lower(o.target.tag, mark.tag, order) \
                        and self.pauses.acknowledged(o.target.service, o.target.env) != o.target.tag:
                    reason = (f"a person set {o.target.file} to {o.target.tag} below {mark.tag}, the tag automation "
                              f"applied (a manual rollback)")
                    self.pauses.pause(o.target.service, o.target.env, reason, o.target.tag)
                if reason:
                    o = Outcome(o.target, "skip", f"paused: {reason}; resume with python -m core.ops.cli resume "
                                                  f"--service {o.target.service} --env {o.target.env}", o.item, o.items)
            result.append(o)
        return result

    @staticmethod
    def _apply(worktree: Path, bumps: Sequence[Outcome]) -> None:
        apply_to_tree(worktree, [(o.target, o.item.tag, o.item.digest if o.target.digest else None)
                                 for o in bumps])

    def _record_marks(self, bumps: Sequence[Outcome], policy: Policy) -> None:
        for o in bumps:
            tp = policy.for_target(o.target.repository, o.target.file)
            self.high_water.raise_to(self.repo_url, o.target.key, HighWaterMark(o.item.tag, o.item.pushed_at),
                                     is_newer_mark(tp.order))

    def _trace_outcomes(self, outcomes: Sequence[Outcome], no_target: Sequence[ImagePushed], stage_for_bump: TraceStage,
                        detail_for: Callable[[Outcome], dict]) -> None:
        for o in outcomes:
            for item in o.items:
                fields = {"service": o.target.service, "env": o.target.env, "image": item.image,
                          "imageTag": item.tag, "digest": item.digest, "targetFile": o.target.file,
                          "hldRepo": self.repo_url if self.is_hld else "",
                          "manifestRepo": "" if self.is_hld else self.repo_url}
                self.trace.record(item.trace_id, o.target.key, TraceStage.RECEIVED, actor="acr", start=push_time(item),
                                  at=item.received_at or None, fields=fields,
                                  detail={"acrEventId": item.acr_event_id, "pushedAt": item.pushed_at})
                if o.action == "bump" and item is o.item:
                    self.trace.record(item.trace_id, o.target.key, stage_for_bump, actor="gitops-autopilot",
                                      fields=_bedrock_fields(stage_for_bump, detail_for(o)),
                                      detail=detail_for(o))
                else:
                    reason = o.reason if item is o.item else f"superseded in the same run by {o.item.tag}"
                    self.trace.record(item.trace_id, o.target.key, TraceStage.SKIPPED, actor="gitops-autopilot",
                                      detail={"action": o.action if item is o.item else "skip", "reason": reason})
        for item in no_target:
            self.trace.record(item.trace_id, f"no-target:{item.image}", TraceStage.NO_TARGET, actor="gitops-autopilot",
                              start=push_time(item),
                              fields={"image": item.image, "imageTag": item.tag, "digest": item.digest},
                              detail={"reason": f"no file in {self.repo_url} uses {item.image}"})

    # -- the work -----------------------------------------------------------------------------------------------
    def process(self, items: Sequence[ImagePushed], only_env: str | None = None) -> BumpResult:
        """Bump the targets of `items`; `only_env`: a promotion of their exact tags into that environment only."""
        with self.lock:
            if self.mode == "direct":
                return self._direct(items, only_env)
            return self._pull_request(items, only_env)

    def _direct(self, items: Sequence[ImagePushed], only_env: str | None = None) -> BumpResult:
        attempt = _Attempt()
        policies: list[Policy] = []

        def edit(worktree: Path) -> str | None:
            outcomes, no_target, policy = self._plan(worktree, items, only_env)
            attempt.outcomes, attempt.no_target = outcomes, no_target
            policies[:] = [policy]
            bumps = [o for o in outcomes if o.action == "bump"]
            if not bumps:
                return None
            self._apply(worktree, bumps)
            return Edited(commit_message(bumps), tuple(sorted({o.target.file for o in bumps})))

        landed = self.workspace.land(edit)
        bumps = [o for o in attempt.outcomes if o.action == "bump"]
        follow_ups: tuple[WorkItem, ...] = ()
        if landed.commit and self.is_hld:
            follow_ups = (HldChanged(event_id=f"bump:{landed.commit}", trace_id=bumps[0].item.trace_id,
                                     reason="bump", commit=landed.commit,
                                     image_trace_ids=tuple(i.trace_id for i in _distinct(o.item for o in bumps))),)
        elif not landed.commit and self.is_hld:
            follow_ups = self._recheck_generation(attempt.outcomes)
        if policies:
            self._record_marks(bumps, policies[0])
        stage = TraceStage.HLD_COMMIT if self.is_hld else TraceStage.MANIFEST_COMMIT
        self._trace_outcomes(attempt.outcomes, attempt.no_target, stage,
                             lambda o: {"commit": landed.commit, "branch": self.branch, "attempts": landed.attempts})
        return BumpResult(tuple(attempt.outcomes), tuple(attempt.no_target), commit=landed.commit,
                          attempts=landed.attempts, follow_ups=follow_ups)

    def _recheck_generation(self, outcomes: Sequence[Outcome]) -> tuple[WorkItem, ...]:
        """A no-op whose tag is already in the repo may be the retry of a run that pushed and then failed before
        its generation request was written (the request is written by the host after the run returns, so the
        high-water mark cannot tell): ask for generation again (it is idempotent, and cheap when up to date), and
        repair a high-water mark that the failed run did not record."""
        unfinished = [o for o in outcomes if o.action == "noop" and o.item is not None]
        if not unfinished:
            return ()
        for o in unfinished:
            if (self.high_water.get(self.repo_url, o.target.key) or HighWaterMark("", "")).tag != o.item.tag:
                self.high_water.raise_to(self.repo_url, o.target.key, HighWaterMark(o.item.tag, o.item.pushed_at),
                                         lambda a, b: a.tag != b.tag)
        first = unfinished[0].item
        return (HldChanged(event_id=f"bump-retry:{first.event_id}", trace_id=first.trace_id, reason="bump",
                           image_trace_ids=tuple(dict.fromkeys(o.item.trace_id for o in unfinished))),)

    def _pull_request(self, items: Sequence[ImagePushed], only_env: str | None = None) -> BumpResult:
        with self.workspace.read() as worktree:
            outcomes, no_target, policy = self._plan(worktree, items, only_env)
        prs: list[tuple[str, int]] = []
        results: dict[str, tuple[str | None, int]] = {}
        attempts = 0
        for outcome in [o for o in outcomes if o.action == "bump"]:
            branch = bot_branch(outcome.target)

            def edit(worktree: Path, outcome=outcome) -> Edited:
                self._apply(worktree, [outcome])
                return Edited(commit_message([outcome]), (outcome.target.file,))

            landed = self.workspace.land_on_branch(branch, edit)
            attempts += landed.attempts
            title, description = pr_text(outcome)
            pr_id = self.pull_requests.open_or_update(branch, self.branch, title, description)
            prs.append((branch, pr_id))
            results[outcome.target.key] = (landed.commit, pr_id)
            self._record_marks([outcome], policy)
        self._trace_outcomes(outcomes, no_target, TraceStage.HLD_PR if self.is_hld else TraceStage.MANIFEST_PR,
                             lambda o: {"commit": results[o.target.key][0], "pr": results[o.target.key][1],
                                        "branch": bot_branch(o.target)})
        return BumpResult(tuple(outcomes), tuple(no_target), pull_requests=tuple(prs), attempts=attempts)


def _bedrock_fields(stage: TraceStage, detail: dict) -> dict:
    if stage is TraceStage.HLD_COMMIT:
        return {"hldCommitId": detail.get("commit")}
    if stage is TraceStage.HLD_PR:
        return {"hldCommitId": detail.get("commit"), "pr": str(detail.get("pr"))}
    if stage is TraceStage.MANIFEST_COMMIT:
        return {"manifestCommitId": detail.get("commit")}
    if stage is TraceStage.MANIFEST_PR:
        return {"manifestCommitId": detail.get("commit"), "pr": str(detail.get("pr"))}
    return {}
