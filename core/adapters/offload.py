"""Blocking calls made from coroutine functions run on a small pool of this app's own, off the event loop.

The Python worker runs every `async def` function on its one event loop and every synchronous function on its
sync pool, `self._sync_call_tp` (Azure/azure-functions-python-worker, `azure_functions_worker/dispatcher.py`,
`_handle__invocation_request`: `await self._loop.run_in_executor(self._sync_call_tp, self._run_sync_func, ...)`;
`_create_sync_call_tp` makes a `ThreadPoolExecutor` of PYTHON_THREADPOOL_THREAD_COUNT, default
min(32, cores + 4)). The worker never calls `loop.set_default_executor`, so `loop.run_in_executor(None, ...)`
would use asyncio's lazily created default executor — not the sync pool, but shared with everything else that
uses it (aiohttp's threaded DNS resolver among them). A blocking call here (a health check's `git ls-remote`, a
poison-queue replay, a trace query) therefore gets a pool of its own: it never waits behind queue functions
holding the worker's sync threads, never blocks the loop the webhooks answer on, and never delays a lookup.
"""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")
THREADS = 4

_pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="autopilot-offload")


async def off_loop(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """`fn(*args, **kwargs)` on the app's offload pool, awaited without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_pool, functools.partial(fn, *args, **kwargs))
