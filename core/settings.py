"""The one settings loader: app settings (environment variables) validated into a frozen dataclass.

In Azure every app setting is an environment variable. Locally, devhost copies the `Values` of
local.settings.json into the environment first (variables already set win), exactly like Core Tools.
This is the only module of core/ and handlers/ that reads the process environment: everything else gets its
values as arguments (wired in core.wiring), and child processes get `child_environment()`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from core.errors import Permanent
from core.adapters.flux_receivers import SETTING as FLUX_RECEIVERS, ReceiverConfig, parse_receivers
from core.rules.helm_modes import HELM_MODES
from core.rules.source_hosts import default_allowed_sources, parse_allowed_sources

WRITE_MODES = ("direct", "pull-request")
# What a child process (git) inherits from this one: enough to run, reach a proxy, trust a CA bundle and use an ssh
# agent. Nothing else: no app setting or secret (AZDO_PAT, the storage connection string), no GIT_* variable.
CHILD_VARIABLES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "TMPDIR", "TZ", "SSH_AUTH_SOCK",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
})


class SettingsError(Permanent, ValueError):
    """A setting is missing or has a bad value; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    storage_connection: str           # empty when the account is reached with an identity (below)
    acr_webhook_secret: str = ""
    azdo_webhook_secret: str = ""
    flux_webhook_secret: str = field(default="", repr=False)   # the generic-hmac Provider's key (/api/hooks/flux)
    hld_repo_url: str = ""
    hld_branch: str = "main"
    manifest_repo_url: str = ""
    manifest_branch: str = "main"
    write_mode: str = "direct"
    azdo_org_url: str = ""
    azdo_project: str = ""
    azdo_pat: str = field(default="", repr=False)
    git_author_name: str = "gitops-autopilot"
    git_author_email: str = "gitops-autopilot@users.noreply.local"
    helm_mode: str = "helmrelease"
    helm_bin: str = ""
    auto_approve: bool = True
    functions_key: str = field(default="", repr=False)
    work_dir: str = ""
    appinsights_connection: str = field(default="", repr=False)
    storage_queue_url: str = ""       # identity-based storage: AzureWebJobsStorage__accountName / __queueServiceUri
    storage_table_url: str = ""
    storage_client_id: str = ""       # AzureWebJobsStorage__clientId: a user-assigned managed identity
    # FLUX_RECEIVERS: the clusters to wake after a manifest commit; bad entries are kept as problems (health names
    # them) rather than failing the load, since every other part of the service works without them.
    flux: ReceiverConfig = field(default=ReceiverConfig(), repr=False)
    # Hosts component.yaml git sources may come from (core.rules.source_hosts); default: the HLD repository's host.
    allowed_source_hosts: tuple[str, ...] = ()
    outbox_reenqueue_after: float = 120.0  # OUTBOX_REENQUEUE_AFTER_SECONDS: accepted work no worker took by then
    outbox_max_reenqueues: int = 3         # OUTBOX_MAX_REENQUEUES: then health reports the delivery as stuck
    # JOURNAL_RETENTION_DAYS: done deliveries (and their bodies) older than this are purged; 0 keeps them forever.
    # Must outlast every sender's own redeliveries so that they still dedupe: Event Grid retries for 24 h by default
    # (learn.microsoft.com/azure/event-grid/delivery-and-retry); Azure DevOps retries a subscription on probation
    # for ~36 h and keeps 7-14 days of History, from which a person re-POSTs a notification
    # (learn.microsoft.com/azure/devops/service-hooks/troubleshoot); ACR never retries (Azure/acr#681).
    journal_retention_days: int = 14
    fleet_repo_url: str = ""               # FLEET_REPO_URL: the repo holding fleet.yaml; empty = one tenant, `default`
    fleet_branch: str = "main"             # FLEET_BRANCH
    environment: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def app_setting(self, name: str) -> str:
        """The app setting called `name`: a tenant's PAT is referenced by the name of the setting that holds it (a Key
        Vault reference in Azure), never written in fleet.yaml."""
        return (self.environment.get(name) or "").strip()

    @property
    def bump_repo_url(self) -> str:
        """The repo image bumps write to: the HLD (advanced flow), else the manifest repo (light-weight flow)."""
        return self.hld_repo_url or self.manifest_repo_url

    @property
    def bump_branch(self) -> str:
        return self.hld_branch if self.hld_repo_url else self.manifest_branch

    @property
    def azdo_configured(self) -> bool:
        return bool(self.azdo_org_url)


def _url_ok(value: str) -> bool:
    parts = urlsplit(value)
    if parts.scheme == "file":
        return bool(parts.path)
    return parts.scheme in ("http", "https", "ssh") and bool(parts.netloc)


def setting(name: str, default: str = "", env: Mapping[str, str] | None = None) -> str:
    """One setting's value as the loader reads it (stripped; empty means unset), for tools that run without the
    service's required settings (`python -m core.generate`)."""
    env = os.environ if env is None else env
    return (env.get(name) or default).strip()


