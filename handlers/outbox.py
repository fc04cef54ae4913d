"""Timer: re-enqueue accepted deliveries that no worker took (the outbox, core/workers/outbox.py)."""
from __future__ import annotations

import logging
import time
from typing import Mapping

import azure.functions as func

from core.workers.outbox import reenqueue_due
from core.wiring import get_services
from handlers.http import set_outputs

log = logging.getLogger("autopilot.outbox")


async def run(timer: func.TimerRequest, outputs: Mapping[str, func.Out]) -> None:
    services = get_services()
    result = await reenqueue_due(services.async_deliveries(), time.time(), services.settings.outbox_max_reenqueues)
    set_outputs(outputs, result.outputs)
    if result.reenqueued or result.stuck:
        log.warning("outbox: %d deliveries re-enqueued, %d stuck", len(result.reenqueued), len(result.stuck))
