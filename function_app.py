"""Azure Functions entry points (Python v2 model): decorators only, each a one-line call into handlers/.

HTTP functions and the outbox timer are coroutines: the Python worker awaits them on its event loop, so they
answer while the queue functions occupy its sync thread pool. Work items leave through queue output bindings:
the host wakes a queue's listener at once for those writes (SharedQueueWatcher), not for storage SDK writes.
Output lists are annotated `func.Out[typing.List[str]]`: the worker checks each Out annotation with the binding's
converter (azure.functions `QueueMessageOutConverter.check_output_type_annotation`), which accepts typing generics
but not the builtin `list[str]`, and refuses to load a function whose annotation it rejects.
"""
from typing import List

import azure.functions as func

from core.adapters.storage import CLUSTER_EVENTS, FLUX_NOTIFY, HLD_CHANGED, IMAGE_PUSHED, PR_REVIEW
from handlers import bump, cluster_feedback, dashboard, flux, generate, intake, ops, outbox, promotion, review

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.function_name("acr_webhook")
@app.route(route="hooks/acr", methods=["POST"])
@app.queue_output(arg_name="pushed", queue_name=IMAGE_PUSHED, connection="AzureWebJobsStorage")
async def acr_webhook(req: func.HttpRequest, pushed: func.Out[List[str]]) -> func.HttpResponse:
    return await intake.receive("acr", req, {IMAGE_PUSHED: pushed})


@app.function_name("eventgrid_webhook")
@app.route(route="hooks/eventgrid", methods=["POST", "OPTIONS"])
@app.queue_output(arg_name="pushed", queue_name=IMAGE_PUSHED, connection="AzureWebJobsStorage")
async def eventgrid_webhook(req: func.HttpRequest, pushed: func.Out[List[str]]) -> func.HttpResponse:
    return await intake.receive("eventgrid", req, {IMAGE_PUSHED: pushed})


@app.function_name("azdo_webhook")
@app.route(route="hooks/azdo", methods=["POST"])
@app.queue_output(arg_name="review", queue_name=PR_REVIEW, connection="AzureWebJobsStorage")
@app.queue_output(arg_name="changed", queue_name=HLD_CHANGED, connection="AzureWebJobsStorage")
@app.queue_output(arg_name="notify", queue_name=FLUX_NOTIFY, connection="AzureWebJobsStorage")
async def azdo_webhook(req: func.HttpRequest, review: func.Out[List[str]], changed: func.Out[List[str]],
                       notify: func.Out[List[str]]) -> func.HttpResponse:
    return await intake.receive("azdo", req, {PR_REVIEW: review, HLD_CHANGED: changed, FLUX_NOTIFY: notify})


@app.function_name("outbox_timer")
@app.timer_trigger(arg_name="timer", schedule="0 */1 * * * *", run_on_startup=False, use_monitor=False)
@app.queue_output(arg_name="pushed", queue_name=IMAGE_PUSHED, connection="AzureWebJobsStorage")
@app.queue_output(arg_name="review", queue_name=PR_REVIEW, connection="AzureWebJobsStorage")
@app.queue_output(arg_name="changed", queue_name=HLD_CHANGED, connection="AzureWebJobsStorage")
@app.queue_output(arg_name="notify", queue_name=FLUX_NOTIFY, connection="AzureWebJobsStorage")
@app.queue_output(arg_name="events", queue_name=CLUSTER_EVENTS, connection="AzureWebJobsStorage")
async def outbox_timer(timer: func.TimerRequest, pushed: func.Out[List[str]], review: func.Out[List[str]],
                       changed: func.Out[List[str]], notify: func.Out[List[str]],
                       events: func.Out[List[str]]) -> None:
    await outbox.run(timer, {IMAGE_PUSHED: pushed, PR_REVIEW: review, HLD_CHANGED: changed, FLUX_NOTIFY: notify,
                             CLUSTER_EVENTS: events})


