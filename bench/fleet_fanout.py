"""fleet_fanout: one ACR push fanned out to 50 tenants (an HLD each, local bare repos, Azurite) -> time until all 50
HLD commits, vs 50 x the single-tenant push -> HLD commit of the same run.

In process, not under devhost (the fleet is given here; loading it from fleet.yaml is the fleet loader's job): the
webhook goes through `Intake.receive`, its work items onto the Azurite queue, and a listener stands in for the
host's queue trigger — it receives `batchSize` messages at a time (host.json) and runs one invocation per message
through the bump queue's `QueueWorker`, whose batch takes the other waiting messages and runs each tenant's share
side by side (core.workers.runners.TENANT_RUNS at once). Warm: every tenant's working copy is cloned by a warm-up
fan-out first. Bounded: every wait has a deadline; git talks to file:// remotes, storage to a loopback Azurite.

Where the time goes (reported as `cpu_per_tenant_ms`): the tenants' runs overlap in threads, so their wall time is
bounded by CPU, and the Python part of it by the GIL. Per tenant run, 85-120 ms of Python CPU (ruamel parsing the
HLD's config files several times per bump: target discovery, the edit, the verification; and ~15 Table requests
through the storage SDK: trace records and high-water marks, each a read then an etag'd write) and 60-85 ms of git
CPU (10 git processes: fetch, reset, ls-files, diff, add, write-tree, commit-tree, rev-parse x2, push), plus
Azurite's own CPU (one Node process serving every request). The Python part is serialised by the GIL: 50 x that
alone was 0.35-0.5x of 50 single-tenant latencies (~240 ms) in our runs on a loaded 2-core machine, so the 0.2x
target needs less Python work per bump (one parse per file, batched trace writes) or more worker processes
(FUNCTIONS_WORKER_PROCESS_COUNT), not more threads.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import (ACR_SECRET, EXAMPLE_HLD, EXAMPLE_MANIFESTS, ROOT, BenchError, acr_push, azurite, bare_repo,
                          branch_head, latency_ms, progress, result)
from core.adapters.storage import IMAGE_PUSHED, Storage
from core.model.fleet import Fleet, RepoRef, Tenant
from core.settings import load_settings
from core.wiring import Services
from core.workers.runners import TENANT_RUNS, BumpJob, QueuedMessage, QueueWorker

TENANTS = 50
TARGET_FACTOR = 0.2
WAIT_S = 180.0
FRONTEND = "fabrikam/frontend"


class _FleetServices(Services):
    """The process's services with a given fleet."""
    given: Fleet = Fleet(())

    @property
    def fleet(self) -> Fleet:
        return self.given


def _batch_size() -> int:
    return int(json.loads((ROOT / "host.json").read_text(encoding="utf-8"))["extensions"]["queues"]["batchSize"])


def _services(conn: str, work: Path, tenants: tuple[Tenant, ...]) -> _FleetServices:
    settings = load_settings({"AzureWebJobsStorage": conn, "ACR_WEBHOOK_SECRET": ACR_SECRET, "WRITE_MODE": "direct",
                              "WORK_DIR": str(work), "FLEET_REPO_URL": "file:///bench-fleet-given-in-process"})
    services = _FleetServices(settings)
    services.given = Fleet(tenants, "bench")
    return services


async def _listen(services: Services, worker: QueueWorker, batch: int, done, deadline: float) -> None:
    """The host's queue listener, roughly: receive up to `batch` messages, one invocation each, delete on success."""
    client = services.storage.queue(IMAGE_PUSHED)

    async def invoke(message) -> None:
        try:
            await worker.run(QueuedMessage(message.id, message.content, message.dequeue_count or 1))
        except Exception as exc:  # noqa: BLE001 - the host would retry it; here the deadline reports it
            progress(f"fleet_fanout: invocation failed: {type(exc).__name__}: {exc}")
            return
        await asyncio.to_thread(client.delete_message, message)

    while not done():
        if time.monotonic() > deadline:
            raise BenchError(f"not every HLD commit landed within {WAIT_S:g} s")
        messages = await asyncio.to_thread(lambda: list(client.receive_messages(max_messages=batch,
                                                                                visibility_timeout=120)))
        if messages:
            await asyncio.gather(*(invoke(m) for m in messages))
        else:
            await asyncio.sleep(0.01)


