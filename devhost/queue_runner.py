"""A queue trigger listener with the Azure Functions host's semantics (host.json `extensions.queues`).

- Polls with the WebJobs `RandomizedExponentialBackoffStrategy` (Azure/azure-sdk-for-net,
  `.../Extensions.Storage.Common/src/Timers/RandomizedExponentialBackoffStrategy.cs`): after an empty poll that
  followed a hit, wait 100 ms; each further empty poll adds 2^(n-1) x 100 ms x a random factor in [0.8, 1.2]
  (~200, ~300, ~500, ~900 ms ...) up to maxPollingInterval; after a hit, poll again at once.
  The back-off wait ends at once when the host's `SharedQueueWatcher` is notified for this queue (a function of
  this host wrote to it through a queue output binding, or the host poisoned a message into it); a message
  written with the storage SDK is seen at the next poll (see devhost/queue_watcher.py).
- Fetches batchSize messages at a time; fetches again once the number in flight drops to newBatchThreshold (at
  most batchSize + newBatchThreshold in flight). Each message is invoked through the worker runtime: a sync
  function waits for a thread of the ONE shared pool, like every other sync function of the app
  (devhost/worker.py); the listener thread per message only stands for the host's awaiting task.
- A message that is not valid for `messageEncoding` (base64) is moved to `<queue>-poison` without running the
  function, whatever its dequeue count (`QueueProcessor`: the message cannot be bound).
- Fetched messages are leased for `lease_seconds` and the lease is renewed at half-time while the function runs,
  so a slow function's message is not handed out twice.
- Success deletes the message. A failure releases it with visibilityTimeout, unless it was its maxDequeueCount-th
  attempt: then it is written to `<queue>-poison` (same raw text) and deleted. A message fetched with a
  dequeue count above maxDequeueCount (a previous host died mid-run) is poisoned without running.
- Stopping: no new polls; messages not yet started are released (visible at once); in-flight ones may finish until
  the deadline, then whatever still runs is released too.
"""
from __future__ import annotations

import logging
import random
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from azure.functions.queue import QueueMessage
from azure.core.exceptions import AzureError
from azure.storage.queue import QueueClient

from core.adapters.storage import poison_queue
from devhost.function_index import QueueFunction
from devhost.host_config import MIN_POLLING_INTERVAL, QueueOptions
from devhost.invocation import Invoker, failure_summary, log_invocation
from devhost.queue_storage import MessageDecodeError, QueueClients, decode_body
from devhost.queue_watcher import SharedQueueWatcher

log = logging.getLogger("devhost")


class BackoffStrategy:
    """`RandomizedExponentialBackoffStrategy.GetNextDelay` with minimum = deltaBackoff = 100 ms."""

    RANDOMIZATION = 0.2

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None):
        self._minimum = minimum
        self._maximum = maximum
        self._rng = rng or random.Random()
        self._current = 0.0
        self._exponent = 0

    def next_delay(self, found_since_last_delay: bool) -> float:
        if found_since_last_delay:
            self._current, self._exponent = self._minimum, 1
        elif self._current != self._maximum:
            interval = self._minimum
            if self._exponent > 0:
                factor = self._rng.uniform(1 - self.RANDOMIZATION, 1 + self.RANDOMIZATION)
                interval += factor * 2 ** (self._exponent - 1) * self._minimum
            if interval < self._maximum:
                self._current = interval
                self._exponent += 1
            else:
                self._current = self._maximum
        return self._current


@dataclass
class _Lease:
    """A fetched message's current pop receipt; `settled` once deleted, released or poisoned."""

    message_id: str
    pop_receipt: str
    renew_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    settled: bool = False


