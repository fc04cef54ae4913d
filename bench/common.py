"""What the benchmarks share: the one-line JSON report, percentiles, Azurite and a `python -m devhost` subprocess,
keep-alive webhook clients, ACR push bodies, Bedrock-style HLD trees, and reading bare repositories cheaply."""
from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

from devkit.azurite import clear_account, running_azurite
from devkit.gitrepos import bare_repo, git, repo_path

ROOT = Path(__file__).resolve().parent.parent

REGISTRY = "fabrikam.azurecr.io"
PROJECT = "fabrikam-project"
ACR_SECRET = "bench-acr-secret"
EXAMPLE_HLD = ROOT / "examples" / "hld"
EXAMPLE_MANIFESTS = ROOT / "examples" / "manifests"
HOST_START_TIMEOUT_S = 30.0
LOG_DIR = ROOT / ".local" / "bench"  # host logs stay here after a run, for a look at what went wrong


class BenchError(RuntimeError):
    """A benchmark could not run (a process did not start, a wait ran out); the message says which."""


# -- figures and the report ----------------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    if not values:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def secs(seconds: float) -> float:
    return round(seconds, 3)


def latency_ms(samples: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max of samples given in seconds, in milliseconds."""
    return {"p50_ms": ms(percentile(samples, 50)), "p99_ms": ms(percentile(samples, 99)), "max_ms": ms(max(samples))}


def result(name: str, figures: Mapping[str, Any], baseline: Mapping[str, Any] | None, target: str, met: bool,
           note: str = "") -> dict[str, Any]:
    line: dict[str, Any] = {"benchmark": name, **figures}
    if baseline is not None:
        line["baseline"] = dict(baseline)
    line.update(target=target, met=bool(met))
    if note:
        line["note"] = note
    return line


def emit(line: Mapping[str, Any]) -> None:
    print(json.dumps(line, separators=(", ", ": ")), flush=True)


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> float | None:
    """perf_counter() at the first check where `predicate()` held, or None after `timeout` seconds."""
    deadline = time.perf_counter() + timeout
    while True:
        if predicate():
            return time.perf_counter()
        if time.perf_counter() >= deadline:
            return None
        time.sleep(interval)


def concurrently(clients: int, total: int, call: Callable[[int, int], object]) -> tuple[list[float], float]:
    """Run `call(worker, i)` for i in range(total) on `clients` threads; (per-call seconds, wall seconds)."""
    samples: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def worker(w: int) -> None:
        start.wait()
        try:
            for i in range(w, total, clients):
                began = time.perf_counter()
                call(w, i)
                samples[w].append(time.perf_counter() - began)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    if errors:
        raise errors[0]
    return [s for per in samples for s in per], wall


# -- storage -------------------------------------------------------------------------------------------------------

@contextmanager
def azurite(conn: str | None = None) -> Iterator[str]:
    """A connection string to an empty Azurite account: `conn` cleared, else a private Azurite for the block."""
    if conn is not None:
        clear_account(conn)
        yield conn
        return
    with running_azurite() as started:
        yield started


# -- the host ------------------------------------------------------------------------------------------------------

def _app_setting_names() -> set[str]:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))
    return set(sample["Values"]) | {"WORK_DIR", "HELM_BIN", "APPLICATIONINSIGHTS_CONNECTION_STRING"}


def app_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any app setting it may carry (a developer's shell exports), plus
    `settings`: the host sees exactly what the benchmark configured."""
    names = _app_setting_names()
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("AzureWebJobs")}
    env.update(settings)
    return env


def host_settings(conn: str, work_dir: Path, hld_url: str = "", manifest_url: str = "",
                  **extra: str) -> dict[str, str]:
    """Direct mode, helmrelease, no function key, the benchmark's ACR secret."""
    return {"AzureWebJobsStorage": conn, "ACR_WEBHOOK_SECRET": ACR_SECRET, "AZDO_WEBHOOK_SECRET": "bench-azdo-secret",
            "HLD_REPO_URL": hld_url, "MANIFEST_REPO_URL": manifest_url, "WRITE_MODE": "direct",
            "HELM_MODE": "helmrelease", "WORK_DIR": str(work_dir), "FUNCTIONS_KEY": "", **extra}


