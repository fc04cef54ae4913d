"""race: several worker processes bumping one HLD at once, each its own services with rising tags and its own
working copy (GitWorkspace base dir), retrying a delivery that failed with GitContention as the queue would (up to
maxDequeueCount deliveries, after which the queue would poison it).

Lost updates, counted from the result: a commit a worker was told had landed that is not on main, a service whose
final tag is not its newest push, and a commit that changed more than the one ring config its bump was about (it
would have undone another writer's bump). Every delivery that landed must be exactly one commit. Every process
warms its working copy, then all start together on a barrier. Baseline: the same kind of bumps one after another
in one process, same run (per-bump latency, to compare with the race's wall time per bump).
"""
from __future__ import annotations

import multiprocessing
import tempfile
import threading
import time
from pathlib import Path

from bench.common import (BenchError, azurite, bedrock_hld_repo, branch_head, files_at, git, latency_ms, ms, progress,
                          repo_path, result, ring_config, secs, service_name, tag_in)
from bench.scale import bump_service, push_item
from core.adapters.git_workspace import GitContention

MAX_DELIVERIES = 5  # host.json maxDequeueCount
JOIN_TIMEOUT_S = 120.0


def _pushes(services: list[str], rounds: int) -> list[tuple[str, str]]:
    """(service, tag) in the order one worker sends them: every service once per round, tags rising by round."""
    return [(name, f"1.0.{r}") for r in range(1, rounds + 1) for name in services]


def _worker(url: str, conn: str, base_dir: str, services: list[str], rounds: int, start, results) -> None:
    attempts = contended = poisoned = 0
    commits: list[str | None] = []
    try:
        service = bump_service(url, conn, Path(base_dir))
        service.workspace.head()
        start.wait()
        for name, tag in _pushes(services, rounds):
            item = push_item(name, tag)
            for _ in range(MAX_DELIVERIES):
                try:
                    outcome = service.process([item])
                    attempts += outcome.attempts
                    commits.append(outcome.commit)
                    break
                except GitContention:
                    contended += 1
            else:
                poisoned += 1
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the benchmark with it
        start.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        raise
    results.put({"attempts": attempts, "contended": contended, "poisoned": poisoned, "commits": commits})


def _serial(parent: Path, conn: str, services: list[str], pushes: int) -> list[float]:
    """Seconds per bump for `pushes` of the same kind of bumps made one after another by one process."""
    url = bedrock_hld_repo(parent, services, name="hld-serial")
    service = bump_service(url, conn, parent / "serial")
    service.workspace.head()
    samples = []
    for name, tag in _pushes(services, rounds=pushes)[:pushes]:
        began = time.perf_counter()
        service.process([push_item(name, tag)])
        samples.append(time.perf_counter() - began)
    return samples


def _history(url: str, since: str) -> dict[str, list[str]]:
    """Commit sha -> paths it changed, for the commits on main after `since`."""
    out = git("--git-dir", str(repo_path(url)), "log", "--format=%x00%H", "--name-only", f"{since}..main").decode()
    history = {}
    for record in out.split("\0")[1:]:
        sha, *paths = [line for line in record.splitlines() if line]
        history[sha] = paths
    return history


def run(processes: int = 4, per_process: int = 25, services_per_process: int = 5, serial_bumps: int = 20,
        conn: str | None = None) -> dict:
    rounds = max(1, per_process // services_per_process)
    names = [service_name(i) for i in range(processes * services_per_process)]
    owned = [names[p::processes] for p in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-race-") as tmp, azurite(conn) as storage_conn:
        work = Path(tmp)
        url = bedrock_hld_repo(work, names)
        seed = branch_head(url)
        start, results = ctx.Barrier(processes + 1), ctx.Queue()
        workers = [ctx.Process(target=_worker, args=(url, storage_conn, str(work / f"worker-{p}"), owned[p], rounds,
                                                     start, results))
                   for p in range(processes)]
        progress(f"race: {processes} processes x {rounds * services_per_process} bumps, "
                 f"{services_per_process} services each")
        try:
            for worker in workers:
                worker.start()
            try:
                start.wait(timeout=JOIN_TIMEOUT_S)
            except threading.BrokenBarrierError:
                raise BenchError(f"worker processes not ready within {JOIN_TIMEOUT_S:g} s") from None
            began = time.perf_counter()
            reports = [results.get(timeout=JOIN_TIMEOUT_S) for _ in workers]
            elapsed = time.perf_counter() - began
        finally:
            for worker in workers:
                worker.join(timeout=10)
                if worker.is_alive():
                    worker.terminate()
                    worker.join(timeout=10)
        errors = [r["error"] for r in reports if "error" in r]
        if errors:
            raise BenchError(f"a worker process failed: {errors[0]}")
        newest = f"1.0.{rounds}"
        finals = files_at(url, "main", [ring_config(n) for n in names])
        wrong_final = sorted(n for n in names if tag_in(finals[ring_config(n)]) != newest)
        history = _history(url, seed)
        undoing = sum(1 for paths in history.values() if len(paths) != 1)
        progress(f"race: baseline, {serial_bumps} bumps one after another in one process")
        serial = _serial(work, storage_conn, names, serial_bumps)
    bumps = processes * rounds * services_per_process
    landed = [sha for r in reports for sha in r["commits"]]
    missing = [sha for sha in landed if sha not in history]
    lost = len(wrong_final) + undoing + len(missing)
    figures = {"processes": processes, "bumps": bumps, "services": len(names), "lost_updates": lost,
               "wrong_final_tags": wrong_final[:10], "commits_changing_other_files": undoing,
               "landed_commits_missing_from_main": len(missing), "landed": len(landed), "commits": len(history),
               "poisoned": sum(r["poisoned"] for r in reports),
               "retries": sum(r["attempts"] for r in reports) - len(landed),
               "contention_errors": sum(r["contended"] for r in reports), "wall_s": secs(elapsed),
               "wall_per_bump_ms": ms(elapsed / bumps)}
    met = lost == 0 and len(history) == len(landed) == bumps
    return result("race", figures, {"serial_one_process": {"bumps": len(serial), **latency_ms(serial)}},
                  "zero lost updates (and every push landed as exactly one commit)", met,
                  f"retries = sum(LandResult.attempts - 1) over landed deliveries; contention_errors = deliveries "
                  f"that raised GitContention and were delivered again; poisoned = pushes still contended after "
                  f"{MAX_DELIVERIES} deliveries (the queue would poison them)")
