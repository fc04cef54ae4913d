"""The trace store contract: the same assertions against Table storage (Azurite) and the dict fake."""
from __future__ import annotations

import threading

import pytest

from core.adapters.trace import TraceLog
from core.model.trace_record import StageName, TraceStage
from tests.fakes.records import FakeTrace


@pytest.fixture(params=["table", "fake"])
def trace(request):
    if request.param == "fake":
        return FakeTrace()
    return TraceLog(request.getfixturevalue("storage"))


T0 = "2026-11-30T10:00:00+00:00"


def test_stages_append_with_latency_and_fields_set(trace):
    trace.record("t1", "hld:web:dev", TraceStage.RECEIVED, actor="acr", start=T0, at="2026-11-30T10:00:01+00:00",
                 fields={"service": "web", "env": "dev", "imageTag": "1.2.0", "image": "r.io/web"},
                 detail={"acrEventId": "e1"})
    trace.record("t1", "hld:web:dev", TraceStage.HLD_COMMIT, actor="gitops-autopilot",
                 at="2026-11-30T10:00:03.5+00:00", fields={"hldCommitId": "abc", "service": ""},
                 detail={"commit": "abc"})
    [row] = trace.rows_for_trace("t1")
    assert (row.trace_id, row.target_key, row.start, row.tenant) == ("t1", "hld:web:dev", T0, "default")
    assert (row.service, row.env, row.image_tag, row.hld_commit_id) == ("web", "dev", "1.2.0", "abc")
    assert [(s.name, s.actor, s.latency_seconds) for s in row.stages] == [
        ("received", "acr", 1.0), ("hld-commit", "gitops-autopilot", 3.5)]
    assert row.stages[0].detail == {"acrEventId": "e1"} and row.stages[1].kind is TraceStage.HLD_COMMIT
    assert row.updated_at == "2026-11-30T10:00:03.5+00:00" and row.has(TraceStage.HLD_COMMIT, commit="abc")


def test_per_place_stages_and_unknown_names(trace):
    trace.record("t1", "k", TraceStage.APPLIED.at("prod-1"), actor="flux@prod-1", at=T0, detail={"revision": "r1"})
    trace.record("t1", "k", "failed@prod-2", actor="flux@prod-2", at=T0)
    [row] = trace.rows_for_trace("t1")
    assert [s.stage for s in row.stages] == [StageName(TraceStage.APPLIED, "prod-1"),
                                             StageName(TraceStage.FAILED, "prod-2")]
    assert row.stages[0].where == "prod-1" and row.has(TraceStage.APPLIED.at("prod-1"), revision="r1")
    assert not row.has(TraceStage.APPLIED.at("prod-1"), revision="r2")
    with pytest.raises(ValueError, match="unknown trace stage 'deployed-ish'"):
        trace.record("t1", "k", "deployed-ish", actor="x")
    with pytest.raises(ValueError, match="'secret' is not a trace record field"):
        trace.record("t1", "k", TraceStage.SKIPPED, actor="x", fields={"secret": "s"})
    [row] = trace.rows_for_trace("t1")
    assert len(row.stages) == 2   # a refused call writes nothing


def test_query_filters_newest_first_and_tenant(trace):
    for i, (service, env, tenant) in enumerate([("web", "dev", None), ("web", "prod", "contoso"),
                                                ("api", "dev", "contoso")]):
        trace.record(f"t{i}", "k", TraceStage.RECEIVED, actor="acr", start=f"2026-11-30T10:0{i}:00+00:00",
                     fields={"service": service, "env": env, "imageTag": f"1.{i}", "image": f"r.io/{service}"},
                     tenant=tenant)
    assert [r.trace_id for r in trace.query()] == ["t2", "t1", "t0"]
    assert [r.trace_id for r in trace.query(service="web")] == ["t1", "t0"]
    assert [r.trace_id for r in trace.query(env="dev", image="r.io/api")] == ["t2"]
    assert [r.trace_id for r in trace.query(tag="1.0")] == ["t0"]
    assert [r.trace_id for r in trace.query(tenant="contoso")] == ["t2", "t1"]
    assert [r.trace_id for r in trace.query(tenant="default")] == ["t0"]
    assert [r.trace_id for r in trace.query(top=1)] == ["t2"]
    trace.record("t1", "k", TraceStage.SKIPPED, actor="x")   # no tenant: the record keeps its own
    assert [r.trace_id for r in trace.query(tenant="contoso")] == ["t2", "t1"]


def test_with_manifest_commit_since(trace):
    trace.record("old", "k", TraceStage.MANIFEST_COMMIT, actor="g", start="2026-10-01T00:00:00+00:00",
                 fields={"manifestCommitId": "c0"})
    trace.record("new", "k", TraceStage.MANIFEST_COMMIT, actor="g", start=T0, fields={"manifestCommitId": "c1"},
                 tenant="contoso")
    trace.record("none", "k", TraceStage.RECEIVED, actor="acr", start=T0)
    assert sorted(r.trace_id for r in trace.with_manifest_commit()) == ["new", "old"]
    assert [r.trace_id for r in trace.with_manifest_commit("2026-11-01")] == ["new"]
    assert [r.trace_id for r in trace.with_manifest_commit(tenant="default")] == ["old"]


def test_concurrent_appends_lose_no_stage(trace):
    """Several workers append to one record at once: every stage lands (the ETag loop re-reads a changed row)."""
    trace.record("t", "k", TraceStage.RECEIVED, actor="acr", start=T0)
    errors = []

    def append(n: int) -> None:
        try:
            trace.record("t", "k", TraceStage.NOTIFIED.at(f"c{n}"), actor="flux-notify")
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    [row] = trace.rows_for_trace("t")
    assert not errors and sorted(s.name for s in row.stages) == sorted(
        ["received", *(f"notified@c{n}" for n in range(4))])


def test_every_record_field_has_its_column_and_survives_the_table_round_trip():
    from dataclasses import fields

    from core.adapters.trace import appended, to_entity, to_record
    from core.model.trace_record import COLUMNS, TraceRecord

    assert set(COLUMNS) == {f.name for f in fields(TraceRecord)} - {"stages"}
    record = appended(None, "t", "k", TraceStage.HLD_PR, actor="g", start=T0, at="2026-11-30T10:00:02+00:00",
                      fields={"pr": 12, "hldRepo": "https://h", "state": "soaking"}, detail={"pr": 12, "x": [1]},
                      tenant="contoso")
    assert to_record(to_entity(record)) == record and to_entity(record)["pr"] == "12"
    assert to_record({"traceId": "t", "targetKey": "k", "stages": '[{"stage": "x"}, 5]'}).stages[0].kind is None
