"""Run one dequeued work item end to end: batching, Retry-After, and the failure rules the queue relies on.

Raising means "retry me" (the host re-delivers after visibilityTimeout and poisons after maxDequeueCount).
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from core.azdo import AzdoTransientError
from core.bump import push_time
from core.deliveries import DeliveryLog
from core.queue_batch import take_waiting
from core.telemetry import metrics, trace_context
from core.trace import latency_seconds, now_iso
from core.storage import HLD_CHANGED, IMAGE_PUSHED
from core.workitems import HldChanged, ImagePushed, WorkItem, decode

log = logging.getLogger("autopilot.worker")
MAX_RETRY_AFTER_WAIT = 30.0


def honour_retry_after(fn: Callable[[], object], sleep: Callable[[float], None] = time.sleep):
    """Azure DevOps 429/5xx: wait what Retry-After asks (bounded) before letting the queue retry."""
    try:
        return fn()
    except AzdoTransientError as exc:
        if exc.retry_after:
            sleep(min(exc.retry_after, MAX_RETRY_AFTER_WAIT))
        raise


def work_taken(services, items) -> None:
    """Outbox: a worker has these items, so the queue owns their retries from here; their intake deliveries are
    done (never raises; core/deliveries.py)."""
    DeliveryLog(services.storage).mark_done(i.event_id for i in items)


def run_batch(stage: str, services, item: WorkItem, queue: str, worker) -> object:
    """Take the waiting messages of `queue` into this run, under the worker's lock so that invocations running
    side by side in one process wait for one batch rather than each committing a slice of a burst; delete the
    taken messages only when the run succeeded."""
    with trace_context(item.trace_id), worker.lock:
        batch = take_waiting(services.storage, queue, lambda text: decode(text, queue))
        items = [item] + [i for i in batch.items if i.event_id != item.event_id]
        try:
            result = honour_retry_after(lambda: worker.process(items))
        except BaseException:
            batch.release()
            metrics.failure(stage)
            log.exception("%s failed; the queue will retry", stage)
            raise
        finally:
            work_taken(services, items)
        batch.ack()
    return result


def run_bump(services, item: WorkItem):
    assert isinstance(item, ImagePushed)
    result = run_batch("bump", services, item, IMAGE_PUSHED, services.bump)
    now = now_iso()
    for pushed in result.no_target:
        metrics.bump("no-target")
        log.info("no target uses %s:%s", pushed.image, pushed.tag, extra={"trace_id": pushed.trace_id})
    for outcome in result.outcomes:
        metrics.bump(outcome.action)
        log.info("%s %s: %s", outcome.action, outcome.target.key, outcome.reason,
                 extra={"trace_id": outcome.item.trace_id if outcome.item else ""})
        if outcome.action == "bump" and (result.commit or result.pull_requests):
            seconds = latency_seconds(push_time(outcome.item), now)
            if seconds is not None and seconds >= 0:
                metrics.push_to_hld_commit(seconds)
    for _ in result.pull_requests:
        metrics.pull_request("bump")
    return result


def run_generate(services, item: WorkItem):
    assert isinstance(item, HldChanged)
    result = run_batch("generate", services, item, HLD_CHANGED, services.generation)
    metrics.generation(result.action)
    if result.pr_id:
        metrics.pull_request("manifest")
    log.info("generation from HLD %s: %s %s", result.hld_commit[:7], result.action, result.manifest_commit or "",
             extra={"trace_id": item.trace_id})
    return result
