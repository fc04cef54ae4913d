"""The outbox timer: re-enqueue accepted deliveries whose work no worker took within the bound.

Intake's claim writes an outbox marker with the encoded work items (core/deliveries.py); the work leaves through
queue output bindings that the host writes after the function returned, which can fail (a crash, a storage
error). A worker deletes the marker when it takes the item. Markers still there OUTBOX_REENQUEUE_AFTER_SECONDS
after acceptance (or after their last re-enqueue) are sent again, at most OUTBOX_MAX_REENQUEUES times each;
after that health reports them as stuck. Sending again is safe: every worker is idempotent (forward-only bumps,
generation from the branch head, reviews of the current PR iteration).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from core.deliveries import AsyncDeliveryLog, Pending

log = logging.getLogger("autopilot.outbox")
MAX_PER_RUN = 500  # markers handled by one timer run; more wait for the next minute


@dataclass
class OutboxRun:
    outputs: dict[str, list[str]] = field(default_factory=dict)   # queue -> messages for the output bindings
    reenqueued: list[str] = field(default_factory=list)
    skipped: int = 0                                               # taken by a worker (or another run) meanwhile


async def reenqueue_due(deliveries: AsyncDeliveryLog, now: float, max_attempts: int,
                        limit: int = MAX_PER_RUN) -> OutboxRun:
    """Record a re-enqueue on every due marker (an etag-checked update, so concurrent runs do not both send)
    and return their messages for the timer function's queue output bindings."""
    run = OutboxRun()
    due = await deliveries.due(now, max_attempts, limit)
    taken = await asyncio.gather(*(deliveries.reenqueueing(p, now) for p in due))
    for pending, ours in zip(due, taken):
        if not ours:
            run.skipped += 1
            continue
        _add(run, pending)
        log.warning("re-enqueued %s (attempt %d of %d): no worker took it %.0f s after it was accepted",
                    pending.event_id, pending.attempts + 1, max_attempts, now - pending.accepted_at)
    return run


def _add(run: OutboxRun, pending: Pending) -> None:
    run.reenqueued.append(pending.event_id)
    for queue, text in pending.messages:
        run.outputs.setdefault(queue, []).append(text)
