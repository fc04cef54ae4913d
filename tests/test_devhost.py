"""devhost: the local Functions host, against a real Azurite and tests/devhost_sample_app.py."""
from __future__ import annotations

import http.client
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient

from core.settings import SettingsError
from devhost import DevHost, HostConfigError, QueueOptions, choose_settings_file, host_config_from_json
from devhost.function_index import UnsupportedFunction, index_functions
from devhost.local_settings import load_local_settings
from devhost.routes import compile_route
from tests import devhost_sample_app as sample

pytestmark = pytest.mark.azurite

ROOT = Path(__file__).resolve().parent.parent
KEY = "test-functions-key-123"
MASTER = "test-master-key-456"
MAX_DEQUEUE = 3
HOST_JSON = {
    "version": "2.0",
    "extensions": {
        "http": {"routePrefix": "api"},
        "queues": {"maxPollingInterval": "00:00:00.2", "visibilityTimeout": "00:00:01", "batchSize": 4,
                   "maxDequeueCount": MAX_DEQUEUE, "newBatchThreshold": 2, "messageEncoding": "base64"},
    },
}


def with_queues(**queues: object) -> dict:
    return {**HOST_JSON, "extensions": {**HOST_JSON["extensions"],
                                        "queues": {**HOST_JSON["extensions"]["queues"], **queues}}}


# -- helpers -------------------------------------------------------------------------------------------------


