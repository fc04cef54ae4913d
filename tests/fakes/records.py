"""Dict-backed fakes of the record stores (the ports in core/adapters: TraceStore, HighWaterStore, ReviewStore,
RunningStore, ClusterStore, PauseStore, ClaimStore). tests/contracts/ runs the same assertions against these and the
Table storage implementations, so a test that uses a fake tests behaviour the real store has.

Each fake keeps its rows in a dict under one lock (the Table implementations are atomic per row through ETags;
here the lock gives the same guarantee) and shares the pure row logic of its adapter where there is one.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timezone
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

import pytest

from core.adapters.cluster_records import Marked, in_matrix, matrix_order, running_row, serves_env
from core.adapters.highwater import HighWaterMark
from core.adapters.promotion_records import now_iso
from core.adapters.review_records import ReviewRecord
from core.model.fleet import DEFAULT_TENANT
from core.adapters.trace import Stage, appended, matches, newest, now_iso as trace_now, stage_name
from core.model.trace_record import TraceRecord


class FakeTrace:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], TraceRecord] = {}
        self._lock = threading.Lock()

    def record(self, trace_id: str, target_key: str, stage: Stage, *, actor: str, start: str = "",
               fields: Mapping[str, Any] | None = None, detail: Mapping[str, Any] | None = None,
               at: str | None = None, tenant: str | None = None) -> None:
        stage_name(stage)
        with self._lock:
            key = (trace_id, target_key)
            self.records[key] = appended(self.records.get(key), trace_id, target_key, stage, actor=actor,
                                         start=start, fields=fields, detail=detail, at=at or trace_now(),
                                         tenant=tenant)

    def rows_for_trace(self, trace_id: str) -> list[TraceRecord]:
        with self._lock:
            return [r for (t, _), r in self.records.items() if t == trace_id]

    def with_manifest_commit(self, since: str = "", tenant: str = "") -> list[TraceRecord]:
        with self._lock:
            return [r for r in self.records.values()
                    if r.manifest_commit_id and (not since or r.start >= since) and matches(r, tenant=tenant)]

    def query(self, *, service: str = "", env: str = "", image: str = "", tag: str = "", tenant: str = "",
              top: int = 50) -> list[TraceRecord]:
        with self._lock:
            found = [r for r in self.records.values()
                     if matches(r, service=service, env=env, image=image, tag=tag, tenant=tenant)]
        return newest(found, top)


class FakeHighWater:
    def __init__(self) -> None:
        self.marks: dict[tuple[str, str], HighWaterMark] = {}
        self._lock = threading.Lock()

    def get(self, repo_url: str, target_key: str) -> HighWaterMark | None:
        with self._lock:
            return self.marks.get((repo_url, target_key))

    def raise_to(self, repo_url: str, target_key: str, mark: HighWaterMark,
                 is_newer: Callable[[HighWaterMark, HighWaterMark], bool]) -> bool:
        with self._lock:
            current = self.marks.get((repo_url, target_key))
            if current is not None and not is_newer(mark, current):
                return False
            self.marks[(repo_url, target_key)] = mark
            return True


class FakeReviews:
    """One tenant's view (`for_tenant`) of rows shared by every tenant, keyed with the tenant like the Table's."""

    def __init__(self, tenant: str = DEFAULT_TENANT, rows: dict | None = None, lock: Any = None) -> None:
        self.tenant = tenant
        self.rows: dict[tuple[str, int, int, str], ReviewRecord] = {} if rows is None else rows
        self._lock = lock or threading.Lock()

    def for_tenant(self, tenant: str) -> "FakeReviews":
        return FakeReviews(tenant, self.rows, self._lock)

    def write(self, record: ReviewRecord) -> None:
        at = record.at.astimezone(timezone.utc)
        with self._lock:
            self.rows[(self.tenant, record.pr, record.iteration, at.isoformat())] = record

    def for_pr(self, pr: int) -> list[ReviewRecord]:
        with self._lock:
            return [self.rows[k] for k in sorted(k for k in self.rows if k[:2] == (self.tenant, pr))]


class FakeRunning:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def update(self, cluster: str, marked: Marked, *, state: str, at: str, start: str, image: str,
               revision: str, message: str = "") -> None:
        key = (marked.service, marked.env, cluster)
        with self._lock:
            row = running_row(self.rows.get(key), cluster, marked, state=state, at=at, start=start, image=image,
                              revision=revision, message=message)
            if row is not None:
                self.rows[key] = row

    def matrix(self, *, service: str = "", env: str = "") -> list[dict[str, Any]]:
        with self._lock:
            return matrix_order([dict(r) for r in self.rows.values() if in_matrix(r, service, env)])


class FakeClusters:
    def __init__(self) -> None:
        self.envs: dict[str, str] = {}

    def seen(self, cluster: str, envs: Sequence[str], at: str) -> None:
        self.envs[cluster] = ",".join(envs)

    def serving(self, env: str) -> list[str]:
        return sorted(c for c, envs in self.envs.items() if serves_env(envs, env))


class FakePauses:
    """One tenant's view (`for_tenant`) of pauses shared by every tenant; `listed` lists every tenant's, as the
    Table's does."""

    def __init__(self, tenant: str = DEFAULT_TENANT, rows: dict | None = None) -> None:
        self.tenant = tenant
        self.all_rows: dict[tuple[str, str, str], dict[str, Any]] = {} if rows is None else rows

    def for_tenant(self, tenant: str) -> "FakePauses":
        return FakePauses(tenant, self.all_rows)

    @property
    def rows(self) -> dict[tuple[str, str], dict[str, Any]]:
        """This tenant's rows by (service, env)."""
        return {(s, e): row for (t, s, e), row in self.all_rows.items() if t == self.tenant}

    def pause(self, service: str, env: str, reason: str, tag: str = "") -> None:
        self.all_rows[(self.tenant, service, env)] = {"service": service, "env": env, "reason": reason[:500],
                                                      "tag": tag, "state": "paused", "at": now_iso(),
                                                      "tenant": self.tenant}

    def reason(self, service: str, env: str) -> str:
        row = self.all_rows.get((self.tenant, service, env))
        return str(row["reason"] or "paused") if row and row["state"] == "paused" else ""

    def acknowledged(self, service: str, env: str) -> str:
        row = self.all_rows.get((self.tenant, service, env))
        return str(row["tag"]) if row and row["state"] == "resumed" else ""

    def acknowledge(self, service: str, env: str, tag: str) -> None:
        if self.reason(service, env):
            return
        self.all_rows[(self.tenant, service, env)] = {"service": service, "env": env, "reason": "", "tag": tag,
                                                      "state": "resumed", "at": now_iso(), "tenant": self.tenant}

    def resume(self, service: str, env: str) -> bool:
        row = self.all_rows.get((self.tenant, service, env))
        if not row or row["state"] != "paused":
            return False
        row.update(state="resumed", resumedAt=now_iso())
        return True

    def listed(self) -> list[dict[str, Any]]:
        return [{"service": r["service"], "env": r["env"], "reason": r["reason"], "at": r["at"], "tenant": r["tenant"]}
                for r in self.all_rows.values() if r["state"] == "paused"]


