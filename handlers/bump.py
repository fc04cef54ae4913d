"""Queue worker: image-pushed -> image bump in the HLD (or manifest) repo; a new HLD commit asks for generation."""
from __future__ import annotations

from typing import List

import azure.functions as func

from core.workers.runners import BumpJob, QueueWorker
from core.wiring import get_services
from core.adapters.storage import FLUX_NOTIFY, HLD_CHANGED, IMAGE_PUSHED
from handlers import queues

worker = QueueWorker(IMAGE_PUSHED, lambda: BumpJob(get_services()))


async def run(msg: func.QueueMessage, hld_changed: func.Out[List[str]], flux_notify: func.Out[List[str]],
              poison: func.Out[List[str]]) -> None:
    await queues.run(worker, msg, poison, {HLD_CHANGED: hld_changed, FLUX_NOTIFY: flux_notify})