def call(host: DevHost, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def queue_is_empty(client: QueueClient) -> bool:
    """No message at all, visible or not (the approximate count includes invisible messages)."""
    return client.get_queue_properties().approximate_message_count == 0


@pytest.fixture
def record(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "record.jsonl"
    monkeypatch.setenv("DEVHOST_SAMPLE_RECORD", str(path))
    return path


@pytest.fixture
def start_host(azurite, record):
    hosts: list[DevHost] = []

    def start(host_json: dict = HOST_JSON, key: str = KEY, master: str = MASTER, env: dict | None = None,
              **kwargs) -> DevHost:
        env = {"AzureWebJobsStorage": azurite, "FUNCTIONS_KEY": key, "FUNCTIONS_MASTER_KEY": master, **(env or {})}
        kwargs.setdefault("lease_seconds", 2)
        host = DevHost(sample.app, host_json, env, **kwargs).start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.stop(grace_seconds=5)


@pytest.fixture
def host(start_host) -> DevHost:
    return start_host()


# -- HTTP ------------------------------------------------------------------------------------------------------


def test_http_route_params_query_and_body(host):
    status, headers, body = call(host, "POST", f"/api/items/42?code={KEY}&x=1&x=2&empty=",
                                 body=b'{"a": 1}', headers={"Content-Type": "application/json"})
    assert status == 200
    assert headers["content-type"] == "application/json; charset=utf-8"
    payload = json.loads(body)
    assert payload["method"] == "POST"
    assert payload["id"] == "42"
    assert payload["params"] == {"code": KEY, "x": "1,2", "empty": ""}
    assert payload["body"] == '{"a": 1}'
    assert payload["content_type"] == "application/json"
    assert payload["url"] == f"http://127.0.0.1:{host.port}/api/items/42?code={KEY}&x=1&x=2&empty="


def test_http_chunked_body_and_keep_alive(host):
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
    try:
        for n in range(3):  # three requests on one connection
            conn.request("POST", f"/api/items/{n}", body=iter([b"part-a,", b"part-b"]),
                         headers={"x-functions-key": KEY}, encode_chunked=True)
            resp = conn.getresponse()
            payload = json.loads(resp.read())
            assert resp.status == 200 and payload["id"] == str(n) and payload["body"] == "part-a,part-b"
    finally:
        conn.close()


def test_unknown_route_wrong_method_and_head_are_404_as_in_the_host(host):
    """azure-functions-host#10098/#11625: the method is part of the route constraint, so no 405 and no implicit
    HEAD for GET; the answer comes before any key check."""
    assert call(host, "GET", f"/api/nothing/here?code={KEY}")[0] == 404
    assert call(host, "GET", f"/items/1?code={KEY}")[0] == 404  # routePrefix "api" is required
    status, headers, _ = call(host, "DELETE", f"/api/items/1?code={KEY}")
    assert status == 404 and "allow" not in headers
    assert call(host, "POST", "/api/public/hello")[0] == 404
    assert call(host, "HEAD", "/api/public/hello")[0] == 404
    assert call(host, "DELETE", "/api/items/1")[0] == 404  # no key: still 404, routing first
    assert call(host, "GET", "/api/public/hello")[0] == 201


def test_function_keys(host):
    assert call(host, "GET", "/api/items/1")[0] == 401
    assert call(host, "GET", "/api/items/1?code=wrong")[0] == 401
    assert call(host, "GET", "/api/items/1", headers={"x-functions-key": "wrong"})[0] == 401
    assert call(host, "GET", f"/api/items/1?code={KEY}")[0] == 200
    assert call(host, "GET", "/api/items/1", headers={"x-functions-key": KEY})[0] == 200
    status, headers, body = call(host, "GET", "/api/public/hello")
    assert (status, body) == (201, b"hello")
    assert headers["x-sample"] == "yes"
    assert headers["content-type"] == "text/html; charset=utf-8"


def test_stop_refuses_new_connections_and_answers_503_on_kept_alive_ones(start_host):
    host = start_host()
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
    try:
        conn.request("GET", "/api/public/hello")
        assert conn.getresponse().read() == b"hello"
        host.stop(grace_seconds=1)
        conn.request("GET", "/api/public/hello")
        resp = conn.getresponse()
        assert resp.status == 503 and resp.getheader("Connection") == "close"
    finally:
        conn.close()
    with pytest.raises(ConnectionRefusedError):
        call(host, "GET", "/api/public/hello")


def test_no_key_needed_when_no_key_is_set(start_host, record):
    host = start_host(key="", master="")
    assert call(host, "GET", "/api/items/1")[0] == 200
    assert call(host, "POST", "/admin/functions/work", body=b'{"input": "no key"}')[0] == 202
    wait_for(lambda: [e for e in events(record) if e["event"] == "done"])


def test_function_exception_is_500_and_log_has_no_secrets(host, caplog):
    caplog.set_level(logging.INFO, logger="devhost")
    status, _, body = call(host, "GET", "/api/public/boom")
    assert status == 500
    assert body == b"function boom failed\n"
    secret_header, secret_body = "header-secret-value", "body-secret-value"
    assert call(host, "POST", f"/api/items/9?code={KEY}", body=secret_body.encode(),
                headers={"Authorization": secret_header})[0] == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "devhost"]
    assert any(line.startswith("boom GET /api/public/boom status=500 failed (RuntimeError") for line in lines)
    assert any(line.startswith("echo POST /api/items/9 status=200 ") for line in lines)
    for secret in (KEY, secret_header, secret_body):
        assert secret not in caplog.text


# -- queue triggers --------------------------------------------------------------------------------------------


def test_base64_messages_are_consumed_and_deleted(host, storage, record):
    storage.enqueue(sample.WORK_QUEUE, "héllo wörld")  # core.adapters.storage writes base64, as the Functions host expects
    done = wait_for(lambda: [e for e in events(record) if e["event"] == "done"])
    assert [(e["body"], e["dequeue_count"]) for e in done] == [("héllo wörld", 1)]
    wait_for(lambda: queue_is_empty(storage.queue(sample.WORK_QUEUE)))


def test_always_failing_message_is_tried_max_dequeue_count_times_then_poisoned(host, storage, record):
    storage.enqueue(sample.FAIL_QUEUE, '{"poison": "me"}')
    poison = storage.queue(sample.FAIL_QUEUE + "-poison")
    wait_for(lambda: poison.peek_messages(), timeout=15)
    attempts = [e for e in events(record) if e["event"] == "attempt"]
    assert [e["dequeue_count"] for e in attempts] == list(range(1, MAX_DEQUEUE + 1))
    gaps = [b["at"] - a["at"] for a, b in zip(attempts, attempts[1:])]
    assert all(gap >= 0.9 for gap in gaps), f"retries not spaced by visibilityTimeout: {gaps}"
    [poisoned] = poison.receive_messages()
    assert poisoned.content == '{"poison": "me"}'
    assert queue_is_empty(storage.queue(sample.FAIL_QUEUE))
    time.sleep(0.6)  # no further attempt once poisoned
    assert len([e for e in events(record) if e["event"] == "attempt"]) == MAX_DEQUEUE


def test_fail_twice_then_succeed_is_processed_and_deleted(host, storage, record):
    storage.enqueue(sample.FLAKY_QUEUE, "flaky")
    wait_for(lambda: [e for e in events(record) if e["event"] == "done"], timeout=15)
    assert [e["dequeue_count"] for e in events(record) if e["event"] == "attempt"] == [1, 2, 3]
    wait_for(lambda: queue_is_empty(storage.queue(sample.FLAKY_QUEUE)))
    assert queue_is_empty(storage.queue(sample.FLAKY_QUEUE + "-poison"))


def test_message_that_is_not_base64_is_poisoned_without_running(start_host, record, azurite):
    host = start_host(with_queues(maxDequeueCount=1))
    raw = QueueClient.from_connection_string(azurite, sample.WORK_QUEUE)  # no encode policy: plain text
    raw.send_message("not base64 at all!")
    raw_poison = QueueClient.from_connection_string(azurite, sample.WORK_QUEUE + "-poison")
    raw_poison.create_queue()
    poisoned = wait_for(lambda: raw_poison.get_queue_properties().approximate_message_count and
                        raw_poison.peek_messages())
    assert [m.content for m in poisoned] == ["not base64 at all!"]
    assert events(record) == []
    assert queue_is_empty(raw)
    assert call(host, "GET", "/api/public/hello")[0] == 201  # the host is still fine


def _max_concurrency(evts: list[dict]) -> int:
    edges = sorted([(e["at"], 1) for e in evts if e["event"] == "start"] +
                   [(e["at"], -1) for e in evts if e["event"] == "done"], key=lambda edge: (edge[0], edge[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_a_batch_is_processed_in_parallel(start_host, storage, record):
    for n in range(4):
        storage.enqueue(sample.WORK_QUEUE, "slow:0.8")
    start_host()  # after enqueueing: the first poll fetches the whole batch of 4
    wait_for(lambda: len([e for e in events(record) if e["event"] == "done"]) == 4)
    evts = events(record)
    assert _max_concurrency(evts) == 4
    assert len({e["thread"] for e in evts if e["event"] == "start"}) == 4


def test_concurrency_is_bounded_by_batch_size_plus_new_batch_threshold(start_host, storage, record):
    for n in range(5):
        storage.enqueue(sample.WORK_QUEUE, "slow:0.4")
    start_host(with_queues(batchSize=2, newBatchThreshold=0))
    wait_for(lambda: len([e for e in events(record) if e["event"] == "done"]) == 5)
    assert _max_concurrency(events(record)) == 2


def test_slow_message_lease_is_renewed_so_it_runs_once(start_host, storage, record):
    start_host(lease_seconds=2)
    storage.enqueue(sample.WORK_QUEUE, "slow:3")  # outlives the 2 s lease
    wait_for(lambda: [e for e in events(record) if e["event"] == "done"])
    time.sleep(0.5)
    assert [(e["event"], e["dequeue_count"]) for e in events(record)] == [("start", 1), ("done", 1)]
    assert queue_is_empty(storage.queue(sample.WORK_QUEUE))


def test_queue_output_binding_enqueues_after_the_function_returns(host, record):
    status, _, _ = call(host, "POST", f"/api/enqueue?code={KEY}", body="first\nsecond ü".encode())
    assert status == 202
    done = wait_for(lambda: len([e for e in events(record) if e["event"] == "done"]) == 2 and
                    [e for e in events(record) if e["event"] == "done"])
    assert sorted(e["body"] for e in done) == ["first", "second ü"]


# -- admin API -----------------------------------------------------------------------------------------------


def test_admin_api_runs_a_queue_function_with_the_input(host, storage, record):
    status, headers, _ = call(host, "POST", "/admin/functions/work", body=b'{"input": "slow:0.5"}',
                              headers={"x-functions-key": MASTER, "Content-Type": "application/json"})
    assert status == 202
    assert [e["event"] for e in events(record)] in ([], ["start"])  # answered before the function finished
    done = wait_for(lambda: [e for e in events(record) if e["event"] == "done"])
    assert done[0]["body"] == "slow:0.5"
    assert done[0]["dequeue_count"] is None and done[0]["id"] == headers["x-devhost-invocation-id"]
    assert queue_is_empty(storage.queue(sample.WORK_QUEUE))  # run directly, not through the queue


def test_admin_api_errors(host, storage):
    body = b'{"input": "x"}'
    auth = {"x-functions-key": MASTER}
    assert call(host, "POST", "/admin/functions/work", body=body)[0] == 401
    assert call(host, "POST", "/admin/functions/nope", body=body, headers=auth)[0] == 404
    assert call(host, "POST", "/admin/functions/echo", body=body, headers=auth)[0] == 400
    assert call(host, "POST", "/admin/functions/work", body=b"not json", headers=auth)[0] == 400
    assert call(host, "POST", "/admin/functions/work", body=b'{"input": 5}', headers=auth)[0] == 400
    assert call(host, "GET", "/admin/functions/work", headers=auth)[0] == 404


def test_admin_failure_is_logged(host, caplog):
    caplog.set_level(logging.INFO, logger="devhost")
    assert call(host, "POST", "/admin/functions/always_fail", body=b'{"input": "x"}',
                headers={"x-functions-key": MASTER})[0] == 202
    wait_for(lambda: any("always_fail admin id=" in r.getMessage() and "failed (ValueError: always fails)"
                         in r.getMessage() for r in caplog.records))


# -- configuration -------------------------------------------------------------------------------------------


def test_host_json_settings_and_defaults():
    config = host_config_from_json({"extensions": {"http": {"routePrefix": "/x/"}, "queues": {
        "maxPollingInterval": "00:00:02", "visibilityTimeout": "00:00:05", "batchSize": 16,
        "maxDequeueCount": 5, "newBatchThreshold": 8, "messageEncoding": "none"}}})
    assert config.route_prefix == "x"
    assert config.queues == QueueOptions(max_polling_interval=2.0, visibility_timeout=5.0, batch_size=16,
                                         max_dequeue_count=5, new_batch_threshold=8, message_encoding="none")
    defaults = host_config_from_json({"version": "2.0"})
    assert defaults.route_prefix == "api"
    assert defaults.queues.new_batch_threshold == 8 and defaults.queues.message_encoding == "base64"
    assert host_config_from_json({"extensions": {"queues": {"batchSize": 4}}}).queues.new_batch_threshold == 2
    assert host_config_from_json({"extensions": {"queues": {"maxPollingInterval": "1.00:00:00.5"}}}
                                 ).queues.max_polling_interval == 86400.5
    for bad in ({"maxPollingInterval": "2s"}, {"maxPollingInterval": "00:00:00.05"}, {"batchSize": 33},
                {"batchSize": True}, {"maxDequeueCount": 0}, {"messageEncoding": "utf8"}):
        with pytest.raises(HostConfigError, match=next(iter(bad))):
            host_config_from_json({"extensions": {"queues": bad}})


def test_route_templates():
    route = compile_route("api", "items/{id:int}/files/{name}")
    assert route.match("/api/items/12/files/a%20b.txt") == {"id": "12", "name": "a b.txt"}
    assert route.match("/API/Items/12/files/x/") == {"id": "12", "name": "x"}
    assert route.match("/api/items/abc/files/x") is None
    optional = compile_route("api", "things/{id?}")
    assert optional.match("/api/things") == {} and optional.match("/api/things/3") == {"id": "3"}
    assert compile_route("", "files/{*path}").match("/files/a/b/c") == {"path": "a/b/c"}


def test_unsupported_bindings_and_signatures_are_rejected_at_start():
    blob_app = func.FunctionApp()

    @blob_app.blob_trigger(arg_name="blob", path="c/{name}", connection="AzureWebJobsStorage")
    def on_blob(blob: func.InputStream) -> None:
        """Not served by devhost."""

    with pytest.raises(UnsupportedFunction, match="function on_blob: trigger blobTrigger"):
        index_functions(blob_app.get_functions(), "api")

    five_fields = func.FunctionApp()

    @five_fields.timer_trigger(arg_name="timer", schedule="*/5 * * * *")
    def tick(timer: func.TimerRequest) -> None:
        """The host parses schedules with seconds: five fields are refused."""

    with pytest.raises(UnsupportedFunction, match="function tick: timer schedule '\\*/5 \\* \\* \\* \\*'"):
        index_functions(five_fields.get_functions(), "api")

    context_app = func.FunctionApp()

    @context_app.route(route="x")
    def with_context(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        return func.HttpResponse("x")

    with pytest.raises(UnsupportedFunction, match="function with_context: parameters"):
        index_functions(context_app.get_functions(), "api")


def _write_settings(path: Path, values: dict[str, str]) -> None:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}), encoding="utf-8")


def test_settings_precedence(tmp_path):
    _write_settings(tmp_path / "local.settings.sample.json", {"A": "sample", "B": "sample"})
    environ = {"A": "env"}
    assert load_local_settings(tmp_path, environ=environ) == tmp_path / "local.settings.sample.json"
    assert environ == {"A": "env", "B": "sample"}
    _write_settings(tmp_path / "local.settings.json", {"A": "local", "B": "local", "C": "local"})
    environ = {"A": "env"}
    assert load_local_settings(tmp_path, environ=environ) == tmp_path / "local.settings.json"
    assert environ == {"A": "env", "B": "local", "C": "local"}
    override = tmp_path / "other.json"
    _write_settings(override, {"B": "other"})
    assert choose_settings_file(tmp_path, override) == override
    with pytest.raises(SettingsError, match="missing.json"):
        choose_settings_file(tmp_path, tmp_path / "missing.json")
    assert choose_settings_file(tmp_path / "empty") is None


# -- the CLI ---------------------------------------------------------------------------------------------------


class Cli:
    """`python -m devhost --app tests.devhost_sample_app` in a subprocess, stdout read line by line."""

    def __init__(self, script_root: Path, *extra: str, env: dict[str, str]):
        self.stderr_path = script_root / "stderr.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--app", "tests.devhost_sample_app", "--port", "0",
             "--script-root", str(script_root), *extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self.stderr_path.open("wb"), text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout], daemon=True).start()
        self.stdout: list[str] = []

    def wait_line(self, prefix: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2).rstrip("\n")
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.stdout.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line {prefix!r}; stdout {self.stdout}; stderr {self.stderr_path.read_text()}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("AzureWebJobsStorage", "FUNCTIONS_KEY", "DEVHOST_SAMPLE_RECORD", "DEVHOST_SAMPLE_MARK")}
    return {**env, **extra}


