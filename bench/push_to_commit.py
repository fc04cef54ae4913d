"""push_to_commit: an ACR push through the running host until its HLD commit is on the bare repo's branch (direct
mode, warm), vs committing and pushing the same tag change with the git CLI from a warm clone.

The host runs with the project's host.json, whose `maxPollingInterval` must be at least 2 s (the cost-sane value:
an idle listener polls at most every 2 s): push -> commit stays fast only because every message is written through a
queue output binding, which wakes the target queue's listener at once (devhost emulates the host's
SharedQueueWatcher for those writes only), never because the host polls often.

One push at a time, each a new tag of the example HLD's frontend (both rings move: one commit, two lines). The next
push waits until the manifest commit for the previous one has landed too, so every sample starts from an idle host.
The commit is detected by reading the bare repo's ref file every few milliseconds (no git process in the loop).
"""
from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import (EXAMPLE_HLD, EXAMPLE_MANIFESTS, LOG_DIR, ROOT, BenchError, HookClient, acr_push, azurite,
                          bare_repo, branch_head, devhost, files_at, git, host_settings, latency_ms, log_tail,
                          progress, result, tag_in, wait_until)
from core.adapters.storage import Storage
from core.adapters.trace import TraceLog
from devhost.host_config import parse_timespan

TARGET_BASELINE_FACTOR = 3.0
MIN_POLLING_INTERVAL_S = 2.0
WAIT_S = 30.0
FRONTEND = "fabrikam/frontend"
FRONTEND_RINGS = ("fabrikam-project/frontend/dev/config/common.yaml",
                  "fabrikam-project/frontend/prod/config/common.yaml")


def _with_tag(text: str, tag: str) -> str:
    return "".join(f'{line.split("tag:")[0]}tag: "{tag}"\n' if line.strip().startswith("tag:") else line
                   for line in text.splitlines(keepends=True))


def _git_baseline(parent: Path, rounds: int, warmup: int) -> list[float]:
    """Seconds for `git commit -a` + `git push` of the frontend tag change, from a warm full clone."""
    url = bare_repo(parent, EXAMPLE_HLD, name="hld-baseline")
    clone = parent / "baseline-clone"
    git("clone", "--quiet", url, str(clone))
    samples = []
    for i in range(warmup + rounds):
        for ring in FRONTEND_RINGS:
            path = clone / ring
            path.write_text(_with_tag(path.read_text(encoding="utf-8"), f"1.5.{i}"), encoding="utf-8")
        began = time.perf_counter()
        git("commit", "--quiet", "-am", f"Bump frontend to 1.5.{i}", cwd=clone)
        git("push", "--quiet", "origin", "HEAD:main", cwd=clone)
        if i >= warmup:
            samples.append(time.perf_counter() - began)
    return samples


def _trace_latencies(conn: str, tags: list[str], stage: str) -> list[float]:
    """The trace's own latency of `stage` (seconds from the ACR push timestamp) for each pushed tag, prod ring."""
    trace = TraceLog(Storage(conn))
    found = []
    for tag in tags:
        for row in trace.query(service="frontend", env="prod", tag=tag):
            found += [s.latency_seconds for s in row.stages if s.name == stage and s.latency_seconds is not None]
    return found


def max_polling_interval_s(host_json: Path = ROOT / "host.json") -> float:
    queues = json.loads(host_json.read_text(encoding="utf-8")).get("extensions", {}).get("queues", {})
    return parse_timespan(queues.get("maxPollingInterval", "00:01:00"), "maxPollingInterval")


def run(pushes: int = 30, warmup: int = 2, conn: str | None = None) -> dict:
    log = LOG_DIR / "push_to_commit-devhost.log"
    polling = max_polling_interval_s()
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp, azurite(conn) as storage_conn:
        work = Path(tmp)
        progress(f"push_to_commit: git baseline, {pushes} commit+push rounds")
        baseline = _git_baseline(work, pushes, warmup)
        hld = bare_repo(work, EXAMPLE_HLD, name="hld")
        manifests = bare_repo(work, EXAMPLE_MANIFESTS, name="manifests")
        run_id = uuid.uuid4().hex[:8]
        to_commit, to_manifest, tags = [], [], []
        with devhost(host_settings(storage_conn, work / "work", hld, manifests), log) as url:
            hook = HookClient(url)
            progress(f"push_to_commit: {warmup} warm-up + {pushes} pushes through {url}")
            for i in range(warmup + pushes):
                tag = f"1.5.{i}"
                hld_before, manifests_before = branch_head(hld), branch_head(manifests)
                began = time.perf_counter()
                status = hook.post_acr(acr_push(f"p2c-{run_id}-{i}", FRONTEND, tag))
                if status != 202:
                    raise BenchError(f"push {i} answered HTTP {status}")
                committed = wait_until(lambda: branch_head(hld) != hld_before, WAIT_S, 0.002)
                if committed is None:
                    raise BenchError(f"no HLD commit within {WAIT_S:g} s for push {i}:\n{log_tail(log)}")
                generated = wait_until(lambda: branch_head(manifests) != manifests_before, WAIT_S, 0.005)
                if generated is None:
                    raise BenchError(f"no manifest commit within {WAIT_S:g} s for push {i}:\n{log_tail(log)}")
                landed = files_at(hld, "main", list(FRONTEND_RINGS))
                if any(tag_in(content) != tag for content in landed.values()):
                    raise BenchError(f"HLD commit after push {i} does not hold tag {tag} in both frontend rings")
                if i >= warmup:
                    to_commit.append(committed - began)
                    to_manifest.append(generated - began)
                    tags.append(tag)
            hook.close()
        traced = _trace_latencies(storage_conn, tags, "hld-commit")
    figures = {"pushes": pushes, "max_polling_interval_s": polling, **latency_ms(to_commit),
               "push_to_manifest": latency_ms(to_manifest)}
    if traced:
        figures["trace_hld_commit"] = latency_ms(traced)
    git_figures = latency_ms(baseline)
    figures["vs_baseline"] = round(figures["p50_ms"] / git_figures["p50_ms"], 2)
    met = polling >= MIN_POLLING_INTERVAL_S and figures["vs_baseline"] <= TARGET_BASELINE_FACTOR
    return result("push_to_commit", figures, {"git_commit_push": git_figures},
                  f"push -> HLD commit with maxPollingInterval >= {MIN_POLLING_INTERVAL_S:g} s: p50 <= "
                  f"{TARGET_BASELINE_FACTOR:g}x the git commit+push baseline of the same run", met,
                  "direct mode, warm workspaces, one push at a time from an idle host (every listener backed off "
                  "to maxPollingInterval); only output-binding writes wake a listener early")