def _pump(stream, lines: "queue.Queue[str]", log_path: Path) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace")
            log.write(text)
            log.flush()
            lines.put(text)


def log_tail(log_path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def devhost(settings: Mapping[str, str], log_path: Path, *, app: str = "function_app",
            grace_seconds: float = 5.0) -> Iterator[str]:
    """`python -m devhost --port 0 --app <app>` with exactly `settings`; yields its base URL; SIGTERM (then SIGKILL
    of its process group) afterwards. Its output goes to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")  # one log per host run; both writers below append
    with open(log_path, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--port", "0", "--app", app, "--script-root", str(ROOT),
             "--grace", str(grace_seconds)],
            cwd=ROOT, env=app_environment(settings), stdout=subprocess.PIPE, stderr=err, start_new_session=True)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines, log_path), daemon=True).start()
    try:
        deadline = time.monotonic() + HOST_START_TIMEOUT_S
        url = ""
        while not url:
            if time.monotonic() > deadline:
                raise BenchError(f"devhost did not start within {HOST_START_TIMEOUT_S:g} s; log {log_path}")
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                if proc.poll() is not None:
                    raise BenchError(f"devhost exited with code {proc.returncode}:\n{log_tail(log_path)}") from None
                continue
            if line.startswith("devhost listening on "):
                url = line.split(" on ", 1)[1].strip()
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_seconds + 10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


class HookClient:
    """One keep-alive HTTP/1.1 connection posting ACR webhook deliveries to the host."""

    def __init__(self, base_url: str, secret: str = ACR_SECRET):
        parts = urlsplit(base_url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        self._conn: http.client.HTTPConnection | None = None

    def post_acr(self, body: bytes) -> int:
        """POST one delivery; the HTTP status. A keep-alive connection the server closed is reopened once."""
        reused = self._conn is not None
        try:
            return self._post(body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.close()
            if not reused:
                raise
            return self._post(body)

    def _post(self, body: bytes) -> int:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(*self._address, timeout=30)
        self._conn.request("POST", "/api/hooks/acr", body=body, headers=self._headers)
        response = self._conn.getresponse()
        response.read()
        if response.will_close:
            self.close()
        return response.status

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def acr_push(event_id: str, repository: str, tag: str, registry: str = REGISTRY) -> bytes:
    """An ACR webhook `push` delivery, as ACR sends it."""
    digest = hashlib.sha256(f"{registry}/{repository}:{tag}:{event_id}".encode()).hexdigest()
    return json.dumps({
        "id": event_id, "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"), "action": "push",
        "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                   "digest": f"sha256:{digest}", "repository": repository, "tag": tag},
        "request": {"host": registry},
    }).encode("utf-8")


# -- HLD trees and bare repositories ------------------------------------------------------------------------------

def service_name(index: int) -> str:
    return f"svc{index:04d}"


def service_repository(service: str) -> str:
    return f"fabrikam/{service}"


def ring_config(service: str, ring: str = "prod") -> str:
    """Repo-relative path of the Fabrikate config holding `service`'s image in `ring`."""
    return f"{PROJECT}/{service}/{ring}/config/common.yaml"


def _write(root: Path, files: Mapping[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def write_bedrock_hld(root: Path, services: Sequence[str], *, rings: Sequence[str] = ("prod",), tag: str = "1.0.0",
                      environments: Sequence[str] = ("prod",)) -> Path:
    """An HLD as bedrock-cli lays it out: `<project>/<service>/<ring>` with a Helm chart (a HelmRelease in
    helmrelease mode, so no helm binary and no network) and a static ingress route, one image per ring config.
    Components: 2 + per service 1 + 3 per ring."""
    files = {
        "autopilot.yaml": (f"environments: [{', '.join(environments)}]\nhelmMode: helmrelease\n"
                           "defaults:\n  ordering: semver\n"),
        "component.yaml": (f"name: default-component\nsubcomponents:\n- name: {PROJECT}\n  type: component\n"
                           f"  method: local\n  path: ./{PROJECT}\n"),
        f"{PROJECT}/component.yaml": f"name: {PROJECT}\nsubcomponents:\n" + "".join(
            f"- name: {s}\n  type: component\n  method: local\n  path: ./{s}\n" for s in services),
    }
    for service in services:
        files[f"{PROJECT}/{service}/component.yaml"] = f"name: {service}\nsubcomponents:\n" + "".join(
            f"- name: {r}\n  type: component\n  method: local\n  path: ./{r}\n" for r in rings)
        for ring in rings:
            base = f"{PROJECT}/{service}/{ring}"
            files[f"{base}/component.yaml"] = (
                f"name: {ring}\ntype: component\nsubcomponents:\n- name: chart\n  type: helm\n  method: helm\n"
                "  source: https://charts.fabrikam.example/stable\n  path: fabrikam-app\n  version: 2.1.0\n"
                "- name: static\n  type: static\n  method: local\n  path: ./static\n")
            files[ring_config(service, ring)] = (
                f"subcomponents:\n  chart:\n    config:\n      serviceName: {service}-{ring}\n      replicaCount: 2\n"
                f"      image:\n        repository: {REGISTRY}/{service_repository(service)}\n"
                f"        tag: \"{tag}\"\n")
            files[f"{base}/static/ingress-route.yaml"] = (
                f"apiVersion: traefik.containo.us/v1alpha1\nkind: IngressRoute\nmetadata:\n  name: {service}-{ring}\n"
                f"spec:\n  routes:\n  - kind: Rule\n    match: PathPrefix(`/{service}`) && Headers(`Ring`, `{ring}`)\n"
                f"    services:\n    - name: {service}-{ring}\n      port: 80\n")
    _write(root, files)
    return root


def bedrock_hld_repo(parent: Path, services: Sequence[str], name: str = "hld", **layout: Any) -> str:
    """A bare repo (file:// URL) seeded with `write_bedrock_hld(...)`."""
    return bare_repo(parent, write_bedrock_hld(parent / f"{name}-tree", services, **layout), name=name)


def branch_head(url: str, branch: str = "main") -> str | None:
    """The branch's sha in a local bare repo, read from the ref files (no git process: cheap to poll)."""
    path = repo_path(url)
    try:
        return (path / "refs" / "heads" / branch).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    try:
        for line in (path / "packed-refs").read_text(encoding="ascii").splitlines():
            sha, _, ref = line.partition(" ")
            if ref == f"refs/heads/{branch}":
                return sha
    except FileNotFoundError:
        pass
    return None


def files_at(url: str, ref: str, paths: Sequence[str]) -> dict[str, bytes | None]:
    """Contents of several paths at `ref` of a bare repo in one `git cat-file --batch` (None when missing)."""
    spec = "".join(f"{ref}:{p}\n" for p in paths).encode()
    out = subprocess.run(["git", "--git-dir", str(repo_path(url)), "cat-file", "--batch"], input=spec,
                         capture_output=True, check=True).stdout
    found: dict[str, bytes | None] = {}
    pos = 0
    for p in paths:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if header[-1] == b"missing":
            found[p] = None
            continue
        size = int(header[2])
        found[p] = out[pos:pos + size]
        pos += size + 1
    return found


def recent_messages(url: str, count: int = 10, ref: str = "main") -> str:
    """The full messages of the last `count` commits on `ref` of a bare repo, concatenated."""
    return git("--git-dir", str(repo_path(url)), "log", f"--max-count={count}", "--format=%B", ref).decode()


def commit_count(url: str, since: str, ref: str = "main") -> int:
    return int(git("--git-dir", str(repo_path(url)), "rev-list", "--count", f"{since}..{ref}").decode().strip())


def tag_in(config: bytes | None) -> str | None:
    """The image tag in a ring config written by `write_bedrock_hld` (or the examples)."""
    for line in (config or b"").decode().splitlines():
        key, _, value = line.strip().partition(":")
        if key == "tag":
            return value.strip().strip("\"'")
    return None
