"""The deployment dashboard over HTTP: the page (`GET /api/ops/dashboard`) and its data
(`GET /api/ops/dashboard/data`), both admin-level; and the same-origin guard of the actions the page calls.

The handlers are coroutines; the storage reads and the health probes block, so they run in a thread
(`asyncio.to_thread`) and the worker's event loop stays free for other invocations.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError

from core.ops.cli import UsageError, review_json, reviews_of
from core.ops.dashboard import SCAN_TOP, Filters, dashboard_data, parse_filters
from core.ops.dashboard_page import DATA_HEADERS, foreign_origin, new_nonce, page_headers, render_page
from core.ops.health import HealthProbes, check_health
from core.wiring import Services, get_services
from core.settings import SettingsError
from core.adapters.storage import WORK_QUEUES, StorageUnavailable, poison_queue
from handlers.http import error_response, headers_of, json_response

log = logging.getLogger("autopilot.dashboard")

_health_probes = HealthProbes()  # one per process, so repo answers are cached across refreshes


async def page(req: func.HttpRequest) -> func.HttpResponse:
    nonce = new_nonce()
    return func.HttpResponse(render_page(nonce), status_code=200, mimetype="text/html", charset="utf-8",
                             headers=page_headers(nonce))


async def data(req: func.HttpRequest) -> func.HttpResponse:
    try:
        filters = parse_filters(req.params)
    except UsageError as exc:
        return error_response(400, str(exc))
    try:
        services = get_services()
        body = await asyncio.to_thread(_snapshot, services, filters)
    except SettingsError as exc:
        log.error("settings: %s", exc)
        return error_response(503, f"not configured: {exc}")
    except StorageUnavailable as exc:
        return error_response(503, f"storage unavailable: {exc}")
    response = json_response(200, body)
    response.headers.update(DATA_HEADERS)
    return response


def refuse_cross_origin(req: func.HttpRequest) -> func.HttpResponse | None:
    """403 for an action posted from another site's page (the dashboard's buttons post from its own origin)."""
    why = foreign_origin(headers_of(req), req.url)
    return None if why is None else error_response(403, why)


def posted_action(req: func.HttpRequest) -> tuple[Any, func.HttpResponse | None]:
    """(the JSON body, None) of an action the dashboard's buttons post (replay, resume), or (None, the refusal):
    403 from another site's page, 400 when the body is not JSON."""
    refused = refuse_cross_origin(req)
    if refused is not None:
        return None, refused
    try:
        return req.get_json(), None
    except ValueError:
        return None, error_response(400, "body is not valid JSON")


def _snapshot(services: Services, filters: Filters) -> dict:
    rows = services.trace.query(top=SCAN_TOP)
    reviews = services.review_records
    report = check_health(lambda: services, _health_probes)
    try:
        paused = services.pauses.listed()
    except StorageUnavailable:
        paused = []  # health names the unreadable table
    return dashboard_data(rows, lambda row: [review_json(r) for r in reviews_of(reviews, row)],
                          _queue_depths(services), (report.status, report.body), filters,
                          datetime.now(timezone.utc).isoformat(), paused)


def _queue_depths(services: Services) -> dict[str, dict[str, int] | str]:
    """Read live (not the health probe's cached depths) so a replay shows at once; one failure names the rest."""
    depths: dict[str, dict[str, int] | str] = {}
    for name in WORK_QUEUES:
        try:
            depths[name] = {"depth": services.queues.queue_depth(name),
                            "poison": services.queues.queue_depth(poison_queue(name))}
        except (StorageUnavailable, AzureError) as exc:
            reason = str(exc) if isinstance(exc, StorageUnavailable) else type(exc).__name__
            return {**depths, **{n: f"unreadable: {reason}" for n in WORK_QUEUES if n not in depths}}
    return depths
