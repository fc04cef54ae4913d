"""Can the service do its work right now? Every store intake and workers use, the git and helm executables,
the configured repos, Azure DevOps, version.

Healthy (200) when every check passes; poison messages are reported as warnings, not failures, because the
service still works and an operator decides what to replay. Nothing secret is put in the report: repos are
named by role, git errors are scrubbed of credentials, and every failure text passes `redact` as well.

`check_health` is plain blocking code over injected probes (`HealthProbes`), safe to call from any thread
(e.g. `asyncio.to_thread`); the probes cache their answers so a health poll costs little.
"""
from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Callable

from azure.core.exceptions import AzureError, ClientAuthenticationError, ResourceNotFoundError
from azure.data.tables import TableErrorCode

import core
from core.adapters.azdo import AzdoError
from core.adapters.cluster_records import CLUSTERS_TABLE, RUNNING_TABLE
from core.adapters.deliveries import DELIVERIES_TABLE, JOURNAL_TABLE, DeliveryJournal
from core.adapters.fleet_source import FleetUnavailable
from core.adapters.git_runner import GIT_MISSING, GitError, GitRunner, clean_url, scrub
from core.model.fleet import Tenant
from core.adapters.highwater import HIGHWATER_TABLE
from core.adapters.promotion_records import PAUSES_TABLE, PROMOTIONS_TABLE, PauseStore
from core.adapters.review_records import REVIEW_TABLE
from core.wiring import Services
from core.settings import SettingsError
from core.adapters.storage import WORK_QUEUES, Storage, StorageUnavailable, poison_queue
from core.telemetry import redact
from core.adapters.trace import TRACE_TABLE

REPO_CACHE_SECONDS = 60.0
STORE_CACHE_SECONDS = 10.0
LS_REMOTE_TIMEOUT_SECONDS = 15.0
PAT_EXPIRY_WARNING_DAYS = 14     # Bedrock #248 asked for PAT expiry in the operators' view
# Every table intake and the workers read or write; a store they need that does not answer is a failure.
TABLES = (DELIVERIES_TABLE, JOURNAL_TABLE, TRACE_TABLE, HIGHWATER_TABLE, REVIEW_TABLE, RUNNING_TABLE, CLUSTERS_TABLE,
          PROMOTIONS_TABLE, PAUSES_TABLE)
HEALTH_KEY = "~health"  # a row key no table holds: the point read answers "not found" when the table is fine


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
    """Sha of `branch` on the remote, asked with `git ls-remote` and the Authorization header the workspace uses."""
    target = clean_url(url)
    run = GitRunner(auth_header=auth_header, timeout=timeout).run(
        "ls-remote", "--", target, f"refs/heads/{branch}", network=True).checked(f"git ls-remote {target}")
    for line in run.out.splitlines():
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


@dataclass(frozen=True)
class StoreStatus:
    queues: dict[str, dict[str, int]]  # depth and poison depth of each work queue that answered
    failing: tuple[str, ...]           # one line per store that did not answer, naming it