def _push(services: Services, worker: QueueWorker, batch: int, hlds: list[str], event_id: str, tag: str) -> float:
    """Seconds from the webhook until every repo in `hlds` has a new HLD commit."""
    before = {url: branch_head(url) for url in hlds}
    landed: dict[str, float] = {}

    def done() -> bool:
        for url in hlds:
            if url not in landed and branch_head(url) != before[url]:
                landed[url] = time.perf_counter()
        return len(landed) == len(hlds)

    async def run() -> float:
        began = time.perf_counter()
        accepted = await services.intake.receive("acr", {"authorization": f"Bearer {ACR_SECRET}",
                                                         "content-type": "application/json"}, {},
                                                 acr_push(event_id, FRONTEND, tag))
        if accepted.reply.status != 202:
            raise BenchError(f"push {event_id} answered {accepted.reply.status}: {accepted.reply.body}")
        client = services.storage.queue(IMAGE_PUSHED)
        for text in accepted.outputs.get(IMAGE_PUSHED, []):     # what the output binding writes
            await asyncio.to_thread(client.send_message, text)
        await services.intake.drain()                          # the rest, sent by intake itself
        await _listen(services, worker, batch, done, time.monotonic() + WAIT_S)
        return max(landed.values()) - began

    async def closing() -> float:
        try:
            return await run()
        finally:
            await services.aclose()

    return asyncio.run(closing())


def _cpu_per_tenant(before: os.times_result, after: os.times_result, runs: int) -> dict[str, float]:
    """CPU of the fan-outs per tenant run: this process (Python, GIL-bound) and its finished children (git; Azurite
    is still running, so not counted)."""
    python = (after.user - before.user) + (after.system - before.system)
    git = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"python": round(python / runs * 1000, 1), "git": round(git / runs * 1000, 1)}


def run(tenants: int = TENANTS, rounds: int = 3, singles: int = 5, conn: str | None = None) -> dict:
    batch = _batch_size()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp, azurite(conn) as storage_conn:
        work = Path(tmp)
        Storage(storage_conn).ensure()
        progress(f"fleet_fanout: {tenants} tenants' HLD and manifest repos")
        fleet = []
        for i in range(tenants):
            parent = work / f"t{i:02d}"
            parent.mkdir()
            fleet.append(Tenant(f"t{i:02d}", manifests=RepoRef(bare_repo(parent, EXAMPLE_MANIFESTS, name="manifests")),
                                hld=RepoRef(bare_repo(parent, EXAMPLE_HLD, name="hld"))))
        everyone = _services(storage_conn, work / "work", tuple(fleet))
        alone = _services(storage_conn, work / "work", (fleet[0],))
        fan_worker = QueueWorker(IMAGE_PUSHED, lambda: BumpJob(everyone))
        one_worker = QueueWorker(IMAGE_PUSHED, lambda: BumpJob(alone))
        run_id, n = uuid.uuid4().hex[:8], 0
        all_hlds, first_hld = [t.hld.url for t in fleet], [fleet[0].hld.url]

        def tag() -> str:
            nonlocal n
            n += 1
            return f"3.0.{n}"

        progress("fleet_fanout: warm-up (every tenant's working copy)")
        _push(everyone, fan_worker, batch, all_hlds, f"fan-{run_id}-warm", tag())
        _push(alone, one_worker, batch, first_hld, f"one-{run_id}-warm", tag())
        single = []
        for i in range(singles):
            single.append(_push(alone, one_worker, batch, first_hld, f"one-{run_id}-{i}", tag()))
        progress(f"fleet_fanout: single-tenant push -> commit p50 {statistics.median(single) * 1000:.0f} ms; "
                 f"{rounds} fan-outs to {tenants}")
        before = os.times()
        fanned = [_push(everyone, fan_worker, batch, all_hlds, f"fan-{run_id}-{i}", tag()) for i in range(rounds)]
        after = os.times()
        for worker in (fan_worker, one_worker):
            worker.executor.shutdown(wait=True)
    serial = tenants * statistics.median(single)
    factor = round(statistics.median(fanned) / serial, 3)
    return result("fleet_fanout",
                  {"tenants": tenants, "rounds": rounds, "all_commits": latency_ms(fanned), "vs_serial": factor,
                   "batch_size": batch, "tenant_runs": TENANT_RUNS,
                   "cpu_per_tenant_ms": _cpu_per_tenant(before, after, rounds * tenants)},
                  {"single_tenant_push_to_commit": latency_ms(single), f"x{tenants}_ms": round(serial * 1000, 1)},
                  f"one push to {tenants} tenants -> all {tenants} HLD commits in < {TARGET_FACTOR:g}x "
                  f"{tenants} single-tenant push -> commit of the same run", factor < TARGET_FACTOR,
                  "in process (intake -> Azurite queue -> a listener of host.json batchSize -> the bump QueueWorker); "
                  "direct mode, warm working copies, file:// remotes")
