"""Queue worker: flux-notify -> wake the Flux Receivers of the clusters serving the changed environment folders."""
from __future__ import annotations

from typing import List

import azure.functions as func

from core.workers.flux_notify import RUN_THREADS, FluxNotifyJob
from core.workers.runners import QueueWorker
from core.wiring import get_services
from core.adapters.storage import FLUX_NOTIFY
from handlers import queues

# One item per run (no batching), RUN_THREADS runs at once: a run that waits on a slow receiver (at most the notifier's
# deadline) does not hold up the next commit's notification.
worker = QueueWorker(FLUX_NOTIFY, lambda: FluxNotifyJob(get_services()), batches=False, threads=RUN_THREADS)


async def run(msg: func.QueueMessage, poison: func.Out[List[str]]) -> None:
    await queues.run(worker, msg, poison)
