"""The outbox timer: re-enqueue accepted deliveries whose work no worker took within the bound.

Intake's claim writes the deliveries with their encoded work items and an outbox marker (core/adapters/deliveries.py); the
work leaves through queue output bindings that the host writes after the function returned, which can fail (a
crash, a storage error). A worker sets a delivery done when it takes its item. OUTBOX_REENQUEUE_AFTER_SECONDS
after acceptance (or after its last look) a marker is looked at: deliveries not done are sent again, at most
OUTBOX_MAX_REENQUEUES times each (after that health reports them as stuck); a marker with nothing pending goes. Sending again is safe: every worker is idempotent (forward-only bumps,
generation from the branch head, reviews of the current PR iteration).

The same run purges the journal (`purge_expired`): deliveries done and older than JOURNAL_RETENTION_DAYS go with
their bodies, at most PURGE_MAX_PER_RUN a run, never one still on a marker.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from core.adapters.deliveries import PURGE_MAX_PER_RUN, AsyncDeliveryJournal, Marker, Pending, Purged

log = logging.getLogger("autopilot.outbox")
MAX_PER_RUN = 500  # markers handled by one timer run; more wait for the next minute
DAY = 86_400.0


@dataclass
class OutboxRun:
    outputs: dict[str, list[str]] = field(default_factory=dict)   # queue -> messages for the output bindings
    reenqueued: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)                # out of attempts, still not taken
    cleared: int = 0                                               # markers whose deliveries were all taken
    skipped: int = 0                                               # markers another run changed meanwhile


async def reenqueue_due(deliveries: AsyncDeliveryJournal, now: float, max_attempts: int,
                        limit: int = MAX_PER_RUN) -> OutboxRun:
    """Look at every due marker: drop it when its deliveries were all taken, else record one more re-enqueue
    (an etag-checked update, so concurrent runs do not both send) and return the messages of its pending
    deliveries for the timer function's queue output bindings."""
    run = OutboxRun()
    gate = asyncio.Semaphore(8)

    async def look(marker: Marker) -> None:
        async with gate:
            pending = await deliveries.pending(marker)
            send = bool(pending) and marker.attempts < max_attempts
            if not await deliveries.settle(marker, [p.event_id for p in pending], now, reenqueue=send):
                run.skipped += 1
            elif send:
                for item in pending:
                    _add(run, item)
                    log.warning("re-enqueued %s (attempt %d of %d): no worker took it %.0f s after it was "
                                "accepted", item.event_id, marker.attempts + 1, max_attempts, now - item.accepted_at)
            elif pending:
                run.stuck.extend(p.event_id for p in pending)
            else:
                run.cleared += 1

    await asyncio.gather(*(look(m) for m in await deliveries.due(now, limit)))
    return run


def _add(run: OutboxRun, pending: Pending) -> None:
    run.reenqueued.append(pending.event_id)
    for queue, text in pending.messages:
        run.outputs.setdefault(queue, []).append(text)


async def purge_expired(deliveries: AsyncDeliveryJournal, now: float, retention_days: int,
                        limit: int = PURGE_MAX_PER_RUN) -> Purged:
    """Delete deliveries done more than `retention_days` ago (0: keep them forever), at most `limit`."""
    if retention_days <= 0:
        return Purged()
    purged = await deliveries.purge(now - retention_days * DAY, limit)
    if purged.deliveries or purged.bodies:
        log.info("journal retention: purged %d deliveries and %d journaled bodies done over %d days ago%s",
                 purged.deliveries, purged.bodies, retention_days, " (more next run)" if purged.more else "")
    return purged
