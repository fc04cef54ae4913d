"""Operator endpoints: replay (poison queues, journaled deliveries), the deployment trace, and health."""
from __future__ import annotations

import logging

import azure.functions as func

from core.admin import UsageError, deployments as query_deployments, parse_top, running
from core.health import HealthProbes, check_health
from core.promoter import Pauses
from core.replay import Replayer, ReplayRequestError, parse_replay_request
from core.review_records import ReviewRecords
from core.services import get_services
from core.settings import SettingsError
from core.storage import StorageUnavailable
from handlers.http import error_response, json_response

log = logging.getLogger("autopilot.admin")

_health_probes = HealthProbes()  # one per process, so store and repo answers are cached across requests


def replay(req: func.HttpRequest) -> func.HttpResponse:
    try:
        body = req.get_json()
    except ValueError:
        return error_response(400, "body is not valid JSON")
    try:
        request = parse_replay_request(body)
    except ReplayRequestError as exc:
        return error_response(400, str(exc))
    try:
        services = get_services()
    except SettingsError as exc:
        log.error("settings: %s", exc)
        return error_response(503, f"not configured: {exc}")
    reply = Replayer(services.storage, services.intake, services.deliveries).run(request)
    return json_response(reply.status, reply.body)


def deployments(req: func.HttpRequest) -> func.HttpResponse:
    params = req.params
    try:
        top = parse_top(params.get("top"))
    except UsageError as exc:
        return error_response(400, str(exc))
    try:
        services = get_services()
        rows = query_deployments(services.trace, ReviewRecords(services.storage), service=params.get("service", ""),
                                 env=params.get("env", ""), image=params.get("image", ""),
                                 tag=params.get("tag", ""), top=top)
        matrix = running(services.storage, service=params.get("service", ""), env=params.get("env", ""))
        paused = Pauses(services.storage).listed()
    except SettingsError as exc:
        log.error("settings: %s", exc)
        return error_response(503, f"not configured: {exc}")
    except StorageUnavailable as exc:
        return error_response(503, f"storage unavailable: {exc}")
    return json_response(200, {"deployments": rows, "running": matrix, "paused": paused})


def health(req: func.HttpRequest) -> func.HttpResponse:
    report = check_health(get_services, _health_probes)
    return json_response(report.status, report.body)
