"""Index a v2 `func.FunctionApp` into the HTTP and queue functions the host serves, from their binding metadata."""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from devhost.routes import RouteTemplate, compile_route
from devhost.schedule import ScheduleError, parse_schedule

DEFAULT_CONNECTION = "AzureWebJobsStorage"
AUTH_LEVELS = ("anonymous", "function", "admin")
RETURN = "$return"
TRIGGERS = ("httpTrigger", "queueTrigger", "timerTrigger")


class UnsupportedFunction(ValueError):
    """A function uses a binding or signature this host does not implement; the message names the function."""


@dataclass(frozen=True)
class QueueOutput:
    """A `queue` output binding: a `func.Out` argument (or `$return`) whose value is enqueued after success."""

    arg_name: str
    queue_name: str
    connection: str


@dataclass(frozen=True)
class HostedFunction:
    name: str
    user_function: Callable[..., Any]
    trigger_arg: str
    outputs: tuple[QueueOutput, ...]
    has_return: bool  # a `$return` output binding (HTTP's response, or a queue output): a result is expected


@dataclass(frozen=True)
class HttpFunction(HostedFunction):
    route: RouteTemplate
    methods: frozenset[str] | None  # None: every method
    auth_level: str


@dataclass(frozen=True)
class QueueFunction(HostedFunction):
    queue_name: str
    connection: str


@dataclass(frozen=True)
class TimerFunction(HostedFunction):
    schedule: str
    run_on_startup: bool
    use_monitor: bool


@dataclass(frozen=True)
class FunctionIndex:
    http: tuple[HttpFunction, ...]
    queue: tuple[QueueFunction, ...]
    timer: tuple[TimerFunction, ...] = ()

    def queue_function(self, name: str) -> QueueFunction | None:
        return next((fn for fn in self.queue if fn.name.lower() == name.lower()), None)

    def non_http_function(self, name: str) -> QueueFunction | TimerFunction | None:
        """What the admin API can run (the portal's Test/Run for non-HTTP functions)."""
        return next((fn for fn in (*self.queue, *self.timer) if fn.name.lower() == name.lower()), None)

    def connections(self) -> set[str]:
        names = {fn.connection for fn in self.queue}
        names.update(out.connection for fn in (*self.http, *self.queue, *self.timer) for out in fn.outputs)
        return names


def _connection(binding: dict[str, Any]) -> str:
    return binding.get("connection") or DEFAULT_CONNECTION


def check_schedule(name: str, schedule: str) -> None:
    try:
        parse_schedule(schedule)
    except ScheduleError as exc:
        raise UnsupportedFunction(f"function {name}: {exc}") from None


def _check_signature(name: str, user_function: Callable[..., Any], bound: set[str]) -> None:
    params = set(inspect.signature(user_function).parameters)
    if params != bound:
        raise UnsupportedFunction(
            f"function {name}: parameters {sorted(params)} do not match its bindings {sorted(bound)}")


def _index_one(function: Any, default_auth: str, route_prefix: str) -> HttpFunction | QueueFunction | TimerFunction:
    name = function.get_function_name()
    user_function = function.get_user_function()
    bindings = [json.loads(raw) for raw in function.get_raw_bindings()]
    triggers = [b for b in bindings if b.get("type", "").endswith("Trigger")]
    if len(triggers) != 1 or triggers[0]["type"] not in TRIGGERS:
        kinds = ", ".join(b.get("type", "?") for b in triggers) or "none"
        raise UnsupportedFunction(f"function {name}: trigger {kinds} is not supported ({', '.join(TRIGGERS)})")
    trigger = triggers[0]
    outputs: list[QueueOutput] = []
    for binding in bindings:
        if binding is trigger or (binding.get("type") == "http" and trigger["type"] == "httpTrigger"):
            continue
        if binding.get("type") != "queue" or str(binding.get("direction", "")).upper() != "OUT":
            raise UnsupportedFunction(f"function {name}: binding {binding.get('type')!r} "
                                      f"({binding.get('name')}) is not supported (queue output only)")
        outputs.append(QueueOutput(binding["name"], binding["queueName"], _connection(binding)))
    bound = {trigger["name"], *(out.arg_name for out in outputs)} - {RETURN}
    _check_signature(name, user_function, bound)
    has_return = any(out.arg_name == RETURN for out in outputs)
    if trigger["type"] == "queueTrigger":
        return QueueFunction(name=name, user_function=user_function, trigger_arg=trigger["name"],
                             outputs=tuple(outputs), has_return=has_return, queue_name=trigger["queueName"],
                             connection=_connection(trigger))
    if trigger["type"] == "timerTrigger":
        schedule = str(trigger.get("schedule") or "")
        check_schedule(name, schedule)
        return TimerFunction(name=name, user_function=user_function, trigger_arg=trigger["name"],
                             outputs=tuple(outputs), has_return=has_return, schedule=schedule,
                             run_on_startup=bool(trigger.get("runOnStartup", False)),
                             use_monitor=bool(trigger.get("useMonitor", True)))
    auth_level = str(trigger.get("authLevel") or default_auth).lower()
    if auth_level not in AUTH_LEVELS:
        raise UnsupportedFunction(f"function {name}: authLevel {auth_level!r} is not one of {', '.join(AUTH_LEVELS)}")
    methods = trigger.get("methods")
    return HttpFunction(name=name, user_function=user_function, trigger_arg=trigger["name"], outputs=tuple(outputs),
                        has_return=True,
                        route=compile_route(route_prefix, trigger.get("route") or name),
                        methods=frozenset(m.upper() for m in methods) if methods else None, auth_level=auth_level)


def index_functions(functions: Sequence[Any], route_prefix: str, default_auth: str = "function") -> FunctionIndex:
    """`functions` is `app.get_functions()`; HTTP functions come back in route-matching order."""
    indexed = [_index_one(fn, default_auth, route_prefix) for fn in functions]
    http = sorted((fn for fn in indexed if isinstance(fn, HttpFunction)), key=lambda fn: fn.route.precedence)
    return FunctionIndex(http=tuple(http), queue=tuple(fn for fn in indexed if isinstance(fn, QueueFunction)),
                         timer=tuple(fn for fn in indexed if isinstance(fn, TimerFunction)))
