"""The host's `SharedQueueWatcher`: a queue listener is woken at once when THIS host writes to its queue.

WebJobs Storage Queues extension (Azure/azure-sdk-for-net,
`sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Queues/src/Listeners/QueueListener.cs`): the listener
registers with the host's `SharedQueueWatcher` ("Call Notify whenever a function adds a message to this
queue"); `Notify()` completes the task its back-off delay is waiting on, so the next poll runs at once. The
callers of `Notify` are the queue OUTPUT binding's collector after `AddMessageAndCreateIfNotExistsAsync`
(`QueueExtensionConfigProvider`), and the poison-message handler when the host moves a message to
`<queue>-poison`. A message written with the storage SDK by anyone (this app included) notifies nobody: it is
seen at the next poll, after up to `maxPollingInterval`. devhost must not be faster than that, so only
output-binding and poison writes call `notify` here.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from typing import Callable


class SharedQueueWatcher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registrations: dict[str, list[Callable[[], None]]] = defaultdict(list)

    def register(self, queue_name: str, notify: Callable[[], None]) -> None:
        with self._lock:
            self._registrations[queue_name.lower()].append(notify)

    def notify(self, queue_name: str) -> None:
        with self._lock:
            callbacks = list(self._registrations.get(queue_name.lower(), ()))
        for callback in callbacks:
            callback()
