"""Queue worker: flux-notify -> wake the Flux Receivers of the clusters serving the changed environment folders."""
from __future__ import annotations

from typing import List

import azure.functions as func

from core.flux_notify import FluxNotifyJob
from core.runners import QueueWorker
from core.services import get_services
from core.storage import FLUX_NOTIFY
from handlers import queues

# One item per run (no batching): each run is bounded by the notifier's deadline; runs of different commits overlap.
worker = QueueWorker(FLUX_NOTIFY, lambda: FluxNotifyJob(get_services()), batches=False)


async def run(msg: func.QueueMessage, poison: func.Out[List[str]]) -> None:
    await queues.run(worker, msg, poison)
