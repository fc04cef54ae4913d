"""The manifest generation worker: HLD branch head -> generated environment folders in the manifest repo.

Always generates from the newest HLD commit; does nothing when the manifest repo already records that commit in an
`HLD-Commit` trailer, so any number of queued `hld-changed` items for one HLD produce one generation.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from core.generate import GenerationError, generate, write_generation
from core.adapters.git_workspace import GitRefNotFound, GitWorkspace, checkout_head
from core.rules.policy import load_policy_from
from core.telemetry import metrics
from core.adapters.trace import TraceStore, now_iso
from core.model.trace_record import TraceStage, latency_seconds
from core.model.fleet import DEFAULT_TENANT
from core.model.workitems import HldChanged

log = logging.getLogger("autopilot.generate")

MANIFEST_BOT_BRANCH = "autopilot/manifests"
HISTORY_DEPTH = 50


@dataclass(frozen=True)
class GenerationResult:
    hld_commit: str
    action: str                         # committed | pull-request | unchanged | up-to-date
    manifest_commit: str | None = None
    pr_id: int | None = None
    changed_paths: tuple[str, ...] = ()
    trace_ids: tuple[str, ...] = ()
    tenant: str = DEFAULT_TENANT        # whose manifest repo (set by the job: the generator serves one tenant's view)


def manifest_message(hld_commit: str, subject: str, pr_ids: Sequence[int], trace_ids: Sequence[str]) -> str:
    lines = [f"Generate manifests from HLD {hld_commit[:7]}: {subject}"[:200], "", f"HLD-Commit: {hld_commit}"]
    if pr_ids:
        lines.append("HLD-PR: " + " ".join(str(p) for p in pr_ids))
    if trace_ids:
        lines.append("Trace-Id: " + " ".join(trace_ids))
    return "\n".join(lines) + "\n"


def recorded_hld_commits(history: Sequence[tuple[str, dict[str, str]]]) -> set[str]:
    return {trailers["HLD-Commit"] for _, trailers in history if trailers.get("HLD-Commit")}


def trace_ids_since(hld_history: Sequence[tuple[str, dict[str, str]]], generated: set[str]) -> list[str]:
    """Trace ids carried by the HLD commits that no generation has covered yet (newest first)."""
    ids: list[str] = []
    for sha, trailers in hld_history:
        if sha in generated:
            break
        for trace_id in trailers.get("Trace-Id", "").split():
            if trace_id not in ids:
                ids.append(trace_id)
    return ids


class GenerationService:
    def __init__(self, *, hld: GitWorkspace, manifests: GitWorkspace, hld_url: str, manifest_url: str,
                 mode: str, helm_mode: str, helm_bin: str, trace: TraceStore, cache_dir: Path | None = None,
                 pull_requests=None, allowed_sources: Sequence[str] | None = None):
        self.hld = hld
        self.manifests = manifests
        self.hld_url = hld_url
        self.manifest_url = manifest_url
        self.mode = mode
        self.helm_mode = helm_mode
        self.helm_bin = helm_bin or None
        self.trace = trace
        self.cache_dir = cache_dir
        self.pull_requests = pull_requests
        self.allowed_sources = allowed_sources  # None: the HLD's own host (core.rules.source_hosts)
        self.lock = threading.RLock()   # see BumpService.lock

    def _manifest_history(self) -> list[tuple[str, dict[str, str]]]:
        history = self.manifests.log_trailers(self.manifests.branch, HISTORY_DEPTH)
        if self.mode == "pull-request":
            try:
                history += self.manifests.log_trailers(MANIFEST_BOT_BRANCH, HISTORY_DEPTH)
            except GitRefNotFound:  # no bot branch yet
                pass
        return history

    def process(self, items: Sequence[HldChanged]) -> GenerationResult:
        with self.lock:
            return self._process(items)

    def _process(self, items: Sequence[HldChanged]) -> GenerationResult:
        generated = recorded_hld_commits(self._manifest_history())
        with self.hld.read() as tree:
            head = checkout_head(tree)
            hld_commit = head.sha
            if hld_commit in generated:
                log.info("manifests already record HLD commit %s", hld_commit[:7])
                return GenerationResult(hld_commit, "up-to-date")
            subject = head.subject
            policy = load_policy_from(tree)
            generation = generate(tree, policy.environments, helm_mode=policy.helm_mode or self.helm_mode,
                                  helm_bin=self.helm_bin, cache_dir=self.cache_dir, hld_repo_url=self.hld_url,
                                  allowed_sources=self.allowed_sources)
        hld_history = self.hld.log_trailers(self.hld.branch, HISTORY_DEPTH)
        trace_ids = trace_ids_since(hld_history, generated)
        for item in items:
            for trace_id in item.image_trace_ids:
                if trace_id not in trace_ids:
                    trace_ids.append(trace_id)
        pr_ids = sorted({i.pr_id for i in items if i.pr_id is not None})
        message = manifest_message(hld_commit, subject, pr_ids, trace_ids)
        changed: list[str] = []

        def edit(worktree: Path) -> str | None:
            changed[:] = write_generation(generation, worktree)
            return message if changed else None

        if self.mode == "pull-request":
            landed = self.manifests.land_on_branch(MANIFEST_BOT_BRANCH, edit)
            if landed.commit is None:
                return GenerationResult(hld_commit, "unchanged", trace_ids=tuple(trace_ids))
            pr_id = self.pull_requests.open_or_update(
                MANIFEST_BOT_BRANCH, self.manifests.branch, f"Generate manifests from HLD {hld_commit[:7]}", message)
            self._trace(trace_ids, TraceStage.MANIFEST_PR, landed.commit, pr_id, hld_commit, pr_ids)
            return GenerationResult(hld_commit, "pull-request", landed.commit, pr_id, tuple(changed),
                                    tuple(trace_ids))
        landed = self.manifests.land(edit)
        if landed.commit is None:
            return GenerationResult(hld_commit, "unchanged", trace_ids=tuple(trace_ids))
        self._trace(trace_ids, TraceStage.MANIFEST_COMMIT, landed.commit, None, hld_commit, pr_ids)
        return GenerationResult(hld_commit, "committed", landed.commit, None, tuple(changed), tuple(trace_ids))

    def _trace(self, trace_ids: Sequence[str], stage: TraceStage, commit: str, pr_id: int | None, hld_commit: str,
               hld_prs: Sequence[int]) -> None:
        for trace_id in trace_ids:
            for row in self.trace.rows_for_trace(trace_id):
                if not (row.has(TraceStage.HLD_COMMIT) or row.has(TraceStage.HLD_PR)):
                    continue
                if hld_prs and not row.has(TraceStage.HLD_MERGE):
                    self.trace.record(trace_id, row.target_key, TraceStage.HLD_MERGE, actor="azure-devops",
                                      fields={"hldCommitId": hld_commit}, detail={"commit": hld_commit})
                at = now_iso()
                self.trace.record(trace_id, row.target_key, stage, actor="gitops-autopilot", at=at,
                                  fields={"manifestCommitId": commit, "manifestRepo": self.manifest_url},
                                  detail={"commit": commit, "hldCommit": hld_commit,
                                          **({"pr": pr_id} if pr_id else {})})
                seconds = latency_seconds(row.start, at)
                if seconds is not None and seconds >= 0:
                    metrics.push_to_manifest_commit(seconds)


__all__ = ["GenerationError", "GenerationResult", "GenerationService", "MANIFEST_BOT_BRANCH"]