@app.function_name("flux_events_webhook")
@app.route(route="hooks/flux/{tenant?}", methods=["POST"])   # no tenant: the one tenant without a fleet
@app.queue_output(arg_name="events", queue_name="cluster-events", connection="AzureWebJobsStorage")
async def flux_events_webhook(req: func.HttpRequest, events: func.Out[str]) -> func.HttpResponse:
    return await cluster_feedback.receive(req, events)


# Queue functions are coroutines: they wait for their batch on the worker's event loop, not on a pool thread.
# Everything they enqueue goes through output bindings (the host then wakes the target queue's listener at once).
@app.function_name("bump_worker")
@app.queue_trigger(arg_name="msg", queue_name="image-pushed", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="hld_changed", queue_name="hld-changed", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="flux_notify", queue_name="flux-notify", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="poison", queue_name="image-pushed-poison", connection="AzureWebJobsStorage")
async def bump_worker(msg: func.QueueMessage, hld_changed: func.Out[List[str]], flux_notify: func.Out[List[str]],
                      poison: func.Out[List[str]]) -> None:
    await bump.run(msg, hld_changed, flux_notify, poison)


@app.function_name("generate_worker")
@app.queue_trigger(arg_name="msg", queue_name="hld-changed", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="flux_notify", queue_name="flux-notify", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="poison", queue_name="hld-changed-poison", connection="AzureWebJobsStorage")
async def generate_worker(msg: func.QueueMessage, flux_notify: func.Out[List[str]],
                          poison: func.Out[List[str]]) -> None:
    await generate.run(msg, flux_notify, poison)


@app.function_name("flux_notify_worker")
@app.queue_trigger(arg_name="msg", queue_name="flux-notify", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="poison", queue_name="flux-notify-poison", connection="AzureWebJobsStorage")
async def flux_notify_worker(msg: func.QueueMessage, poison: func.Out[List[str]]) -> None:
    await flux.run(msg, poison)


@app.function_name("cluster_feedback_worker")
@app.queue_trigger(arg_name="msg", queue_name="cluster-events", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="poison", queue_name="cluster-events-poison", connection="AzureWebJobsStorage")
async def cluster_feedback_worker(msg: func.QueueMessage, poison: func.Out[List[str]]) -> None:
    await cluster_feedback.run(msg, poison)


@app.function_name("review_worker")
@app.queue_trigger(arg_name="msg", queue_name="pr-review", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="poison", queue_name="pr-review-poison", connection="AzureWebJobsStorage")
async def review_worker(msg: func.QueueMessage, poison: func.Out[List[str]]) -> None:
    await review.run(msg, poison)


@app.function_name("ops_replay")
@app.route(route="ops/replay", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def ops_replay(req: func.HttpRequest) -> func.HttpResponse:
    return await ops.replay(req)


@app.function_name("ops_deployments")
@app.route(route="ops/deployments", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def ops_deployments(req: func.HttpRequest) -> func.HttpResponse:
    return await ops.deployments(req)


# The dashboard (routes may not start with "admin": the host keeps /admin for itself).
@app.function_name("ops_dashboard")
@app.route(route="ops/dashboard", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def ops_dashboard(req: func.HttpRequest) -> func.HttpResponse:
    return await dashboard.page(req)


@app.function_name("ops_dashboard_data")
@app.route(route="ops/dashboard/data", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def ops_dashboard_data(req: func.HttpRequest) -> func.HttpResponse:
    return await dashboard.data(req)


# NCRONTAB with seconds ({second} {minute} {hour} {day} {month} {day-of-week}): every minute, as the Functions
# timer trigger reads it (learn.microsoft.com, "Timer trigger for Azure Functions", NCRONTAB expressions).
@app.function_name("promotion_timer")
@app.timer_trigger(schedule="0 */1 * * * *", arg_name="timer", run_on_startup=False, use_monitor=False)
async def promotion_timer(timer: func.TimerRequest) -> None:
    await promotion.tick(timer)


@app.function_name("ops_resume")
@app.route(route="ops/resume", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def ops_resume(req: func.HttpRequest) -> func.HttpResponse:
    return await promotion.resume(req)


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    return await ops.health(req)
