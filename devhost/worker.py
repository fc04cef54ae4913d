"""Where user functions run: the Python worker's two execution contexts, reproduced.

The real worker (Azure/azure-functions-python-worker, `azure_functions_worker/dispatcher.py`,
`_handle__invocation_request`) awaits a coroutine function on its one main event loop, and hands a
synchronous function to `loop.run_in_executor(self._sync_call_tp, ...)`: ONE shared `ThreadPoolExecutor`
whose size is `PYTHON_THREADPOOL_THREAD_COUNT` (`_get_sync_tp_max_workers`; a value that is not an integer
>= 1 is ignored with a warning) or Python's default min(32, os.cpu_count() + 4). HTTP, queue, timer and
admin-invoked functions all share that pool, so blocking sync invocations starve each other and every other
sync function, while coroutines keep running on the loop (unless one of them blocks the loop).

devhost owns one `WorkerRuntime` per host; the host side (HTTP front end, queue and timer listeners) submits
invocations here and waits on the returned future, as the Functions host awaits the worker's response.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import os
import queue
import threading
from typing import Any, Callable, Mapping

log = logging.getLogger("devhost")

THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
LOOP_THREAD_NAME = "devhost-worker-loop"
POOL_THREAD_PREFIX = "devhost-worker-sync"


def default_thread_count() -> int:
    """`ThreadPoolExecutor`'s own default, which the worker uses when the setting is absent."""
    return min(32, (os.cpu_count() or 1) + 4)


def sync_thread_count(environ: Mapping[str, str]) -> int:
    raw = (environ.get(THREAD_COUNT_SETTING) or "").strip()
    if not raw:
        return default_thread_count()
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        log.warning("%s=%r must be an integer >= 1; using the default %d", THREAD_COUNT_SETTING, raw,
                    default_thread_count())
        return default_thread_count()
    return value


def is_coroutine_function(user_function: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(user_function)


class SyncPool(concurrent.futures.Executor):
    """A fixed-size FIFO thread pool, like the worker's `ThreadPoolExecutor`, but with daemon threads.

    `ThreadPoolExecutor` joins its threads at interpreter exit, so one sync function that never returns (the
    case functionTimeout exists for) would keep devhost from exiting; the real worker process is simply killed.
    """

    def __init__(self, size: int):
        self._work: queue.SimpleQueue[tuple[concurrent.futures.Future, Callable[[], Any]] | None]
        self._work = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, name=f"{POOL_THREAD_PREFIX}-{n}", daemon=True)
                         for n in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._work.put((future, functools.partial(fn, *args, **kwargs)))
        return future

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting host side
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = False, *, cancel_futures: bool = False) -> None:
        """Idle threads exit; a thread still running a function exits when it returns (never waited for)."""
        for _ in self._threads:
            self._work.put(None)


class WorkerRuntime:
    """One event loop thread for `async def` functions, one shared thread pool for the others."""

    def __init__(self, thread_count: int):
        self.thread_count = thread_count
        self._pool = SyncPool(thread_count)
        self._loop = asyncio.new_event_loop()
        self._loop_ready = threading.Event()
        self._loop_thread = threading.Thread(target=self._run_loop, name=LOOP_THREAD_NAME, daemon=True)
        self._loop_thread.start()
        self._loop_ready.wait()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._loop_ready.set)
        self._loop.run_forever()

    @property
    def loop_thread(self) -> threading.Thread:
        return self._loop_thread

    def submit(self, user_function: Callable[..., Any], kwargs: Mapping[str, Any]) -> concurrent.futures.Future:
        """Start one invocation; the future carries its return value or exception.

        Every invocation starts on the loop, as in the worker (so a coroutine that blocks the loop delays sync
        invocations too); a sync function then runs via `run_in_executor` on the shared pool. Cancelling the
        future cancels the task on the loop; a sync call that has started cannot be stopped (Python threads
        cannot be killed) and keeps its pool thread until it returns.
        """
        return asyncio.run_coroutine_threadsafe(self._invoke(user_function, dict(kwargs)), self._loop)

    async def _invoke(self, user_function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        if is_coroutine_function(user_function):
            return await user_function(**kwargs)
        return await self._loop.run_in_executor(self._pool, functools.partial(user_function, **kwargs))

    def shutdown(self) -> None:
        """Cancel coroutines still running, stop the loop; sync calls still running are abandoned (daemons)."""
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._cancel_all_and_stop)
        self._loop_thread.join(timeout=5)
        self._pool.shutdown()

    def _cancel_all_and_stop(self) -> None:
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.call_soon(self._loop.stop)