class QueueRunner:
    def __init__(self, function: QueueFunction, conn: str, clients: QueueClients, invoker: Invoker,
                 options: QueueOptions, lease_seconds: int, watcher: SharedQueueWatcher):
        self.function = function
        self._watcher = watcher
        self._wake = threading.Event()
        self.backoff_ends_at: float | None = None  # time.monotonic() when the current empty-poll wait ends
        self._conn = conn
        self._clients = clients
        self._client: QueueClient = clients.get(conn, function.queue_name)
        self._invoker = invoker
        self._options = options
        self._lease_seconds = lease_seconds
        self._stopping = threading.Event()
        self._keeper_stop = threading.Event()
        self._cond = threading.Condition()
        self._leases: dict[str, _Lease] = {}
        self._in_flight = 0
        self._poll_thread = threading.Thread(target=self._poll_loop, name=f"poll-{function.name}", daemon=True)
        self._keeper_thread = threading.Thread(target=self._keep_leases, name=f"lease-{function.name}", daemon=True)

    def start(self) -> None:
        self._watcher.register(self.function.queue_name, self.notify)
        self._poll_thread.start()
        self._keeper_thread.start()

    def notify(self) -> None:
        """`QueueListener.Notify`: end the current back-off wait (or the next one, if a poll is under way)."""
        self._wake.set()

    def request_stop(self) -> None:
        """Stop polling; running messages go on."""
        self._stopping.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()

    def finish(self, deadline: float) -> None:
        """Stop polling, wait for running messages until `deadline` (time.monotonic()), release the rest."""
        self.request_stop()
        self._poll_thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._cond:
            while self._in_flight and time.monotonic() < deadline:
                self._cond.wait(timeout=deadline - time.monotonic())
            leftover = list(self._leases.values())
        for lease in leftover:
            self._release(lease, 0, "released at shutdown (still running after the grace period)")
        self._keeper_stop.set()
        self._keeper_thread.join(timeout=5)

    # -- polling ---------------------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        options = self._options
        backoff = BackoffStrategy(MIN_POLLING_INTERVAL, options.max_polling_interval)
        found = False
        while not self._stopping.is_set():
            with self._cond:
                while self._in_flight > options.new_batch_threshold and not self._stopping.is_set():
                    self._cond.wait(timeout=1.0)
            if self._stopping.is_set():
                return
            # As in QueueListener.ExecuteAsync, a notification that arrives during this poll ends the next wait.
            self._wake.clear()
            try:
                messages = list(self._client.receive_messages(
                    messages_per_page=options.batch_size, max_messages=options.batch_size,
                    visibility_timeout=self._lease_seconds))
            except AzureError as exc:  # QueueListener backs off on storage errors as on an empty queue
                delay = backoff.next_delay(found)
                found = False
                log.warning("%s: polling queue %s failed (%s); retrying in %.1fs", self.function.name,
                            self.function.queue_name, type(exc).__name__, delay)
                self._wake.wait(delay)
                continue
            if not messages:
                delay = backoff.next_delay(found)
                found = False
                self.backoff_ends_at = time.monotonic() + delay
                self._wake.wait(delay)
                self.backoff_ends_at = None
                continue
            found = True
            for message in messages:
                lease = self._track(message)
                threading.Thread(target=self._process, args=(message, lease), daemon=True,
                                 name=f"run-{self.function.name}").start()

    def _track(self, message: Any) -> _Lease:
        lease = _Lease(message.id, message.pop_receipt, time.monotonic() + self._lease_seconds / 2)
        with self._cond:
            self._leases[message.id] = lease
            self._in_flight += 1
        return lease

    def _untrack(self, lease: _Lease) -> None:
        with self._cond:
            self._leases.pop(lease.message_id, None)
            self._in_flight -= 1
            self._cond.notify_all()

    # -- one message -----------------------------------------------------------------------------------------

    def _process(self, message: Any, lease: _Lease) -> None:
        try:
            if self._stopping.is_set():
                self._release(lease, 0, "released (host stopping, not started)")
                return
            max_count = self._options.max_dequeue_count
            if message.dequeue_count > max_count:
                self._poison(message, lease, f"poisoned without running (dequeue_count {message.dequeue_count} "
                                             f"> maxDequeueCount {max_count})", 0.0)
                return
            try:
                body = decode_body(message.content or "", self._options.message_encoding)
            except MessageDecodeError as exc:
                self._poison(message, lease, f"poisoned without running ({exc})", 0.0)
                return
            self._run(message, body, lease)
        finally:
            self._untrack(lease)

    def _run(self, message: Any, body: bytes, lease: _Lease) -> None:
        started = time.perf_counter()
        try:
            trigger = QueueMessage(
                id=message.id, body=body,
                dequeue_count=message.dequeue_count, insertion_time=message.inserted_on,
                expiration_time=message.expires_on, time_next_visible=message.next_visible_on,
                pop_receipt=message.pop_receipt)
            self._invoker.call(self.function, trigger)
        except Exception as exc:  # noqa: BLE001 - a failing function is retried, never crashes the host
            elapsed = (time.perf_counter() - started) * 1000
            log.debug("%s id=%s traceback:\n%s", self.function.name, message.id, traceback.format_exc())
            if message.dequeue_count >= self._options.max_dequeue_count:
                self._poison(message, lease, f"failed ({failure_summary(exc)}), moved to "
                                             f"{poison_queue(self.function.queue_name)}", elapsed)
            else:
                retry = int(self._options.visibility_timeout)
                self._release(lease, retry, f"failed ({failure_summary(exc)}), retry in {retry}s", elapsed)
            return
        elapsed = (time.perf_counter() - started) * 1000
        pop_receipt = self._settle(lease)
        if pop_receipt is None:
            self._log(lease, "succeeded after its lease was released (it may run again)", elapsed)
            return
        try:
            self._client.delete_message(lease.message_id, pop_receipt)
        except AzureError as exc:
            self._log(lease, f"succeeded but delete failed ({type(exc).__name__}; it may run again)", elapsed)
            return
        self._log(lease, "succeeded", elapsed)

    def _log(self, lease: _Lease, outcome: str, elapsed_ms: float) -> None:
        log_invocation(self.function.name, f"queue={self.function.queue_name} id={lease.message_id}", outcome,
                       elapsed_ms)

    def _settle(self, lease: _Lease) -> str | None:
        """Take the lease over from the keeper; None when it was already settled (released at shutdown)."""
        with lease.lock:
            if lease.settled:
                return None
            lease.settled = True
            return lease.pop_receipt

    def _release(self, lease: _Lease, visibility_timeout: int, outcome: str, elapsed_ms: float = 0.0) -> None:
        pop_receipt = self._settle(lease)
        if pop_receipt is None:
            return
        try:
            self._client.update_message(lease.message_id, pop_receipt, visibility_timeout=visibility_timeout)
        except AzureError as exc:
            outcome += f"; release failed ({type(exc).__name__}), visible again when its lease ends"
        self._log(lease, outcome, elapsed_ms)

    def _poison(self, message: Any, lease: _Lease, outcome: str, elapsed_ms: float) -> None:
        pop_receipt = self._settle(lease)
        if pop_receipt is None:
            return
        try:
            poison_name = poison_queue(self.function.queue_name)
            self._clients.get(self._conn, poison_name).send_message(message.content or "")
            self._watcher.notify(poison_name)  # QueueListener.OnMessageAddedToPoisonQueue
            self._client.delete_message(lease.message_id, pop_receipt)
        except AzureError as exc:
            outcome += f"; poisoning failed ({type(exc).__name__}), visible again when its lease ends"
        self._log(lease, outcome, elapsed_ms)

    # -- lease renewal ---------------------------------------------------------------------------------------

    def _keep_leases(self) -> None:
        tick = min(1.0, self._lease_seconds / 4)
        while not self._keeper_stop.wait(tick):
            now = time.monotonic()
            with self._cond:
                due = [lease for lease in self._leases.values() if lease.renew_at <= now]
            for lease in due:
                self._renew(lease)

    def _renew(self, lease: _Lease) -> None:
        with lease.lock:
            if lease.settled:
                return
            try:
                updated = self._client.update_message(lease.message_id, lease.pop_receipt,
                                                      visibility_timeout=self._lease_seconds)
            except AzureError as exc:
                log.warning("%s id=%s: lease renewal failed (%s)", self.function.name, lease.message_id,
                            type(exc).__name__)
                lease.renew_at = time.monotonic() + self._lease_seconds / 4
                return
            lease.pop_receipt = updated.pop_receipt
            lease.renew_at = time.monotonic() + self._lease_seconds / 2
