"""The promotion demo and bench line run end to end on the host (devhost) with the simulated Flux."""
from __future__ import annotations

import pytest

from bench import promotion

pytestmark = pytest.mark.azurite


def test_promotion_demo_shows_dev_then_prod_applied(azurite, capsys):
    assert promotion.demo(azurite) == 0
    out = capsys.readouterr().out
    assert "applied@dev-1 +" in out and "promoted@prod +" in out and "applied@prod-1 +" in out
    matrix = out.split("trace --matrix", 1)[1]
    assert "web      dev   1.1.0 since" in matrix and "prod" in matrix


def test_promotion_bench_line(azurite):
    line = promotion.run(rounds=1, conn=azurite)
    assert line["benchmark"] == "promotion" and line["push_to_applied_last_stage_s_median"] > 0
    assert line["baseline"]["push_to_manifest_commit_s_median"] > 0 and isinstance(line["met"], bool)
