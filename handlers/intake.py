"""HTTP front doors: ACR webhooks, Event Grid, Azure DevOps service hooks."""
from __future__ import annotations

import logging

import azure.functions as func

from core.services import get_services
from core.settings import SettingsError
from handlers.http import error_response, headers_of, json_response

log = logging.getLogger("autopilot.intake")


def receive(source: str, req: func.HttpRequest) -> func.HttpResponse:
    try:
        intake = get_services().intake
    except SettingsError as exc:
        log.error("settings: %s", exc)
        return error_response(503, f"not configured: {exc}")
    reply = intake.receive(source, headers_of(req), dict(req.params), req.get_body() or b"")
    return json_response(reply.status, reply.body)
