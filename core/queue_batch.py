"""Take the other messages waiting on a queue so one run can carry several work items (burst batching).

Messages that do not decode are made visible again at once, so the host retries and poisons them as usual;
the taken ones are deleted only after the run succeeded, and otherwise reappear after their visibility timeout.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

from azure.core.exceptions import AzureError

from core.storage import Storage
from core.workitems import WorkItemError

log = logging.getLogger("autopilot.batch")
T = TypeVar("T")


@dataclass
class Batch(Generic[T]):
    items: list[T] = field(default_factory=list)
    _messages: list = field(default_factory=list)
    _queue: object = None

    def ack(self) -> None:
        for message in self._messages:
            try:
                self._queue.delete_message(message)
            except AzureError as exc:  # it will be delivered again; the workers are idempotent
                log.warning("could not delete batched message %s: %s", message.id, type(exc).__name__)

    def release(self) -> None:
        for message in self._messages:
            try:
                self._queue.update_message(message, visibility_timeout=0)
            except AzureError:
                pass


def take_waiting(storage: Storage, queue: str, decode: Callable[[str], T], *, limit: int = 64,
                 visibility_timeout: int = 120) -> Batch[T]:
    client = storage.queue(queue)
    batch: Batch[T] = Batch(_queue=client)
    received = 0
    try:
        while received < limit:
            page = list(client.receive_messages(max_messages=min(32, limit - received),
                                                visibility_timeout=visibility_timeout))
            if not page:
                break
            received += len(page)
            for message in page:
                try:
                    batch.items.append(decode(message.content))
                    batch._messages.append(message)
                except WorkItemError:
                    client.update_message(message, visibility_timeout=1)
    except AzureError as exc:
        log.warning("could not take waiting messages from %s: %s", queue, type(exc).__name__)
    return batch
