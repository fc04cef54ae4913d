"""Promotion: the timer that re-evaluates every gate (a soak or a window that ends opens its gate without a Flux
event), and `POST /api/ops/resume` (admin level), which lifts a pause a person's manual rollback set."""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func

from core.adapters.offload import off_loop
from core.adapters.fleet_source import FleetUnavailable
from core.model.fleet import DEFAULT_TENANT, UnknownTenant
from core.workers.promoter import PromotionError, promote_fleet, resume_request
from core.wiring import get_services
from core.settings import SettingsError
from core.adapters.storage import StorageUnavailable
from handlers.dashboard import posted_action
from handlers.http import error_response, json_response

log = logging.getLogger("autopilot.promotion")

# Gate evaluation runs git (a fetch may take minutes) and storage: on the 4-thread offload pool it would hold a
# thread health and replay answer with, and the loop's default executor is no pool of ours (core/adapters/offload.py);
# so the timer has one thread of its own, as a batching queue does (core/workers/runners.py), and ticks never overlap.
_gates = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autopilot-promotion")


def _evaluate() -> int:
    return promote_fleet(get_services())


async def tick(timer: func.TimerRequest) -> None:
    promoted = await asyncio.get_running_loop().run_in_executor(_gates, _evaluate)
    if promoted or timer.past_due:
        log.info("promotion timer: %d promoted%s", promoted, " (past due)" if timer.past_due else "")


async def resume(req: func.HttpRequest) -> func.HttpResponse:
    body, refused = posted_action(req)  # the dashboard's Resume button posts here; another site's page may not
    if refused is not None:
        return refused
    try:
        service, env = resume_request(body)
        tenant = body.get("tenant") if isinstance(body.get("tenant"), str) and body.get("tenant") else DEFAULT_TENANT
        resumed = await off_loop(lambda: get_services().for_tenant(tenant).pauses.resume(service, env))
    except (PromotionError, UnknownTenant) as exc:
        return error_response(400, str(exc))
    except SettingsError as exc:
        return error_response(503, f"not configured: {exc}")
    except (StorageUnavailable, FleetUnavailable) as exc:
        return error_response(503, f"unavailable: {exc}")
    if not resumed:
        return error_response(404, f"{service} in {env} is not paused")
    return json_response(200, {"service": service, "env": env, "resumed": True})
