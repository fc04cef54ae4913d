"""burst: many pushes for many services within one second, through the running host (direct mode, with manifest
generation): how many HLD commits they produce, how long until the HLD holds every service's newest tag and the
queue is empty, and whether every final tag is right.

Each service gets `per_service` pushes with rising semver tags, interleaved across services and sent on a few
keep-alive clients. Drained = image-pushed is empty; the drain time runs from the first push to the last HLD
commit. The baseline is the fewest commits that can carry the burst: one per service.
"""
from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

from bench.common import (EXAMPLE_MANIFESTS, LOG_DIR, BenchError, HookClient, acr_push, azurite, bare_repo,
                          bedrock_hld_repo, branch_head, commit_count, concurrently, devhost, files_at, host_settings,
                          log_tail, progress, recent_messages, result, ring_config, secs, service_name,
                          service_repository, tag_in, wait_until)
from core.adapters.storage import IMAGE_PUSHED, Storage

DRAIN_TIMEOUT_S = 90.0


def _final_tags(url: str, services: list[str]) -> dict[str, str | None]:
    configs = files_at(url, "main", [ring_config(s) for s in services])
    return {s: tag_in(configs[ring_config(s)]) for s in services}


def _drain(hld: str, storage: Storage, deadline: float) -> float | None:
    """Wait until image-pushed is empty (Azurite counts leased messages too, so every run has finished); the
    perf_counter() of the last HLD commit seen, or None at `deadline`."""
    head, moved = branch_head(hld), time.perf_counter()
    while time.perf_counter() < deadline:
        if branch_head(hld) != head:
            head, moved = branch_head(hld), time.perf_counter()
        elif storage.queue_depth(IMAGE_PUSHED) == 0:
            return moved
        time.sleep(0.05)
    return None


def run(services: int = 20, per_service: int = 10, clients: int = 8, conn: str | None = None) -> dict:
    names = [service_name(i) for i in range(services)]
    newest = f"1.0.{per_service}"
    log = LOG_DIR / "burst-devhost.log"
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp, azurite(conn) as storage_conn:
        work = Path(tmp)
        hld = bedrock_hld_repo(work, names)
        manifests = bare_repo(work, EXAMPLE_MANIFESTS, name="manifests")
        seed = branch_head(hld)
        storage = Storage(storage_conn)
        run_id = uuid.uuid4().hex[:8]
        # push k (0-based) is tag 1.0.(k // services + 1) of service k % services: every service's tags rise in order
        pushes = [(names[k % services], f"1.0.{k // services + 1}") for k in range(services * per_service)]
        with devhost(host_settings(storage_conn, work / "work", hld, manifests), log) as url:
            hooks = [HookClient(url) for _ in range(clients)]
            statuses: list[int] = []

            def post(w: int, k: int) -> None:
                service, tag = pushes[k]
                statuses.append(hooks[w].post_acr(acr_push(f"burst-{run_id}-{k}", service_repository(service), tag)))

            progress(f"burst: {len(pushes)} pushes for {services} services through {url}")
            began = time.perf_counter()
            concurrently(clients, len(pushes), post)
            sent = time.perf_counter() - began
            for hook in hooks:
                hook.close()

            last_commit = _drain(hld, storage, began + DRAIN_TIMEOUT_S)
            if last_commit is None:
                raise BenchError(f"image-pushed not empty within {DRAIN_TIMEOUT_S:g} s:\n{log_tail(log)}")
            head = branch_head(hld)
            generated = wait_until(lambda: f"HLD-Commit: {head}" in recent_messages(manifests), DRAIN_TIMEOUT_S,
                                   0.2)
        finals = _final_tags(hld, names)
        commits = commit_count(hld, seed)
    wrong = sorted(s for s, tag in finals.items() if tag != newest)
    figures = {"pushes": len(pushes), "services": services, "send_s": secs(sent),
               "accepted": statuses.count(202), "hld_commits": commits, "drain_s": secs(last_commit - began),
               "manifests_caught_up_s": secs(generated - began) if generated else None,
               "final_tags_right": services - len(wrong), "wrong_final_tags": wrong}
    met = commits <= services and not wrong and statuses.count(202) == len(pushes)
    return result("burst", figures, {"hld_commits_one_per_service": services},
                  f"<= {services} HLD commits and every service's final tag = its newest push ({newest})", met,
                  f"pushes sent on {clients} keep-alive clients; direct mode with manifest generation running")

