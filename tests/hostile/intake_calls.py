"""Posting to the real intake functions of the function app (on the `door` fixture's fake stores) and looking at
what they left behind.

One place for the call, so the hostile intake tests follow the intake if its calling convention changes.
"""
from __future__ import annotations

import json
from pathlib import Path

import azure.functions as func

from core.adapters.storage import WORK_QUEUES
from tests.conftest import ACR_SECRET, AZDO_SECRET
from tests.functions import invoke

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "deliveries"
FUNCTIONS = {"acr": "acr_webhook", "eventgrid": "eventgrid_webhook", "azdo": "azdo_webhook"}


def fixture(name: str):
    return json.loads((FIXTURES / name).read_bytes())


def post(source: str, body: bytes | object, content_type: str = "application/json") -> tuple[int, dict]:
    """POST `body` (raw bytes, or anything JSON) to the intake function for `source`, with good credentials."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    headers = {"Content-Type": content_type}
    if source == "azdo":
        import base64
        headers["Authorization"] = "Basic " + base64.b64encode(f"x:{AZDO_SECRET}".encode()).decode()
    else:
        headers["Authorization"] = f"Bearer {ACR_SECRET}"
    req = func.HttpRequest("POST", f"/api/{FUNCTIONS[source]}", headers=headers, params={}, body=raw)
    # as the host does: output-binding messages reach their queues when the function returns
    resp, _ = invoke(FUNCTIONS[source], "req", req)
    return resp.status_code, json.loads(resp.get_body() or b"{}")


def enqueued(door) -> int:
    """Messages on every work queue."""
    return sum(door.queues.queue_depth(q) for q in WORK_QUEUES)


def claimed(door) -> int:
    """Deliveries claimed (journaled) so far."""
    return door.journal.claimed()
