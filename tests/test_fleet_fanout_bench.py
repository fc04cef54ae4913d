"""The fleet fan-out benchmark runs end to end at a tiny size and reports sane figures."""
from __future__ import annotations

import pytest

from bench import fleet_fanout

pytestmark = pytest.mark.azurite


def test_fleet_fanout_at_three_tenants(azurite):
    line = fleet_fanout.run(tenants=3, rounds=1, singles=1, conn=azurite)
    assert line["benchmark"] == "fleet_fanout" and line["tenants"] == 3 and isinstance(line["met"], bool)
    figures, single = line["all_commits"], line["baseline"]["single_tenant_push_to_commit"]
    assert 0 < figures["p50_ms"] <= figures["max_ms"] and single["p50_ms"] > 0
    assert line["vs_serial"] == pytest.approx(figures["p50_ms"] / (3 * single["p50_ms"]), rel=0.01)
