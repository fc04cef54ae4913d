"""Azure Functions entry points (Python v2 model): decorators only, each a one-line call into handlers/."""
from typing import List

import azure.functions as func

from handlers import admin, bump, cluster_feedback, flux, generate, intake, promotion, review

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.function_name("acr_webhook")
@app.route(route="hooks/acr", methods=["POST"])
def acr_webhook(req: func.HttpRequest) -> func.HttpResponse:
    return intake.receive("acr", req)


@app.function_name("eventgrid_webhook")
@app.route(route="hooks/eventgrid", methods=["POST"])
def eventgrid_webhook(req: func.HttpRequest) -> func.HttpResponse:
    return intake.receive("eventgrid", req)


@app.function_name("azdo_webhook")
@app.route(route="hooks/azdo", methods=["POST"])
def azdo_webhook(req: func.HttpRequest) -> func.HttpResponse:
    return intake.receive("azdo", req)


@app.function_name("flux_events_webhook")
@app.route(route="hooks/flux", methods=["POST"])
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
def ops_replay(req: func.HttpRequest) -> func.HttpResponse:
    return admin.replay(req)


@app.function_name("ops_deployments")
@app.route(route="ops/deployments", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def ops_deployments(req: func.HttpRequest) -> func.HttpResponse:
    return admin.deployments(req)


# NCRONTAB with seconds ({second} {minute} {hour} {day} {month} {day-of-week}): every minute, as the Functions
# timer trigger reads it (learn.microsoft.com, "Timer trigger for Azure Functions", NCRONTAB expressions).
@app.function_name("promotion_timer")
@app.timer_trigger(schedule="0 */1 * * * *", arg_name="timer", run_on_startup=False, use_monitor=False)
async def promotion_timer(timer: func.TimerRequest) -> None:
    await promotion.tick(timer)


@app.function_name("ops_resume")
@app.route(route="ops/resume", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def ops_resume(req: func.HttpRequest) -> func.HttpResponse:
    return promotion.resume(req)


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return admin.health(req)
