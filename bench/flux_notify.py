"""flux_notify: a manifest commit -> every Flux Receiver notified, through the running host (direct mode, warm).

Ten stand-in Receivers (devkit/flux_receiver.py: each validates the generic-hmac signature as notification-controller
does) serve the `prod` folder; one of them is slow (answers after `SLOW_S`, beyond the notifier's attempt timeout).
Each sample: an ACR push of the example HLD's frontend -> HLD commit -> generation -> manifest commit (seen on the
bare repo's ref, polled every 2 ms: t0) -> the generation run's flux-notify output binding -> the flux_notify_worker
-> nine healthy Receivers answer 200 (their arrival times: t1). The figure is max(t1) - t0 per commit, the slow one
excluded (it is the one that must not delay them; its calls are counted). Where the time goes comes from the trace:
the generation worker's `manifest-commit` stages (written after the commit, before its run returns) and each
`notified@<cluster>` stage, which carries the seconds since its notification run began.
"""
from __future__ import annotations

import json
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from bench.common import (
    EXAMPLE_HLD,
    EXAMPLE_MANIFESTS,
    LOG_DIR,
    BenchError,
    HookClient,
    acr_push,
    azurite,
    bare_repo,
    branch_head,
    devhost,
    host_settings,
    latency_ms,
    log_tail,
    ms,
    percentile,
    progress,
    result,
    wait_until,
)
from core.workers.flux_notify import Notifier, notification_body
from core.adapters.flux_receivers import FluxReceiver
from core.adapters.storage import Storage
from core.adapters.trace import TraceLog
from core.model.workitems import FluxNotify
from devkit.flux_receiver import StandInReceiver

TARGET_P99_S = 1.0
CLUSTERS = 10
SLOW_S = 3.0
WAIT_S = 30.0
FRONTEND = "fabrikam/frontend"


