"""Timer: re-enqueue accepted deliveries that no worker took, and purge done ones past retention (the outbox,
core/workers/outbox.py)."""
from __future__ import annotations

import logging
import time
from typing import Mapping

import azure.functions as func

from core.adapters.storage import StorageUnavailable
from core.workers.outbox import purge_expired, reenqueue_due
from core.wiring import get_services
from handlers.http import set_outputs

log = logging.getLogger("autopilot.outbox")


async def run(timer: func.TimerRequest, outputs: Mapping[str, func.Out]) -> None:
    services = get_services()
    now = time.time()
    journal = services.async_deliveries()
    result = await reenqueue_due(journal, now, services.settings.outbox_max_reenqueues)
    set_outputs(outputs, result.outputs)
    if result.reenqueued or result.stuck:
        log.warning("outbox: %d deliveries re-enqueued, %d stuck", len(result.reenqueued), len(result.stuck))
    try:  # after the re-enqueues are set: a failing purge must not cost them (it runs again next minute)
        await purge_expired(journal, now, services.settings.journal_retention_days)
    except StorageUnavailable as exc:
        log.warning("journal retention: purge failed, next run retries: %s", exc)
