"""Dict-backed work queues (core.adapters.storage.WorkQueues and AsyncWorkQueues) for tests of the services.

Faithful where the services rely on it (tests/contracts/test_queues.py runs the same assertions against Azurite):
received messages are hidden for their visibility timeout and counted in their dequeue count, a pop receipt is
good until the message is received again or released, peek and receive hand out at most 32, oldest first, and
queue_depth counts hidden messages too. `down` makes every call raise StorageUnavailable; `broken` names queues
whose sends fail (a deleted queue, say).
"""
from __future__ import annotations

import functools
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from core.adapters.storage import Received, StorageUnavailable

MAX_PAGE = 32


def _locked(method):
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return run


@dataclass
class _Message:
    id: str
    text: str
    visible_at: float
    dequeue_count: int = 0
    pop_receipt: str = ""


@dataclass
class FakeQueues:
    clock: Callable[[], float] = time.monotonic
    down: bool = False
    broken: set[str] = field(default_factory=set)
    _queues: dict[str, list[_Message]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=itertools.count)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def _check(self, queue: str) -> list[_Message]:
        if self.down or queue in self.broken:
            raise StorageUnavailable(f"queue {queue}: ServiceRequestError")
        return self._queues.setdefault(queue, [])

    @_locked
    def enqueue(self, queue: str, text: str, visibility_timeout: int | None = None) -> str:
        messages = self._check(queue)
        message = _Message(f"fake-{next(self._ids)}-{uuid.uuid4().hex[:8]}", text,
                           self.clock() + (visibility_timeout or 0))
        messages.append(message)
        return message.id

    @_locked
    def queue_depth(self, name: str) -> int:
        return len(self._check(name))

    def _visible(self, queue: str) -> list[_Message]:
        now = self.clock()
        return [m for m in self._check(queue) if m.visible_at <= now]

    @_locked
    def peek(self, queue: str, limit: int = 32) -> list[Received]:
        return [Received(m.id, m.text, m.dequeue_count) for m in self._visible(queue)[:min(limit, MAX_PAGE)]]

    @_locked
    def receive(self, queue: str, limit: int, visibility_timeout: int) -> list[Received]:
        taken = self._visible(queue)[:min(limit, MAX_PAGE)]
        for m in taken:
            m.dequeue_count += 1
            m.pop_receipt = uuid.uuid4().hex
            m.visible_at = self.clock() + visibility_timeout
        return [Received(m.id, m.text, m.dequeue_count, m.pop_receipt) for m in taken]

    def _held(self, queue: str, message: Received) -> _Message | None:
        return next((m for m in self._check(queue)
                     if m.id == message.id and m.pop_receipt and m.pop_receipt == message.pop_receipt), None)

    @_locked
    def delete(self, queue: str, message: Received) -> bool:
        held = self._held(queue, message)
        if held is None:
            return False
        self._queues[queue].remove(held)
        return True

    @_locked
    def release(self, queue: str, message: Received, visibility_timeout: int) -> None:
        held = self._held(queue, message)
        if held is None:
            raise StorageUnavailable(f"queue {queue}: ResourceNotFoundError")
        held.visible_at = self.clock() + visibility_timeout
        held.pop_receipt = uuid.uuid4().hex

    # -- for the tests' eyes only ---------------------------------------------------------------------------------
    def texts(self, queue: str) -> list[str]:
        """Every message's text, hidden ones too, oldest first."""
        return [m.text for m in self._queues.get(queue, [])]

    def total(self) -> int:
        return sum(len(q) for q in self._queues.values())


@dataclass
class AsyncFakeQueues:
    """The coroutine face of the same fake queues."""
    queues: FakeQueues

    async def enqueue(self, queue: str, text: str) -> str:
        return self.queues.enqueue(queue, text)
