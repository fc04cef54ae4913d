"""Operator endpoints: replay (poison queues, journaled deliveries), the deployment trace, and health.

Coroutines on the worker's event loop; their blocking work (storage SDK calls, `git ls-remote`) runs on the app's
offload pool (core/adapters/offload.py), so they answer while queue functions hold the worker's sync pool.
"""
from __future__ import annotations

import logging

import azure.functions as func

from core.ops.cli import UsageError, deployments as query_deployments, parse_top, running
from core.ops.health import HealthProbes, check_health
from core.adapters.offload import off_loop
from core.ops.replay import Replayer, ReplayRequestError, parse_replay_request
from core.wiring import get_services
from core.settings import SettingsError
from core.adapters.storage import StorageUnavailable
from handlers.dashboard import posted_action
from handlers.http import error_response, json_response

log = logging.getLogger("autopilot.admin")

_health_probes = HealthProbes()  # one per process, so store and repo answers are cached across requests


async def replay(req: func.HttpRequest) -> func.HttpResponse:
    body, refused = posted_action(req)  # the dashboard's Replay button posts here; another site's page may not
    if refused is not None:
        return refused
    try:
        request = parse_replay_request(body)
    except ReplayRequestError as exc:
        return error_response(400, str(exc))
    try:
        services = get_services()
    except SettingsError as exc:
        log.error("settings: %s", exc)
        return error_response(503, f"not configured: {exc}")
    reply = await off_loop(Replayer(services.queues, services.intake, services.deliveries).run, request)
    return json_response(reply.status, reply.body)


async def deployments(req: func.HttpRequest) -> func.HttpResponse:
    params = req.params
    try:
        top = parse_top(params.get("top"))
    except UsageError as exc:
        return error_response(400, str(exc))
    try:
        services = get_services()
        service, env = params.get("service", ""), params.get("env", "")
        tenant = params.get("tenant", "")
        rows = await off_loop(query_deployments, services.trace, services.review_records, service=service,
                              env=env, image=params.get("image", ""), tag=params.get("tag", ""), tenant=tenant,
                              top=top)
        matrix = await off_loop(running, services.running, service=service, env=env)
        paused = [p for p in await off_loop(services.pauses.listed) if not tenant or p["tenant"] == tenant]
    except SettingsError as exc:
        log.error("settings: %s", exc)
        return error_response(503, f"not configured: {exc}")
    except StorageUnavailable as exc:
        return error_response(503, f"storage unavailable: {exc}")
    return json_response(200, {"deployments": [d.as_json() for d in rows], "running": matrix, "paused": paused})


async def health(req: func.HttpRequest) -> func.HttpResponse:
    report = await off_loop(check_health, get_services, _health_probes)
    return json_response(report.status, report.body)
