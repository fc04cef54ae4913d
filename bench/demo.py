"""`python -m bench.demo` (`make demo`): the whole chain, unattended.

A private Azurite and `python -m devhost` on free ports, with fresh demo repos from `examples.demo_workspace` (direct
mode, helmrelease); an ACR push of the frontend image with a new tag; then the HLD commit, the manifest commit (a
HelmRelease under `prod/` carrying the tag), the Flux Receiver of the cluster serving `prod/` woken with a signed
request (a stand-in that validates it as notification-controller does) and the deployment trace
(`python -m core.admin trace`). Everything it started is stopped. Exit 0, or 1 with "demo failed: <stage>: <what>".
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import ContextManager, Iterator, TypeVar

from ruamel.yaml import YAML

from bench.common import (LOG_DIR, REGISTRY, ROOT, HookClient, acr_push, app_environment, branch_head, devhost,
                          files_at, git, log_tail, repo_path, wait_until)
from core.storage import Storage
from core.trace import TraceLog
from examples.demo_workspace import prepare
from tests.azurite import running_azurite
from tests.flux_receiver import StandInReceiver

REPOSITORY = "fabrikam/frontend"
NEW_TAG = "1.4.1"  # the demo repos are fresh: prod runs 1.3.2, dev 1.4.0
SECRETS = {"ACR_WEBHOOK_SECRET": "demo-acr-secret", "AZDO_WEBHOOK_SECRET": "demo-azdo-secret", "FUNCTIONS_KEY": ""}
WAIT_S = 30.0
TRACE_WAIT_S = 10.0
FLUX_CLUSTER = "demo-prod"
FLUX_TOKEN = "demo-flux-token"
LOG = LOG_DIR / "demo-devhost.log"
T = TypeVar("T")


class DemoFailed(Exception):
    """A stage of the chain did not happen; the message names the stage and what was missing."""

    def __init__(self, stage: str, what: str):
        super().__init__(f"{stage}: {what}")


def say(message: str) -> None:
    print(message, flush=True)


def releases_with_tag(manifests_url: str, image: str, tag: str) -> list[str]:
    """Files under prod/ of the manifest repo's main holding a HelmRelease whose values run `image:tag`."""
    listed = git("--git-dir", str(repo_path(manifests_url)), "ls-tree", "-r", "--name-only", "main", "--", "prod/")
    paths = [p for p in listed.decode().splitlines() if p.endswith((".yaml", ".yml"))]
    found = []
    for path, content in files_at(manifests_url, "main", paths).items():
        for document in YAML(typ="safe").load_all((content or b"").decode()):
            if not isinstance(document, dict) or document.get("kind") != "HelmRelease":
                continue
            values = (document.get("spec") or {}).get("values") or {}
            pinned = values.get("image") if isinstance(values.get("image"), dict) else {}
            if pinned.get("repository") == image and str(pinned.get("tag")) == tag:
                found.append(path)
    return found


@contextmanager
def started(stage: str, context: ContextManager[T]) -> Iterator[T]:
    """`with context`, a failure to enter it reported as DemoFailed(stage)."""
    with ExitStack() as stack:
        try:
            value = stack.enter_context(context)
        except (RuntimeError, OSError) as exc:
            raise DemoFailed(stage, f"did not start: {exc}") from None
        yield value


