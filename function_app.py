"""Azure Functions entry points (Python v2 model): decorators only, each a one-line call into handlers/."""
import azure.functions as func

from handlers import admin, bump, generate, intake, review

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


@app.function_name("bump_worker")
@app.queue_trigger(arg_name="msg", queue_name="image-pushed", connection="AzureWebJobsStorage")
def bump_worker(msg: func.QueueMessage) -> None:
    bump.run(msg)


@app.function_name("generate_worker")
@app.queue_trigger(arg_name="msg", queue_name="hld-changed", connection="AzureWebJobsStorage")
def generate_worker(msg: func.QueueMessage) -> None:
    generate.run(msg)


@app.function_name("review_worker")
@app.queue_trigger(arg_name="msg", queue_name="pr-review", connection="AzureWebJobsStorage")
def review_worker(msg: func.QueueMessage) -> None:
    review.run(msg)


@app.function_name("ops_replay")
@app.route(route="ops/replay", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def ops_replay(req: func.HttpRequest) -> func.HttpResponse:
    return admin.replay(req)


@app.function_name("ops_deployments")
@app.route(route="ops/deployments", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def ops_deployments(req: func.HttpRequest) -> func.HttpResponse:
    return admin.deployments(req)


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return admin.health(req)
