"""DevHost: serves one function app's HTTP functions, admin API and queue triggers in-process."""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Mapping

from devhost.admin_invocations import AdminInvocations
from devhost.function_index import FunctionIndex, index_functions
from devhost.host_config import HostConfig, host_config_from_json
from devhost.http_server import DevHttpServer, Dispatcher, HostKeys
from devhost.invocation import Invoker
from devhost.queue_runner import QueueRunner
from devhost.queue_storage import QueueClients, connection_string
from devhost.queue_watcher import SharedQueueWatcher
from devhost.timer_runner import TimerRunner
from devhost.worker import WorkerRuntime, sync_thread_count

log = logging.getLogger("devhost")

DEFAULT_LEASE_SECONDS = 30
DEFAULT_GRACE_SECONDS = 20.0


def disabled(function_name: str, environ: Mapping[str, str]) -> bool:
    """The Functions host's `AzureWebJobs.<name>.Disabled` app setting (`AzureWebJobs__<name>__Disabled` on
    Linux): the function is neither triggered nor routed."""
    for key in (f"AzureWebJobs.{function_name}.Disabled", f"AzureWebJobs__{function_name}__Disabled"):
        if environ.get(key, "").strip().lower() in ("true", "1"):
            return True
    return False


class DevHost:
    """`DevHost(app, host_json, environ).start()`; `.url`, `.port`; `.stop()` drains and releases messages.

    `environ` holds the app settings (FUNCTIONS_KEY, FUNCTIONS_MASTER_KEY, PYTHON_THREADPOOL_THREAD_COUNT, the
    bindings' connection settings); default os.environ.
    `lease_seconds` is how long a fetched message stays invisible before its lease is renewed/lost.
    """

    def __init__(self, app: Any, host_json: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 lease_seconds: int = DEFAULT_LEASE_SECONDS, grace_seconds: float = DEFAULT_GRACE_SECONDS):
        if lease_seconds < 1:
            raise ValueError(f"lease_seconds={lease_seconds} must be at least 1")
        self.config: HostConfig = host_config_from_json(host_json or {})
        # get_functions() records names in app.functions_bindings and then rejects them as duplicates on a second
        # call (azure-functions 1.26.0); start from an empty record so an app can be hosted (or indexed) again.
        app.functions_bindings = {}
        self._environ = dict(os.environ if environ is None else environ)
        enabled = [fn for fn in app.get_functions() if not disabled(fn.get_function_name(), self._environ)]
        self.index: FunctionIndex = index_functions(enabled, self.config.route_prefix)
        self._bind = (host, port)
        self._lease_seconds = lease_seconds
        self._grace_seconds = grace_seconds
        self._server: DevHttpServer | None = None
        self._server_thread: threading.Thread | None = None
        self._runners: list[QueueRunner] = []
        self._timers: list[TimerRunner] = []
        self._admin: AdminInvocations | None = None
        self.worker: WorkerRuntime | None = None
        self._stopped = False

    def start(self) -> "DevHost":
        connections = {name: connection_string(self._environ, name) for name in self.index.connections()}
        clients = QueueClients()
        watcher = SharedQueueWatcher()
        self.worker = WorkerRuntime(sync_thread_count(self._environ))
        invoker = Invoker(connections, self.config.queues.message_encoding, clients, self.worker, watcher,
                          self.config.function_timeout)
        self._admin = AdminInvocations(invoker)
        self._runners = [QueueRunner(fn, connections[fn.connection], clients, invoker, self.config.queues,
                                     self._lease_seconds, watcher) for fn in self.index.queue]
        self._timers = [TimerRunner(fn, invoker) for fn in self.index.timer]
        keys = HostKeys(function_key=(self._environ.get("FUNCTIONS_KEY") or "").strip(),
                        master_key=(self._environ.get("FUNCTIONS_MASTER_KEY") or "").strip())
        dispatcher = Dispatcher(self.index, invoker, keys, self._admin)
        self._server = DevHttpServer(*self._bind, dispatcher)
        self._server_thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                               name="devhost-http", daemon=True)
        self._server_thread.start()
        for runner in self._runners:
            runner.start()
        for timer in self._timers:
            timer.start()
        log.info("serving %d HTTP, %d queue and %d timer function(s) on %s (%d sync worker threads)",
                 len(self.index.http), len(self.index.queue), len(self.index.timer), self.url,
                 self.worker.thread_count)
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("DevHost is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("DevHost is not started")
        return f"http://{self._server.authority}"

    def queue_listener(self, function_name: str) -> QueueRunner:
        """The listener of a queue-triggered function (tests observe its back-off)."""
        return next(runner for runner in self._runners if runner.function.name == function_name)

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stop accepting HTTP and polling, let running work finish within the grace period, release the rest."""
        if self._stopped or self._server is None:
            return
        self._stopped = True
        deadline = time.monotonic() + (self._grace_seconds if grace_seconds is None else grace_seconds)
        for runner in self._runners:
            runner.request_stop()
        for timer in self._timers:
            timer.request_stop()
        self._server.draining.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.in_flight.wait_idle(deadline)
        for runner in self._runners:
            runner.finish(deadline)
        for timer in self._timers:
            timer.finish(deadline)
        if self._admin is not None:
            self._admin.wait(deadline)
        if self.worker is not None:
            self.worker.shutdown()

    def __enter__(self) -> "DevHost":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
