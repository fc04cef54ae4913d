"""`python -m bench.demo` (`make demo`): the whole chain, unattended.

A private Azurite and `python -m devhost` on free ports, with fresh demo repos from `examples.demo_workspace` (direct
mode, helmrelease); an ACR push of the frontend image with a new tag; then the HLD commit, the manifest commit (a
HelmRelease under `prod/` carrying the tag), the Flux Receiver of the cluster serving `prod/` woken with a signed
request (a stand-in that validates it as notification-controller does), a push of an older tag (skipped: never
downgrade), the deployment trace (`python -m core.ops.cli trace`), and last the dashboard's URL (`/api/ops/dashboard?code=<this run's master key>`).
Run in a terminal, the host stays up for the dashboard until Enter or Ctrl-C; otherwise (CI, tests) it stops at
once. Everything it started is stopped. Exit 0, or 1 with "demo failed: <stage>: <what>".
"""
from __future__ import annotations

import http.client
import json
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import ContextManager, Iterator, TypeVar
from urllib.parse import urlsplit

from ruamel.yaml import YAML

from bench.common import (
    LOG_DIR,
    REGISTRY,
    ROOT,
    acr_push,
    app_environment,
    branch_head,
    devhost,
    files_at,
    git,
    log_tail,
    repo_path,
    wait_until,
)
from core.adapters.storage import Storage
from core.adapters.trace import TraceLog
from devkit.azurite import running_azurite
from devkit.flux_receiver import StandInReceiver
from examples.demo_workspace import prepare

REPOSITORY = "fabrikam/frontend"
NEW_TAG = "1.4.1"  # the demo repos are fresh: prod runs 1.3.2, dev 1.4.0
OLD_TAG = "1.0.0"  # older than what runs: skipped, never a downgrade
SECRETS = {"ACR_WEBHOOK_SECRET": "demo-acr-secret", "AZDO_WEBHOOK_SECRET": "demo-azdo-secret", "FUNCTIONS_KEY": ""}
WAIT_S = 30.0
TRACE_WAIT_S = 10.0
LOG = LOG_DIR / "demo-devhost.log"
FLUX_CLUSTER = "demo-prod"
FLUX_TOKEN = "demo-flux-token"
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


def call(url: str, method: str, path: str, key: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request to the host with the key in `x-functions-key` (never in a URL that could be logged)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", "x-functions-key": key,
                                                      **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def push_and_follow(url: str, key: str, hld: str, manifests: str, conn: str, flux: StandInReceiver) -> None:
    """Post the push; wait for the HLD commit, the manifest commit and the trace's manifest-commit stage."""
    hld_seed, manifests_seed = branch_head(hld), branch_head(manifests)
    event = f"demo-{uuid.uuid4().hex[:12]}"
    began = time.perf_counter()
    status = call(url, "POST", "/api/hooks/acr", key, acr_push(event, REPOSITORY, NEW_TAG, REGISTRY),
                  {"Authorization": f"Bearer {SECRETS['ACR_WEBHOOK_SECRET']}"})[0]
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
            stage.name for row in trace.query(tag=NEW_TAG) for stage in row.stages},
            TRACE_WAIT_S, 0.1) is None:
        raise DemoFailed("trace", f"no manifest-commit and notified@{FLUX_CLUSTER} stages in the trace within "
                                  f"{TRACE_WAIT_S:g} s")

    status = call(url, "POST", "/api/hooks/acr", key, acr_push(f"{event}-old", REPOSITORY, OLD_TAG, REGISTRY),
                  {"Authorization": f"Bearer {SECRETS['ACR_WEBHOOK_SECRET']}"})[0]
    if status != 202:
        raise DemoFailed("older push", f"ACR webhook answered HTTP {status}, expected 202")
    if wait_until(lambda: any(stage.name == "skipped" for row in trace.query(tag=OLD_TAG)
                              for stage in row.stages), WAIT_S, 0.1) is None:
        raise DemoFailed("older push", f"no skipped stage for {OLD_TAG} in the trace within {WAIT_S:g} s")
    say(f"pushed {REPOSITORY}:{OLD_TAG}: skipped (older than what runs; never a downgrade)")


def check_dashboard(url: str, key: str) -> str:
    """The dashboard's URL, once its data answers with the deployed push in it."""
    status, body = call(url, "GET", "/api/ops/dashboard/data", key)
    if status != 200:
        raise DemoFailed("dashboard", f"/api/ops/dashboard/data answered HTTP {status}: {body[:200]!r}")
    data = json.loads(body)
    if not any(row["state"] == "deployed" and row.get("imageTag") == NEW_TAG for row in data["deployments"]):
        raise DemoFailed("dashboard", f"no deployed {NEW_TAG} row in the dashboard's data")
    return f"{url}/api/ops/dashboard?code={key}"


def hold_for_viewer(dashboard: str) -> None:
    say(f"\ndashboard: {dashboard}")
    if not sys.stdin.isatty():
        say("(not a terminal: the host stops now; run `make demo` in a terminal to keep it up for the dashboard)")
        return
    say("the host stays up for the dashboard: press Enter (or Ctrl-C) to stop")
    try:
        sys.stdin.readline()
    except KeyboardInterrupt:
        pass


def print_trace(settings: dict[str, str]) -> None:
    say("\ndeployment trace (python -m core.ops.cli trace):")
    shown = subprocess.run([sys.executable, "-m", "core.ops.cli", "trace"], cwd=ROOT, env=app_environment(settings),
                           capture_output=True, text=True, timeout=60)
    print(shown.stdout, end="", flush=True)
    if shown.returncode != 0:
        raise DemoFailed("trace", f"python -m core.ops.cli trace exited {shown.returncode}: {shown.stderr.strip()}")


def demo(demo_dir: Path) -> None:
    repos = prepare(demo_dir, reset=True)
    say(f"demo repos: {repos['HLD_REPO_URL']} (HLD), {repos['MANIFEST_REPO_URL']} (manifests)")
    key = secrets.token_urlsafe(24)  # this run's master key: admin-level routes (the dashboard) need it
    with started("storage (Azurite)", running_azurite()) as conn:
        with started("Flux Receiver stand-in", StandInReceiver(FLUX_TOKEN, "/hook/demo")) as flux:
            receivers = [{"cluster": FLUX_CLUSTER, "env": "prod", "url": flux.url, "secretSetting": "FLUX_TOKEN_DEMO"}]
            settings = {**repos, **SECRETS, "FUNCTIONS_MASTER_KEY": key, "AzureWebJobsStorage": conn,
                        "FLUX_RECEIVERS": json.dumps(receivers), "FLUX_TOKEN_DEMO": FLUX_TOKEN}
            say(f"Flux Receiver stand-in for cluster {FLUX_CLUSTER} (serves prod/) on {flux.url}")
            with started("host (python -m devhost)", devhost(settings, LOG)) as url:
                say(f"host listening on {url} (log: {LOG.relative_to(ROOT)})")
                push_and_follow(url, key, repos["HLD_REPO_URL"], repos["MANIFEST_REPO_URL"], conn, flux)
                print_trace(settings)
                hold_for_viewer(check_dashboard(url, key))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="autopilot-demo-") as tmp:
        try:
            demo(Path(tmp) / "demo")
        except DemoFailed as exc:
            print(f"demo failed: {exc}", file=sys.stderr, flush=True)
            return 1
    say("demo done: push -> HLD commit -> manifest commit -> Flux woken, an older push skipped; Azurite and the host are stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