class FakeClaims:
    """One tenant's view (`for_tenant`) of claims shared by every tenant."""

    def __init__(self, tenant: str = DEFAULT_TENANT, rows: dict | None = None, lock: Any = None) -> None:
        self.tenant = tenant
        self.all_rows: dict[tuple[str, str, str, str], dict[str, Any]] = {} if rows is None else rows
        self._lock = lock or threading.Lock()

    def for_tenant(self, tenant: str) -> "FakeClaims":
        return FakeClaims(tenant, self.all_rows, self._lock)

    @property
    def rows(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """This tenant's claims by (service, env, tag)."""
        with self._lock:
            return {k[1:]: row for k, row in self.all_rows.items() if k[0] == self.tenant}

    def claim(self, service: str, env: str, tag: str, trace_id: str) -> bool:
        with self._lock:
            if (self.tenant, service, env, tag) in self.all_rows:
                return False
            self.all_rows[(self.tenant, service, env, tag)] = {"traceId": trace_id, "state": "claimed"}
            return True

    def claimed(self, service: str, env: str, tag: str) -> bool:
        with self._lock:
            return (self.tenant, service, env, tag) in self.all_rows

    def settle(self, service: str, env: str, tag: str, detail: dict[str, Any]) -> None:
        with self._lock:
            self.all_rows.setdefault((self.tenant, service, env, tag), {}).update(
                state="done", **{k: str(v) for k, v in detail.items() if v is not None})

    def release(self, service: str, env: str, tag: str) -> None:
        with self._lock:
            self.all_rows.pop((self.tenant, service, env, tag), None)


@dataclass
class FakeRecords:
    """Every record store, as the wired Services name them (`services.trace`, `services.high_water`, ...)."""
    trace: FakeTrace = field(default_factory=FakeTrace)
    high_water: FakeHighWater = field(default_factory=FakeHighWater)
    review_records: FakeReviews = field(default_factory=FakeReviews)
    running: FakeRunning = field(default_factory=FakeRunning)
    clusters: FakeClusters = field(default_factory=FakeClusters)
    pauses: FakePauses = field(default_factory=FakePauses)
    claims: FakeClaims = field(default_factory=FakeClaims)

    def stores(self) -> dict[str, Any]:
        return dict(vars(self))


@pytest.fixture
def records() -> FakeRecords:
    """Fresh fake record stores (import this fixture into a test module)."""
    return FakeRecords()


def fake_services(settings: Any, **more: Any) -> SimpleNamespace:
    """A services object for workers under test: the fake record stores plus `settings` and whatever else is given
    (a workspace factory, a bump service, ...); no `storage`, so code that reaches Azurite fails loudly."""
    records = more.pop("records", None) or FakeRecords()
    return SimpleNamespace(settings=settings, records=records, **records.stores(), **more)


def table_records(storage: Any) -> FakeRecords:
    """The Table storage stores (core/adapters) in the fakes' places: for the end-to-end cases that prove them."""
    from core.adapters.cluster_records import ClusterRegistry, RunningLog
    from core.adapters.highwater import HighWaterMarks
    from core.adapters.promotion_records import Claims, Pauses
    from core.adapters.review_records import ReviewRecords
    from core.adapters.trace import TraceLog

    return FakeRecords(trace=TraceLog(storage), high_water=HighWaterMarks(storage),
                       review_records=ReviewRecords(storage), running=RunningLog(storage),
                       clusters=ClusterRegistry(storage), pauses=Pauses(storage), claims=Claims(storage))


def install(monkeypatch: Any, records: FakeRecords | None = None) -> FakeRecords:
    """Make every `core.wiring.Services` (the app's, the CLI's) use these fakes as its record stores."""
    from core.wiring import Services

    records = records or FakeRecords()
    for name, store in records.stores().items():
        monkeypatch.setattr(Services, name, property(lambda self, store=store: store))
    return records
