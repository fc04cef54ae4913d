"""Run one dequeued work item end to end: batching, Retry-After, and the failure rules the queue relies on.

Raising means "retry me" (the host re-delivers after visibilityTimeout and poisons after maxDequeueCount).
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from core.azdo import AzdoTransientError
from core.queue_batch import take_waiting
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


def run_bump(services, item: WorkItem):
    assert isinstance(item, ImagePushed)
    batch = take_waiting(services.storage, IMAGE_PUSHED, lambda text: decode(text, IMAGE_PUSHED))
    items = [item] + [i for i in batch.items if i.event_id != item.event_id]
    try:
        result = honour_retry_after(lambda: services.bump.process(items))
    except BaseException:
        batch.release()
        raise
    batch.ack()
    for pushed in result.no_target:
        log.info("no target uses %s:%s", pushed.image, pushed.tag, extra={"trace_id": pushed.trace_id})
    for outcome in result.outcomes:
        log.info("%s %s: %s", outcome.action, outcome.target.key, outcome.reason,
                 extra={"trace_id": outcome.item.trace_id if outcome.item else ""})
    return result


def run_generate(services, item: WorkItem):
    assert isinstance(item, HldChanged)
    batch = take_waiting(services.storage, HLD_CHANGED, lambda text: decode(text, HLD_CHANGED))
    try:
        result = honour_retry_after(lambda: services.generation.process([item, *batch.items]))
    except BaseException:
        batch.release()
        raise
    batch.ack()
    log.info("generation from HLD %s: %s %s", result.hld_commit[:7], result.action, result.manifest_commit or "",
             extra={"trace_id": item.trace_id})
    return result