def _get(url: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/api/public/mark")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_cli_sigterm_lets_the_in_flight_message_finish(tmp_path, azurite, storage):
    record = tmp_path / "record.jsonl"
    (tmp_path / "host.json").write_text(json.dumps(HOST_JSON))
    _write_settings(tmp_path / "local.settings.json", {
        "AzureWebJobsStorage": azurite, "DEVHOST_SAMPLE_RECORD": str(record), "DEVHOST_SAMPLE_MARK": "from-file"})
    cli = Cli(tmp_path, env=_cli_env(DEVHOST_SAMPLE_MARK="from-env"))
    try:
        assert cli.wait_line("devhost: settings from") == f"devhost: settings from {tmp_path / 'local.settings.json'}"
        url = cli.wait_line("devhost listening on http://127.0.0.1:").split(" on ")[1]
        assert _get(url) == (200, b"from-env")  # the environment beats local.settings.json
        storage.enqueue(sample.WORK_QUEUE, "slow:2")
        wait_for(lambda: [e for e in events(record) if e["event"] == "start"])
        assert cli.stop() == 0
    finally:
        cli.kill()
    assert [e["event"] for e in events(record)] == ["start", "done"]
    assert queue_is_empty(storage.queue(sample.WORK_QUEUE))
    assert "work queue=sample-work" in cli.stderr_path.read_text() and "succeeded" in cli.stderr_path.read_text()


def test_cli_sigterm_past_the_grace_period_releases_the_message(tmp_path, azurite, storage):
    record = tmp_path / "record.jsonl"
    (tmp_path / "host.json").write_text(json.dumps(HOST_JSON))
    _write_settings(tmp_path / "local.settings.sample.json", {
        "AzureWebJobsStorage": azurite, "DEVHOST_SAMPLE_RECORD": str(record), "DEVHOST_SAMPLE_MARK": "from-sample"})
    cli = Cli(tmp_path, "--grace", "0.5", env=_cli_env())
    try:
        assert cli.wait_line("devhost: settings from").endswith("local.settings.sample.json")
        url = cli.wait_line("devhost listening on").split(" on ")[1]
        assert _get(url) == (200, b"from-sample")  # settings were in the environment when the app was imported
        storage.enqueue(sample.WORK_QUEUE, "slow:60")
        wait_for(lambda: [e for e in events(record) if e["event"] == "start"])
        started = time.monotonic()
        assert cli.stop() == 0
        assert time.monotonic() - started < 10
    finally:
        cli.kill()
    # Released at once (lease is 30 s by default), so the message is not lost.
    again = storage.queue(sample.WORK_QUEUE).receive_message()
    assert again is not None and again.content == "slow:60" and again.dequeue_count == 2


def test_disabled_functions_are_neither_routed_nor_triggered(azurite, tmp_path):
    import urllib.error
    import urllib.request

    from devhost.host import DevHost, disabled
    from tests import devhost_sample_app as sample

    assert disabled("f", {"AzureWebJobs.f.Disabled": "true"}) and disabled("f", {"AzureWebJobs__f__Disabled": "1"})
    assert not disabled("f", {"AzureWebJobs.f.Disabled": "false"})
    sample.app.functions_bindings = {}  # azure-functions refuses a second get_functions() otherwise
    names = [fn.get_function_name() for fn in sample.app.get_functions()]
    environ = {"AzureWebJobsStorage": azurite, **{f"AzureWebJobs.{n}.Disabled": "true" for n in names}}
    host = DevHost(sample.app, {"version": "2.0"}, environ).start()
    try:
        assert host.index.http == () and host.index.queue == ()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{host.url}/api/anything", timeout=5)
        assert err.value.code == 404
    finally:
        host.stop()
