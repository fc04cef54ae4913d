"""Every benchmark runs end to end at tiny sizes (one shared Azurite) and prints one JSON line with its figures, its
baseline, its target and whether it was met; the figures are sane for what the run did."""
from __future__ import annotations

import json

import pytest

from bench import batch, burst, demo, generation, intake, intake_load, push_to_commit, race, scale
from bench.__main__ import BENCHMARKS, main
from bench.common import emit, percentile

pytestmark = pytest.mark.azurite


def one_line(capsys, line: dict) -> dict:
    capsys.readouterr()
    emit(line)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.endswith("\n")
    parsed = json.loads(out)
    assert isinstance(parsed["met"], bool) and parsed["target"] and "baseline" in parsed
    return parsed


def assert_latency(figures: dict) -> None:
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]


def test_intake(azurite, capsys):
    line = one_line(capsys, intake.run(requests=24, clients=3, warmup=3, conn=azurite))
    assert line["benchmark"] == "intake" and line["requests"] == 24 and line["clients"] == 3
    assert line["accepted"] == 24 + 3 + 24 and line["non_202"] == 0  # measured, warm-up, single client
    assert line["rps"] > 0
    assert_latency(line)
    assert_latency(line["single_client"])
    assert_latency(line["baseline"]["put_message"])
    assert line["met"] == (line["p99_ms"] < 50)
    assert "51 of 51 pushes" in line["note"]  # no queue worker took any


def test_intake_under_load(azurite, capsys):
    line = one_line(capsys, intake_load.run(bumps=2, idle_probes=5, conn=azurite))
    assert line["benchmark"] == "intake_under_load" and line["bumps"] == 2 and line["probes"] >= 10
    assert line["non_202"] == 0 and line["bumps_done_s"] > 0
    assert_latency(line)
    assert_latency(line["baseline"]["idle"])
    assert line["met"] == (line["p99_ms"] < 50)


def test_eventgrid_batch(azurite, capsys):
    line = one_line(capsys, batch.run(events=100, singles=3, conn=azurite))
    assert line["benchmark"] == "eventgrid_batch" and line["events"] == 100
    assert (line["status"], line["accepted"]) == (202, 100) and line["all_enqueued_s"] >= line["answered_s"] > 0
    assert_latency(line["baseline"]["single_event_request"])
    assert line["sequential_estimate_s"] > 0


def test_push_to_commit(azurite, capsys):
    line = one_line(capsys, push_to_commit.run(pushes=2, warmup=1, conn=azurite))
    assert line["pushes"] == 2
    assert_latency(line)
    assert_latency(line["push_to_manifest"])
    assert line["push_to_manifest"]["p50_ms"] >= line["p50_ms"]
    assert_latency(line["baseline"]["git_commit_push"])
    assert line["vs_baseline"] == round(line["p50_ms"] / line["baseline"]["git_commit_push"]["p50_ms"], 2)
    assert line["max_polling_interval_s"] >= 2     # host.json: the cost-sane polling the target is stated for
    assert line["met"] == (line["vs_baseline"] <= 3)


def test_scale(azurite, capsys):
    line = one_line(capsys, scale.run(small=2, large=5, bumps=2, warmup=1, min_bumps=1, conn=azurite))
    assert line["services"] == 5 and line["baseline"]["services"] == 2 and line["bumps"] == 2
    assert_latency(line)
    assert line["ratio_p50"] == round(line["p50_ms"] / line["baseline"]["p50_ms"], 2)
    assert line["met"] == (line["ratio_p50"] < scale.TARGET_RATIO)


def test_burst(azurite, capsys):
    line = one_line(capsys, burst.run(services=3, per_service=2, clients=2, conn=azurite))
    assert line["pushes"] == 6 and line["accepted"] == 6
    assert line["final_tags_right"] == 3 and line["wrong_final_tags"] == []
    assert 1 <= line["hld_commits"] <= 6
    assert 0 < line["drain_s"] <= line["manifests_caught_up_s"]
    assert line["met"] == (line["hld_commits"] <= 3)


def test_generation(azurite, capsys):
    line = one_line(capsys, generation.run(components=8, conn=azurite))
    assert line["components"] == 2 + 8 and line["environments"] == 2 and line["files"] == 20
    assert line["bytes"] > 0 and line["full_s"] > 0 and line["up_to_date_s"] > 0
    assert line["baseline"]["plain_file_writes_s"] > 0
    assert line["met"] == (line["noop_regeneration_s"] < 1.0)


def test_race(azurite, capsys):
    line = one_line(capsys, race.run(processes=2, per_process=2, services_per_process=1, serial_bumps=2,
                                     conn=azurite))
    assert line["bumps"] == 4 and line["landed"] == 4 and line["commits"] == 4
    assert line["landed_commits_missing_from_main"] == 0 and line["commits_changing_other_files"] == 0
    assert line["lost_updates"] == 0 and line["met"] is True
    assert line["retries"] >= 0 and line["poisoned"] == 0
    assert line["baseline"]["serial_one_process"]["bumps"] == 2


def test_demo_runs_the_whole_chain_and_prints_the_trace(capsys):
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "HLD commit" in out and "runs 1.4.1" in out
    trace = out.split("deployment trace", 1)[1]
    assert "frontend  prod  1.4.1" in trace and "manifest-commit +" in trace


def test_unknown_benchmark_name_is_refused(capsys):
    assert main(["intake", "nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert list(BENCHMARKS) == ["intake", "intake_under_load", "eventgrid_batch", "push_to_commit", "scale", "burst",
                                "generation", "race", "flux_notify", "promotion", "fleet_fanout"]


def test_percentile_is_nearest_rank():
    assert percentile([5, 1, 4, 2, 3], 50) == 3
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([7.0], 99) == 7.0
