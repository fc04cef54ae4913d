"""scale: one push -> HLD commit (`BumpService.process`, direct mode, warm working copy) in a Bedrock HLD of a few
services vs one of many (1 ring each); the figure is the ratio of the two p50s.

Each size is bounded in time as well as in count: a size stops sampling once it has spent `budget_s`, keeping at
least `min_bumps` samples, so a slow large HLD cannot make the run unbounded.
"""
from __future__ import annotations

import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from bench.common import (REGISTRY, BenchError, azurite, bedrock_hld_repo, files_at, latency_ms, progress, result,
                          ring_config, service_name, service_repository, tag_in)
from core.workers.bump import BumpService
from core.wiring import Services
from core.settings import load_settings
from core.model.workitems import ImagePushed, new_trace_id

TARGET_RATIO = 1.3  # issue #13: push -> commit on 1,000 services within 1.3x of 10 services


def push_item(service: str, tag: str) -> ImagePushed:
    """The work item intake would queue for an ACR push of `service`'s image."""
    now = datetime.now(timezone.utc).isoformat()
    event = f"bench-{uuid.uuid4().hex}"
    return ImagePushed(event_id=f"acr:{event}", trace_id=new_trace_id(), registry=REGISTRY,
                       repository=service_repository(service), tag=tag, digest="",
                       media_type="application/vnd.docker.distribution.manifest.v2+json", pushed_at=now,
                       acr_event_id=event, received_at=now)


def bump_service(hld_url: str, conn: str, work_dir: Path) -> BumpService:
    """The bump worker's service as `core.wiring` wires it: direct mode, working copies under `work_dir`."""
    return Services(load_settings({"AzureWebJobsStorage": conn, "HLD_REPO_URL": hld_url, "WRITE_MODE": "direct",
                                   "WORK_DIR": str(work_dir)})).bump


def _sample(parent: Path, conn: str, services: int, bumps: int, warmup: int, min_bumps: int,
            budget_s: float) -> list[float]:
    names = [service_name(i) for i in range(services)]
    url = bedrock_hld_repo(parent, names, name=f"hld-{services}")
    service = bump_service(url, conn, parent / f"work-{services}")
    bumped = names[services // 2]
    samples: list[float] = []
    spent = 0.0
    for i in range(warmup + bumps):
        tag = f"1.1.{i}"
        began = time.perf_counter()
        landed = service.process([push_item(bumped, tag)])
        elapsed = time.perf_counter() - began
        config = ring_config(bumped)
        if landed.commit is None or tag_in(files_at(url, landed.commit, [config])[config]) != tag:
            raise BenchError(f"bump of {bumped} to {tag} in the {services}-service HLD did not land")
        if i >= warmup:
            samples.append(elapsed)
            spent += elapsed
            if spent > budget_s and len(samples) >= min_bumps:
                break
    return samples


def run(small: int = 10, large: int = 1000, bumps: int = 15, warmup: int = 1, min_bumps: int = 5,
        budget_s: float = 30.0, conn: str | None = None) -> dict:
    measured = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, azurite(conn) as storage_conn:
        for services in (small, large):
            progress(f"scale: {services}-service HLD, up to {warmup} warm-up + {bumps} bumps")
            samples = _sample(Path(tmp), storage_conn, services, bumps, warmup, min_bumps, budget_s)
            measured[services] = {"services": services, "bumps": len(samples), **latency_ms(samples)}
    ratio = round(measured[large]["p50_ms"] / measured[small]["p50_ms"], 2)
    return result("scale", {**measured[large], "ratio_p50": ratio}, measured[small],
                  f"p50({large} services) / p50({small} services) < {TARGET_RATIO:g}", ratio < TARGET_RATIO,
                  "BumpService.process (wired by core.wiring) called directly: no HTTP, no queue polling; direct "
                  "mode, warm working copy; "
                  "Bedrock layout <project>/<service>/prod, one image per service")
