"""A timer trigger listener with the WebJobs `TimerListener`'s semantics (Azure/azure-webjobs-sdk-extensions,
`src/WebJobs.Extensions/Extensions/Timers/Listener/TimerListener.cs`).

- `runOnStartup`: one invocation when the host starts, then the schedule.
- Each occurrence of the NCRONTAB schedule (UTC) invokes the function once; invocations of one timer function
  never overlap (the timer is restarted from "now" after the invocation ends, so occurrences that fall during a
  long run are skipped, not queued).
- A failed invocation is logged; the schedule goes on (no retry).
- The function gets a `func.TimerRequest`: `past_due`, and `schedule_status` {Last, Next, LastUpdated} as ISO
  strings. `past_due` is true only when the monitor finds, at start, that an occurrence was missed while no host
  ran; the real host keeps that status in the storage account (`useMonitor`), devhost keeps it in memory, so in
  devhost `past_due` is always false. Each scheduled firing is `past_due=False` in the real host too.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from datetime import datetime, timezone

from azure.functions.timer import TimerRequest

from devhost.function_index import TimerFunction
from devhost.invocation import Invoker, failure_summary, log_invocation
from devhost.schedule import parse_schedule

log = logging.getLogger("devhost")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class TimerRunner:
    def __init__(self, function: TimerFunction, invoker: Invoker):
        self.function = function
        self._schedule = parse_schedule(function.schedule)
        self._invoker = invoker
        self._stopping = threading.Event()
        self._last: datetime | None = None
        self._thread = threading.Thread(target=self._loop, name=f"timer-{function.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stopping.set()

    def finish(self, deadline: float) -> None:
        self.request_stop()
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        if self.function.run_on_startup and not self._stopping.is_set():
            self._invoke(datetime.now(timezone.utc))
        while not self._stopping.is_set():
            now = datetime.now(timezone.utc)
            due = self._schedule.next_after(max(now, self._last or now))  # never the same occurrence twice
            if self._stopping.wait(max(0.0, (due - datetime.now(timezone.utc)).total_seconds())):
                return
            self._invoke(due)

    def _invoke(self, occurrence: datetime) -> None:
        upcoming = self._schedule.next_after(occurrence)
        request = TimerRequest(
            past_due=False,
            schedule_status={"Last": _iso(self._last), "Next": _iso(upcoming),
                             "LastUpdated": _iso(datetime.now(timezone.utc))},
            schedule={"AdjustForDST": True})
        self._last = occurrence
        started = time.perf_counter()
        try:
            self._invoker.call(self.function, request)
            outcome = "succeeded"
        except Exception as exc:  # noqa: BLE001 - logged; the schedule goes on, as in the host
            log.debug("%s timer traceback:\n%s", self.function.name, traceback.format_exc())
            outcome = f"failed ({failure_summary(exc)})"
        log_invocation(self.function.name, f"timer at={occurrence.isoformat()}", outcome,
                       (time.perf_counter() - started) * 1000)
