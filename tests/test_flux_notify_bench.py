"""The flux_notify benchmark runs end to end at a tiny size and reports sane figures."""
from __future__ import annotations

import json

import pytest

from bench import flux_notify
from bench.common import emit

pytestmark = pytest.mark.azurite


def test_flux_notify_bench(azurite, capsys):
    capsys.readouterr()
    emit(flux_notify.run(pushes=2, warmup=1, conn=azurite))
    line = json.loads(capsys.readouterr().out)
    assert line["benchmark"] == "flux_notify" and line["commits"] == 2 and line["receivers"] == 10
    assert 0 < line["first_receiver"]["p50_ms"] <= line["p50_ms"] <= line["p99_ms"] <= line["max_ms"]
    assert 0 < line["baseline"]["notifier_alone"]["p50_ms"]
    assert line["slow_receiver_calls"] >= 3            # it was called for every commit, and never waited for
    assert set(line["where"]) == {"commit_to_trace_recorded_ms", "trace_to_notify_run_ms", "run_to_all_healthy_ms"}
    assert all(p50 <= p99 for p50, p99 in line["where"].values()) and line["where"]["run_to_all_healthy_ms"][0] > 0
    assert line["met"] == (line["p99_ms"] < 1000)
