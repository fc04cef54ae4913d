"""One invocation, host side: run the user function on the worker, enforce functionTimeout, write its outputs.

The Functions host sends the invocation to the worker and waits for the response; output bindings are written by
the host after the worker answers, and only when the function succeeded. So here the calling thread (HTTP front
end, queue or timer listener, admin API) stands for the host: it waits on the worker's future, then enqueues the
`func.Out` / `$return` queue outputs and notifies the `SharedQueueWatcher` for each queue it wrote to.
"""
from __future__ import annotations

import concurrent.futures
import logging
from typing import Any, Iterable, TypeVar

import azure.functions as func

from devhost.function_index import RETURN, HostedFunction, QueueOutput
from devhost.queue_storage import QueueClients, encode_body
from devhost.queue_watcher import SharedQueueWatcher
from devhost.worker import WorkerRuntime

log = logging.getLogger("devhost")
T = TypeVar("T")


class OutputValueError(TypeError):
    """A queue output binding was set to a value that cannot be enqueued."""


class NonNoneReturnError(RuntimeError):
    """A function without a `$return` output binding returned something other than None.

    The Python worker fails such an invocation (`dispatcher.py`, `_handle__invocation_request`: "function ...
    without a $return binding returned a non-None value").
    """


class FunctionTimeoutError(TimeoutError):
    """The invocation ran past host.json `functionTimeout`; the host fails it (and, in Azure, restarts the
    worker process — which devhost cannot do to itself, see `Invoker.call`)."""


class _Out(func.Out[T]):
    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, val: T) -> None:
        self._value = val

    def get(self) -> T | None:
        return self._value


def _message_bodies(value: Any, binding: QueueOutput) -> list[bytes]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value.encode("utf-8")]
    if isinstance(value, (bytes, bytearray)):
        return [bytes(value)]
    if isinstance(value, func.QueueMessage):
        return [value.get_body()]
    if isinstance(value, Iterable):
        return [body for item in value for body in _message_bodies(item, binding)]
    raise OutputValueError(f"queue output {binding.arg_name} ({binding.queue_name}): cannot enqueue a "
                           f"{type(value).__name__}; use str, bytes, QueueMessage or a list of them")


class Invoker:
    """Runs user functions on the worker; output messages are sent only when the function succeeded."""

    def __init__(self, connections: dict[str, str], message_encoding: str, clients: QueueClients,
                 worker: WorkerRuntime, watcher: SharedQueueWatcher, function_timeout: float | None):
        self._connections = dict(connections)
        self._encoding = message_encoding
        self._clients = clients
        self._worker = worker
        self._watcher = watcher
        self._timeout = function_timeout

    def call(self, function: HostedFunction, trigger_value: Any) -> Any:
        """The function's result; raises what it raised, NonNoneReturnError or FunctionTimeoutError.

        On timeout a coroutine is cancelled on the loop. A sync function cannot be stopped: it keeps its pool
        thread until it returns (in Azure the host restarts the worker process, which ends it and every other
        invocation in that process); its late result and outputs are discarded.
        """
        outs: dict[str, _Out[Any]] = {out.arg_name: _Out() for out in function.outputs if out.arg_name != RETURN}
        future = self._worker.submit(function.user_function, {function.trigger_arg: trigger_value, **outs})
        try:
            result = future.result(timeout=self._timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise FunctionTimeoutError(f"Timeout value of {self._timeout:g}s was exceeded by function "
                                       f"{function.name}") from None
        if result is not None and not function.has_return:
            raise NonNoneReturnError(f"function {function.name!r} without a $return binding returned a "
                                     f"non-None value ({type(result).__name__})")
        for binding in function.outputs:
            value = result if binding.arg_name == RETURN else outs[binding.arg_name].get()
            self.enqueue(binding, _message_bodies(value, binding))
        return result

    def enqueue(self, binding: QueueOutput, bodies: list[bytes]) -> None:
        """What the queue output binding's collector does: add each message, then notify the watcher."""
        if not bodies:
            return
        client = self._clients.get(self._connections[binding.connection], binding.queue_name)
        for body in bodies:
            client.send_message(encode_body(body, self._encoding))
            self._watcher.notify(binding.queue_name)


def failure_summary(exc: BaseException) -> str:
    """`Type: first line of the message`, at most 200 characters, for the one-line invocation log."""
    text = f"{type(exc).__name__}: {str(exc).splitlines()[0]}" if str(exc).strip() else type(exc).__name__
    return text[:200]


def log_invocation(function: str, subject: str, outcome: str, duration_ms: float) -> None:
    """One line per invocation; never headers, bodies or query strings (they carry secrets)."""
    log.info("%s %s %s %.1fms", function, subject, outcome, duration_ms)
