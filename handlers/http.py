"""Converting between azure.functions HTTP objects and the core's plain data."""
from __future__ import annotations

import json
from typing import Any

import azure.functions as func


def headers_of(req: func.HttpRequest) -> dict[str, str]:
    return {k.lower(): v for k, v in req.headers.items()}


def json_response(status: int, body: Any) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def error_response(status: int, message: str) -> func.HttpResponse:
    return json_response(status, {"error": message})
