"""HTTP front doors: ACR webhooks, Event Grid, Azure DevOps service hooks (coroutines on the worker's event loop)."""
from __future__ import annotations

import logging
from typing import Mapping

import azure.functions as func

from core.wiring import get_services
from core.settings import SettingsError
from handlers.http import error_response, headers_of, json_response, set_outputs

log = logging.getLogger("autopilot.intake")


async def receive(source: str, req: func.HttpRequest, outputs: Mapping[str, func.Out]) -> func.HttpResponse:
    """`outputs`: the function's queue output bindings by queue name; accepted work items leave through them."""
    try:
        intake = get_services().intake
    except SettingsError as exc:
        log.error("settings: %s", exc)
        return error_response(503, f"not configured: {exc}")
    if req.method.upper() == "OPTIONS":   # Event Grid's CloudEvents endpoint validation
        reply = intake.handshake(source, headers_of(req), dict(req.params))
        return json_response(reply.status, reply.body, dict(reply.headers))
    accepted = await intake.receive(source, headers_of(req), dict(req.params), req.get_body() or b"")
    set_outputs(outputs, accepted.outputs)
    return json_response(accepted.reply.status, accepted.reply.body)
