"""Can the service do its work right now? Storage and queue depths, the configured repos, Azure DevOps, version.

Healthy (200) when every check passes; poison messages are reported as warnings, not failures, because the
service still works and an operator decides what to replay. Nothing secret is put in the report: repos are
named by role, git errors are scrubbed of credentials, and every failure text passes `redact` as well.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable

from azure.core.exceptions import AzureError, ClientAuthenticationError

import core
from core.azdo import AzdoError
from core.deliveries import DeliveryLog
from core.git_workspace import GitError, classify, clean_url, scrub, secret_forms
from core.services import Services
from core.settings import SettingsError
from core.storage import WORK_QUEUES, StorageUnavailable, poison_queue
from core.telemetry import redact

REPO_CACHE_SECONDS = 60.0
LS_REMOTE_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class HealthReport:
    status: int
    body: dict


@dataclass(frozen=True)
class RepoStatus:
    reachable: bool
    head: str = ""
    error: str = ""


def ls_remote(url: str, branch: str, auth_header: Callable[[], str] | None = None,
              timeout: float = LS_REMOTE_TIMEOUT_SECONDS) -> str:
    """Sha of `branch` on the remote, asked with `git ls-remote` and the Authorization header the workspace uses
    (given through git's environment config, so it shows neither in `ps` nor in error text)."""
    header = auth_header() if auth_header else ""
    config = [("credential.helper", "")] + ([("http.extraHeader", f"Authorization: {header}")] if header else [])
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "GIT_CONFIG_COUNT": str(len(config))}
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    target = clean_url(url)
    secrets = secret_forms(header) if header else ()
    try:
        run = subprocess.run(["git", "ls-remote", "--", target, f"refs/heads/{branch}"], env=env,
                             capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise GitError(scrub(f"git ls-remote {target} did not answer within {timeout:g} s", secrets)) from exc
    if run.returncode != 0:
        raise classify(f"git ls-remote {target}", run.stderr, secrets)
    for line in run.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    raise GitError(scrub(f"branch {branch!r} not found in {target}"))


class RepoProbe:
    """`ls_remote` answers (success or failure) cached per (url, branch) for `ttl` seconds in this process."""

    def __init__(self, ttl: float = REPO_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic,
                 timeout: float = LS_REMOTE_TIMEOUT_SECONDS):
        self._ttl = ttl
        self._clock = clock
        self._timeout = timeout
        self._cache: dict[tuple[str, str], tuple[float, RepoStatus]] = {}
        self._lock = threading.Lock()

    def check(self, url: str, branch: str, auth_header: Callable[[], str] | None) -> RepoStatus:
        key = (url, branch)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and self._clock() < cached[0]:
            return cached[1]
        try:
            status = RepoStatus(True, head=ls_remote(url, branch, auth_header, self._timeout))
        except GitError as exc:
            status = RepoStatus(False, error=str(exc))
        except ClientAuthenticationError as exc:
            status = RepoStatus(False, error=f"no Azure DevOps token for git: {exc.message}")
        with self._lock:
            self._cache[key] = (self._clock() + self._ttl, status)
        return status


def check_health(load_services: Callable[[], Services], probe: RepoProbe) -> HealthReport:
    """Run every check against the services `load_services()` wires (a settings error is itself a failure)."""
    body: dict = {"version": core.__version__}
    failing: list[str] = []
    warnings: list[str] = []
    try:
        services = load_services()
    except SettingsError as exc:
        return _report(body, [f"settings: {exc}"], warnings)
    settings = services.settings

    queues: dict[str, dict[str, int]] = {}
    try:
        for name in WORK_QUEUES:
            queues[name] = {"depth": services.storage.queue_depth(name),
                            "poison": services.storage.queue_depth(poison_queue(name))}
        body["storage"] = {"reachable": True}
    except (StorageUnavailable, AzureError) as exc:
        body["storage"] = {"reachable": False}
        failing.append(f"storage: {exc if isinstance(exc, StorageUnavailable) else type(exc).__name__}")
    body["queues"] = queues
    for name, depth in queues.items():
        if depth["poison"]:
            warnings.append(f"{poison_queue(name)} holds {depth['poison']} message(s); inspect with "
                            f"`python -m core.admin replay --queue {name} --dry-run`")

    if body["storage"]["reachable"]:
        _outbox(services, body, warnings)

    repos: dict[str, dict] = {}
    for role, url, branch in (("hld", settings.hld_repo_url, settings.hld_branch),
                              ("manifest", settings.manifest_repo_url, settings.manifest_branch)):
        if not url:
            continue
        status = probe.check(url, branch, services.git_auth(url))
        repos[role] = {"reachable": status.reachable, "branch": branch}
        if status.reachable:
            repos[role]["head"] = status.head
        else:
            failing.append(f"{role} repo: {status.error}")
    body["repos"] = repos

    if settings.azdo_configured:
        try:
            body["azdo"] = {"reachable": True, "identityId": services.gateway.identity_id()}
        except AzdoError as exc:
            body["azdo"] = {"reachable": False}
            failing.append(f"azdo: {exc}")
    return _report(body, failing, warnings)


def _outbox(services: Services, body: dict, warnings: list[str]) -> None:
    """Accepted deliveries the outbox re-enqueued OUTBOX_MAX_REENQUEUES times without a worker taking them."""
    limit = services.settings.outbox_max_reenqueues
    try:
        stuck = DeliveryLog(services.storage).stuck(limit)
    except StorageUnavailable:
        return
    body["outbox"] = {"stuck": len(stuck)}
    if stuck:
        warnings.append(f"{len(stuck)} accepted deliveries re-enqueued {limit} times and still not taken by a "
                        f"worker (stuck): {', '.join(stuck[:5])}; is the worker for their "
                        "queue disabled or failing to start?")


def _report(body: dict, failing: list[str], warnings: list[str]) -> HealthReport:
    body = {"status": "unhealthy" if failing else "healthy", **body}
    if failing:
        body["failing"] = [redact(f) for f in failing]
    if warnings:
        body["warnings"] = warnings
    return HealthReport(503 if failing else 200, body)
