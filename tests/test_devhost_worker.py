"""devhost runs functions the way the Functions host and Python worker do, never better: one test per behaviour.

Sources are cited in devhost/worker.py, queue_watcher.py, queue_runner.py, timer_runner.py, schedule.py,
invocation.py and http_server.py; the README's devhost section lists them.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient

from devhost import DevHost, HostConfigError, host_config_from_json
from devhost.host_config import DEFAULT_FUNCTION_TIMEOUT
from devhost.schedule import ScheduleError, parse_schedule
from devhost.worker import LOOP_THREAD_NAME, POOL_THREAD_PREFIX, default_thread_count, sync_thread_count
from tests import devhost_sample_app as sample
from tests.test_devhost import (HOST_JSON, KEY, MASTER, call, events, queue_is_empty, record,  # noqa: F401
                                start_host, wait_for, with_queues)

pytestmark = pytest.mark.azurite


def timed_get(host: DevHost, path: str) -> tuple[int, dict, float]:
    """(status, JSON body, time.time() when the answer arrived)."""
    status, _, body = call(host, "GET", path)
    return status, json.loads(body) if body.startswith(b"{") else {}, time.time()


# -- one shared pool for sync functions, one event loop for coroutines ------------------------------------------


def test_thread_count_setting():
    assert sync_thread_count({}) == default_thread_count() == min(32, (os.cpu_count() or 1) + 4)
    assert sync_thread_count({"PYTHON_THREADPOOL_THREAD_COUNT": "3"}) == 3
    for ignored in ("0", "-2", "many"):  # the worker warns and keeps its default
        assert sync_thread_count({"PYTHON_THREADPOOL_THREAD_COUNT": ignored}) == default_thread_count()


def test_sync_functions_run_on_the_shared_pool_and_coroutines_on_the_loop(start_host):
    host = start_host()
    status, body, _ = timed_get(host, "/api/public/sync-ping")
    assert status == 200 and body["thread"].startswith(POOL_THREAD_PREFIX)
    status, body, _ = timed_get(host, "/api/public/async-ping")
    assert status == 200 and body["thread"] == LOOP_THREAD_NAME


def test_blocking_queue_work_starves_sync_http_but_not_async_http(start_host, storage, record):
    """With PYTHON_THREADPOOL_THREAD_COUNT=2, two blocking sync queue invocations hold both pool threads: a sync
    HTTP function waits for one of them to finish; an async one answers from the loop meanwhile."""
    host = start_host(env={"PYTHON_THREADPOOL_THREAD_COUNT": "2"})
    assert host.worker.thread_count == 2
    for _ in range(2):
        storage.enqueue(sample.WORK_QUEUE, "slow:4")
    wait_for(lambda: len([e for e in events(record) if e["event"] == "start"]) == 2, timeout=15)

    results: dict[str, tuple[int, dict, float]] = {}
    sync_call = threading.Thread(target=lambda: results.update(sync=timed_get(host, "/api/public/sync-ping")))
    sync_call.start()
    results["async"] = timed_get(host, "/api/public/async-ping")
    sync_call.join(timeout=20)

    first_done = min(e["at"] for e in wait_for(lambda: [e for e in events(record) if e["event"] == "done"]))
    assert results["async"][0] == 200 and results["async"][2] < first_done  # answered while both threads blocked
    assert results["sync"][0] == 200 and results["sync"][2] >= first_done  # had to wait for a pool thread
    assert len({e["thread"] for e in events(record) if e["event"] == "start"}) == 2


def test_a_coroutine_that_blocks_the_loop_delays_sync_invocations_too(start_host):
    """The worker receives every invocation on its event loop before handing a sync one to the pool."""
    host = start_host()
    blocker: dict[str, tuple[int, dict, float]] = {}
    thread = threading.Thread(target=lambda: blocker.update(r=timed_get(host, "/api/public/ablock?s=2")))
    thread.start()
    time.sleep(0.5)  # the coroutine is now blocking the loop
    status, _, answered = timed_get(host, "/api/public/sync-ping")
    thread.join(timeout=15)
    assert status == 200 and blocker["r"][0] == 200
    assert answered >= blocker["r"][1]["done_at"]


def test_async_queue_function_sets_its_output_binding(start_host, storage, record):
    start_host()
    storage.enqueue(sample.ASYNC_IN_QUEUE, "payload")
    done = wait_for(lambda: [e for e in events(record) if e["event"] == "done" and e["body"] == "relayed:payload"],
                    timeout=15)
    assert len(done) == 1
    [relay] = [e for e in events(record) if e["event"] == "relay"]
    assert relay["thread"] == LOOP_THREAD_NAME


# -- SharedQueueWatcher ----------------------------------------------------------------------------------------


def _long_backoff(host: DevHost, at_least: float) -> float:
    """Wait until the work listener is in an empty-poll back-off with more than `at_least` seconds left."""
    listener = host.queue_listener("work")

    def ends() -> float | None:
        end = listener.backoff_ends_at
        return end if end is not None and end - time.monotonic() > at_least else None

    return wait_for(ends, timeout=30, interval=0.02)


def test_output_binding_write_wakes_the_listener_but_an_sdk_write_waits_for_the_poll(start_host, storage, record):
    host = start_host(with_queues(maxPollingInterval="00:00:04"))

    ends = _long_backoff(host, 2.5)
    storage.enqueue(sample.WORK_QUEUE, "via-sdk")  # no notification: seen at the next poll
    wait_for(lambda: [e for e in events(record) if e["body"] == "via-sdk" and e["event"] == "start"], timeout=15,
             interval=0.01)
    assert time.monotonic() >= ends - 0.05, "an SDK write was picked up before the back-off ended"

    ends = _long_backoff(host, 2.5)
    assert call(host, "POST", f"/api/enqueue?code={KEY}", body=b"via-binding")[0] == 202
    wait_for(lambda: [e for e in events(record) if e["body"] == "via-binding" and e["event"] == "start"],
             timeout=15, interval=0.01)
    assert time.monotonic() < ends - 0.5, "an output-binding write did not wake the listener"


def test_poison_writes_notify_the_poison_queue_watchers(start_host, storage):
    from devhost.queue_watcher import SharedQueueWatcher

    watcher = SharedQueueWatcher()
    woken: list[str] = []
    watcher.register("Sample-Fail-Poison", lambda: woken.append("poison"))
    watcher.notify("sample-fail-poison")
    watcher.notify("sample-fail")
    assert woken == ["poison"]  # queue names are case-insensitive, other queues do not wake it


# -- timer triggers --------------------------------------------------------------------------------------------


def test_ncrontab_schedules():
    start = datetime(2026, 3, 2, 8, 59, 59, tzinfo=timezone.utc)  # a Monday
    assert parse_schedule("*/15 * * * * *").next_after(start) == datetime(2026, 3, 2, 9, 0, 0, tzinfo=timezone.utc)
    weekdays = parse_schedule("0 15,45 9-17/4 * * MON-FRI")
    hits = [weekdays.next_after(start)]
    for _ in range(5):
        hits.append(weekdays.next_after(hits[-1]))
    assert [(h.day, h.hour, h.minute) for h in hits] == [(2, 9, 15), (2, 9, 45), (2, 13, 15), (2, 13, 45),
                                                         (2, 17, 15), (2, 17, 45)]
    # NCrontab ANDs day-of-month and day-of-week: the 13th that is a Friday.
    assert parse_schedule("0 0 0 13 * 5").next_after(start) == datetime(2026, 3, 13, tzinfo=timezone.utc)  # not Friday 6th (an OR)
    for bad in ("*/5 * * * *", "0 0 0 * * * *", "61 * * * * *", "0 0 25 * * *", "x * * * * *"):
        with pytest.raises(ScheduleError):
            parse_schedule(bad)


def test_timer_fires_per_schedule_with_a_timer_request():
    app = func.FunctionApp()
    calls: list[tuple[str, float, func.TimerRequest]] = []

    @app.timer_trigger(schedule="* * * * * *", arg_name="timer", run_on_startup=True, use_monitor=False)
    def every_second(timer: func.TimerRequest) -> None:
        calls.append(("every_second", time.time(), timer))

    @app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
    async def new_year(timer: func.TimerRequest) -> None:
        calls.append(("new_year", time.time(), timer))

    started = time.time()
    host = DevHost(app, {"version": "2.0"}, {}).start()
    try:
        wait_for(lambda: len(calls) >= 4, timeout=15)
    finally:
        host.stop(grace_seconds=2)
    assert {name for name, _, _ in calls} == {"every_second"}  # new_year: not due, no runOnStartup
    assert calls[0][1] - started < 1.0  # runOnStartup
    scheduled = [at for _, at, _ in calls[1:]]
    assert all(at % 1 < 0.5 for at in scheduled), f"not fired on whole seconds: {scheduled}"
    assert all(b - a > 0.5 for a, b in zip(scheduled, scheduled[1:]))  # once per occurrence
    for _, _, timer in calls:
        assert isinstance(timer, func.TimerRequest) and timer.past_due is False
    assert calls[-1][2].schedule_status["Last"] is not None


def test_admin_api_runs_a_timer_function_on_demand():
    app = func.FunctionApp()
    calls: list[func.TimerRequest] = []

    @app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", use_monitor=False)
    async def yearly(timer: func.TimerRequest) -> None:
        calls.append(timer)

    host = DevHost(app, {"version": "2.0"}, {"FUNCTIONS_MASTER_KEY": MASTER}).start()
    try:
        assert call(host, "POST", "/admin/functions/yearly", body=b'{"input": ""}')[0] == 401
        assert call(host, "POST", f"/admin/functions/yearly?code={MASTER}", body=b'{"input": ""}')[0] == 202
        wait_for(lambda: calls)
    finally:
        host.stop(grace_seconds=2)
    assert calls[0].past_due is False


def test_failing_timer_keeps_its_schedule(caplog):
    caplog.set_level(logging.INFO, logger="devhost")
    app = func.FunctionApp()
    attempts: list[float] = []

    @app.timer_trigger(schedule="* * * * * *", arg_name="timer", use_monitor=False)
    def broken(timer: func.TimerRequest) -> None:
        attempts.append(time.time())
        raise ValueError("timer body failed")

    host = DevHost(app, {"version": "2.0"}, {}).start()
    try:
        wait_for(lambda: len(attempts) >= 2, timeout=10)
    finally:
        host.stop(grace_seconds=2)
    assert any("broken timer at=" in r.getMessage() and "failed (ValueError: timer body failed)" in r.getMessage()
               for r in caplog.records)


# -- invocation results and limits -----------------------------------------------------------------------------


def test_queue_function_returning_a_value_without_return_binding_fails(start_host, storage, record, caplog):
    caplog.set_level(logging.INFO, logger="devhost")
    start_host(with_queues(maxDequeueCount=1))
    storage.enqueue(sample.RETURNS_QUEUE, "x")
    poison = storage.queue(sample.RETURNS_QUEUE + "-poison")
    wait_for(lambda: poison.peek_messages(), timeout=15)
    # The log line follows the poison write.
    wait_for(lambda: any("without a $return binding returned a non-None value" in r.getMessage()
                         for r in caplog.records))
    assert [e["event"] for e in events(record)] == ["attempt"]


def test_function_timeout_setting():
    assert host_config_from_json({}).function_timeout == DEFAULT_FUNCTION_TIMEOUT == 1800
    assert host_config_from_json({"functionTimeout": "00:10:00"}).function_timeout == 600
    assert host_config_from_json({"functionTimeout": "-1"}).function_timeout is None
    for bad in ("10m", "00:00:00"):
        with pytest.raises(HostConfigError, match="functionTimeout"):
            host_config_from_json({"functionTimeout": bad})


def test_invocations_past_function_timeout_fail(start_host, storage, record):
    host = start_host({**with_queues(maxDequeueCount=1), "functionTimeout": "00:00:01"})
    began = time.monotonic()
    assert call(host, "GET", "/api/public/sleep?s=4")[0] == 500  # sync: failed; its thread runs on (see README)
    assert call(host, "GET", "/api/public/asleep?s=4")[0] == 500  # async: failed and cancelled
    assert time.monotonic() - began < 3.8
    wait_for(lambda: [e for e in events(record) if e["event"] == "cancelled"])

    storage.enqueue(sample.WORK_QUEUE, "slow:4")
    poison = storage.queue(sample.WORK_QUEUE + "-poison")
    wait_for(lambda: poison.peek_messages(), timeout=15)
    assert not [e for e in events(record) if e["event"] == "done"]  # failed before the function returned


def test_message_that_is_not_base64_is_poisoned_at_its_first_dequeue(start_host, record, azurite, caplog):
    caplog.set_level(logging.INFO, logger="devhost")
    start_host()  # maxDequeueCount 3: a retried failure would be tried three times
    raw = QueueClient.from_connection_string(azurite, sample.WORK_QUEUE)
    raw.send_message("not base64 at all!")
    raw_poison = QueueClient.from_connection_string(azurite, sample.WORK_QUEUE + "-poison")
    raw_poison.create_queue()
    wait_for(lambda: raw_poison.get_queue_properties().approximate_message_count)
    outcomes = wait_for(lambda: [r.getMessage() for r in caplog.records if "queue=sample-work" in r.getMessage()])
    assert len(outcomes) == 1 and "poisoned without running (message is not valid base64" in outcomes[0]
    assert events(record) == []


# -- HTTP: keys and slow bodies ---------------------------------------------------------------------------------


def test_admin_level_needs_the_master_key_function_level_takes_either(start_host):
    host = start_host()
    assert call(host, "GET", f"/api/items/1?code={KEY}")[0] == 200
    assert call(host, "GET", f"/api/items/1?code={MASTER}")[0] == 200
    assert call(host, "GET", "/api/ops/secret")[0] == 401
    assert call(host, "GET", f"/api/ops/secret?code={KEY}")[0] == 401
    assert call(host, "GET", "/api/ops/secret", headers={"x-functions-key": MASTER})[0] == 200
    body = b'{"input": "x"}'
    assert call(host, "POST", "/admin/functions/work", body=body, headers={"x-functions-key": KEY})[0] == 401
    assert call(host, "POST", f"/admin/functions/work?code={MASTER}", body=body)[0] == 202

    no_master = start_host(master="")
    status, _, text = call(no_master, "GET", f"/api/ops/secret?code={KEY}")
    assert status == 401 and b"master key" in text


def _post_then(host: DevHost, declared: int, sent: bytes, trickle: bool) -> tuple[bytes, float]:
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", host.port), timeout=20) as sock:
        sock.sendall(f"POST /api/items/1?code={KEY} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n"
                     .encode())
        try:
            for byte in sent if trickle else [sent]:
                sock.sendall(bytes([byte]) if trickle else byte)
                if trickle:
                    time.sleep(0.5)
        except OSError:
            pass  # the server closed the connection while we were still trickling
        answer = sock.recv(4096)
    return answer, time.monotonic() - began


def test_a_body_shorter_than_its_content_length_is_answered_408_quickly(start_host):
    host = start_host()
    results: dict[str, tuple[bytes, float]] = {}
    trickler = threading.Thread(target=lambda: results.update(trickle=_post_then(host, 100, b"x" * 100, True)))
    trickler.start()
    results["stall"] = _post_then(host, 100, b"only-ten!!", False)
    trickler.join(timeout=30)
    for name, (answer, elapsed) in results.items():
        assert answer.startswith(b"HTTP/1.1 408"), (name, answer)
        assert b"Connection: close" in answer
        assert 4.0 <= elapsed < 12.0, (name, elapsed)  # Kestrel: 240 B/s after a 5 s grace period
    assert call(host, "GET", "/api/public/hello")[0] == 201


def test_polling_back_off_follows_the_webjobs_strategy():
    import random

    from devhost.queue_runner import BackoffStrategy

    strategy = BackoffStrategy(0.1, 2.0, random.Random(7))
    delays = [strategy.next_delay(found) for found in (True, False, False, False, False, False, False, False)]
    assert delays[0] == 0.1  # right after a hit
    for step, delay in enumerate(delays[1:6], start=1):  # 0.1 + 2^(n-1) x 0.1 x [0.8, 1.2]
        assert 0.1 + 0.08 * 2 ** (step - 1) <= delay <= 0.1 + 0.12 * 2 ** (step - 1) + 1e-9, (step, delay)
    assert delays[-1] == 2.0  # capped at maxPollingInterval
    assert strategy.next_delay(True) == 0.1
