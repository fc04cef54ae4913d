"""Queue-trigger glue: the trigger message as core data in, the run's messages out through output bindings.

Output bindings rather than the storage SDK: the host wakes a queue's listener at once when a function writes to that
queue through an output binding (WebJobs `QueueListener` registers with `SharedQueueWatcher`), while an SDK write waits
for the listener's next poll. `func.Out[List[str]]` (typing.List): azure-functions' `QueueMessageOutConverter`
accepts an iterable annotation only through `typing_inspect`, which does not see `list[str]` as one.
"""
from __future__ import annotations

from typing import List, Mapping

import azure.functions as func

from core.workers.runners import QueuedMessage, QueueWorker
from core.model.workitems import encode


def queued(msg: func.QueueMessage) -> QueuedMessage:
    return QueuedMessage(msg.id or "", msg.get_body().decode("utf-8", errors="replace"), msg.dequeue_count or 1)


async def run(worker: QueueWorker, msg: func.QueueMessage, poison: func.Out[List[str]],
              outputs: Mapping[str, func.Out[List[str]]] | None = None) -> None:
    """Settle `msg` (raising means: retry it) and set the poison and follow-up output bindings."""
    settled = await worker.run(queued(msg))
    if settled.poison:
        poison.set(list(settled.poison))
    by_queue: dict[str, list[str]] = {}
    for item in settled.follow_ups:
        by_queue.setdefault(item.queue, []).append(encode(item))
    for queue, texts in by_queue.items():
        (outputs or {})[queue].set(texts)   # a follow-up without a binding is a wiring bug: fail, do not drop it
