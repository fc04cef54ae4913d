"""A tiny v2 function app for tests/test_devhost.py (used in-process and via `python -m devhost --app ...`).

Queue functions append one JSON line per event to the file named by DEVHOST_SAMPLE_RECORD, so a test can see
what ran, with which dequeue count, when, even in a subprocess. A body `slow:<seconds>` makes a function sleep.
"""
import json
import os
import threading
import time

import azure.functions as func

IMPORT_TIME_MARK = os.environ.get("DEVHOST_SAMPLE_MARK", "")
WORK_QUEUE = "sample-work"
FAIL_QUEUE = "sample-fail"
FLAKY_QUEUE = "sample-flaky"

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
_lock = threading.Lock()


def record(event: str, msg: func.QueueMessage, path: str | None = None, **extra: object) -> None:
    """`path`: the record file the invocation started with (a sync function that outlived its test, after a
    functionTimeout, must not write into the next test's file)."""
    line = json.dumps({"event": event, "id": msg.id, "body": msg.get_body().decode("utf-8"),
                       "dequeue_count": msg.dequeue_count, "at": time.time(), **extra})
    with _lock, open(path or os.environ["DEVHOST_SAMPLE_RECORD"], "a", encoding="utf-8") as out:
        out.write(line + "\n")


@app.route(route="items/{id}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    payload = {"method": req.method, "id": req.route_params.get("id"), "params": dict(req.params),
               "body": req.get_body().decode("utf-8"), "url": req.url,
               "content_type": req.headers.get("content-type")}
    return func.HttpResponse(json.dumps(payload), status_code=200, mimetype="application/json")


@app.route(route="public/hello", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello", status_code=201, headers={"X-Sample": "yes"}, mimetype="text/html",
                             charset="utf-8")


@app.route(route="public/mark", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def mark(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(IMPORT_TIME_MARK)


@app.route(route="public/boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret-detail-in-exception")


@app.route(route="enqueue", methods=["POST"])
@app.queue_output(arg_name="out", queue_name=WORK_QUEUE, connection="AzureWebJobsStorage")
def enqueue(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set(req.get_body().decode("utf-8").split("\n"))
    return func.HttpResponse(status_code=202)


@app.queue_trigger(arg_name="msg", queue_name=WORK_QUEUE, connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode("utf-8")
    path = os.environ["DEVHOST_SAMPLE_RECORD"]
    record("start", msg, path, thread=threading.get_ident())
    if body.startswith("slow:"):
        time.sleep(float(body.split(":", 1)[1]))
    record("done", msg, path)


@app.queue_trigger(arg_name="msg", queue_name=FAIL_QUEUE, connection="AzureWebJobsStorage")
def always_fail(msg: func.QueueMessage) -> None:
    record("attempt", msg)
    raise ValueError("always fails")


@app.queue_trigger(arg_name="msg", queue_name=FLAKY_QUEUE, connection="AzureWebJobsStorage")
def flaky(msg: func.QueueMessage) -> None:
    record("attempt", msg)
    if msg.dequeue_count <= 2:
        raise ValueError(f"fails on attempt {msg.dequeue_count}")
    record("done", msg)


# -- worker fidelity (tests/test_devhost_worker.py) ------------------------------------------------------------
ASYNC_IN_QUEUE = "sample-async-in"
RETURNS_QUEUE = "sample-returns"


def _thread_reply() -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"thread": threading.current_thread().name}), mimetype="application/json")


@app.route(route="public/sync-ping", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def sync_ping(req: func.HttpRequest) -> func.HttpResponse:
    return _thread_reply()


@app.route(route="public/async-ping", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def async_ping(req: func.HttpRequest) -> func.HttpResponse:
    return _thread_reply()


@app.route(route="public/sleep", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def sleep_sync(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(float(req.params.get("s", "0")))
    return func.HttpResponse("slept")


@app.route(route="public/asleep", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def sleep_async(req: func.HttpRequest) -> func.HttpResponse:
    import asyncio

    marker = os.environ.get("DEVHOST_SAMPLE_RECORD", "")
    try:
        await asyncio.sleep(float(req.params.get("s", "0")))
    except asyncio.CancelledError:
        with _lock, open(marker, "a", encoding="utf-8") as out:
            out.write(json.dumps({"event": "cancelled", "function": "sleep_async", "at": time.time()}) + "\n")
        raise
    return func.HttpResponse("slept")


@app.route(route="public/ablock", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def blocks_the_loop(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(float(req.params.get("s", "0")))  # a coroutine that blocks: it stalls the worker's event loop
    return func.HttpResponse(json.dumps({"done_at": time.time()}), mimetype="application/json")


@app.route(route="ops/secret", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("secret")


@app.queue_trigger(arg_name="msg", queue_name=ASYNC_IN_QUEUE, connection="AzureWebJobsStorage")
@app.queue_output(arg_name="out", queue_name=WORK_QUEUE, connection="AzureWebJobsStorage")
async def async_relay(msg: func.QueueMessage, out: func.Out[str]) -> None:
    record("relay", msg, thread=threading.current_thread().name)
    out.set("relayed:" + msg.get_body().decode("utf-8"))


@app.queue_trigger(arg_name="msg", queue_name=RETURNS_QUEUE, connection="AzureWebJobsStorage")
def returns_value(msg: func.QueueMessage) -> str:
    record("attempt", msg)
    return "a value nobody binds"
