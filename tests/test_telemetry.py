"""Structured JSON logs with trace ids and redaction; metrics counted through an in-memory reader."""
from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core import telemetry
from core.telemetry import (JsonFormatter, LogContextFilter, configure_json_logging, configure_metrics,
                            in_memory_metrics, metric_points, metrics, redact, trace_context)

CREDENTIAL = "OmZha2VwYXQtcTd3M2U5cjF0NXkydTh="
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl"


@pytest.fixture
def root_logging():
    """Put the root logger back as it was: configure_json_logging changes process-wide state."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    filters = {h: list(h.filters) for h in handlers}
    formatters = {h: h.formatter for h in handlers}
    azure_level = logging.getLogger("azure").level
    earlier = [h for h in handlers if isinstance(h.formatter, JsonFormatter)]  # e.g. from a devhost test
    for handler in earlier:
        root.removeHandler(handler)
    yield root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in earlier:
        root.addHandler(handler)
    for handler, kept in filters.items():
        handler.filters[:] = kept
        handler.setFormatter(formatters[handler])
    root.setLevel(level)
    logging.getLogger("azure").setLevel(azure_level)


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_log_lines_are_json_with_the_trace_id_of_the_context(root_logging):
    buffer = io.StringIO()
    configure_json_logging(stream=buffer)
    log = logging.getLogger("autopilot.test")

    log.info("before")
    with trace_context("trace-1"):
        log.info("bumped %s to %s", "app", "1.4.0")
        log.warning("explicit", extra={"trace_id": "trace-2"})
    log.info("after")

    before, inside, explicit, after = lines(buffer)
    assert inside["message"] == "bumped app to 1.4.0"
    assert inside["trace_id"] == "trace-1"
    assert (inside["level"], inside["logger"]) == ("INFO", "autopilot.test")
    assert inside["time"].endswith("+00:00")
    assert explicit["trace_id"] == "trace-2" and explicit["level"] == "WARNING"
    assert "trace_id" not in before and "trace_id" not in after


def test_configure_json_logging_is_idempotent_and_filters_other_root_handlers(root_logging):
    other_buffer = io.StringIO()
    other = logging.StreamHandler(other_buffer)
    other.setFormatter(logging.Formatter("%(trace_id)s|%(message)s"))
    root_logging.addHandler(other)
    buffer = io.StringIO()

    first = configure_json_logging(stream=buffer)
    second = configure_json_logging(stream=io.StringIO())
    with trace_context("t-9"):
        logging.getLogger("autopilot.x").info("auth was Authorization: Bearer %s", TOKEN)

    assert first is second
    assert sum(isinstance(h.formatter, JsonFormatter) for h in root_logging.handlers) == 1
    assert sum(isinstance(f, LogContextFilter) for f in other.filters) == 1
    assert len(lines(buffer)) == 1
    assert other_buffer.getvalue().strip() == "t-9|auth was Authorization: ***"


def test_credentials_are_redacted_from_messages_and_exceptions(root_logging):
    buffer = io.StringIO()
    configure_json_logging(stream=buffer)
    log = logging.getLogger("autopilot.test")

    log.info("headers %s", {"Authorization": f"Basic {CREDENTIAL}"})
    log.info("git -c http.extraHeader=Authorization: Bearer %s fetch", TOKEN)
    log.info("sent Basic %s and Bearer %s", CREDENTIAL, TOKEN)
    log.info("basic authentication failed for the hook")
    try:
        raise RuntimeError(f"remote said no to Bearer {TOKEN}")
    except RuntimeError:
        log.exception("push failed")

    text = buffer.getvalue()
    assert CREDENTIAL not in text and TOKEN not in text
    records = lines(buffer)
    assert records[0]["message"] == "headers {'Authorization': '***'}"
    assert records[1]["message"] == "git -c http.extraHeader=Authorization: *** fetch"
    assert records[2]["message"] == "sent Basic *** and Bearer ***"
    assert records[3]["message"] == "basic authentication failed for the hook"
    assert "RuntimeError: remote said no to Bearer ***" in records[4]["exception"]


def test_redact_keeps_ordinary_text():
    assert redact("Authorization=Bearer abc.def.ghi") == "Authorization=***"
    assert redact("no credentials here, 12 items") == "no credentials here, 12 items"


def test_trace_context_does_not_leak_into_other_threads(root_logging):
    buffer = io.StringIO()
    configure_json_logging(stream=buffer)
    log = logging.getLogger("autopilot.test")
    with trace_context("main-thread"):
        worker = threading.Thread(target=lambda: log.info("from the worker"))
        worker.start()
        worker.join()
        log.info("from main")

    by_message = {r["message"]: r for r in lines(buffer)}
    assert "trace_id" not in by_message["from the worker"]
    assert by_message["from main"]["trace_id"] == "main-thread"


def test_metrics_are_counted_by_attribute():
    reader = in_memory_metrics()
    metrics.delivery("acr", "queued")
    metrics.delivery("acr", "queued")
    metrics.delivery("azdo", "ignored")
    metrics.duplicate("acr")
    metrics.bump("bumped")
    metrics.pull_request("created")
    metrics.approval("approve")
    metrics.generation("committed")
    metrics.failure("bump")
    metrics.failure("bump")
    metrics.push_to_hld_commit(0.4)
    metrics.push_to_hld_commit(1.6)
    metrics.push_to_manifest_commit(2.5)

    assert metric_points(reader, "autopilot.deliveries") == {
        (("result", "queued"), ("source", "acr")): 2, (("result", "ignored"), ("source", "azdo")): 1}
    assert metric_points(reader, "autopilot.duplicates") == {(("source", "acr"),): 1}
    assert metric_points(reader, "autopilot.bumps") == {(("result", "bumped"),): 1}
    assert metric_points(reader, "autopilot.pull_requests") == {(("kind", "created"),): 1}
    assert metric_points(reader, "autopilot.approvals") == {(("decision", "approve"),): 1}
    assert metric_points(reader, "autopilot.generations") == {(("result", "committed"),): 1}
    assert metric_points(reader, "autopilot.failures") == {(("stage", "bump"),): 2}
    assert metric_points(reader, "autopilot.push_to_hld_commit") == {(): 2}
    assert metric_points(reader, "autopilot.push_to_manifest_commit") == {(): 1}
    [hld] = [m for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics if m.name == "autopilot.push_to_hld_commit"]
    assert hld.unit == "s" and hld.data.data_points[0].sum == pytest.approx(2.0)


def test_without_a_connection_string_metrics_go_to_no_reader():
    reader = in_memory_metrics()
    configure_metrics("")
    metrics.bump("bumped")
    assert metric_points(reader, "autopilot.bumps") == {}


def test_a_connection_string_exports_metrics_once_and_adds_no_log_path(monkeypatch, root_logging):
    import azure.monitor.opentelemetry.exporter as exporter_module
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    made, exported = [], []

    class FakeExporter(MetricExporter):
        def __init__(self, **kwargs):
            super().__init__()
            made.append(kwargs)

        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            exported.append(metrics_data)
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis=10_000):
            return True

        def shutdown(self, timeout_millis=30_000, **kwargs):
            pass

    monkeypatch.setattr(exporter_module, "AzureMonitorMetricExporter", FakeExporter)
    monkeypatch.setattr(telemetry, "_exporting", False)
    handlers_before = list(root_logging.handlers)
    connection = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://example.invalid/"
    try:
        configure_metrics(connection)
        configure_metrics(connection)
        configure_metrics("")
        metrics.bump("bumped")
        metrics.provider.force_flush()
    finally:
        metrics.provider.shutdown()
        in_memory_metrics()
    assert made == [{"connection_string": connection}]
    names = {m.name for data in exported for rm in data.resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics}
    assert "autopilot.bumps" in names
    resource = exported[0].resource_metrics[0].resource.attributes
    assert resource["service.name"] == "gitops-autopilot"
    assert root_logging.handlers == handlers_before  # metrics only: no Azure Monitor log handler


ROOT = Path(__file__).resolve().parent.parent
WORKER_LIKE = r"""
import io, json, logging, sys

