"""eventgrid_batch: one Event Grid request carrying 3,000 ImagePushed events (and a full 1 MiB one) through the host,
against the same run's single-event request.

Event Grid waits 30 s for an answer (then retries the whole batch). The host is `python -m devhost` serving
`function_app.app` with the queue functions disabled, as in the intake benchmark. Events are ACR ImagePushed events
in the Event Grid schema with digests, kept short: 3,000 of them are a full request (1.04 MB of the 1 MiB limit). Answered = the HTTP reply;
enqueued = every event's work item is on image-pushed (beyond 32 per request they are sent after the reply).
"""
from __future__ import annotations

import http.client
import json
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import (ACR_SECRET, LOG_DIR, BenchError, azurite, devhost, host_settings, latency_ms, progress,
                          result, secs, wait_until)
from core.adapters.storage import IMAGE_PUSHED, Storage

EVENT_GRID_TIMEOUT_S = 30.0
TARGET_S = 10.0  # a third of Event Grid's budget
QUEUE_FUNCTIONS = ("bump_worker", "generate_worker", "review_worker")


def event(run_id: str, n: int) -> dict:
    return {"id": f"{run_id}{n:x}", "subject": "a", "eventType": "Microsoft.ContainerRegistry.ImagePushed",
            "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1.0",
            "data": {"id": f"{n:x}", "action": "push",
                     "target": {"digest": f"sha256:{n:064x}", "repository": "f/app", "tag": f"1.0.{n}"},
                     "request": {"host": "f.azurecr.io"}}}


def batch_body(run_id: str, start: int, count: int) -> bytes:
    return json.dumps([event(run_id, start + n) for n in range(count)], separators=(",", ":")).encode()


class EventGridClient:
    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self._conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                                timeout=EVENT_GRID_TIMEOUT_S * 2)

    def post(self, body: bytes) -> tuple[int, dict, float]:
        began = time.perf_counter()
        self._conn.request("POST", "/api/hooks/eventgrid", body=body,
                           headers={"Authorization": f"Bearer {ACR_SECRET}", "Content-Type": "application/json"})
        response = self._conn.getresponse()
        answer = response.read()
        return response.status, json.loads(answer or b"{}"), time.perf_counter() - began

    def close(self) -> None:
        self._conn.close()


def run(events: int = 3000, singles: int = 30, conn: str | None = None) -> dict:
    run_id = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp, azurite(conn) as storage_conn:
        settings = {**host_settings(storage_conn, Path(tmp) / "work"),
                    **{f"AzureWebJobs.{name}.Disabled": "true" for name in QUEUE_FUNCTIONS}}
        storage = Storage(storage_conn)
        with devhost(settings, LOG_DIR / "batch-devhost.log") as url:
            client = EventGridClient(url)
            try:
                client.post(batch_body(run_id, 10_000_000, 1))  # warm-up: tables, queues, connections
                progress(f"eventgrid_batch: {singles} single-event requests through {url}")
                single = [client.post(batch_body(run_id, 20_000_000 + i, 1)) for i in range(singles)]
                if any(status != 202 for status, _, _ in single):
                    raise BenchError(f"a single-event request was not accepted: {single[0][:2]}")
                expected = storage.queue_depth(IMAGE_PUSHED) + events
                progress(f"eventgrid_batch: one request with {events} events")
                body = batch_body(run_id, 0, events)
                began = time.perf_counter()
                status, answer, answered = client.post(body)
                accepted = len(answer.get("queued", []))
                enqueued_at = wait_until(lambda: storage.queue_depth(IMAGE_PUSHED) >= expected, 120, 0.2)
                figures = {"events": events, "status": status, "accepted": accepted, "answered_s": secs(answered),
                           "per_event_ms": round(answered * 1000 / events, 3),
                           "bytes": len(body), "all_enqueued_s": secs(enqueued_at - began) if enqueued_at else None}
            finally:
                client.close()
    single_ms = latency_ms([s for _, _, s in single])
    figures["sequential_estimate_s"] = secs(single_ms["p50_ms"] * events / 1000)
    met = status == 202 and accepted == events and answered < TARGET_S and enqueued_at is not None
    return result("eventgrid_batch", figures, {"single_event_request": single_ms},
                  f"{events} events answered 202 in < {TARGET_S:g} s (Event Grid waits {EVENT_GRID_TIMEOUT_S:g} s), "
                  "every one accepted and enqueued", met, "host: python -m devhost with the queue functions disabled; sequential_estimate_s = "
                  "events x the single-event p50 (one request per event)")