def _iso_seconds(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _trace_times(conn: str, tags: list[str]) -> dict[str, tuple[float, float]]:
    """tag -> (wall time generation finished recording the manifest commit on the trace, wall time the notification
    run began: a notified stage's time minus its seconds)."""
    trace = TraceLog(Storage(conn))
    times: dict[str, tuple[float, float]] = {}
    for tag in tags:
        recorded, began = 0.0, float("inf")
        for row in trace.query(service="frontend", tag=tag):
            for stage in row.stages:
                seconds = stage.detail.get("seconds")
                if stage.name == "manifest-commit":
                    recorded = max(recorded, _iso_seconds(stage.at))
                elif stage.name.startswith("notified@") and isinstance(seconds, (int, float)):
                    began = min(began, _iso_seconds(stage.at) - seconds)
        if recorded and began < float("inf"):
            times[tag] = (recorded, began)
    return times


def _direct_baseline(healthy: list[StandInReceiver], rounds: int) -> list[float]:
    """Seconds for the notifier alone, from this process, to have every healthy Receiver answer 200 (no queue, no
    host): the floor the queue hop is added to."""
    receivers = [FluxReceiver(f"direct-{i}", "prod", s.url, "unused", s.token.decode()) for i, s in enumerate(healthy)]
    notifier = Notifier()
    samples = []
    for n in range(rounds + 1):
        item = FluxNotify(f"direct:{n}", "direct", f"{n:040x}", envs=("prod",))
        sends = [(r, notification_body(item, r, "bench", "main")) for r in receivers]
        began = time.perf_counter()
        last = notifier.notify(sends)
        if not all(a.ok for a in last.values()):
            raise BenchError("direct baseline: a healthy stand-in did not accept the signed request")
        if n:   # the first round warms up
            samples.append(time.perf_counter() - began)
    return samples


def run(pushes: int = 20, warmup: int = 2, conn: str | None = None) -> dict:
    log = LOG_DIR / "flux_notify-devhost.log"
    stand_ins = [StandInReceiver(f"token-{i}-{uuid.uuid4().hex}", f"/hook/{uuid.uuid4().hex}",
                                 delay=SLOW_S if i == CLUSTERS - 1 else 0.0) for i in range(CLUSTERS)]
    healthy, slow = stand_ins[:-1], stand_ins[-1]
    with tempfile.TemporaryDirectory(prefix="bench-flux-") as tmp, azurite(conn) as storage_conn:
        for stand_in in stand_ins:
            stand_in.__enter__()
        try:
            work = Path(tmp)
            hld = bare_repo(work, EXAMPLE_HLD, name="hld")
            manifests = bare_repo(work, EXAMPLE_MANIFESTS, name="manifests")
            receivers = [{"cluster": f"prod-{i}" if s is not slow else "prod-slow", "env": "prod", "url": s.url,
                          "secretSetting": f"FLUX_TOKEN_{i}"} for i, s in enumerate(stand_ins)]
            tokens = {f"FLUX_TOKEN_{i}": s.token.decode() for i, s in enumerate(stand_ins)}
            settings = host_settings(storage_conn, work / "work", hld, manifests,
                                     FLUX_RECEIVERS=json.dumps(receivers), **tokens)
            run_id = uuid.uuid4().hex[:8]
            to_notified, to_first, tags, commits = [], [], [], []
            with devhost(settings, log) as url:
                hook = HookClient(url)
                progress(f"flux_notify: {warmup} warm-up + {pushes} manifest commits, {CLUSTERS} receivers "
                         f"(one answering after {SLOW_S:g} s)")
                for i in range(warmup + pushes):
                    tag = f"1.6.{i}"
                    before = branch_head(manifests)
                    if hook.post_acr(acr_push(f"flux-{run_id}-{i}", FRONTEND, tag)) != 202:
                        raise BenchError(f"push {i} was not accepted")
                    if wait_until(lambda: branch_head(manifests) != before, WAIT_S, 0.002) is None:
                        raise BenchError(f"no manifest commit within {WAIT_S:g} s for push {i}:\n{log_tail(log)}")
                    t0 = time.time()
                    commit = branch_head(manifests)

                    def arrivals() -> list[float]:
                        return [c.at for s in healthy for c in s.accepted() if json.loads(c.body)["commit"] == commit]

                    if wait_until(lambda: len(arrivals()) >= len(healthy), WAIT_S, 0.002) is None:
                        raise BenchError(f"receivers not all notified of {commit[:12]} within {WAIT_S:g} s "
                                         f"({len(arrivals())} of {len(healthy)}):\n{log_tail(log)}")
                    if i >= warmup:
                        times = arrivals()
                        to_notified.append(max(times) - t0)
                        to_first.append(min(times) - t0)
                        tags.append(tag)
                        commits.append(t0)
                hook.close()
            traced = _trace_times(storage_conn, tags)
            baseline = _direct_baseline(healthy, pushes)
        finally:
            for stand_in in stand_ins:
                stand_in.__exit__(None, None, None)
    samples = [(t0, traced[tag]) for tag, t0 in zip(tags, commits) if tag in traced]
    to_trace = [recorded - t0 for t0, (recorded, _) in samples]
    to_run = [began - recorded for _, (recorded, began) in samples]
    fan_out = [t1 - (traced[tag][1] - t0) for tag, t0, t1 in zip(tags, commits, to_notified) if tag in traced]
    slow_calls = len(slow.calls)
    figures = {"commits": pushes, "receivers": CLUSTERS, "slow_receiver_answers_after_s": SLOW_S,
               **latency_ms(to_notified), "first_receiver": latency_ms(to_first),
               "slow_receiver_calls": slow_calls}
    if samples:   # where the time goes, p50 / p99 of each leg
        figures["where"] = {name: [ms(percentile(values, 50)), ms(percentile(values, 99))] for name, values in (
            ("commit_to_trace_recorded_ms", to_trace), ("trace_to_notify_run_ms", to_run),
            ("run_to_all_healthy_ms", fan_out))}
    met = percentile(to_notified, 99) < TARGET_P99_S
    return result("flux_notify", figures, {"notifier_alone": latency_ms(baseline)},
                  f"manifest commit -> all {CLUSTERS - 1} healthy receivers notified: p99 < {TARGET_P99_S:g} s "
                  f"while the {CLUSTERS}th answers after {SLOW_S:g} s", met,
                  "t0 = the manifest commit seen on the bare repo (2 ms polling); t1 = a stand-in Receiver accepted the "
                  "signed request; through devhost, Azurite and the flux-notify queue (output binding wake-up)")
