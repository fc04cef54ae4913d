"""The admin API's invocations (`POST /admin/functions/<name>`): run a queue or timer function once, in the
background ("Manually run a non HTTP-triggered function", learn.microsoft.com).

As in Azure the caller gets 202 at once; for a queue function the input string is the message body, with no real
queue message behind it (no dequeue count, no retry, no poison queue); a timer function gets a `TimerRequest`
with `past_due=False` and ignores the input. It runs on the worker like any invocation (a sync function waits for
a pool thread) and its outcome is logged.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid

import azure.functions as func
from azure.functions.timer import TimerRequest

from devhost.function_index import QueueFunction, TimerFunction
from devhost.invocation import Invoker, failure_summary, log_invocation

log = logging.getLogger("devhost")


class AdminInvocations:
    def __init__(self, invoker: Invoker):
        self._invoker = invoker
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def submit(self, function: QueueFunction | TimerFunction, text: str) -> str:
        """Start the invocation; return its id (the message id the function sees)."""
        invocation_id = str(uuid.uuid4())
        thread = threading.Thread(target=self._run, args=(function, text, invocation_id), daemon=True,
                                  name=f"admin-{function.name}")
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return invocation_id

    def _run(self, function: QueueFunction | TimerFunction, text: str, invocation_id: str) -> None:
        started = time.perf_counter()
        trigger = (TimerRequest(past_due=False) if isinstance(function, TimerFunction)
                   else func.QueueMessage(id=invocation_id, body=text.encode("utf-8")))
        try:
            self._invoker.call(function, trigger)
            outcome = "succeeded"
        except Exception as exc:  # noqa: BLE001 - reported in the log, as the Functions host does
            log.debug("%s admin id=%s traceback:\n%s", function.name, invocation_id, traceback.format_exc())
            outcome = f"failed ({failure_summary(exc)})"
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
        log_invocation(function.name, f"admin id={invocation_id}", outcome, (time.perf_counter() - started) * 1000)

    def wait(self, deadline: float) -> None:
        """Wait for running invocations until `deadline` (time.monotonic())."""
        with self._lock:
            running = list(self._threads)
        for thread in running:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
