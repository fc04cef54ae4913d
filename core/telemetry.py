"""Observability: log records that carry the work item's trace id (credentials redacted), and the service's
OpenTelemetry metrics.

    from core.telemetry import metrics, trace_context
    with trace_context(item.trace_id):
        log.info("bumped %s", tag)          # the record carries trace_id=<item.trace_id>
        metrics.bump("bumped")

Who configures what, each exactly once per process:
- the function app (`handlers/__init__.py`) calls `configure_app_telemetry(connection_string)`: metrics, plus the
  trace-id/redaction filter on the log handlers its host installed. It adds no log handler: under the Functions
  worker, records go through the worker's own root handler, which forwards them to the host and from there to
  Application Insights (azure-functions-python-worker, dispatcher.py `Dispatcher.dispatch_forever`: "Attach gRPC
  logging to the root logger"), at their own level. A second handler would make every line arrive twice.
- devhost and the command-line tools call `configure_json_logging()` first: JSON lines on stderr.
Metrics go to Application Insights (Azure Monitor exporter, metrics only: no log or trace pipeline) when a
connection string is given; otherwise to a MeterProvider with no reader (nothing leaves the process). Tests call
`in_memory_metrics()` and read counts with `metric_points()`.
"""
from __future__ import annotations

import json
import logging
import re
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import IO, Iterator

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import MeterProvider as ApiMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from core import __version__

METER_NAME = "gitops-autopilot"

_trace_id: ContextVar[str] = ContextVar("autopilot_trace_id", default="")

# `Authorization: <scheme> <credential>` (also `Authorization=...` as az CLI headers and JSON spell it), then a
# bare `Basic <credential>` / `Bearer <credential>`: a credential-looking token (8+ characters with a digit or
# base64/JWT punctuation), so prose such as "basic authentication failed" survives.
_AUTHORIZATION = re.compile(r"""(?i)(authorization["']?\s*[:=]\s*["']?)(?:(?:basic|bearer)\s+)?[^\s"',;}]+""")
_SCHEME_TOKEN = re.compile(r"(?i)\b(basic|bearer)\s+(?=[A-Za-z0-9._~+/=-]*[0-9=+/._~-])[A-Za-z0-9._~+/=-]{8,}")


def redact(text: str) -> str:
    """`text` with anything that looks like an Authorization credential replaced by `***`."""
    return _SCHEME_TOKEN.sub(r"\1 ***", _AUTHORIZATION.sub(r"\1***", text))


# -- trace context ------------------------------------------------------------------------------------------------

@contextmanager
def trace_context(trace_id: str) -> Iterator[None]:
    """Every log line written inside the block (in this thread or task) carries `trace_id`."""
    token = _trace_id.set(trace_id)
    try:
        yield
    finally:
        _trace_id.reset(token)


def current_trace_id() -> str:
    return _trace_id.get()


