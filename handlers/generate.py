"""Queue worker: hld-changed -> regenerate the manifest repo from the HLD branch head."""
from __future__ import annotations

from typing import List

import azure.functions as func

from core.runners import GenerateJob, QueueWorker
from core.services import get_services
from core.storage import HLD_CHANGED
from handlers import queues

worker = QueueWorker(HLD_CHANGED, lambda: GenerateJob(get_services()))


async def run(msg: func.QueueMessage, poison: func.Out[List[str]]) -> None:
    await queues.run(worker, msg, poison)