def child_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of `CHILD_VARIABLES` this process has, for a child process to start from."""
    env = os.environ if env is None else env
    return {name: value for name, value in env.items() if name in CHILD_VARIABLES}


def dropped_for_child(kept: Mapping[str, str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every variable of this process a child must not see, as an empty value: for a launcher that starts children
    from a copy of os.environ and cannot unset one (GitPython's `Git.execute`)."""
    env = os.environ if env is None else env
    return {name: "" for name in env if name not in kept}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env

    def get(name: str, default: str = "") -> str:
        return setting(name, default, env)

    storage = get("AzureWebJobsStorage")
    account = get("AzureWebJobsStorage__accountName")
    queue_url = get("AzureWebJobsStorage__queueServiceUri") or (f"https://{account}.queue.core.windows.net"
                                                               if account else "")
    table_url = get("AzureWebJobsStorage__tableServiceUri") or (f"https://{account}.table.core.windows.net"
                                                               if account else "")
    if not storage and not (queue_url and table_url):
        raise SettingsError("AzureWebJobsStorage is not set (use UseDevelopmentStorage=true for Azurite, or "
                            "AzureWebJobsStorage__accountName for a managed identity)")
    for name in ("HLD_REPO_URL", "MANIFEST_REPO_URL", "AZDO_ORG_URL", "FLEET_REPO_URL"):
        if get(name) and not _url_ok(get(name)):
            raise SettingsError(f"{name}={get(name)!r} is not a URL (expected https://..., ssh://... or file://...)")
        if "@" in urlsplit(get(name)).netloc and name != "AZDO_ORG_URL":
            raise SettingsError(f"{name} must not carry credentials in the URL; set AZDO_PAT instead")
    azdo_org = get("AZDO_ORG_URL").rstrip("/")
    write_mode = get("WRITE_MODE", "pull-request" if azdo_org else "direct")
    if write_mode not in WRITE_MODES:
        raise SettingsError(f"WRITE_MODE={write_mode!r} is not one of {', '.join(WRITE_MODES)}")
    if write_mode == "pull-request" and not azdo_org:
        raise SettingsError("WRITE_MODE=pull-request needs AZDO_ORG_URL (pull requests are opened in Azure DevOps)")
    if azdo_org and not get("AZDO_PROJECT"):
        raise SettingsError("AZDO_PROJECT is not set but AZDO_ORG_URL is")
    try:
        allowed_sources = (parse_allowed_sources(get("ALLOWED_SOURCE_HOSTS")) if get("ALLOWED_SOURCE_HOSTS")
                           else default_allowed_sources(get("HLD_REPO_URL")))
    except ValueError as exc:
        raise SettingsError(f"ALLOWED_SOURCE_HOSTS: {exc}") from None
    helm_mode = get("HELM_MODE", "helmrelease")
    if helm_mode not in HELM_MODES:
        raise SettingsError(f"HELM_MODE={helm_mode!r} is not one of {', '.join(HELM_MODES)}")
    auto_approve = get("AUTO_APPROVE", "on").lower()
    if auto_approve not in ("on", "off", "true", "false", "1", "0"):
        raise SettingsError(f"AUTO_APPROVE={auto_approve!r} is not on or off")
    for name in ("HLD_BRANCH", "MANIFEST_BRANCH", "FLEET_BRANCH"):
        branch = get(name, "main")
        if branch.startswith("refs/") or " " in branch or ".." in branch:
            raise SettingsError(f"{name}={branch!r} is not a plain branch name (e.g. main)")
    outbox_after = _number(get("OUTBOX_REENQUEUE_AFTER_SECONDS", "120"), "OUTBOX_REENQUEUE_AFTER_SECONDS", float)
    outbox_max = _number(get("OUTBOX_MAX_REENQUEUES", "3"), "OUTBOX_MAX_REENQUEUES", int)
    retention_days = _number(get("JOURNAL_RETENTION_DAYS", "14"), "JOURNAL_RETENTION_DAYS", int)
    return Settings(
        storage_connection=storage,
        acr_webhook_secret=get("ACR_WEBHOOK_SECRET"),
        azdo_webhook_secret=get("AZDO_WEBHOOK_SECRET"),
        flux_webhook_secret=get("FLUX_WEBHOOK_SECRET"),
        hld_repo_url=get("HLD_REPO_URL"),
        hld_branch=get("HLD_BRANCH", "main"),
        manifest_repo_url=get("MANIFEST_REPO_URL"),
        manifest_branch=get("MANIFEST_BRANCH", "main"),
        write_mode=write_mode,
        azdo_org_url=azdo_org,
        azdo_project=get("AZDO_PROJECT"),
        azdo_pat=get("AZDO_PAT"),
        git_author_name=get("GIT_AUTHOR_NAME", "gitops-autopilot"),
        git_author_email=get("GIT_AUTHOR_EMAIL", "gitops-autopilot@users.noreply.local"),
        helm_mode=helm_mode,
        helm_bin=get("HELM_BIN"),
        auto_approve=auto_approve in ("on", "true", "1"),
        functions_key=get("FUNCTIONS_KEY"),
        work_dir=get("WORK_DIR"),
        appinsights_connection=get("APPLICATIONINSIGHTS_CONNECTION_STRING"),
        storage_queue_url="" if storage else queue_url,
        storage_table_url="" if storage else table_url,
        storage_client_id=get("AzureWebJobsStorage__clientId"),
        flux=parse_receivers(get(FLUX_RECEIVERS), env),
        allowed_source_hosts=allowed_sources,
        outbox_reenqueue_after=outbox_after,
        outbox_max_reenqueues=outbox_max,
        journal_retention_days=retention_days,
        fleet_repo_url=get("FLEET_REPO_URL"),
        fleet_branch=get("FLEET_BRANCH", "main"),
        environment=MappingProxyType(dict(env)),
    )


def _number(raw: str, name: str, kind: type):
    try:
        value = kind(raw)
    except ValueError:
        value = -1
    if value < 0 or value != value:
        raise SettingsError(f"{name}={raw!r} is not a number >= 0")
    return value


def read_local_settings(path: Path) -> dict[str, str]:
    """The `Values` of a local.settings.json file, as strings."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read settings ({exc})") from exc
    values = data.get("Values") if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: no 'Values' object")
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


def apply_local_settings(values: Mapping[str, str], environ: dict[str, str] | None = None) -> None:
    """Copy settings into the environment; variables that are already set win."""
    environ = os.environ if environ is None else environ
    for key, value in values.items():
        environ.setdefault(key, value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
