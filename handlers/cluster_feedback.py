"""Cluster feedback: the Flux events hook (`POST /api/hooks/flux`, `/api/hooks/flux/<tenant>` in a fleet) and the `cluster-events` queue worker.

The hook is a coroutine on the storage SDK's aio clients (the de-duplication claim, which is also the outbox
record), and the accepted event goes out through the function's queue output binding, which the host writes after
the function returns (and then wakes the queue's listener at once; see handlers/queues.py).
"""
from __future__ import annotations

import logging
from typing import List

import azure.functions as func

from core.workers.cluster_feedback import FeedbackJob, Reply, hook_for
from core.adapters.offload import off_loop
from core.workers.runners import QueueWorker
from core.wiring import get_services
from core.settings import SettingsError
from core.adapters.storage import CLUSTER_EVENTS
from core.telemetry import metrics
from core.model.workitems import ClusterEvent, encode
from handlers import queues
from handlers.http import error_response, headers_of, json_response

log = logging.getLogger("autopilot.feedback")

worker = QueueWorker(CLUSTER_EVENTS, lambda: FeedbackJob(get_services()), batches=False, threads=1)


def _reply(reply: Reply) -> func.HttpResponse:
    metrics.delivery("flux", {202: "queued", 200: "duplicate" if reply.body.get("duplicate") else "ignored"}
                     .get(reply.status, f"rejected-{reply.status}"))
    return json_response(reply.status, reply.body)


async def receive(req: func.HttpRequest, events: func.Out[str]) -> func.HttpResponse:
    try:
        services = get_services()
    except SettingsError as exc:
        log.error("settings: %s", exc)
        return error_response(503, f"not configured: {exc}")
    body = req.get_body() or b""
    tenant = req.route_params.get("tenant") or None
    hook = await off_loop(hook_for, services, tenant, services.async_deliveries())   # may load the fleet (git)
    if isinstance(hook, Reply):
        return _reply(hook)
    checked = hook.check(headers_of(req), body)
    if isinstance(checked, Reply):
        return _reply(checked)
    assert isinstance(checked, ClusterEvent)
    duplicate = await hook.claim(checked, body)
    if duplicate is not None:
        return _reply(duplicate)
    events.set(encode(checked))
    log.info("flux %s (tenant %s): %s at %s", checked.cluster, checked.tenant, checked.outcome, checked.revision[:12],
             extra={"trace_id": checked.trace_id})
    return _reply(hook.accepted(checked))


async def run(msg: func.QueueMessage, poison: func.Out[List[str]]) -> None:
    await queues.run(worker, msg, poison)
