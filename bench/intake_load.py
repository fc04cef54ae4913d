"""intake_under_load: ACR webhook latency while 16 bumps are being processed, against the same run's idle latency.

The host is `python -m devhost` running functions the way the Python worker does: `async def` HTTP functions on
its event loop, the synchronous bump worker on one shared pool of PYTHON_THREADPOOL_THREAD_COUNT (default
min(32, cores + 4)) threads. On the real worker, synchronous webhooks waited behind bump invocations holding that
pool: 854–1,366 ms during 12–16 queued bumps (issue #10). Manifest generation and review are switched off
(`AzureWebJobs.<name>.Disabled`) so the load is the bumps. Probes are ACR pushes of an image no HLD file uses,
sent one at a time every PROBE_INTERVAL_S from the moment the 16 pushes are sent until the HLD holds all 16 tags.
"""
from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

from bench.common import (LOG_DIR, BenchError, HookClient, acr_push, azurite, bedrock_hld_repo, branch_head,
                          concurrently, devhost, files_at, host_settings, latency_ms, log_tail, progress, result,
                          ring_config, secs, service_name, service_repository, tag_in)

TARGET_P99_MS = 50.0
PROBE_IMAGE = "fabrikam/intake-probe"
PROBE_INTERVAL_S = 0.02
LOAD_TIMEOUT_S = 120.0
IDLE_PROBES = 60


def _tags(url: str, services: list[str]) -> dict[str, str | None]:
    configs = files_at(url, "main", [ring_config(s) for s in services])
    return {s: tag_in(configs[ring_config(s)]) for s in services}


def run(bumps: int = 16, idle_probes: int = IDLE_PROBES, conn: str | None = None) -> dict:
    names = [service_name(i) for i in range(bumps)]
    new_tag = "1.0.1"
    log = LOG_DIR / "intake-load-devhost.log"
    run_id = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="bench-intake-load-") as tmp, azurite(conn) as storage_conn:
        work = Path(tmp)
        hld = bedrock_hld_repo(work, names)
        settings = {**host_settings(storage_conn, work / "work", hld),
                    "AzureWebJobs.generate_worker.Disabled": "true", "AzureWebJobs.review_worker.Disabled": "true"}
        with devhost(settings, log) as url:
            probe = HookClient(url)
            counter = iter(range(1_000_000))

            def send_probe() -> tuple[int, float]:
                n = next(counter)
                began = time.perf_counter()
                status = probe.post_acr(acr_push(f"probe-{run_id}-{n}", PROBE_IMAGE, f"2.0.{n}"))
                return status, time.perf_counter() - began

            progress(f"intake_under_load: {idle_probes} idle probes through {url}")
            for _ in range(5):
                send_probe()  # warm-up: tables, queues, connections
            idle = [send_probe() for _ in range(idle_probes)]
            time.sleep(2.0)  # let the bump worker take the idle probes before the load starts

            pushers = [HookClient(url) for _ in range(4)]
            statuses: list[int] = []
            progress(f"intake_under_load: {bumps} pushes, then probes every {PROBE_INTERVAL_S * 1000:g} ms until "
                     "the HLD holds every new tag")
            began = time.perf_counter()
            concurrently(4, bumps, lambda w, i: statuses.append(pushers[w].post_acr(
                acr_push(f"load-{run_id}-{i}", service_repository(names[i]), new_tag))))
            loaded: list[tuple[int, float]] = []
            done = None
            while time.perf_counter() - began < LOAD_TIMEOUT_S:
                loaded.append(send_probe())
                if len(loaded) % 10 == 0 and all(t == new_tag for t in _tags(hld, names).values()):
                    done = time.perf_counter()
                    break
                time.sleep(PROBE_INTERVAL_S)
            for client in (probe, *pushers):
                client.close()
            if done is None:
                raise BenchError(f"the HLD did not get all {bumps} tags within {LOAD_TIMEOUT_S:g} s:\n"
                                 f"{log_tail(log)}")
            head = branch_head(hld)
    non_202 = sum(1 for status, _ in idle + loaded if status != 202) + sum(1 for s in statuses if s != 202)
    figures = {"bumps": bumps, "probes": len(loaded), **latency_ms([s for _, s in loaded]),
               "bumps_done_s": secs(done - began), "non_202": non_202, "hld_head": head[:12] if head else None}
    met = figures["p99_ms"] < TARGET_P99_MS and non_202 == 0
    return result("intake_under_load", figures, {"idle": latency_ms([s for _, s in idle])},
                  f"ACR webhook p99 < {TARGET_P99_MS:g} ms while {bumps} bumps are processed, every push 202", met,
                  "devhost with worker-faithful concurrency (async HTTP and queue functions on the event loop, the "
                  "bump's git work on its own executor); generation and review disabled")
