"""Take the other messages waiting on a queue so one run can carry several work items (burst batching).

Taken messages are settled one by one through the queue port (core.adapters.storage.WorkQueues): deleted when their
work is done, moved to `<queue>-poison` (written first, then deleted, so a failure in between leaves a copy, never
none) when it failed for good, or made visible again after a delay when it should be retried. Azure Storage raises a
message's dequeue count on every receive, so the runner only releases a taken message after it really was attempted
(see core.workers.runners).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from core.adapters.storage import Received, StorageUnavailable, WorkQueues, poison_queue

log = logging.getLogger("autopilot.batch")

TAKE_LIMIT = 64
TAKE_VISIBILITY_SECONDS = 120


@dataclass
class Taken:
    """One message received from the queue: its id, text and dequeue count (after this receive)."""
    id: str
    text: str
    dequeue_count: int
    _received: Received | None = field(default=None, repr=False)


class TakenMessages:
    """Messages received from one queue for one run, and the queue calls that settle each of them."""

    def __init__(self, queues: WorkQueues, queue: str, messages: list[Taken] | None = None):
        self._queues = queues
        self.queue = queue
        self.messages = messages or []

    def delete(self, taken: Taken) -> None:
        try:
            if not self._queues.delete(self.queue, taken._received):
                log.warning("taken message %s was already gone", taken.id)
        except StorageUnavailable as exc:  # it will be delivered again; the workers are idempotent
            log.warning("could not delete taken message %s: %s", taken.id, exc)

    def release(self, taken: Taken, delay_seconds: int) -> None:
        try:
            self._queues.release(self.queue, taken._received, delay_seconds)
        except StorageUnavailable as exc:
            log.warning("could not release taken message %s (%s); visible again within %d s", taken.id, exc,
                        TAKE_VISIBILITY_SECONDS)

    def poison(self, taken: Taken, text: str) -> None:
        """Write `text` to `<queue>-poison`, then delete the original (raises StorageUnavailable if the write
        failed: the original then stays and comes back after its visibility timeout)."""
        self._queues.enqueue(poison_queue(self.queue), text)
        self.delete(taken)


def take_waiting(queues: WorkQueues, queue: str, *, limit: int = TAKE_LIMIT,
                 visibility_timeout: int = TAKE_VISIBILITY_SECONDS) -> TakenMessages:
    """Receive up to `limit` visible messages of `queue` (hidden for `visibility_timeout` seconds meanwhile).
    Storage trouble is not an error here: the run goes on with what it has."""
    taken = TakenMessages(queues, queue)
    try:
        while len(taken.messages) < limit:
            page = queues.receive(queue, min(32, limit - len(taken.messages)), visibility_timeout)
            if not page:
                break
            taken.messages += [Taken(m.id, m.text, m.dequeue_count, m) for m in page]
    except StorageUnavailable as exc:
        log.warning("could not take waiting messages from %s: %s", queue, exc)
    return taken
