"""Invoking the function app's functions directly, the way the host does: coroutine functions awaited on an
event loop, `func.Out` queue output bindings collected, and written to their queues afterwards (only when the
function returned) unless a test wants to see them lost."""
from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import azure.functions as func

import function_app


class Out(func.Out):
    def __init__(self) -> None:
        self.value: Any = None

    def set(self, val: Any) -> None:
        self.value = val

    def get(self) -> Any:
        return self.value


def queue_outputs(fn_name: str) -> dict[str, str]:
    """arg name -> queue name of the function's queue output bindings."""
    bindings = [json.loads(b) for b in getattr(function_app, fn_name).build().get_raw_bindings()]
    return {b["name"]: b["queueName"] for b in bindings if b["type"] == "queue" and b["direction"] == "OUT"}


def invoke(fn_name: str, trigger_arg: str, trigger: Any, *, deliver: bool = True) -> tuple[Any, dict[str, list[str]]]:
    """(the function's return value, messages by queue it handed to its output bindings). With `deliver`, the
    messages are written to their queues as the host would after a successful return."""
    from core.wiring import get_services

    fn = getattr(function_app, fn_name).build().get_user_function()
    outs = {arg: Out() for arg in queue_outputs(fn_name)}
    kwargs = {trigger_arg: trigger, **outs}

    async def run() -> Any:
        try:
            return await fn(**kwargs)
        finally:
            await _close_aio()

    result = asyncio.run(run()) if inspect.iscoroutinefunction(fn) else fn(**kwargs)
    messages: dict[str, list[str]] = {}
    for arg, queue in queue_outputs(fn_name).items():
        value = outs[arg].value
        if value:
            messages.setdefault(queue, []).extend([value] if isinstance(value, str) else value)
    if deliver:
        queues = get_services().queues
        for queue, texts in messages.items():
            for text in texts:
                queues.enqueue(queue, text)
    return result, messages


async def _close_aio() -> None:
    from core.wiring import get_services
    from core.settings import SettingsError

    try:
        await get_services().aclose()
    except SettingsError:
        pass


def call_http(fn_name: str, req: func.HttpRequest, *, deliver: bool = True) -> tuple[func.HttpResponse,
                                                                                     dict[str, list[str]]]:
    return invoke(fn_name, "req", req, deliver=deliver)
