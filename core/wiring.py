"""Dependencies wired once per process: settings, storage, and the services built on them."""
from __future__ import annotations

import asyncio
import tempfile
import threading
import weakref
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from core.adapters.deliveries import AsyncDeliveryJournal, AsyncDeliveryLog, DeliveryJournal, DeliveryLog
from core.adapters.cluster_records import ClusterRegistry, ClusterStore, RunningLog, RunningStore
from core.adapters.highwater import HighWaterMarks, HighWaterStore
from core.adapters.promotion_records import Claims, ClaimStore, Pauses, PauseStore
from core.adapters.review_records import ReviewRecords, ReviewStore
from core.workers.intake import Intake
from core.model.fleet import DEFAULT_TENANT, Fleet, RepoRef, Tenant, TenantPaused, UnknownTenant
from core.model.payloads import repo_name_from_url
from core.settings import Settings, SettingsError, get_settings
from core.adapters.storage import AsyncStorage, AsyncWorkQueues, Storage, StorageIdentity, WorkQueues
from core.adapters.trace import TenantTrace, TraceLog, TraceStore


# Stores a caller may hand to Services instead of the Azure Storage ones (tests wire the fakes of tests/fakes/).
STORES = ("queues", "async_queues", "deliveries", "async_deliveries", "trace", "high_water", "review_records",
          "running", "clusters", "pauses", "claims")


# What a tenant's view of the services shares with the process's: one storage account, one identity, one journal.
_SHARED = ("storage", "_aio_by_loop", "deliveries", "high_water", "_workspaces", "fleet_source")


