"""Queue worker: pr-review -> review a bot pull request (approve and auto-complete, or say why not)."""
from __future__ import annotations

from typing import List

import azure.functions as func

from core.workers.review_job import ReviewJob
from core.workers.runners import QueueWorker
from core.wiring import get_services
from core.adapters.storage import PR_REVIEW
from handlers import queues

worker = QueueWorker(PR_REVIEW, lambda: ReviewJob(get_services()), batches=False)


async def run(msg: func.QueueMessage, poison: func.Out[List[str]]) -> None:
    await queues.run(worker, msg, poison)
