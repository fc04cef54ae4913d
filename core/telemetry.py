"""Observability: JSON log lines that carry the work item's trace id, and the service's OpenTelemetry metrics.

    from core.telemetry import metrics, trace_context
    with trace_context(item.trace_id):
        log.info("bumped %s", tag)          # {"time": ..., "level": "INFO", ..., "trace_id": "<item.trace_id>"}
        metrics.bump("bumped")

`configure_telemetry(connection_string)` is called once by the function app and devhost. Metrics go to
Application Insights only when a connection string is given; otherwise they are kept by a MeterProvider with no
exporter (nothing leaves the process). Tests call `in_memory_metrics()` and read counts with `metric_points()`.
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


def configure_logging(level: int = logging.INFO, stream: IO[str] | None = None) -> logging.Handler:
    """Install the JSON handler on the root logger (once) and the context filter on every root handler.

    Idempotent: a second call adds no handler; it attaches the filter to handlers installed since (such as the
    Azure Monitor exporter's), so their records carry trace ids and are redacted too.
    """
    root = logging.getLogger()
    ours = next((h for h in root.handlers if isinstance(h.formatter, JsonFormatter)), None)
    if ours is None:
        ours = logging.StreamHandler(stream or sys.stderr)
        ours.setFormatter(JsonFormatter())
        root.addHandler(ours)
    for handler in root.handlers:
        if not any(isinstance(f, LogContextFilter) for f in handler.filters):
            handler.addFilter(LogContextFilter())
    root.setLevel(level)
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every HTTP request at INFO
    return ours


# -- metrics ------------------------------------------------------------------------------------------------------

class Metrics:
    """The service's counters and latency histograms; `bind` points them at another MeterProvider."""

    def __init__(self, provider: ApiMeterProvider | None = None):
        self.bind(provider or otel_metrics.get_meter_provider())

    def bind(self, provider: ApiMeterProvider) -> None:
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


metrics = Metrics()
_exporting = False


def configure_metrics(connection_string: str = "") -> None:
    """Export to Application Insights when `connection_string` is set; otherwise record into a MeterProvider that
    has no reader, so nothing is sent anywhere. Azure Monitor installs process-wide providers, so once it is
    configured later calls change nothing."""
    global _exporting
    if _exporting:
        return
    if connection_string:
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure_azure_monitor(connection_string=connection_string)
        _exporting = True
        metrics.bind(otel_metrics.get_meter_provider())
    else:
        metrics.bind(MeterProvider())


def configure_telemetry(connection_string: str = "", level: int = logging.INFO,
                        stream: IO[str] | None = None) -> None:
    """Metrics first (Azure Monitor adds a log handler to the root logger), then logging over all handlers."""
    configure_metrics(connection_string)
    configure_logging(level, stream)


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
