"""The running log and cluster registry contract, against Table storage (Azurite) and the dict fakes."""
from __future__ import annotations

import threading

import pytest

from core.adapters.cluster_records import ClusterRegistry, Marked, RunningLog
from tests.fakes.records import FakeClusters, FakeRunning


@pytest.fixture(params=["table", "fake"])
def running(request):
    if request.param == "fake":
        return FakeRunning()
    return RunningLog(request.getfixturevalue("storage"))


@pytest.fixture(params=["table", "fake"])
def clusters(request):
    if request.param == "fake":
        return FakeClusters()
    return ClusterRegistry(request.getfixturevalue("storage"))


def mark(tag: str, trace: str = "t", service: str = "web", env: str = "prod") -> Marked:
    return Marked(trace, "k", service, env, tag, "c" + tag, 1.0)


def test_healthy_then_failed_then_late_events(running):
    running.update("prod-1", mark("1.1"), state="healthy", at="2026-11-30T10:00:00Z", start="s1", image="r/web",
                   revision="r1")
    running.update("prod-1", mark("1.1"), state="healthy", at="2026-11-30T10:05:00Z", start="s1", image="r/web",
                   revision="r1")
    [row] = running.matrix()
    assert (row["tag"], row["since"], row["state"], row["cluster"]) == ("1.1", "2026-11-30T10:00:00Z", "healthy",
                                                                        "prod-1")
    running.update("prod-1", mark("1.2", "t2"), state="failed", at="2026-11-30T10:10:00Z", start="s2", image="r/web",
                   revision="r2", message="HealthCheckFailed " + "x" * 2000)
    [row] = running.matrix()
    assert (row["tag"], row["failedTag"], row["state"], len(row["message"])) == ("1.1", "1.2", "failed", 1000)
    running.update("prod-1", mark("1.0", "t0"), state="healthy", at="2026-11-30T10:20:00Z", start="s0",
                   image="r/web", revision="r0")   # an older push: changes nothing
    running.update("prod-1", mark("1.3", "t3"), state="healthy", at="2026-11-30T09:00:00Z", start="s3",
                   image="r/web", revision="r3")   # a late event: changes nothing
    assert running.matrix()[0]["state"] == "failed"


def test_matrix_filters_and_order(running):
    for service, env, cluster in [("web", "prod", "p2"), ("api", "dev", "d1"), ("web", "prod", "p1")]:
        running.update(cluster, mark("1.0", service=service, env=env), state="healthy", at="a", start="s",
                       image="i", revision="r")
    assert [(r["service"], r["cluster"]) for r in running.matrix()] == [("api", "d1"), ("web", "p1"), ("web", "p2")]
    assert [r["cluster"] for r in running.matrix(service="web", env="prod")] == ["p1", "p2"]
    assert running.matrix(env="staging") == []


def test_concurrent_updates_of_one_cell(running):
    """Events from one cluster racing: the newest event wins (the ETag loop re-reads a changed row)."""
    threads = [threading.Thread(target=running.update, args=("p1", mark(f"1.{n}", f"t{n}")),
                                kwargs=dict(state="healthy", at=f"2026-11-30T10:0{n}:00Z", start=f"s{n}",
                                            image="i", revision=f"r{n}")) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    [row] = running.matrix()
    assert row["tag"] == "1.4"


def test_registry_serving(clusters):
    clusters.seen("prod-1", ["prod"], "a")
    clusters.seen("dev-1", ["dev", "test"], "a")
    clusters.seen("all-1", [], "a")
    assert clusters.serving("prod") == ["all-1", "prod-1"]
    assert clusters.serving("test") == ["all-1", "dev-1"]
    clusters.seen("prod-1", ["staging"], "b")
    assert clusters.serving("prod") == ["all-1"]
