"""Promotion through clusters, on the running host, with a simulated Flux.

`python -m bench.promotion` (part of `make demo`): a manifest repo (light-weight flow, direct mode) whose
autopilot.yaml promotes dev -> prod with a soak of a few seconds; two simulated clusters, `dev-1` (serves dev) and
`prod-1` (serves prod), each "reconciling" every new head of the manifest branch and posting the Flux event to
`/api/hooks/flux` signed exactly as notification-controller's generic-hmac Provider does (the event marshalled as
compact JSON, `X-Signature: sha256=<hex HMAC-SHA256 of those bytes>`). Shown: push -> dev commit -> applied@dev-1
-> soak -> promotion commit to prod -> applied@prod-1, and the trace with every latency. The soak ends between two
Flux events, so the demo asks the host to run the `promotion_timer` function at once (the admin API, as in Azure)
rather than waiting for the next minute.

`python -m bench promotion` (bench line): soak 0, push -> applied@prod-1 (the last stage) against the same run's
push -> first manifest commit: the overhead of the loop (Flux event, ancestry, gate, promotion commit, second Flux
event). Target under 1.5x.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

from bench.common import (LOG_DIR, REGISTRY, ROOT, HookClient, acr_push, app_environment, azurite, bare_repo,
                          branch_head, devhost, host_settings, log_tail, progress, result, wait_until)
from core.workers.cluster_feedback import sign
from core.adapters.storage import Storage
from core.adapters.trace import TraceLog
from core.model.trace_record import StageEntry

FLUX_SECRET = "demo-flux-hmac-key"
WAIT_S = 60.0
TARGET_FACTOR = 1.5
LOG = LOG_DIR / "promotion-devhost.log"


def deployment(tag: str) -> str:
    return ("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n"
            f"      containers:\n      - name: web\n        image: {REGISTRY}/web:{tag}\n")


def policy(soak: str) -> str:
    return f"promotion:\n  - env: dev\n  - env: prod\n    soak: {soak}\n"


class SimulatedFlux:
    """One cluster's kustomize-controller + notification-controller, reduced to what the hook sees: every new head
    of the branch is "applied" and a ReconciliationSucceeded event for it is posted, signed with the Provider's key."""

    def __init__(self, hook: str, manifests: str, cluster: str, env: str, secret: str = FLUX_SECRET,
                 apply_s: float = 0.0):
        self.hook, self.manifests, self.cluster, self.env, self.secret = hook, manifests, cluster, env, secret
        self.apply_s = apply_s   # the demo's stand-in for kustomize-controller's fetch + apply + health check
        self.posted: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"flux-{cluster}")
        self._seen = branch_head(manifests)

    def __enter__(self) -> "SimulatedFlux":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def event(self, revision: str) -> bytes:
        body = {"involvedObject": {"kind": "Kustomization", "namespace": "flux-system", "name": self.env,
                                   "apiVersion": "kustomize.toolkit.fluxcd.io/v1"},
                "severity": "info", "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "message": "Reconciliation finished, next run in 10m", "reason": "ReconciliationSucceeded",
                "metadata": {"revision": f"main@sha1:{revision}", "cluster": self.cluster, "env": self.env},
                "reportingController": "kustomize-controller", "reportingInstance": "kustomize-controller-0"}
        return json.dumps(body, separators=(",", ":")).encode("utf-8")   # Go's json.Marshal is compact

    def post(self, revision: str) -> int:
        body = self.event(revision)
        request = urllib.request.Request(self.hook, data=body, method="POST", headers={
            "Content-Type": "application/json", "X-Signature": sign(body, self.secret),
            "gotk-component": "kustomize-controller"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:   # refused, reset, timed out: notification-controller retries too
            status = 0
        self.posted.append((revision, status))
        return status

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            head = branch_head(self.manifests)
            if head and head != self._seen:
                time.sleep(self.apply_s)
                if 200 <= self.post(head) < 300:
                    self._seen = head


def stages(trace: TraceLog, trace_id: str) -> dict[str, StageEntry]:
    """Every stage of the push's records, by name (the first of each)."""
    found: dict[str, StageEntry] = {}
    for row in trace.rows_for_trace(trace_id):
        for stage in row.stages:
            found.setdefault(stage.name, stage)
    return found


def run_admin_timer(url: str) -> int:
    request = urllib.request.Request(f"{url}/admin/functions/promotion_timer", data=b'{"input": ""}', method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def one_push(url: str, conn: str, manifests: str, tag: str, *, soak_s: float, say=print) -> dict[str, float]:
    """Push `tag`, follow it to applied@prod-1; the trace's latencies (seconds from the push) by stage."""
    trace = TraceLog(Storage(conn))
    event = f"promo-{uuid.uuid4().hex[:12]}"
    client = HookClient(url)
    status = client.post_acr(acr_push(event, "web", tag, REGISTRY))
    client.close()
    if status != 202:
        raise RuntimeError(f"ACR webhook answered HTTP {status}")
    say(f"pushed {REGISTRY}/web:{tag}: HTTP 202")
    trace_id = ""

    def find() -> bool:
        nonlocal trace_id
        rows = trace.query(tag=tag, top=5)
        trace_id = rows[0].trace_id if rows else ""
        return bool(trace_id) and "applied@dev-1" in stages(trace, trace_id)

    if wait_until(find, WAIT_S, 0.05) is None:
        raise RuntimeError(f"no applied@dev-1 for {tag} within {WAIT_S:g} s\n{log_tail(LOG)}")
    seen = stages(trace, trace_id)
    say(f"  dev commit +{seen['manifest-commit'].latency_seconds:.2f}s, applied@dev-1 "
        f"+{seen['applied@dev-1'].latency_seconds:.2f}s")
    if soak_s:
        say(f"  soaking {soak_s:g} s in dev, then the promotion timer runs (admin API)")
        time.sleep(soak_s + 0.2)
        run_admin_timer(url)
    if wait_until(lambda: "applied@prod-1" in stages(trace, trace_id), WAIT_S, 0.05) is None:
        raise RuntimeError(f"no applied@prod-1 for {tag} within {WAIT_S:g} s\n{log_tail(LOG)}")
    seen = stages(trace, trace_id)
    say(f"  promoted@prod +{seen['promoted@prod'].latency_seconds:.2f}s, applied@prod-1 "
        f"+{seen['applied@prod-1'].latency_seconds:.2f}s")
    return {name: float(s.latency_seconds) for name, s in seen.items() if s.latency_seconds is not None}


def _world(parent: Path, soak: str):
    manifests = bare_repo(parent, {"autopilot.yaml": policy(soak), "dev/web.yaml": deployment("1.0.0"),
                                   "prod/web.yaml": deployment("1.0.0")}, name="manifests")
    return manifests


def demo(conn: str | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="autopilot-promotion-") as tmp, azurite(conn) as conn:
        manifests = _world(Path(tmp), "3s")
        settings = host_settings(conn, Path(tmp) / "work", manifest_url=manifests, FLUX_WEBHOOK_SECRET=FLUX_SECRET)
        with devhost(settings, LOG) as url:
            print(f"host on {url}; manifest repo {manifests}; promotion: dev -> prod (soak 3s)", flush=True)
            hook = f"{url}/api/hooks/flux"
            print("simulated Flux: dev-1 (serves dev), prod-1 (serves prod), each applying a new head in 0.5 s",
                  flush=True)
            with SimulatedFlux(hook, manifests, "dev-1", "dev", apply_s=0.5), \
                    SimulatedFlux(hook, manifests, "prod-1", "prod", apply_s=0.5):
                one_push(url, conn, manifests, "1.1.0", soak_s=3.0, say=lambda m: print(m, flush=True))
        for args in (["trace", "--service", "web"], ["trace", "--matrix"]):
            print(f"\npython -m core.ops.cli {' '.join(args)}:", flush=True)
            shown = subprocess.run([sys.executable, "-m", "core.ops.cli", *args], cwd=ROOT,
                                   env=app_environment(settings), capture_output=True, text=True, timeout=60)
            print(shown.stdout or shown.stderr, end="", flush=True)
    print("promotion demo done: push -> dev -> applied@dev-1 -> soak -> prod -> applied@prod-1", flush=True)
    return 0


def run(rounds: int = 5, conn: str | None = None) -> dict:
    """Bench line: soak 0, push -> applied@prod-1 vs push -> dev manifest commit, same runs (medians)."""
    to_commit, to_last = [], []
    with tempfile.TemporaryDirectory(prefix="autopilot-promotion-") as tmp, azurite(conn) as conn:
        manifests = _world(Path(tmp), "0")
        settings = host_settings(conn, Path(tmp) / "work", manifest_url=manifests, FLUX_WEBHOOK_SECRET=FLUX_SECRET)
        with devhost(settings, LOG) as url:
            hook = f"{url}/api/hooks/flux"
            with SimulatedFlux(hook, manifests, "dev-1", "dev"), SimulatedFlux(hook, manifests, "prod-1", "prod"):
                for i in range(rounds + 1):   # the first round warms the working copies
                    seen = one_push(url, conn, manifests, f"1.{i + 1}.0", soak_s=0, say=progress)
                    if i:
                        to_commit.append(seen["manifest-commit"])
                        to_last.append(seen["applied@prod-1"])
    commit_s, last_s = sorted(to_commit)[len(to_commit) // 2], sorted(to_last)[len(to_last) // 2]
    factor = last_s / commit_s if commit_s > 0 else float("inf")
    return result("promotion", {"push_to_applied_last_stage_s_median": round(last_s, 3), "rounds": rounds,
                                "factor": round(factor, 2)},
                  {"push_to_manifest_commit_s_median": round(commit_s, 3)},
                  f"push -> applied on the last stage (soak 0) < {TARGET_FACTOR}x push -> manifest commit",
                  factor < TARGET_FACTOR)


if __name__ == "__main__":
    sys.exit(demo())