class LogContextFilter(logging.Filter):
    """Stamps the current trace id on records that have none (`extra={"trace_id": ...}` wins) and redacts
    credentials from the message, so every handler it is attached to sees the same safe record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "trace_id", ""):
            record.trace_id = _trace_id.get()
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a malformed call: the handler reports it when formatting, as logging always does
        safe = redact(message)
        if safe != message or record.args:
            record.msg, record.args = safe, None
        return True


class TraceSuffixFormatter(logging.Formatter):
    """A handler's own formatting plus ` [trace_id=...]` when the record has one: for handlers that pass only the
    formatted text on (the Functions worker's sends it to the host as the log message). Changes that handler's
    output only; the record itself is left as it is."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        text = self._inner.format(record)
        trace_id = getattr(record, "trace_id", "")
        return f"{text} [trace_id={trace_id}]" if trace_id else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace_id (when set), exception (when any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        trace_id = getattr(record, "trace_id", "") or _trace_id.get()
        if trace_id:
            entry["trace_id"] = trace_id
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_json_logging(level: int = logging.INFO, stream: IO[str] | None = None) -> logging.Handler:
    """devhost and the CLIs: JSON lines on `stream` (stderr) from the root logger, with trace ids, redacted.

    Idempotent: a second call adds no handler; it attaches the filter to root handlers installed since, so their
    records carry trace ids and are redacted too. Never called by the function app itself.
    """
    root = logging.getLogger()
    ours = next((h for h in root.handlers if isinstance(h.formatter, JsonFormatter)), None)
    if ours is None:
        ours = logging.StreamHandler(stream or sys.stderr)
        ours.setFormatter(JsonFormatter())
        root.addHandler(ours)
    for handler in root.handlers:
        _add_context_filter(handler)
    root.setLevel(level)
    _quiet_sdk_loggers()
    return ours


def configure_app_telemetry(connection_string: str = "") -> None:
    """The function app, once at import: metrics (to Application Insights when `connection_string` is set), and
    redaction and trace ids on the root handlers the host already installed: the worker's gRPC handler gets the
    filter and a `TraceSuffixFormatter`; devhost's JSON handler already has both. Adds no handler and leaves the
    root level to the host."""
    configure_metrics(connection_string)
    for handler in logging.getLogger().handlers:
        if _add_context_filter(handler) and not isinstance(handler.formatter, (JsonFormatter, TraceSuffixFormatter)):
            handler.setFormatter(TraceSuffixFormatter(handler.formatter))
    _quiet_sdk_loggers()


def _add_context_filter(handler: logging.Handler) -> bool:
    """Attach the trace-id/redaction filter unless the handler has it; True when it was added now."""
    if any(isinstance(f, LogContextFilter) for f in handler.filters):
        return False
    handler.addFilter(LogContextFilter())
    return True


def _quiet_sdk_loggers() -> None:
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every HTTP request at INFO


# -- metrics ------------------------------------------------------------------------------------------------------

class Metrics:
    """The service's counters and latency histograms; `bind` points them at another MeterProvider."""

    def __init__(self, provider: ApiMeterProvider | None = None):
        self.bind(provider or otel_metrics.get_meter_provider())

    def bind(self, provider: ApiMeterProvider) -> None:
        self.provider = provider
        meter = provider.get_meter(METER_NAME, __version__)
        counter = meter.create_counter
        self._deliveries = counter("autopilot.deliveries", unit="1",
                                   description="webhook deliveries by source and result")
        self._duplicates = counter("autopilot.duplicates", unit="1", description="duplicate deliveries by source")
        self._bumps = counter("autopilot.bumps", unit="1", description="image bump outcomes")
        self._pull_requests = counter("autopilot.pull_requests", unit="1", description="bot pull requests by kind")
        self._approvals = counter("autopilot.approvals", unit="1", description="review decisions")
        self._generations = counter("autopilot.generations", unit="1", description="manifest generation outcomes")
        self._failures = counter("autopilot.failures", unit="1", description="failed work items by stage")
        self._push_to_hld = meter.create_histogram(
            "autopilot.push_to_hld_commit", unit="s", description="image push to HLD commit latency")
        self._push_to_manifest = meter.create_histogram(
            "autopilot.push_to_manifest_commit", unit="s", description="image push to manifest commit latency")
        self._push_to_applied = meter.create_histogram(
            "autopilot.push_to_applied", unit="s",
            description="image push to applied on a cluster (Flux's ReconciliationSucceeded), per environment")

    def delivery(self, source: str, result: str) -> None:
        self._deliveries.add(1, {"source": source, "result": result})

    def duplicate(self, source: str) -> None:
        self._duplicates.add(1, {"source": source})

    def bump(self, result: str) -> None:
        self._bumps.add(1, {"result": result})

    def pull_request(self, kind: str) -> None:
        self._pull_requests.add(1, {"kind": kind})

    def approval(self, decision: str) -> None:
        self._approvals.add(1, {"decision": decision})

    def generation(self, result: str) -> None:
        self._generations.add(1, {"result": result})

    def failure(self, stage: str) -> None:
        self._failures.add(1, {"stage": stage})

    def push_to_hld_commit(self, seconds: float) -> None:
        self._push_to_hld.record(seconds)

    def push_to_manifest_commit(self, seconds: float) -> None:
        self._push_to_manifest.record(seconds)

    def push_to_applied(self, seconds: float, env: str) -> None:
        self._push_to_applied.record(seconds, {"env": env or "-"})


metrics = Metrics()
_exporting = False
EXPORT_INTERVAL_MS = 60_000


def configure_metrics(connection_string: str = "") -> None:
    """Export the service's metrics to Application Insights when `connection_string` is set (the Azure Monitor
    metric exporter on a periodic reader: metrics only, no log handler, no tracing); otherwise record into a
    MeterProvider that has no reader, so nothing is sent anywhere. Once exporting, later calls change nothing."""
    global _exporting
    if _exporting:
        return
    if connection_string:
        from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        reader = PeriodicExportingMetricReader(AzureMonitorMetricExporter(connection_string=connection_string),
                                               export_interval_millis=EXPORT_INTERVAL_MS)
        resource = Resource.create({"service.name": METER_NAME, "service.version": __version__})
        metrics.bind(MeterProvider(metric_readers=[reader], resource=resource))
        _exporting = True
    else:
        metrics.bind(MeterProvider())


def in_memory_metrics() -> InMemoryMetricReader:
    """Record from now on into a fresh in-memory reader (for tests); read it with `metric_points`."""
    reader = InMemoryMetricReader()
    metrics.bind(MeterProvider(metric_readers=[reader]))
    return reader


def metric_points(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, str], ...], float | int]:
    """Current value of each series of metric `name`, keyed by its sorted attributes: a counter's sum, a
    histogram's count."""
    data = reader.get_metrics_data()
    points: dict[tuple[tuple[str, str], ...], float | int] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    key = tuple(sorted((k, str(v)) for k, v in (point.attributes or {}).items()))
                    points[key] = point.value if hasattr(point, "value") else point.count
    return points
