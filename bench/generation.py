"""generation: manifests for a Bedrock HLD of ~300 components in 2 environments (helmrelease mode, no helm binary)
through `GenerationService.process` with warm working copies:

- full: into a manifest repo that has none of them;
- up to date: the same HLD commit again (the manifest repo already records it);
- no-op regeneration: a new HLD commit that changes no generated file (generated again, nothing committed).

Baseline: writing the same bytes to an empty folder with plain Python file writes.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import (
    EXAMPLE_MANIFESTS,
    BenchError,
    azurite,
    bare_repo,
    bedrock_hld_repo,
    branch_head,
    progress,
    result,
    secs,
    service_name,
)
from core.generate import generate
from core.workers.manifest_update import GenerationService
from core.adapters.git_workspace import GitWorkspace
from core.adapters.storage import Storage
from core.adapters.trace import TraceLog
from core.model.workitems import HldChanged
from devkit.gitrepos import push_files

TARGET_NOOP_S = 1.0
COMPONENTS_PER_SERVICE = 4  # service, ring, chart, static (write_bedrock_hld with one ring)
ENVIRONMENTS = ("prod", "dev")


def _copy_baseline(files, out: Path) -> float:
    began = time.perf_counter()
    for generated in files:
        target = out / generated.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(generated.content)
    return time.perf_counter() - began


def run(components: int = 300, conn: str | None = None) -> dict:
    services = max(1, components // COMPONENTS_PER_SERVICE)
    with tempfile.TemporaryDirectory(prefix="bench-generation-") as tmp, azurite(conn) as storage_conn:
        work = Path(tmp)
        hld = bedrock_hld_repo(work, [service_name(i) for i in range(services)], environments=ENVIRONMENTS)
        manifests = bare_repo(work, EXAMPLE_MANIFESTS, name="manifests")
        service = GenerationService(
            hld=GitWorkspace(hld, "main", base_dir=work / "work" / "generate"),
            manifests=GitWorkspace(manifests, "main", base_dir=work / "work" / "write"),
            hld_url=hld, manifest_url=manifests, mode="direct", helm_mode="helmrelease", helm_bin="",
            trace=TraceLog(Storage(storage_conn)), cache_dir=work / "work" / "components")
        service.hld.head()
        service.manifests.head()  # both working copies cloned: the runs below are warm
        progress(f"generation: {services} services ({services * COMPONENTS_PER_SERVICE} components) x "
                 f"{len(ENVIRONMENTS)} environments")

        def timed(n: int, expected: str) -> float:
            began = time.perf_counter()
            outcome = service.process([HldChanged(event_id=f"bench:{n}", trace_id=f"bench{n}", reason="push")])
            elapsed = time.perf_counter() - began
            if outcome.action != expected:
                raise BenchError(f"generation run {n}: {outcome.action}, expected {expected}")
            return elapsed

        full = timed(1, "committed")
        generated_head = branch_head(manifests)
        up_to_date = timed(2, "up-to-date")
        push_files(hld, "main", {"docs/README.md": "How this HLD is organised.\n"}, "Docs only")
        noop = timed(3, "unchanged")
        if branch_head(manifests) != generated_head:
            raise BenchError("the no-op regeneration committed to the manifest repo")
        began = time.perf_counter()
        generation = generate(work / "hld-tree", list(ENVIRONMENTS), helm_mode="helmrelease")
        generate_only = time.perf_counter() - began
        copy = _copy_baseline(generation.files, work / "copy")
    figures = {"components": len(generation.files) // len(ENVIRONMENTS), "environments": len(ENVIRONMENTS),
               "files": len(generation.files), "bytes": sum(len(f.content) for f in generation.files),
               "full_s": secs(full), "noop_regeneration_s": secs(noop), "up_to_date_s": secs(up_to_date),
               "generate_in_memory_s": secs(generate_only)}
    return result("generation", figures, {"plain_file_writes_s": secs(copy)},
                  f"no-op regeneration < {TARGET_NOOP_S:g} s", noop < TARGET_NOOP_S,
                  "GenerationService.process with warm working copies, helmrelease mode; no-op = a new HLD commit "
                  "(docs only) whose generation changes no file; up-to-date = the HLD commit the manifests "
                  "already record")
