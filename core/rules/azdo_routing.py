"""Which work an Azure DevOps service hook delivery asks for (a pure decision over the payload).

Ids and refs that end up in work items (and from there in REST calls, table keys and logs) are checked here:
Int32 ids, bounded printable string ids and refs, hex commit ids; a bad one is a PayloadError naming the field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from core.model.payloads import (MAX_ID, MAX_INT32, MAX_REF, AzdoEvent, Ignored, PayloadError, check_int_id, check_text,
                           normalize_repo_url, repo_name_from_url, show)
from core.model.fleet import Fleet, Tenant
from core.model.workitems import FluxNotify, HldChanged, PrReview, WorkItem

PR_OPENED = {"git.pullrequest.created", "git.pullrequest.updated"}
PR_MERGED = {"git.pullrequest.merged", "git.pullrequest.merge.attempted", "git.pullrequest.updated"}
BUILD_EVENTS = {"build.complete", "ms.vss-pipelines.run-state-changed-event"}


@dataclass(frozen=True)
class RepoConfig:
    hld_url: str
    hld_branch: str
    manifest_url: str
    manifest_branch: str


_COMMIT = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_PR_NUMBER = re.compile(r"[0-9]{1,10}")
_TRACE_LINE = re.compile(r"^Trace-Id:((?: [A-Za-z0-9._-]{1,64})+) *$", re.MULTILINE)
MAX_TRACE_IDS = 50


def _which_repo(repository: dict, config: RepoConfig) -> str | None:
    remote = repository.get("remoteUrl")
    name = repository.get("name")
    if isinstance(remote, str) and remote:
        try:
            remote = normalize_repo_url(remote)
        except ValueError:  # urlsplit: "Invalid IPv6 URL"
            raise PayloadError(f"resource.repository.remoteUrl: {show(remote)} is not a URL") from None
    for label, url in (("hld", config.hld_url), ("manifest", config.manifest_url)):
        if not url:
            continue
        if isinstance(remote, str) and remote:
            if remote == normalize_repo_url(url):
                return label
        elif isinstance(name, str) and name and name.lower() == repo_name_from_url(url).lower():
            return label
    return None


def _ref(value: object, field: str, limit: int = MAX_REF) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{field} must be a string")
    return check_text(value, field, limit)


def _key(value: object, field: str) -> str:
    """A repository or project id (a GUID from Azure DevOps; any bounded printable string is let through)."""
    return _ref(value or None, field, MAX_ID)


def _commit_id(value: object, field: str) -> str:
    commit = _ref(value, field, MAX_ID)
    if commit and not _COMMIT.fullmatch(commit):
        raise PayloadError(f"{field}: {show(commit)} is not a commit id (40 or 64 hex digits)")
    return commit


def _pr_id(resource: dict) -> int:
    return check_int_id(resource.get("pullRequestId"), "resource.pullRequestId")


def _pr_number(value: object) -> int | None:
    """`triggerInfo["pr.number"]`, a string; anything but a plain Int32 number means no pull request."""
    if isinstance(value, str) and _PR_NUMBER.fullmatch(value) and 0 < int(value) <= MAX_INT32:
        return int(value)
    return None


def _repository(resource: dict) -> dict:
    repository = resource.get("repository")
    if not isinstance(repository, dict):
        raise PayloadError("resource.repository must be a JSON object")
    return repository


def _commit(resource: dict, key: str) -> str | None:
    commit = resource.get(key)
    if isinstance(commit, dict) and isinstance(commit.get("commitId"), str):
        return _commit_id(commit["commitId"], f"resource.{key}.commitId") or None
    return None


def _trace_ids(description: object) -> tuple[str, ...]:
    """Trace ids of the `Trace-Id:` lines our manifest PR descriptions carry (core.workers.manifest_update.manifest_message);
    anything else in the (hostile) description is ignored."""
    if not isinstance(description, str):
        return ()
    ids = [i for line in _TRACE_LINE.findall(description[:20000]) for i in line.split()]
    return tuple(dict.fromkeys(ids))[:MAX_TRACE_IDS]


def fleet_push(event: AzdoEvent, fleet_url: str, fleet_branch: str) -> str | Ignored | None:
    """A `git.push` to the fleet repository (FLEET_REPO_URL): the new head of the fleet branch, to reload from;
    Ignored when the push left that branch alone; None when the event is anything else (routed as usual)."""
    if event.event_type != "git.push" or not fleet_url:
        return None
    repository = _repository(event.resource)
    remote = repository.get("remoteUrl")
    if not isinstance(remote, str) or not remote:
        return None   # the fleet repository is recognised by its URL only: a name alone could be any project's
    try:
        if normalize_repo_url(remote) != normalize_repo_url(fleet_url):
            return None
    except ValueError:
        raise PayloadError(f"resource.repository.remoteUrl: {show(remote)} is not a URL") from None
    wanted = f"refs/heads/{fleet_branch}"
    updated, new = _pushed_head(event.resource, wanted)
    if new:
        return new
    if updated:
        return Ignored(f"push deleted the fleet branch {fleet_branch}; the fleet in use stays")
    return Ignored(f"push to the fleet repository did not update {wanted}")


def _pushed_head(resource: dict, wanted: str) -> tuple[bool, str | None]:
    """Did a `git.push` update ref `wanted`, and to which commit (None: deleted)? The first update of it counts."""
    ref_updates = resource.get("refUpdates")
    if not isinstance(ref_updates, list):
        raise PayloadError("resource.refUpdates must be an array")
    for i, update in enumerate(ref_updates):
        if not isinstance(update, dict):
            raise PayloadError(f"resource.refUpdates[{i}] must be a JSON object")
        if _ref(update.get("name"), f"resource.refUpdates[{i}].name") == wanted:
            new = _commit_id(update.get("newObjectId"), f"resource.refUpdates[{i}].newObjectId")
            return True, new if new and set(new) != {"0"} else None
    return False, None


def route_azdo(event: AzdoEvent, config: RepoConfig, event_id: str, trace_id: str) -> list[WorkItem] | Ignored:
    resource = event.resource
    kind = event.event_type
    if kind in BUILD_EVENTS:
        build_id = resource.get("id")
        if kind == "ms.vss-pipelines.run-state-changed-event":
            run = resource.get("run")
            build_id = run.get("id") if isinstance(run, dict) else None
        if build_id is not None:
            check_int_id(build_id, "resource.run.id" if kind == "ms.vss-pipelines.run-state-changed-event"
                         else "resource.id")
        repository = resource.get("repository") if isinstance(resource.get("repository"), dict) else {}
        trigger = resource.get("triggerInfo") if isinstance(resource.get("triggerInfo"), dict) else {}
        project = resource.get("project") if isinstance(resource.get("project"), dict) else {}
        return [PrReview(event_id, trace_id, kind,
                         repository_id=_key(repository.get("id"), "resource.repository.id"),
                         project_id=_key(project.get("id"), "resource.project.id"),
                         pr_id=_pr_number(trigger.get("pr.number")), build_id=build_id,
                         source_ref=_ref(trigger.get("pr.sourceBranch"), 'resource.triggerInfo["pr.sourceBranch"]'))]
    if kind == "git.push":
        repository = _repository(resource)
        if _which_repo(repository, config) != "hld":
            return Ignored("push to a repository other than the configured HLD repo")
        wanted = f"refs/heads/{config.hld_branch}"
        _, new = _pushed_head(resource, wanted)
        if new:
            return [HldChanged(event_id, trace_id, "push", commit=new)]
        return Ignored(f"push did not update {wanted}")
    if kind in PR_OPENED | PR_MERGED:
        repository = _repository(resource)
        which = _which_repo(repository, config)
        if which is None:
            return Ignored("pull request in a repository other than the configured HLD or manifest repo")
        status = _ref(resource.get("status"), "resource.status")
        pr_id = _pr_id(resource)
        target = _ref(resource.get("targetRefName"), "resource.targetRefName")
        project = repository.get("project") if isinstance(repository.get("project"), dict) else {}
        if status == "completed" and kind in PR_MERGED:
            if which == "hld" and target == f"refs/heads/{config.hld_branch}":
                return [HldChanged(event_id, trace_id, "pr-completed",
                                   commit=_commit(resource, "lastMergeCommit"), pr_id=pr_id)]
            if which == "manifest" and target == f"refs/heads/{config.manifest_branch}":
                # The merge is the manifest commit the clusters wait for: wake their Flux (which folders changed is
                # not in the payload, so every cluster). The PR description carries the pushes' Trace-Id lines.
                commit = _commit(resource, "lastMergeCommit")
                if commit is None:
                    return Ignored("completed manifest pull request carries no lastMergeCommit")
                return [FluxNotify(event_id, trace_id, commit, reason="manifest-pr-merged", pr_id=pr_id,
                                   image_trace_ids=_trace_ids(resource.get("description")))]
            return Ignored(f"completed pull request is not into the HLD branch {config.hld_branch} "
                           f"or the manifest branch {config.manifest_branch}")
        if status == "active" and kind in PR_OPENED:
            return [PrReview(event_id, trace_id, kind,
                             repository_id=_key(repository.get("id"), "resource.repository.id"),
                             repository_url=_ref(repository.get("remoteUrl"), "resource.repository.remoteUrl"),
                             project_id=_key(project.get("id"), "resource.repository.project.id"), pr_id=pr_id,
                             source_ref=_ref(resource.get("sourceRefName"), "resource.sourceRefName"))]
        return Ignored(f"{kind} with status {status or 'unknown'} needs no work")
    return Ignored(f"event type {kind} is not handled")


def _project_of(url: str) -> str:
    """The project segment of an Azure Repos URL (`…/{project}/_git/{name}`), lower-cased; "" for other URLs."""
    head, sep, _ = normalize_repo_url(url).rpartition("/_git/")
    return head.rsplit("/", 1)[-1] if sep else ""


def _names_repo(tenant: Tenant, name: str, project: str) -> bool:
    for repo in tenant.repos:
        if repo_name_from_url(repo.url).lower() != name.lower():
            continue
        if not project or project.lower() in (_project_of(repo.url), tenant.azdo_project.lower()):
            return True
    return False


def _owner(event: AzdoEvent, fleet: Fleet) -> Tenant | Ignored:
    """The tenant owning the delivery's repository: by remoteUrl, else by name within the project (build events
    carry no URL). A build naming no repository at all belongs to the fleet's only tenant, if it has one."""
    resource = event.resource
    repository = resource.get("repository")
    if not isinstance(repository, dict):
        if event.event_type in BUILD_EVENTS and len(fleet.tenants) == 1:
            return fleet.tenants[0]
        return Ignored("the delivery names no repository, so no tenant owns it")
    remote = repository.get("remoteUrl")
    if isinstance(remote, str) and remote:
        try:
            wanted = normalize_repo_url(remote)
        except ValueError:  # urlsplit: "Invalid IPv6 URL"
            raise PayloadError(f"resource.repository.remoteUrl: {show(remote)} is not a URL") from None
        owners = [t for t in fleet.tenants if any(normalize_repo_url(r.url) == wanted for r in t.repos)]
        what = show(remote)
    else:
        name = repository.get("name")
        if not isinstance(name, str) or not name:
            return Ignored("the repository has neither remoteUrl nor name, so no tenant owns it")
        project = next((p.get("name") for p in (repository.get("project"), resource.get("project"))
                        if isinstance(p, dict) and isinstance(p.get("name"), str)), "")
        owners = [t for t in fleet.tenants if _names_repo(t, name, project)]
        what = show(f"{project}/{name}" if project else name)
    if not owners:
        return Ignored(f"repository {what}: a repository other than the configured HLD or manifest repos of "
                       f"every tenant")
    if len(owners) > 1:
        return Ignored(f"repository {what} is named by several tenants ({', '.join(t.name for t in owners)})")
    return owners[0]


def route_fleet(event: AzdoEvent, fleet: Fleet, event_id: str, trace_id: str) -> list[WorkItem] | Ignored:
    """route_azdo for the tenant that owns the repository; its work items name that tenant."""
    if event.event_type not in BUILD_EVENTS | PR_OPENED | PR_MERGED | {"git.push"}:
        return Ignored(f"event type {event.event_type} is not handled")
    tenant = _owner(event, fleet)
    if isinstance(tenant, Ignored):
        return tenant
    hld = tenant.hld
    config = RepoConfig(hld.url if hld else "", hld.branch if hld else "main",
                        tenant.manifests.url, tenant.manifests.branch)
    routed = route_azdo(event, config, event_id, trace_id)
    if isinstance(routed, Ignored):
        return routed
    return [replace(item, tenant=tenant.name) for item in routed]