@dataclass
class Services:
    settings: Settings
    stores: dict[str, Any] = field(default_factory=dict, repr=False)
    tenant: str = ""                  # set on a tenant's view (for_tenant); "" on the process's own services
    definition: Tenant | None = None  # that tenant's definition, on a view
    parent: "Services | None" = None  # the process's services, on a view (its identity is the app's managed identity)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.stores) - set(STORES))
        if unknown:
            raise TypeError(f"unknown store {unknown[0]!r} (known: {', '.join(STORES)})")

    @cached_property
    def storage(self) -> Storage:
        s = self.settings
        if s.storage_connection:
            return Storage(s.storage_connection)
        if s.storage_client_id:
            from azure.identity import ManagedIdentityCredential
            credential = ManagedIdentityCredential(client_id=s.storage_client_id)
        else:
            credential = self._credential
        return Storage(identity=StorageIdentity(s.storage_queue_url, s.storage_table_url, credential))

    @cached_property
    def _aio_by_loop(self) -> tuple[threading.Lock, weakref.WeakKeyDictionary]:
        return threading.Lock(), weakref.WeakKeyDictionary()

    def async_storage(self) -> AsyncStorage:
        """The aio storage clients of the running event loop (one per loop: an aiohttp session belongs to the
        loop it was opened on; the Python worker has one loop for every coroutine function)."""
        loop = asyncio.get_running_loop()
        lock, by_loop = self._aio_by_loop
        with lock:
            store = by_loop.get(loop)
            if store is None:
                s = self.settings
                if s.storage_connection:
                    store = AsyncStorage(s.storage_connection)
                else:
                    store = AsyncStorage(identity=StorageIdentity(s.storage_queue_url, s.storage_table_url,
                                                                  self._async_credential))
                by_loop[loop] = store
            return store

    async def aclose(self) -> None:
        """Close the running loop's aio clients (tests and tools that run a loop of their own)."""
        if "intake" in self.__dict__:
            await self.intake.drain()
        lock, by_loop = self._aio_by_loop
        with lock:
            store = by_loop.pop(asyncio.get_running_loop(), None)
        if store is not None:
            await store.close()

    def async_deliveries(self) -> AsyncDeliveryJournal:
        if "async_deliveries" in self.stores:
            return self.stores["async_deliveries"]
        return AsyncDeliveryLog(self.async_storage(), reenqueue_after=self.settings.outbox_reenqueue_after)

    def async_queues(self) -> AsyncWorkQueues:
        return self.stores["async_queues"] if "async_queues" in self.stores else self.async_storage()

    @cached_property
    def queues(self) -> WorkQueues:
        return self.stores["queues"] if "queues" in self.stores else self.storage

    @cached_property
    def deliveries(self) -> DeliveryJournal:
        return self.stores["deliveries"] if "deliveries" in self.stores else DeliveryLog(self.storage)

    @cached_property
    def intake(self) -> Intake:
        return Intake(self.settings, self.queues, self.deliveries, self.async_queues, self.async_deliveries,
                      lambda: self.fleet, fleet_source=self.fleet_source)

    @cached_property
    def _async_credential(self):
        if self.parent is not None:
            return self.parent._async_credential
        from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

        if self.settings.storage_client_id:
            return ManagedIdentityCredential(client_id=self.settings.storage_client_id)
        return DefaultAzureCredential()

    # The record stores (Protocols in core/adapters; tests swap in the fakes of tests/fakes/records.py).
    @cached_property
    def trace(self) -> TraceStore:
        store = self.stores["trace"] if "trace" in self.stores else TraceLog(self.storage)
        name = self.tenant or (DEFAULT_TENANT if self._settings_are_the_tenant else "")
        return TenantTrace(store, name) if name else store

    @property
    def _settings_are_the_tenant(self) -> bool:
        """Without FLEET_REPO_URL the app settings are tenant `default`: these services are its view, unchanged."""
        return not self.settings.fleet_repo_url

    def for_tenant(self, name: str) -> "Services":
        """Tenant `name`'s view of the services: its repos, write mode, Azure DevOps project and credentials (the app
        setting its `pat_setting` names, else the managed identity; never another tenant's or the app's AZDO_PAT),
        its own working copies and caches, sharing storage with the process. UnknownTenant when the fleet does not
        define it; rebuilt when its definition changes (a fleet reload)."""
        if self.definition is not None:
            if name != self.tenant:
                raise UnknownTenant(f"the services of tenant {self.tenant!r} cannot serve tenant {name!r}")
            return self
        if self._settings_are_the_tenant and name == DEFAULT_TENANT:
            return self   # even with nothing configured: its services then say what is missing
        tenant = self.fleet.tenant(name)
        lock, views = self._views
        with lock:
            known = views.get(name)
            if known is None or known[0] != tenant:
                view = Services(_tenant_settings(self.settings, tenant), stores=self.stores, tenant=name,
                                definition=tenant, parent=self)
                view.__dict__.update({k: getattr(self, k) for k in _SHARED})
                view.__dict__["work_base"] = self.work_base / "tenants" / name
                known = views[name] = (tenant, view)
            return known[1]

    def for_work(self, name: str) -> "Services":
        """for_tenant for a queue worker: a paused tenant's work is refused (TenantPaused poisons it, replayable
        after the tenant is resumed)."""
        view = self.for_tenant(name)
        if view.definition is not None and view.definition.paused:
            raise TenantPaused(f"tenant {name!r} is paused")
        return view

    @cached_property
    def _views(self) -> tuple[threading.Lock, dict[str, tuple[Tenant, "Services"]]]:
        return threading.Lock(), {}

    @cached_property
    def high_water(self) -> HighWaterStore:
        return self.stores["high_water"] if "high_water" in self.stores else HighWaterMarks(self.storage)

    @cached_property
    def review_records(self) -> ReviewStore:
        return self._scoped("review_records", ReviewRecords)

    def _scoped(self, name: str, table: Callable[[Any], Any]) -> Any:
        """A per-tenant record store (review records, pauses, claims): the given store's, or Table storage's, view of
        this tenant's keys."""
        store = self.stores[name] if name in self.stores else table(self.storage)
        return store.for_tenant(self.tenant or DEFAULT_TENANT)

    @cached_property
    def running(self) -> RunningStore:
        return self.stores["running"] if "running" in self.stores else RunningLog(self.storage)

    @cached_property
    def clusters(self) -> ClusterStore:
        return self.stores["clusters"] if "clusters" in self.stores else ClusterRegistry(self.storage)

    @cached_property
    def pauses(self) -> PauseStore:
        return self._scoped("pauses", Pauses)

    @cached_property
    def claims(self) -> ClaimStore:
        return self._scoped("claims", Claims)

    @cached_property
    def _credential(self):
        if self.parent is not None:
            return self.parent._credential
        from azure.identity import DefaultAzureCredential
        return DefaultAzureCredential()

    def git_auth(self, url: str) -> Callable[[], str] | None:
        """Authorization header for Azure Repos over https: the PAT, else an Entra token (managed identity)."""
        from core.adapters.azdo import ADO_SCOPE
        from core.adapters.git_workspace import bearer_auth_header, pat_auth_header

        if urlsplit(url).scheme not in ("http", "https"):
            return None
        if self.settings.azdo_pat:
            return pat_auth_header(self.settings.azdo_pat)
        return bearer_auth_header(lambda: self._credential.get_token(ADO_SCOPE).token)

    def workspace(self, url: str, branch: str, purpose: str = "write"):
        """The cached working copy of (url, branch); readers use their own `purpose` so they never wait for
        a writer's lock on the same repository."""
        from core.adapters.git_workspace import GitWorkspace

        if self.definition is not None:
            self.definition.require_repo(url)
        key = (self.tenant, url, branch, purpose)
        if key not in self._workspaces:
            self._workspaces[key] = GitWorkspace(
                url, branch, auth_header=self.git_auth(url), base_dir=self.work_base / purpose,
                author_name=self.settings.git_author_name, author_email=self.settings.git_author_email)
        return self._workspaces[key]

    @cached_property
    def work_base(self) -> Path:
        """Where working copies and caches live: WORK_DIR, else the temp dir (local disk in Azure)."""
        if self.settings.work_dir:
            return Path(self.settings.work_dir)
        return Path(tempfile.gettempdir()) / "gitops-autopilot"

    @cached_property
    def _workspaces(self) -> dict:
        return {}

    @cached_property
    def gateway(self):
        """The Azure DevOps gateway, or None when AZDO_ORG_URL is not set."""
        from core.adapters.azdo import AzdoGateway

        s = self.settings
        if not s.azdo_configured:
            return None
        if s.azdo_pat:
            return AzdoGateway(s.azdo_org_url, s.azdo_project, pat=s.azdo_pat)
        return AzdoGateway(s.azdo_org_url, s.azdo_project, credential=self._credential)

    @property
    def fleet(self) -> Fleet:
        """The tenants this deployment serves: the fleet.yaml of FLEET_REPO_URL (core.adapters.fleet_source; raises
        FleetUnavailable until one loaded), else one tenant (`default`) from the app settings."""
        s = self.settings
        if self.fleet_source is not None:
            return self.fleet_source.current()
        manifests = RepoRef(s.manifest_repo_url, s.manifest_branch) if s.manifest_repo_url else None
        hld = RepoRef(s.hld_repo_url, s.hld_branch) if s.hld_repo_url else None
        if manifests is None and hld is None:
            return Fleet(())
        return Fleet((Tenant(DEFAULT_TENANT, manifests=manifests or hld, hld=hld if manifests else None,
                             write_mode=s.write_mode, azdo_org_url=s.azdo_org_url, azdo_project=s.azdo_project,
                             pat_setting="AZDO_PAT" if s.azdo_pat else ""),))

    @cached_property
    def fleet_source(self):
        """The fleet repository's loader (None without FLEET_REPO_URL), read with the deployment's own credentials."""
        from core.adapters.fleet_source import FleetSource

        s = self.settings
        if not s.fleet_repo_url:
            return None
        return FleetSource(s.fleet_repo_url, s.fleet_branch, self.workspace(s.fleet_repo_url, s.fleet_branch,
                                                                            purpose="fleet"))

    @cached_property
    def bump(self):
        from core.workers.bump import BumpService
        from core.adapters.pull_requests import PullRequests

        s = self.settings
        if not s.bump_repo_url:
            raise SettingsError("neither HLD_REPO_URL nor MANIFEST_REPO_URL is set: nowhere to bump images")
        prs = (PullRequests(self.gateway, repo_name_from_url(s.bump_repo_url))
               if s.write_mode == "pull-request" else None)
        return BumpService(repo_url=s.bump_repo_url, branch=s.bump_branch,
                           workspace=self.workspace(s.bump_repo_url, s.bump_branch), high_water=self.high_water,
                           trace=self.trace, mode=s.write_mode,
                           is_hld=bool(s.hld_repo_url), pull_requests=prs, pauses=self.pauses)

    @cached_property
    def reviewer(self):
        from core.workers.reviewer import WORKSPACE_PURPOSE, ReviewService

        if self.gateway is None:
            raise SettingsError("AZDO_ORG_URL is not set: pull requests cannot be reviewed")
        return ReviewService(
            gateway=self.gateway, settings=self.settings, records=self.review_records, trace=self.trace,
            workspace=lambda url, branch: self.workspace(url, branch, WORKSPACE_PURPOSE),
            cache_dir=self.work_base / "review-components")

    @cached_property
    def generation(self):
        from core.workers.manifest_update import GenerationService
        from core.adapters.pull_requests import PullRequests

        s = self.settings
        if not (s.hld_repo_url and s.manifest_repo_url):
            raise SettingsError("manifest generation needs both HLD_REPO_URL and MANIFEST_REPO_URL")
        prs = (PullRequests(self.gateway, repo_name_from_url(s.manifest_repo_url))
               if s.write_mode == "pull-request" else None)
        return GenerationService(
            hld=self.workspace(s.hld_repo_url, s.hld_branch, purpose="generate"),
            manifests=self.workspace(s.manifest_repo_url, s.manifest_branch),
            hld_url=s.hld_repo_url, manifest_url=s.manifest_repo_url, mode=s.write_mode, helm_mode=s.helm_mode,
            helm_bin=s.helm_bin, trace=self.trace, cache_dir=self.work_base / "components", pull_requests=prs,
            allowed_sources=s.allowed_source_hosts)