class WorkerHandler(logging.Handler):  # stands in for the worker's gRPC handler, attached before the app loads
    def __init__(self):
        super().__init__()
        self.sent = []
    def emit(self, record):
        self.sent.append([record.levelname, self.format(record)])

root = logging.getLogger()
worker = WorkerHandler()
root.addHandler(worker)
root.setLevel(logging.INFO)
before = list(root.handlers)

import function_app
from core.telemetry import trace_context

with trace_context("trace-77"):
    logging.getLogger("autopilot.intake").warning("refused Authorization: Bearer %s", sys.argv[1])
logging.getLogger("autopilot.intake").info("no trace")
print(json.dumps({"same_handlers": root.handlers == before, "sent": worker.sent}))
"""


def test_the_function_app_logs_only_through_the_hosts_handler(tmp_path):
    """Importing function_app (as the worker does, its handler already on the root logger) adds no handler;
    records reach that handler once, redacted and tagged with the trace id; nothing is written to stderr."""
    run = subprocess.run([sys.executable, "-c", WORKER_LIKE, TOKEN], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={"PATH": "/nonexistent", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
                                          "AZURE_DEVOPS_CACHE_DIR": str(tmp_path / "ado"),
                                          "APPLICATIONINSIGHTS_CONNECTION_STRING": ""})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr == ""
    out = json.loads(run.stdout)
    assert out["same_handlers"] is True
    assert out["sent"] == [["WARNING", "refused Authorization: *** [trace_id=trace-77]"], ["INFO", "no trace"]]


def test_the_apps_trace_suffix_changes_only_the_hosts_handler(root_logging):
    """configure_app_telemetry formats the host's handler; the record, and so every other handler, is unchanged."""
    host_buffer, json_buffer = io.StringIO(), io.StringIO()
    host = logging.StreamHandler(host_buffer)
    root_logging.addHandler(host)
    telemetry.configure_app_telemetry("")
    configure_json_logging(stream=json_buffer)
    telemetry.configure_app_telemetry("")  # idempotent: no second suffix

    with trace_context("t-5"):
        logging.getLogger("autopilot.x").info("bumped %s", "web")

    assert host_buffer.getvalue() == "bumped web [trace_id=t-5]\n"
    [line] = lines(json_buffer)
    assert line["message"] == "bumped web" and line["trace_id"] == "t-5"


def test_devhost_configures_json_logging_on_stderr(root_logging, tmp_path, capsys):
    from devhost import cli

    assert not [h for h in root_logging.handlers if isinstance(h.formatter, JsonFormatter)]
    assert cli.main(["--script-root", str(tmp_path), "--settings", str(tmp_path / "missing.json")]) == 2
    [ours] = [h for h in root_logging.handlers if isinstance(h.formatter, JsonFormatter)]
    assert ours.stream is sys.stderr
