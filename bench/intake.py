"""intake: ACR pushes through the host over loopback HTTP (keep-alive, concurrent clients) vs a bare Azurite
`put_message` round trip at the same concurrency.

The host is `python -m devhost` in its own process serving `function_app.app`, with the queue-triggered functions
switched off by the Functions host's `AzureWebJobs.<function>.Disabled` setting so no worker competes with intake.
The HTTP functions and everything behind them are the real ones.
"""
from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from azure.storage.queue import QueueClient

from bench.common import (LOG_DIR, HookClient, acr_push, azurite, concurrently, devhost, host_settings, latency_ms,
                          progress, result)
from core.adapters.storage import IMAGE_PUSHED, Storage

TARGET_P99_MS = 50.0
SINGLE_CLIENT_REQUESTS = 200
PROBE_IMAGE = "fabrikam/intake-probe"
QUEUE_FUNCTIONS = ("bump_worker", "generate_worker", "review_worker")


def _put_message_baseline(conn: str, clients: int, total: int) -> tuple[list[float], list[float]]:
    """put_message round trips on `clients` threads, then on one: (concurrent samples, single-client samples)."""
    queues = [QueueClient.from_connection_string(conn, "bench-baseline") for _ in range(clients)]
    queues[0].create_queue()
    body = acr_push("baseline", PROBE_IMAGE, "1.0.0").decode()
    concurrently(clients, min(total, 100), lambda w, i: queues[w].send_message(body))  # warm connections
    concurrent, _ = concurrently(clients, total, lambda w, i: queues[w].send_message(body))
    single, _ = concurrently(1, min(total, SINGLE_CLIENT_REQUESTS), lambda w, i: queues[0].send_message(body))
    queues[0].delete_queue()
    return concurrent, single


def run(requests: int = 2000, clients: int = 8, warmup: int = 100, conn: str | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp, azurite(conn) as storage_conn:
        progress(f"intake: baseline, {requests} put_message calls on {clients} threads")
        base_concurrent, base_single = _put_message_baseline(storage_conn, clients, requests)
        settings = {**host_settings(storage_conn, Path(tmp) / "work"),
                    **{f"AzureWebJobs.{name}.Disabled": "true" for name in QUEUE_FUNCTIONS}}
        run_id = uuid.uuid4().hex[:8]
        with devhost(settings, LOG_DIR / "intake-devhost.log") as url:
            hooks = [HookClient(url) for _ in range(clients)]
            statuses: list[int] = []

            def post(w: int, i: int) -> None:
                statuses.append(hooks[w].post_acr(acr_push(f"intake-{run_id}-{i}", PROBE_IMAGE, f"1.0.{i}")))

            progress(f"intake: {warmup} warm-up + {requests} pushes through {url} on {clients} keep-alive clients")
            concurrently(clients, warmup, lambda w, i: post(w, requests + i))
            samples, wall = concurrently(clients, requests, post)
            single_total = min(requests, SINGLE_CLIENT_REQUESTS)
            single, _ = concurrently(1, single_total, lambda w, i: post(0, requests + warmup + i))
            for hook in hooks:
                hook.close()
            left = Storage(storage_conn).queue_depth(IMAGE_PUSHED)
    accepted = statuses.count(202)
    figures = {"requests": requests, "clients": clients, **latency_ms(samples), "rps": round(requests / wall, 1),
               "accepted": accepted, "non_202": len(statuses) - accepted,
               "single_client": {"requests": single_total, **latency_ms(single)}}
    baseline = {"put_message": latency_ms(base_concurrent),
                "put_message_single_client": latency_ms(base_single)}
    note = ("host: python -m devhost with the queue functions disabled (AzureWebJobs.<name>.Disabled); "
            f"{left} of {len(statuses)} pushes on image-pushed afterwards")
    met = figures["p99_ms"] < TARGET_P99_MS and accepted == len(statuses)
    return result("intake", figures, baseline, f"p99 < {TARGET_P99_MS:g} ms at {clients} clients, every push "
                  "answered 202", met, note)