def push_and_follow(url: str, hld: str, manifests: str, conn: str, flux: StandInReceiver) -> None:
    """Post the push; wait for the HLD commit, the manifest commit and the trace's manifest-commit stage."""
    hld_seed, manifests_seed = branch_head(hld), branch_head(manifests)
    event = f"demo-{uuid.uuid4().hex[:12]}"
    began = time.perf_counter()
    client = HookClient(url, SECRETS["ACR_WEBHOOK_SECRET"])
    status = client.post_acr(acr_push(event, REPOSITORY, NEW_TAG, REGISTRY))
    client.close()
    if status != 202:
        raise DemoFailed("push", f"ACR webhook answered HTTP {status}, expected 202")
    say(f"pushed {REGISTRY}/{REPOSITORY}:{NEW_TAG} (ACR event {event}): HTTP 202")

    if wait_until(lambda: branch_head(hld) != hld_seed, WAIT_S, 0.02) is None:
        raise DemoFailed("HLD", f"no HLD commit within {WAIT_S:g} s\n{log_tail(LOG)}")
    subject = git("--git-dir", str(repo_path(hld)), "log", "-1", "--format=%s", "main").decode().strip()
    say(f"HLD commit {branch_head(hld)[:7]} after {time.perf_counter() - began:.2f} s: {subject}")

    image = f"{REGISTRY}/{REPOSITORY}"
    landed = wait_until(lambda: branch_head(manifests) != manifests_seed
                        and bool(releases_with_tag(manifests, image, NEW_TAG)), WAIT_S, 0.05)
    if landed is None:
        raise DemoFailed("manifests", f"no manifest commit with a prod/ HelmRelease running {image}:{NEW_TAG} "
                                      f"within {WAIT_S:g} s\n{log_tail(LOG)}")
    say(f"manifest commit {branch_head(manifests)[:7]} after {landed - began:.2f} s: "
        f"{', '.join(releases_with_tag(manifests, image, NEW_TAG))} runs {NEW_TAG}")

    commit = branch_head(manifests)
    if not flux.wait_accepted(1, WAIT_S) or json.loads(flux.accepted()[0].body).get("commit") != commit:
        raise DemoFailed("flux", f"the Flux Receiver of {FLUX_CLUSTER} was not notified of {commit[:7]} within "
                                 f"{WAIT_S:g} s\n{log_tail(LOG)}")
    say(f"Flux Receiver of {FLUX_CLUSTER} woken after {time.perf_counter() - began:.2f} s "
        f"(X-Signature verified as notification-controller does)")

    trace = TraceLog(Storage(conn))
    if wait_until(lambda: {"manifest-commit", f"notified@{FLUX_CLUSTER}"} <= {
            stage["stage"] for row in trace.query(tag=NEW_TAG) for stage in row["stages"]},
            TRACE_WAIT_S, 0.1) is None:
        raise DemoFailed("trace", f"no manifest-commit and notified@{FLUX_CLUSTER} stages in the trace within "
                                  f"{TRACE_WAIT_S:g} s")


def print_trace(settings: dict[str, str]) -> None:
    say("\ndeployment trace (python -m core.admin trace):")
    shown = subprocess.run([sys.executable, "-m", "core.admin", "trace"], cwd=ROOT, env=app_environment(settings),
                           capture_output=True, text=True, timeout=60)
    print(shown.stdout, end="", flush=True)
    if shown.returncode != 0:
        raise DemoFailed("trace", f"python -m core.admin trace exited {shown.returncode}: {shown.stderr.strip()}")


def demo(demo_dir: Path) -> None:
    repos = prepare(demo_dir, reset=True)
    say(f"demo repos: {repos['HLD_REPO_URL']} (HLD), {repos['MANIFEST_REPO_URL']} (manifests)")
    with started("storage (Azurite)", running_azurite()) as conn:
        with started("Flux Receiver stand-in", StandInReceiver(FLUX_TOKEN, "/hook/demo")) as flux:
            receivers = [{"cluster": FLUX_CLUSTER, "env": "prod", "url": flux.url, "secretSetting": "FLUX_TOKEN_DEMO"}]
            settings = {**repos, **SECRETS, "AzureWebJobsStorage": conn, "FLUX_RECEIVERS": json.dumps(receivers),
                        "FLUX_TOKEN_DEMO": FLUX_TOKEN}
            say(f"Flux Receiver stand-in for cluster {FLUX_CLUSTER} (serves prod/) on {flux.url}")
            with started("host (python -m devhost)", devhost(settings, LOG)) as url:
                say(f"host listening on {url} (log: {LOG.relative_to(ROOT)})")
                push_and_follow(url, repos["HLD_REPO_URL"], repos["MANIFEST_REPO_URL"], conn, flux)
        print_trace(settings)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="autopilot-demo-") as tmp:
        try:
            demo(Path(tmp) / "demo")
        except DemoFailed as exc:
            print(f"demo failed: {exc}", file=sys.stderr, flush=True)
            return 1
    say("demo done: push -> HLD commit -> manifest commit -> Flux woken; Azurite and the host are stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
