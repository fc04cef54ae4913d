"""Queue worker: hld-changed -> regenerate the manifest repo from the HLD branch head; a manifest commit asks
flux-notify to wake the clusters."""
from __future__ import annotations

from typing import List

import azure.functions as func

from core.workers.runners import GenerateJob, QueueWorker
from core.wiring import get_services
from core.adapters.storage import FLUX_NOTIFY, HLD_CHANGED
from handlers import queues

worker = QueueWorker(HLD_CHANGED, lambda: GenerateJob(get_services()))


async def run(msg: func.QueueMessage, flux_notify: func.Out[List[str]], poison: func.Out[List[str]]) -> None:
    await queues.run(worker, msg, poison, {FLUX_NOTIFY: flux_notify})
