"""The Azure DevOps service hook subscriptions the service needs, created or updated idempotently, and the `az`
commands that point ACR (webhook, or Event Grid) at the function app.

Subscriptions (Web Hooks consumer, basic auth `autopilot` / AZDO_WEBHOOK_SECRET, resource details `all`):
- HLD repo: pull request created, updated, merged (`git.pullrequest.merged`) into the HLD branch, and `git.push` to
  the HLD branch (a direct push to the HLD is what triggers manifest generation).
- Manifest repo: pull request created, updated, merged into the manifest branch (a merge wakes the clusters' Flux
  Receivers, core.workers.flux_notify). No push subscription: the manifest repo is written only by this service, and intake
  ignores pushes to any repo but the HLD.
- `build.complete`, project-wide (a PR's build policy finishing triggers its review).

With a fleet (FLEET_REPO_URL), `setup_fleet` does this for every tenant's Azure DevOps project, each with that
tenant's own credentials (a tenant without `azureDevOps` gets no hooks), and adds a `git.push` subscription on the
fleet repository (in AZDO_ORG_URL / AZDO_PROJECT, with the deployment's credentials) so a change reloads the fleet.

An existing subscription is the same one when (project, eventType, publisherInputs.repository, hook URL without
its query) match; the query carries the function key, so a rotated key updates the subscription rather than
adding a second one. Subscriptions this service no longer wants are left alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

from azure.core.exceptions import AzureError

from core.errors import AutopilotError, Permanent
from core.model.fleet import Fleet, Tenant
from core.model.payloads import repo_name_from_url
from core.settings import Settings

PR_EVENTS = ("git.pullrequest.created", "git.pullrequest.updated", "git.pullrequest.merged")
PUSH_EVENT = "git.push"
BUILD_EVENT = "build.complete"
HOOK_USERNAME = "autopilot"
HOOK_PATH = "/api/hooks/azdo"
FLUX_HOOK_PATH = "/api/hooks/flux"
ACR_WEBHOOK_NAME = "autopilot"
# Publisher filters a subscription may carry. One we do not set but an existing subscription has narrows what is
# delivered, so it counts as a difference.
FILTER_INPUTS = ("repository", "branch", "pushedBy", "pullrequestCreatedBy", "pullrequestReviewersContains",
                 "notificationType", "mergeResult", "definitionName", "buildStatus")
_COMPARED = ("publisherId", "resourceVersion", "consumerId", "consumerActionId")


class HookSetupError(Permanent, ValueError):
    """Setup cannot run as configured; the message names the setting or argument."""


class SubscriptionGateway(Protocol):
    def list_subscriptions(self) -> list[dict]: ...
    def create_subscription(self, body: dict) -> dict: ...
    def replace_subscription(self, subscription_id: str, body: dict) -> dict: ...
    def repository_id(self, name_or_id: str) -> str: ...
    def project_id(self) -> str: ...


@dataclass(frozen=True)
class RepoHooks:
    role: str                 # hld | manifest
    repository_id: str
    branch: str
    events: tuple[str, ...]


@dataclass(frozen=True)
class Wanted:
    scope: str                # what it covers, for people: "hld repo, branch main" / "project"
    body: dict


@dataclass(frozen=True)
class Change:
    action: str               # create | update | unchanged
    scope: str
    body: dict
    subscription_id: str = ""
    differences: tuple[str, ...] = ()

    @property
    def event_type(self) -> str:
        return self.body["eventType"]


@dataclass(frozen=True)
class SetupResult:
    changes: tuple[Change, ...]
    dry_run: bool

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)


def hook_url(base_url: str, function_key: str = "") -> str:
    """`<base>/api/hooks/azdo`, with `?code=<function key>` when the function needs one."""
    parts = urlsplit(base_url.strip())
    if parts.scheme != "https" or not parts.netloc:
        raise HookSetupError(f"--url {base_url!r} must be the function app's https:// base URL "
                             "(Azure DevOps sends basic auth over https only)")
    if parts.query or parts.fragment:
        raise HookSetupError(f"--url {base_url!r} must not carry a query or fragment; pass the key as --function-key")
    url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + HOOK_PATH, "", ""))
    return f"{url}?code={quote(function_key, safe='')}" if function_key else url


def flux_hook_url(base_url: str, function_key: str = "", tenant: str = "") -> str:
    """The Flux events hook for a Provider's address: `<base>/api/hooks/flux` (one tenant, no fleet) or
    `<base>/api/hooks/flux/<tenant>`, with `?code=<function key>` when the function needs one."""
    url = hook_url(base_url)
    url = url[:-len(HOOK_PATH)] + FLUX_HOOK_PATH + (f"/{tenant}" if tenant else "")
    return f"{url}?code={quote(function_key, safe='')}" if function_key else url


def without_query(url: str) -> str:
    parts = urlsplit(url or "")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def wanted_subscriptions(project_id: str, repos: Iterable[RepoHooks], url: str, secret: str,
                         project_wide: bool = True) -> list[Wanted]:
    consumer = {"url": url, "basicAuthUsername": HOOK_USERNAME, "basicAuthPassword": secret,
                "resourceDetailsToSend": "all"}

    def body(event_type: str, resource_version: str, publisher_inputs: dict) -> dict:
        return {"publisherId": "tfs", "eventType": event_type, "resourceVersion": resource_version,
                "consumerId": "webHooks", "consumerActionId": "httpRequest",
                "publisherInputs": {"projectId": project_id, **publisher_inputs},
                "consumerInputs": dict(consumer)}

    wanted = [Wanted(f"{repo.role} repo, branch {repo.branch}",
                     body(event, "1.0", {"repository": repo.repository_id, "branch": repo.branch}))
              for repo in repos for event in repo.events]
    if project_wide:
        wanted.append(Wanted("project", body(BUILD_EVENT, "2.0", {})))
    return wanted


def _key(body: dict) -> tuple[str, str, str, str]:
    publisher = body.get("publisherInputs") or {}
    consumer = body.get("consumerInputs") or {}
    return (str(publisher.get("projectId") or "").lower(), str(body.get("eventType") or ""),
            str(publisher.get("repository") or "").lower(), without_query(str(consumer.get("url") or "")))


def _masked(value: str) -> bool:
    return bool(value) and set(value) == {"*"}


def differences(want: dict, have: dict, rotate_secret: bool = False) -> tuple[str, ...]:
    """Which settings of an existing subscription differ from the wanted body. A password the service returns
    masked cannot be compared: it counts as different only when `rotate_secret` is set."""
    found = [k for k in _COMPARED if have.get(k) != want[k]]
    have_pub, want_pub = have.get("publisherInputs") or {}, want["publisherInputs"]
    for key in sorted(set(want_pub) | {k for k in FILTER_INPUTS if have_pub.get(k)}):
        if str(have_pub.get(key) or "") != str(want_pub.get(key) or ""):
            found.append(f"publisherInputs.{key}")
    have_con = have.get("consumerInputs") or {}
    for key, value in want["consumerInputs"].items():
        current = str(have_con.get(key) or "")
        if key == "basicAuthPassword" and _masked(current):
            if rotate_secret:
                found.append("consumerInputs.basicAuthPassword (rotated)")
        elif current != value:
            found.append(f"consumerInputs.{key}")
    status = str(have.get("status") or "")
    if status.lower().startswith("disabled"):
        found.append(f"status {status}")
    return tuple(found)


def plan_changes(wanted: Iterable[Wanted], existing: Iterable[dict], rotate_secret: bool = False) -> list[Change]:
    by_key: dict[tuple, dict] = {}
    for subscription in existing:
        if subscription.get("consumerId") == "webHooks":
            by_key.setdefault(_key(subscription), subscription)
    changes = []
    for want in wanted:
        have = by_key.get(_key(want.body))
        if have is None:
            changes.append(Change("create", want.scope, want.body))
            continue
        diff = differences(want.body, have, rotate_secret)
        body = {**want.body, "status": "enabled"} if any(d.startswith("status") for d in diff) else want.body
        changes.append(Change("update" if diff else "unchanged", want.scope, body, str(have.get("id") or ""), diff))
    return changes


def apply_changes(gateway: SubscriptionGateway, changes: Iterable[Change]) -> list[Change]:
    applied = []
    for change in changes:
        if change.action == "create":
            created = gateway.create_subscription(change.body)
            change = Change("create", change.scope, change.body, str(created.get("id") or ""))
        elif change.action == "update":
            gateway.replace_subscription(change.subscription_id, change.body)
        applied.append(change)
    return applied


def repo_hooks(settings: Settings, gateway: SubscriptionGateway) -> list[RepoHooks]:
    repos = []
    if settings.hld_repo_url:
        repos.append(RepoHooks("hld", gateway.repository_id(repo_name_from_url(settings.hld_repo_url)),
                               settings.hld_branch, PR_EVENTS + (PUSH_EVENT,)))
    if settings.manifest_repo_url:
        repos.append(RepoHooks("manifest", gateway.repository_id(repo_name_from_url(settings.manifest_repo_url)),
                               settings.manifest_branch, PR_EVENTS))
    return repos


def setup_subscriptions(gateway: SubscriptionGateway, settings: Settings, *, base_url: str, project_id: str,
                        function_key: str = "", dry_run: bool = False, rotate_secret: bool = False) -> SetupResult:
    """Plan the subscriptions against what exists, and (unless `dry_run`) create and replace to match."""
    if not settings.azdo_webhook_secret:
        raise HookSetupError("AZDO_WEBHOOK_SECRET is empty: set it first (the hooks authenticate with it)")
    if not settings.hld_repo_url and not settings.manifest_repo_url:
        raise HookSetupError("neither HLD_REPO_URL nor MANIFEST_REPO_URL is set: no repository to subscribe to")
    if not project_id.strip():
        raise HookSetupError("the project id is empty (az devops project show -p <project> --query id -o tsv)")
    url = hook_url(base_url, function_key)
    wanted = wanted_subscriptions(project_id.strip(), repo_hooks(settings, gateway), url,
                                  settings.azdo_webhook_secret)
    changes = plan_changes(wanted, gateway.list_subscriptions(), rotate_secret)
    if not dry_run:
        changes = apply_changes(gateway, changes)
    return SetupResult(tuple(changes), dry_run)


@dataclass(frozen=True)
class ScopeResult:
    """One tenant's (or the fleet repo's) setup: its result, or why it was skipped or failed."""
    scope: str                 # "tenant contoso" | "fleet repo"
    result: SetupResult | None = None
    skipped: str = ""
    error: str = ""


def tenant_repo_hooks(tenant: Tenant, gateway: SubscriptionGateway) -> list[RepoHooks]:
    repos = []
    if tenant.hld is not None:
        repos.append(RepoHooks("hld", gateway.repository_id(repo_name_from_url(tenant.hld.url)), tenant.hld.branch,
                               PR_EVENTS + (PUSH_EVENT,)))
    repos.append(RepoHooks("manifest", gateway.repository_id(repo_name_from_url(tenant.manifests.url)),
                           tenant.manifests.branch, PR_EVENTS))
    return repos


def setup_fleet(fleet: Fleet, gateway_for: Callable[[Tenant], SubscriptionGateway], settings: Settings, *,
                base_url: str, function_key: str = "", dry_run: bool = False, rotate_secret: bool = False,
                fleet_gateway: SubscriptionGateway | None = None) -> list[ScopeResult]:
    """Every tenant's subscriptions in its own project with its own gateway (`gateway_for(tenant)`: that tenant's
    credentials), then the fleet repository's push hook with `fleet_gateway` (the deployment's). One tenant's
    failure (a missing PAT setting, a refused call) is reported and the others go on. Tenants run one after the
    other, each listing afresh, so two tenants in one project share the project-wide build subscription."""
    if not settings.azdo_webhook_secret:
        raise HookSetupError("AZDO_WEBHOOK_SECRET is empty: set it first (the hooks authenticate with it)")
    url = hook_url(base_url, function_key)
    results = []

    def plan(gateway: SubscriptionGateway, repos: list[RepoHooks], project_wide: bool, scope: str) -> SetupResult:
        wanted = wanted_subscriptions(gateway.project_id(), repos, url, settings.azdo_webhook_secret, project_wide)
        wanted = [Wanted(f"{scope}: {w.scope}", w.body) for w in wanted]
        changes = plan_changes(wanted, gateway.list_subscriptions(), rotate_secret)
        return SetupResult(tuple(changes if dry_run else apply_changes(gateway, changes)), dry_run)

    for tenant in fleet.tenants:
        scope = f"tenant {tenant.name}"
        if not (tenant.azdo_org_url and tenant.azdo_project):
            results.append(ScopeResult(scope, skipped="no azureDevOps in fleet.yaml: no service hooks"))
            continue
        try:
            gateway = gateway_for(tenant)
            results.append(ScopeResult(scope, plan(gateway, tenant_repo_hooks(tenant, gateway), True, scope)))
        except (AutopilotError, AzureError) as exc:
            results.append(ScopeResult(scope, error=str(exc)))
    if settings.fleet_repo_url:
        scope = "fleet repo"
        if fleet_gateway is None:
            results.append(ScopeResult(scope, skipped="AZDO_ORG_URL is not set: no push hook on the fleet repo "
                                                      "(it is still checked every minute)"))
        else:
            try:
                repo = RepoHooks("fleet", fleet_gateway.repository_id(repo_name_from_url(settings.fleet_repo_url)),
                                 settings.fleet_branch, (PUSH_EVENT,))
                results.append(ScopeResult(scope, plan(fleet_gateway, [repo], False, scope)))
            except (AutopilotError, AzureError) as exc:
                results.append(ScopeResult(scope, error=str(exc)))
    return results


def acr_commands(registry: str, base_url: str, uses_function_key: bool) -> list[str]:
    """The two ways to send ACR pushes to the app (use one): a registry webhook, or an Event Grid subscription.
    Secrets appear as shell variables, never as values."""
    base = hook_url(base_url).removesuffix(HOOK_PATH)
    code = "code=$FUNCTIONS_KEY" if uses_function_key else ""
    acr_uri = f"{base}/api/hooks/acr" + (f"?{code}" if code else "")
    grid_uri = f"{base}/api/hooks/eventgrid?" + (f"{code}&" if code else "") + "secret=$ACR_WEBHOOK_SECRET"
    return [
        f'az acr webhook create --registry {registry} --name {ACR_WEBHOOK_NAME} --actions push '
        f'--uri "{acr_uri}" --headers "Authorization=Bearer $ACR_WEBHOOK_SECRET"',
        f'az eventgrid event-subscription create --name {ACR_WEBHOOK_NAME} '
        f'--source-resource-id "$(az acr show --name {registry} --query id --output tsv)" '
        f'--endpoint "{grid_uri}" --included-event-types Microsoft.ContainerRegistry.ImagePushed',
    ]
