"""The function app under devhost for end-to-end tests: app settings from the test, the host started and stopped
around it, and the wired services forgotten before and after (tests change the environment between cases)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import pytest

import function_app
from core.wiring import reset_services
from devhost import DevHost

# Fast polling and retries so end-to-end tests settle quickly (the shipped host.json polls at most every 2 s).
HOST_JSON = {"version": "2.0", "extensions": {"http": {"routePrefix": "api"}, "queues": {
    "maxPollingInterval": "00:00:00.200", "visibilityTimeout": "00:00:01", "batchSize": 8, "maxDequeueCount": 3}}}


@contextmanager
def hosted_app(monkeypatch: pytest.MonkeyPatch, settings: Mapping[str, str]) -> Iterator[DevHost]:
    """`function_app.app` served by devhost with `settings` as app settings (AZDO_ORG_URL unset: no Azure DevOps)."""
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AZDO_ORG_URL", raising=False)
    reset_services()
    running = DevHost(function_app.app, HOST_JSON).start()
    try:
        yield running
    finally:
        running.stop()
        reset_services()
