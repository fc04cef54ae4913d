"""Which work an Azure DevOps service hook delivery asks for (a pure decision over the payload)."""
from __future__ import annotations

from dataclasses import dataclass

from core.payloads import AzdoEvent, Ignored, PayloadError, normalize_repo_url, repo_name_from_url
from core.workitems import HldChanged, PrReview, WorkItem

PR_OPENED = {"git.pullrequest.created", "git.pullrequest.updated"}
PR_MERGED = {"git.pullrequest.merged", "git.pullrequest.merge.attempted", "git.pullrequest.updated"}
BUILD_EVENTS = {"build.complete", "ms.vss-pipelines.run-state-changed-event"}


@dataclass(frozen=True)
class RepoConfig:
    hld_url: str
    hld_branch: str
    manifest_url: str
    manifest_branch: str


def _which_repo(repository: dict, config: RepoConfig) -> str | None:
    remote = repository.get("remoteUrl")
    name = repository.get("name")
    for label, url in (("hld", config.hld_url), ("manifest", config.manifest_url)):
        if not url:
            continue
        if isinstance(remote, str) and remote:
            if normalize_repo_url(remote) == normalize_repo_url(url):
                return label
        elif isinstance(name, str) and name and name.lower() == repo_name_from_url(url).lower():
            return label
    return None


def _ref(value: object, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{field} must be a string")
    return value


def _pr_id(resource: dict) -> int:
    pr_id = resource.get("pullRequestId")
    if not isinstance(pr_id, int) or isinstance(pr_id, bool):
        raise PayloadError("resource.pullRequestId must be an integer")
    return pr_id


def _repository(resource: dict) -> dict:
    repository = resource.get("repository")
    if not isinstance(repository, dict):
        raise PayloadError("resource.repository must be a JSON object")
    return repository


def _commit(resource: dict, key: str) -> str | None:
    commit = resource.get(key)
    if isinstance(commit, dict) and isinstance(commit.get("commitId"), str):
        return commit["commitId"]
    return None


def route_azdo(event: AzdoEvent, config: RepoConfig, event_id: str, trace_id: str) -> list[WorkItem] | Ignored:
    resource = event.resource
    kind = event.event_type
    if kind in BUILD_EVENTS:
        build_id = resource.get("id")
        if kind == "ms.vss-pipelines.run-state-changed-event":
            run = resource.get("run")
            build_id = run.get("id") if isinstance(run, dict) else None
        if build_id is not None and (not isinstance(build_id, int) or isinstance(build_id, bool)):
            raise PayloadError("resource.id must be an integer build id")
        repository = resource.get("repository") if isinstance(resource.get("repository"), dict) else {}
        trigger = resource.get("triggerInfo") if isinstance(resource.get("triggerInfo"), dict) else {}
        pr_number = trigger.get("pr.number")
        pr_id = int(pr_number) if isinstance(pr_number, str) and pr_number.isdigit() else None
        project = resource.get("project") if isinstance(resource.get("project"), dict) else {}
        return [PrReview(event_id, trace_id, kind, repository_id=str(repository.get("id") or ""),
                         project_id=str(project.get("id") or ""), pr_id=pr_id, build_id=build_id,
                         source_ref=str(trigger.get("pr.sourceBranch") or ""))]
    if kind == "git.push":
        repository = _repository(resource)
        if _which_repo(repository, config) != "hld":
            return Ignored("push to a repository other than the configured HLD repo")
        ref_updates = resource.get("refUpdates")
        if not isinstance(ref_updates, list):
            raise PayloadError("resource.refUpdates must be an array")
        wanted = f"refs/heads/{config.hld_branch}"
        for i, update in enumerate(ref_updates):
            if not isinstance(update, dict):
                raise PayloadError(f"resource.refUpdates[{i}] must be a JSON object")
            if _ref(update.get("name"), f"resource.refUpdates[{i}].name") == wanted:
                new = _ref(update.get("newObjectId"), f"resource.refUpdates[{i}].newObjectId")
                if new and set(new) != {"0"}:
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
            return Ignored(f"completed pull request is not into the HLD branch {config.hld_branch}")
        if status == "active" and kind in PR_OPENED:
            return [PrReview(event_id, trace_id, kind, repository_id=str(repository.get("id") or ""),
                             repository_url=str(repository.get("remoteUrl") or ""),
                             project_id=str(project.get("id") or ""), pr_id=pr_id,
                             source_ref=_ref(resource.get("sourceRefName"), "resource.sourceRefName"))]
        return Ignored(f"{kind} with status {status or 'unknown'} needs no work")
    return Ignored(f"event type {kind} is not handled")