class StoreProbe:
    """The work queues (and their poison queues) and every table, checked at most once per `ttl` seconds for a
    given `Storage` (a new one, e.g. after the settings changed, is checked at once)."""

    def __init__(self, ttl: float = STORE_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic,
                 tables: tuple[str, ...] = TABLES, queues: tuple[str, ...] = WORK_QUEUES):
        self._ttl = ttl
        self._clock = clock
        self._tables = tables
        self._queues = queues
        self._cached: tuple[Storage, float, StoreStatus] | None = None
        self._lock = threading.Lock()

    def check(self, storage: Storage) -> StoreStatus:
        with self._lock:
            cached = self._cached
        if cached is not None and cached[0] is storage and self._clock() < cached[1]:
            return cached[2]
        failing: list[str] = []
        queues = self._check_queues(storage, failing)
        self._check_tables(storage, failing)
        status = StoreStatus(queues, tuple(failing))
        with self._lock:
            self._cached = (storage, self._clock() + self._ttl, status)
        return status

    def _check_queues(self, storage: Storage, failing: list[str]) -> dict[str, dict[str, int]]:
        queues: dict[str, dict[str, int]] = {}
        for name in self._queues:
            try:
                queues[name] = {"depth": storage.queue_depth(name), "poison": storage.queue_depth(poison_queue(name))}
            except (StorageUnavailable, AzureError) as exc:
                failing.append(_store_failure(f"queue {name}", exc))
                break  # the other queues are behind the same endpoint: do not wait for each to time out
        return queues

    def _check_tables(self, storage: Storage, failing: list[str]) -> None:
        for name in self._tables:
            try:
                storage.table(name).get_entity(HEALTH_KEY, HEALTH_KEY)
            except ResourceNotFoundError as exc:
                if exc.error_code == TableErrorCode.TABLE_NOT_FOUND:
                    failing.append(f"storage: table {name} was deleted (restart the app: it creates its tables "
                                   "on first use)")
            except (StorageUnavailable, AzureError) as exc:
                failing.append(_store_failure(f"table {name}", exc))
                break


def _store_failure(store: str, exc: Exception) -> str:
    """`storage: <store>: <what>`, without the SDK's multi-line text (which can quote request headers);
    `StorageUnavailable` already names its store."""
    return f"storage: {exc}" if isinstance(exc, StorageUnavailable) else f"storage: {store}: {type(exc).__name__}"


