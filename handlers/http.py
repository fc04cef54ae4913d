"""Converting between azure.functions HTTP objects and the core's plain data, and filling queue output bindings."""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

import azure.functions as func

log = logging.getLogger("autopilot.http")


def headers_of(req: func.HttpRequest) -> dict[str, str]:
    return {k.lower(): v for k, v in req.headers.items()}


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json", headers=headers)


def error_response(status: int, message: str) -> func.HttpResponse:
    return json_response(status, {"error": message})


def set_outputs(bindings: Mapping[str, func.Out], messages: Mapping[str, list[str]]) -> None:
    """Hand each queue's messages to its output binding (`bindings`: queue name -> func.Out). A queue without a
    binding here is a wiring mistake; its messages are not lost (their outbox markers re-enqueue them), but it
    is logged as an error."""
    for queue, texts in messages.items():
        out = bindings.get(queue)
        if out is None:
            log.error("no queue output binding for %s: %d message(s) left to the outbox", queue, len(texts))
        elif texts:
            out.set(list(texts))
