"""Calling a user function with its bindings: the trigger value, `func.Out` queue outputs flushed after success."""
from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, TypeVar

import azure.functions as func

from devhost.function_index import RETURN, HostedFunction, QueueOutput
from devhost.queue_storage import QueueClients, encode_body

log = logging.getLogger("devhost")
T = TypeVar("T")


class OutputValueError(TypeError):
    """A queue output binding was set to a value that cannot be enqueued."""


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
    """Runs user functions; output messages are sent only when the function returns without raising (as in Azure)."""

    def __init__(self, connections: Mapping[str, str], message_encoding: str, clients: QueueClients):
        self._connections = dict(connections)
        self._encoding = message_encoding
        self._clients = clients

    def call(self, function: HostedFunction, trigger_value: Any) -> Any:
        outs: dict[str, _Out[Any]] = {out.arg_name: _Out() for out in function.outputs if out.arg_name != RETURN}
        result = function.user_function(**{function.trigger_arg: trigger_value}, **outs)
        for binding in function.outputs:
            value = result if binding.arg_name == RETURN else outs[binding.arg_name].get()
            bodies = _message_bodies(value, binding)
            if bodies:
                client = self._clients.get(self._connections[binding.connection], binding.queue_name)
                for body in bodies:
                    client.send_message(encode_body(body, self._encoding))
        return result


def failure_summary(exc: BaseException) -> str:
    """`Type: first line of the message`, at most 200 characters, for the one-line invocation log."""
    text = f"{type(exc).__name__}: {str(exc).splitlines()[0]}" if str(exc).strip() else type(exc).__name__
    return text[:200]


def log_invocation(function: str, subject: str, outcome: str, duration_ms: float) -> None:
    """One line per invocation; never headers, bodies or query strings (they carry secrets)."""
    log.info("%s %s %s %.1fms", function, subject, outcome, duration_ms)