class OutboxProbe:
    """The outbox's stuck deliveries (16 range queries), asked at most once per `ttl` seconds for a given journal:
    the count only changes when the outbox timer runs (each minute), and health must stay cheap to poll."""

    def __init__(self, ttl: float = STORE_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl
        self._clock = clock
        self._cached: tuple[DeliveryJournal, int, float, list[str]] | None = None
        self._lock = threading.Lock()

    def stuck(self, journal: DeliveryJournal, limit: int) -> list[str]:
        with self._lock:
            cached = self._cached
        if cached is not None and cached[0] is journal and cached[1] == limit and self._clock() < cached[2]:
            return cached[3]
        found = journal.stuck(limit)
        with self._lock:
            self._cached = (journal, limit, self._clock() + self._ttl, found)
        return found


@dataclass
class HealthProbes:
    """What `check_health` asks; one per process so the caches span requests. `which` finds executables."""
    repos: RepoProbe = field(default_factory=RepoProbe)
    stores: StoreProbe = field(default_factory=StoreProbe)
    outbox: OutboxProbe = field(default_factory=OutboxProbe)
    which: Callable[[str], str | None] = shutil.which
    today: Callable[[], date] = field(default=lambda: datetime.now(timezone.utc).date())


def check_health(load_services: Callable[[], Services], probes: HealthProbes) -> HealthReport:
    """Run every check against the services `load_services()` wires (a settings error is itself a failure)."""
    body: dict = {"version": core.__version__}
    failing: list[str] = []
    warnings: list[str] = []
    try:
        services = load_services()
    except SettingsError as exc:
        return _report(body, [f"settings: {exc}"], warnings)
    settings = services.settings
    if settings.flux.receivers or settings.flux.problems:
        # Bad FLUX_RECEIVERS entries are a configuration failure like any other setting (the good entries are
        # still notified); no URL or token is shown, only the cluster names.
        body["flux"] = {"receivers": [r.cluster for r in settings.flux.receivers]}
        failing += [f"flux: {problem}" for problem in settings.flux.problems]

    stores = probes.stores.check(services.storage)
    body["storage"] = {"reachable": not stores.failing}
    body["queues"] = stores.queues
    failing += stores.failing
    for name, depth in stores.queues.items():
        if depth["poison"]:
            warnings.append(f"{poison_queue(name)} holds {depth['poison']} message(s); inspect with "
                            f"`python -m core.ops.cli replay --queue {name} --dry-run`")

    if not stores.failing:
        warnings += _paused_warnings(services.pauses)

    has_git = probes.which("git") is not None
    tools = {"git": has_git}
    if not has_git:
        failing.append(f"git: {GIT_MISSING}")
    if settings.helm_mode == "rendered":
        helm = settings.helm_bin or "helm"
        tools["helm"] = probes.which(helm) is not None
        if not tools["helm"]:
            failing.append(f"helm: helm executable {helm!r} not found but HELM_MODE=rendered needs it; build the "
                           "container image with --build-arg INSTALL_HELM=true or set HELM_MODE=helmrelease")
    body["tools"] = tools
    if body["storage"]["reachable"]:
        _outbox(services, probes.outbox, body, warnings)

    repos: dict[str, dict] = {}
    for role, url, branch in (("hld", settings.hld_repo_url, settings.hld_branch),
                              ("manifest", settings.manifest_repo_url, settings.manifest_branch)):
        if not url or not has_git:  # without git nothing can be asked of a remote; the git failure says why
            continue
        status = probes.repos.check(url, branch, services.git_auth(url))
        repos[role] = {"reachable": status.reachable, "branch": branch}
        if status.reachable:
            repos[role]["head"] = status.head
        else:
            failing.append(f"{role} repo: {status.error}")
    body["repos"] = repos

    _fleet(services, probes, body, failing, warnings, has_git)

    if settings.azdo_configured:
        try:
            body["azdo"] = {"reachable": True, "identityId": services.gateway.identity_id()}
        except AzdoError as exc:
            body["azdo"] = {"reachable": False}
            failing.append(f"azdo: {exc}")
    return _report(body, failing, warnings)


def _fleet(services: Services, probes: HealthProbes, body: dict, failing: list[str], warnings: list[str],
           has_git: bool) -> None:
    """The fleet's source (commit, last load error) and, per tenant, its repos and credential status. One tenant's
    problem is a warning naming it, not a failure: the other tenants are served (isolation)."""
    source = services.fleet_source
    try:
        fleet = services.fleet
    except FleetUnavailable as exc:
        fleet = None
        failing.append(f"fleet: {exc}")
    if source is not None:
        status = source.status()
        body["fleet"] = {"source": status.url, "branch": status.branch, "commit": status.commit or None,
                         "loadedAt": status.loaded_at or None}
        if status.error:
            body["fleet"]["error"] = redact(status.error)
            body["fleet"]["errorCommit"] = status.error_commit or None
            if fleet is not None:
                refused = f"commit {status.error_commit[:12]} refused" if status.error_commit else "not reloaded"
                warnings.append(redact(f"fleet: {refused}, still serving {status.commit[:12]}: {status.error}"))
    if fleet is None:
        return
    tenants = {}
    for tenant in fleet.tenants:
        entry, problems = _tenant(services, probes, tenant, has_git)
        tenants[tenant.name] = entry
        # Without a fleet repo the default tenant's repos are the app settings' repos, already failing above.
        warnings += [redact(f"tenant {tenant.name}: {p}") for p in problems
                     if source is not None or not p.startswith(("hld repo", "manifests repo"))]
    body["tenants"] = tenants
    if source is not None and services.settings.flux.receivers:
        warnings.append("FLUX_RECEIVERS is not used with a fleet: list each tenant's Receivers under its "
                        "flux.receivers in fleet.yaml")


def credential_status(tenant: Tenant, services: Services, today: date) -> tuple[dict, list[str]]:
    """How the tenant's work authenticates, and whether that can work: its PAT's app setting present, the PAT's
    `expires` not within PAT_EXPIRY_WARNING_DAYS; or the managed identity. Never the PAT itself."""
    if not tenant.pat_setting:
        return {"kind": "managed-identity"}, []
    present = bool(services.settings.app_setting(tenant.pat_setting))
    status: dict = {"kind": "pat", "setting": tenant.pat_setting, "present": present}
    problems = [] if present else [f"app setting {tenant.pat_setting} (its PAT) is not set: its repos cannot be "
                                   "read or written"]
    if tenant.pat_expires is not None:
        days = (tenant.pat_expires - today).days
        status.update(expires=tenant.pat_expires.isoformat(), expiresInDays=days,
                      expiring=days <= PAT_EXPIRY_WARNING_DAYS)
        if days < 0:
            problems.append(f"the PAT in {tenant.pat_setting} expired on {tenant.pat_expires.isoformat()}")
        elif days <= PAT_EXPIRY_WARNING_DAYS:
            problems.append(f"the PAT in {tenant.pat_setting} expires in {days} day(s), on "
                            f"{tenant.pat_expires.isoformat()}: renew it and update the setting (and expires)")
    return status, problems


def _tenant(services: Services, probes: HealthProbes, tenant: Tenant, has_git: bool) -> tuple[dict, list[str]]:
    credentials, problems = credential_status(tenant, services, probes.today())
    repos: dict[str, dict] = {}
    for role, ref in (("hld", tenant.hld), ("manifests", tenant.manifests)):
        if ref is None:
            continue
        repos[role] = {"branch": ref.branch}
        if not has_git or (tenant.pat_setting and not credentials["present"]):
            repos[role]["reachable"] = None      # not asked: without git or credentials the answer says nothing
            continue
        status = probes.repos.check(ref.url, ref.branch, services.for_tenant(tenant.name).git_auth(ref.url))
        repos[role]["reachable"] = status.reachable
        if status.reachable:
            repos[role]["head"] = status.head
        else:
            problems.append(f"{role} repo: {status.error}")
    entry = {"paused": tenant.paused, "writeMode": tenant.write_mode, "repos": repos, "credentials": credentials}
    if tenant.flux_secret_setting:   # its Flux events hook, /api/hooks/flux/<tenant>
        present = bool(services.settings.app_setting(tenant.flux_secret_setting))
        entry["fluxHook"] = {"setting": tenant.flux_secret_setting, "present": present}
        if not present:
            problems.append(f"app setting {tenant.flux_secret_setting} (its Flux events key) is not set: "
                            f"/api/hooks/flux/{tenant.name} answers 503")
    if tenant.flux_receivers:   # the Receivers its manifest commits wake (fleet.yaml flux.receivers)
        missing = [r for r in tenant.flux_receivers if not services.settings.app_setting(r.secret_setting)]
        entry["fluxReceivers"] = {"clusters": [r.cluster for r in tenant.flux_receivers],
                                  "missingSecrets": [r.secret_setting for r in missing]}
        problems += [f"app setting {r.secret_setting} (receiver {r.cluster}'s token) is not set: its commits do not "
                     f"wake cluster {r.cluster} (Flux still polls)" for r in missing]
    if tenant.paused:
        entry["note"] = "paused in fleet.yaml: takes no new pushes"
    return entry, problems


def _outbox(services: Services, probe: OutboxProbe, body: dict, warnings: list[str]) -> None:
    """Accepted deliveries the outbox re-enqueued OUTBOX_MAX_REENQUEUES times without a worker taking them."""
    limit = services.settings.outbox_max_reenqueues
    try:
        stuck = probe.stuck(services.deliveries, limit)
    except StorageUnavailable:
        return
    body["outbox"] = {"stuck": len(stuck)}
    if stuck:
        warnings.append(f"{len(stuck)} accepted deliveries re-enqueued {limit} times and still not taken by a "
                        f"worker (stuck): {', '.join(stuck[:5])}; is the worker for their "
                        "queue disabled or failing to start?")


def _paused_warnings(pauses: PauseStore) -> list[str]:
    """Targets a person's manual rollback paused: a warning each, with the command that resumes."""
    try:
        paused = pauses.listed()
    except StorageUnavailable:
        return []
    return [f"paused: {p['service']} in {p['env']}: {p['reason']} (resume: python -m core.ops.cli resume --service "
            f"{p['service']} --env {p['env']})" for p in paused]


def _report(body: dict, failing: list[str], warnings: list[str]) -> HealthReport:
    body = {"status": "unhealthy" if failing else "healthy", **body}
    if failing:
        body["failing"] = [redact(f) for f in failing]
    if warnings:
        body["warnings"] = warnings
    return HealthReport(503 if failing else 200, body)