def _tenant_settings(settings: Settings, tenant: Tenant) -> Settings:
    """The app settings with the tenant's repos, write mode, Azure DevOps project, PAT, Flux hook key and Flux
    Receivers (fleet.yaml flux.receivers; never the app's FLUX_RECEIVERS, which would wake other tenants' clusters)
    in place of the app's.
    A PAT setting that is named but empty is an error, never a silent fall-back to the managed identity."""
    from core.adapters.flux_receivers import resolve_receivers
    from core.rules.source_hosts import default_allowed_sources

    pat = settings.app_setting(tenant.pat_setting) if tenant.pat_setting else ""
    if tenant.pat_setting and not pat:
        raise SettingsError(f"app setting {tenant.pat_setting} (tenant {tenant.name}'s PAT) is not set")
    hld = tenant.hld
    sources = (settings.allowed_source_hosts if settings.app_setting("ALLOWED_SOURCE_HOSTS")
               else default_allowed_sources(hld.url if hld else ""))
    return replace(settings, hld_repo_url=hld.url if hld else "", hld_branch=hld.branch if hld else "main",
                   manifest_repo_url=tenant.manifests.url, manifest_branch=tenant.manifests.branch,
                   write_mode=tenant.write_mode, azdo_org_url=tenant.azdo_org_url.rstrip("/"),
                   azdo_project=tenant.azdo_project, azdo_pat=pat, allowed_source_hosts=sources,
                   flux_webhook_secret=settings.app_setting(tenant.flux_secret_setting),
                   flux=resolve_receivers(tenant.flux_receivers, settings.app_setting, tenant.name))


_installed: list[Services] = []


def get_services() -> Services:
    return _installed[0] if _installed else _wired()


@lru_cache(maxsize=1)
def _wired() -> Services:
    return Services(get_settings())


def install_services(services: Services) -> None:
    """Make `get_services()` answer `services` until the next `reset_services()` (tests wire fakes this way)."""
    reset_services()
    _installed.append(services)


def reset_services() -> None:
    """Forget the wired services (tests change the environment between cases)."""
    get_settings.cache_clear()
    _wired.cache_clear()
    _installed.clear()

