"""host.json: the HTTP route prefix, `functionTimeout` and the queue trigger settings (`extensions.queues`), with
Azure's defaults."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

MESSAGE_ENCODINGS = ("base64", "none")
MIN_POLLING_INTERVAL = 0.1
MAX_BATCH_SIZE = 32

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


class HostConfigError(ValueError):
    """host.json is unreadable or one of its settings has a bad value; the message names it."""


def parse_timespan(value: str, name: str) -> float:
    """Seconds in a .NET TimeSpan string such as `00:00:02`, `00:00:00.5` or `1.00:00:00`."""
    match = _TIMESPAN.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise HostConfigError(f"host.json {name}={value!r} is not a timespan like 00:00:02")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues`; defaults are the Azure Storage extension's (maxPollingInterval: its local-dev value)."""

    max_polling_interval: float = 2.0
    visibility_timeout: float = 0.0
    batch_size: int = 16
    max_dequeue_count: int = 5
    new_batch_threshold: int = 8
    message_encoding: str = "base64"


# `functionTimeout` when host.json has none: 30 minutes on Premium/Dedicated (5 on Consumption); "-1" is
# unbounded, allowed on Premium/Dedicated only (learn.microsoft.com, "host.json reference", functionTimeout).
DEFAULT_FUNCTION_TIMEOUT = 30 * 60.0


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)
    function_timeout: float | None = DEFAULT_FUNCTION_TIMEOUT  # seconds; None: unbounded ("-1")


def _function_timeout(data: Mapping[str, Any]) -> float | None:
    value = data.get("functionTimeout")
    if value is None:
        return DEFAULT_FUNCTION_TIMEOUT
    if isinstance(value, str) and value.strip() == "-1":
        return None
    seconds = parse_timespan(value, "functionTimeout")
    if seconds <= 0:
        raise HostConfigError(f"host.json functionTimeout={value!r} must be positive (or -1 for no limit)")
    return seconds


def _int_setting(section: Mapping[str, Any], key: str, default: int, low: int, high: int | None = None) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise HostConfigError(f"host.json extensions.queues.{key}={value!r} must be an integer {bounds}")
    return value


def _section(data: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    node: Mapping[str, Any] = data
    for depth, key in enumerate(path, start=1):
        child = node.get(key, {})
        if not isinstance(child, Mapping):
            raise HostConfigError(f"host.json {'.'.join(path[:depth])} must be an object")
        node = child
    return node


def host_config_from_json(data: Mapping[str, Any]) -> HostConfig:
    http = _section(data, "extensions", "http")
    queues = _section(data, "extensions", "queues")
    prefix = http.get("routePrefix", "api")
    if not isinstance(prefix, str):
        raise HostConfigError(f"host.json extensions.http.routePrefix={prefix!r} must be a string")
    batch_size = _int_setting(queues, "batchSize", 16, 1, MAX_BATCH_SIZE)
    max_polling = parse_timespan(queues.get("maxPollingInterval", "00:00:02"), "extensions.queues.maxPollingInterval")
    if max_polling < MIN_POLLING_INTERVAL:
        raise HostConfigError(f"host.json extensions.queues.maxPollingInterval={max_polling}s is below 100 ms")
    encoding = queues.get("messageEncoding", "base64")
    if encoding not in MESSAGE_ENCODINGS:
        raise HostConfigError(f"host.json extensions.queues.messageEncoding={encoding!r} is not base64 or none")
    return HostConfig(
        route_prefix=prefix.strip("/"),
        function_timeout=_function_timeout(data),
        queues=QueueOptions(
            max_polling_interval=max_polling,
            visibility_timeout=parse_timespan(queues.get("visibilityTimeout", "00:00:00"),
                                              "extensions.queues.visibilityTimeout"),
            batch_size=batch_size,
            max_dequeue_count=_int_setting(queues, "maxDequeueCount", 5, 1),
            new_batch_threshold=_int_setting(queues, "newBatchThreshold", batch_size // 2, 0),
            message_encoding=encoding,
        ),
    )


def load_host_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HostConfigError(f"{path}: cannot read host.json ({exc})") from exc
    if not isinstance(data, dict):
        raise HostConfigError(f"{path}: not a JSON object")
    return data
