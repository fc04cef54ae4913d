"""A stateful fake of the Azure DevOps REST API, served through `responses` to the real azure-devops SDK.

Use it from a test module with

    from tests.azdo_fake import azdo  # noqa: F401  (the fixture)

    def test_something(azdo):
        repo = azdo.add_repo("hld")
        pr = azdo.add_pr(repo, "refs/heads/bot/x", "refs/heads/main", changes=[("/app/values.yaml", "edit")])
        gateway = azdo.gateway()
        ...
        assert azdo.find_calls("PUT", r"/reviewers/") == []

or `with make_azdo_fake() as fake:` outside pytest fixtures. The fake answers the SDK's OPTIONS /_apis (one
location per resource the gateway uses) and an empty ResourceAreas list, so every client uses the org URL.
Route templates and response shapes follow the real service (reference §3.3, §3.7); behaviour the reference
marks as inferred is noted where it is modelled. Requests to 127.0.0.1/localhost pass through (Azurite).
"""
from __future__ import annotations

import json
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import responses

from core.adapters.azdo import AzdoGateway

ORG = "https://dev.azure.com/fabrikam"
PROJECT = "Fabrikam"
PROJECT_ID = "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c"
PAT = "fakepat-q7w3e9r1t5y2u8i4o6p0"
BOT_ID = "8c8c7d32-6b1b-47f4-b2e9-30b477b5ab3d"
BOT_NAME = "gitops-autopilot"
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
BUILD_POLICY_TYPE = "0609b952-1397-4640-95ec-e00a01b2c241"
MIN_REVIEWERS_POLICY_TYPE = "fa4e907d-c16b-4a4c-9dfa-4906e5d171dd"
DESCRIPTION_LIMIT = 4000
CHANGES_MAX_TOP = 2000

_REPO = "{project}/_apis/{area}/repositories/{repositoryId}"
_PR = _REPO + "/pullRequests/{pullRequestId}"
# (location id, area, resource, route template, resource version) as the OPTIONS document lists them.
_LOCATIONS = [
    ("e81700f7-3be2-46de-8624-2eb35882fcaa", "Location", "ResourceAreas", "_apis/{resource}/{areaId}", 1),
    ("00d9565f-ed9c-4a06-9a50-00e7896ccab4", "Location", "ConnectionData", "_apis/{resource}", 1),
    ("225f7195-f9c7-4d14-ab28-a83f7ff77e1f", "git", "repositories",
     "{project}/_apis/{area}/{resource}/{repositoryId}", 1),
    ("2d874a60-a811-4f62-9c9f-963a6ea0a55b", "git", "refs", _REPO + "/{resource}/{*filter}", 1),
    ("fb93c0db-47ed-4a31-8c20-47552878fb44", "git", "items", _REPO + "/{resource}/{*path}", 1),
    ("9946fd70-0d40-406e-b686-b4744cbbcc37", "git", "pullRequests", _REPO + "/{resource}/{pullRequestId}", 1),
    ("4b6702c7-aa35-4b89-9c96-b9abf6d3e540", "git", "pullRequestReviewers", _PR + "/reviewers/{reviewerId}", 1),
    ("d43911ee-6958-46b0-a42b-8445b8a0d004", "git", "pullRequestIterations", _PR + "/iterations/{iterationId}", 2),
    ("4216bdcf-b6b1-4d59-8b82-c34cc183fc8b", "git", "pullRequestIterationChanges",
     _PR + "/iterations/{iterationId}/changes", 1),
    ("ab6e2e5d-a0b7-4153-b64a-a4efe0d49449", "git", "pullRequestThreads", _PR + "/threads/{threadId}", 1),
    ("965a3ec7-5ed8-455a-bdcb-835a5ea7fe7b", "git", "pullRequestThreadComments",
     _PR + "/threads/{threadId}/comments/{commentId}", 1),
    ("c23ddff5-229c-4d04-a80b-0fdce9f360c8", "policy", "Evaluations",
     "{project}/_apis/{area}/{resource}/{evaluationId}", 1),
    ("fc50d02a-849f-41fb-8af1-0a5216103269", "hooks", "subscriptions", "_apis/{area}/{resource}/{subscriptionId}", 1),
    ("603fe2ac-9723-48b9-88ad-09305aa6c6e1", "core", "projects", "_apis/{resource}/{*projectId}", 4),
]


def _location(location_id: str, area: str, resource: str, template: str, resource_version: int) -> dict:
    return {"id": location_id, "area": area, "resourceName": resource, "routeTemplate": template,
            "resourceVersion": resource_version, "minVersion": "1.0", "maxVersion": "7.2", "releasedVersion": "7.1"}


# -- state ------------------------------------------------------------------------------------------

@dataclass
class FakeRepo:
    id: str
    name: str
    refs: dict[str, str] = field(default_factory=dict)                 # "refs/heads/main" -> commit id
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit id -> {"/path": content}


@dataclass
class FakeIteration:
    id: int
    changes: list[tuple[str, str]]          # (path, changeType)
    source_commit: str | None = None


@dataclass
class FakeThread:
    id: int
    status: str
    comments: list[dict]


@dataclass
class FakePullRequest:
    id: int
    repo: FakeRepo
    source_ref: str
    target_ref: str
    title: str
    description: str
    created_by: dict
    status: str = "active"
    is_draft: bool = False
    auto_complete_set_by: str | None = None
    completion_options: dict | None = None
    reviewers: dict[str, int] = field(default_factory=dict)
    iterations: list[FakeIteration] = field(default_factory=list)
    threads: dict[int, FakeThread] = field(default_factory=dict)
    last_merge_source_commit: str | None = None
    last_merge_target_commit: str | None = None
    last_merge_commit: str | None = None


@dataclass(frozen=True)
class RecordedCall:
    method: str
    path: str                # relative to ORG, URL-decoded, e.g. "/Fabrikam/_apis/git/repositories/hld/pullRequests"
    query: dict[str, str]
    body: Any                # decoded JSON, or None
    headers: dict[str, str]


@dataclass
class _Failure:
    method: str
    path: re.Pattern
    status: int
    headers: dict[str, str]
    body: Any
    exception: BaseException | None
    remaining: int


class FakeHttpError(Exception):
    """Raised inside a handler to answer with an Azure DevOps WrappedException."""

    def __init__(self, status: int, type_key: str, message: str):
        super().__init__(message)
        self.status, self.type_key, self.message = status, type_key, message


class FakeRouteMissing(AssertionError):
    """The SDK sent a request this fake does not model: extend the fake rather than guess."""


# -- the fake ---------------------------------------------------------------------------------------

class AzdoFake:
    def __init__(self, rsps: responses.RequestsMock):
        self.identity = {"id": BOT_ID, "displayName": BOT_NAME, "uniqueName": f"{BOT_NAME}@fabrikam.example"}
        self.repos: dict[str, FakeRepo] = {}
        self.prs: dict[int, FakePullRequest] = {}
        self.policy_evaluations: dict[str, list[dict]] = {}    # artifactId -> evaluation records
        self.subscriptions: dict[str, dict] = {}
        self.calls: list[RecordedCall] = []
        self.changes_page_limit = 100      # the service's default page size for iteration changes
        self._failures: list[_Failure] = []
        self._next_pr_id = 1
        self._routes = self._route_table()
        org = re.compile(re.escape(ORG) + r"(/.*)?$", re.IGNORECASE)
        for method in ("OPTIONS", "GET", "POST", "PUT", "PATCH", "DELETE"):
            rsps.add_callback(method, org, callback=self._dispatch)
        rsps.add_passthru(re.compile(r"https?://(127\.0\.0\.1|localhost)(:\d+)?/"))

    # -- arranging state --------------------------------------------------------------------------

    def gateway(self, **kwargs) -> AzdoGateway:
        """A gateway on ORG/PROJECT authenticating with PAT unless `pat=`/`credential=` is given."""
        if "credential" not in kwargs:
            kwargs.setdefault("pat", PAT)
        return AzdoGateway(ORG, PROJECT, **kwargs)

    def add_repo(self, name: str, repo_id: str | None = None, default_branch_commit: str | None = None) -> FakeRepo:
        repo = FakeRepo(id=repo_id or str(uuid.uuid4()), name=name)
        if default_branch_commit:
            repo.refs["refs/heads/main"] = default_branch_commit
            repo.commits.setdefault(default_branch_commit, {})
        self.repos[repo.id] = repo
        return repo

    def add_commit(self, repo: FakeRepo, commit_id: str, files: dict[str, bytes | str] | None = None) -> None:
        """A commit whose tree holds `files` (paths start with "/"); paths not listed do not exist."""
        tree = repo.commits.setdefault(commit_id, {})
        for path, content in (files or {}).items():
            tree[_item_path(path)] = content.encode() if isinstance(content, str) else content

    def add_file(self, repo: FakeRepo, commit_id: str, path: str, content: bytes | str) -> None:
        self.add_commit(repo, commit_id, {path: content})

    def set_ref(self, repo: FakeRepo, ref: str, commit_id: str) -> None:
        repo.refs[ref] = commit_id
        repo.commits.setdefault(commit_id, {})

    def add_pr(self, repo: FakeRepo, source_ref: str, target_ref: str, *, title: str = "A change",
               description: str = "", created_by: dict | None = None, status: str = "active",
               is_draft: bool = False, changes: list[tuple[str, str]] | None = None,
               source_commit: str | None = None, target_commit: str | None = None,
               merge_commit: str | None = None) -> FakePullRequest:
        """A PR that already exists; created by the bot unless `created_by` ({"id", "displayName"}) says otherwise."""
        pr = FakePullRequest(id=self._take_pr_id(), repo=repo, source_ref=source_ref, target_ref=target_ref,
                             title=title, description=description, created_by=created_by or dict(self.identity),
                             status=status, is_draft=is_draft,
                             last_merge_source_commit=source_commit or repo.refs.get(source_ref),
                             last_merge_target_commit=target_commit or repo.refs.get(target_ref),
                             last_merge_commit=merge_commit)
        pr.iterations.append(FakeIteration(1, list(changes or []), pr.last_merge_source_commit))
        self.prs[pr.id] = pr
        return pr

    def add_iteration(self, pr_id: int, changes: list[tuple[str, str]], source_commit: str | None = None) -> int:
        """A new push to the PR's source branch; returns the iteration id."""
        pr = self.prs[pr_id]
        iteration = FakeIteration(len(pr.iterations) + 1, list(changes), source_commit)
        pr.iterations.append(iteration)
        if source_commit:
            pr.last_merge_source_commit = source_commit
        return iteration.id

    def add_policy_evaluation(self, pr_id: int, status: str, *, type_id: str = BUILD_POLICY_TYPE,
                              type_name: str = "Build", is_blocking: bool = True, is_enabled: bool = True,
                              project_id: str = PROJECT_ID, evaluation_id: str | None = None) -> dict:
        artifact = f"vstfs:///CodeReview/CodeReviewId/{project_id}/{pr_id}"
        record = {
            "evaluationId": evaluation_id or str(uuid.uuid4()), "artifactId": artifact, "status": status,
            "configuration": {"id": len(self.policy_evaluations.get(artifact, [])) + 1, "revision": 1,
                              "isEnabled": is_enabled, "isBlocking": is_blocking, "isDeleted": False,
                              "type": {"id": type_id, "displayName": type_name}, "settings": {}},
            "context": {},
        }
        self.policy_evaluations.setdefault(artifact, []).append(record)
        return record

    def add_thread(self, pr_id: int, text: str, status: str = "active", author: dict | None = None) -> FakeThread:
        pr = self.prs[pr_id]
        thread = FakeThread(id=len(pr.threads) + 1, status=status,
                            comments=[_comment(1, text, author or dict(self.identity))])
        pr.threads[thread.id] = thread
        return thread

    def add_subscription(self, body: dict) -> dict:
        stored = {**body, "id": str(uuid.uuid4()), "status": body.get("status", "enabled")}
        stored["url"] = f"{ORG}/_apis/hooks/subscriptions/{stored['id']}"
        self.subscriptions[stored["id"]] = stored
        return stored

    # -- failures and inspection ------------------------------------------------------------------

    def fail_next(self, method: str, path: str, *, status: int = 500, retry_after: float | str | None = None,
                  body: Any = None, type_key: str | None = None, exception: BaseException | None = None,
                  times: int = 1) -> None:
        """Answer the next `times` requests whose method matches and whose org-relative path matches the
        regex `path` (re.search, case-insensitive) with `status` (or raise `exception`, e.g.
        requests.ConnectionError), before touching state. 401 answers carry no body, like the service."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if body is None and status != 401:
            body = _wrapped_exception(type_key or "InjectedFailure", f"Injected failure: HTTP {status}")
        self._failures.append(_Failure(method.upper(), re.compile(path, re.IGNORECASE), status, headers, body,
                                       exception, times))

    def find_calls(self, method: str | None = None, path: str | None = None) -> list[RecordedCall]:
        """Recorded requests by method and org-relative path regex (re.search, case-insensitive)."""
        return [call for call in self.calls
                if (method is None or call.method == method.upper())
                and (path is None or re.search(path, call.path, re.IGNORECASE))]

    def pr(self, pr_id: int) -> FakePullRequest:
        return self.prs[pr_id]

    # -- dispatch ---------------------------------------------------------------------------------

    def _dispatch(self, request) -> tuple[int, dict, bytes | str]:
        url = urlsplit(request.url)
        path = unquote(url.path)
        org_path = urlsplit(ORG).path
        relative = path[len(org_path):] if path.lower().startswith(org_path.lower()) else path
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        call = RecordedCall(method=request.method, path=relative, query=query, body=_decode(request.body),
                            headers=dict(request.headers))
        self.calls.append(call)

        for failure in self._failures:
            if failure.method == call.method and failure.path.search(call.path):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                if failure.exception is not None:
                    raise failure.exception
                return _reply(failure.status, failure.body, failure.headers)

        if "Authorization" not in request.headers:
            return 401, {"WWW-Authenticate": 'Basic realm="https://dev.azure.com/fabrikam/"'}, ""
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(relative)
            if method == call.method and match:
                try:
                    return handler(call, **match.groupdict())
                except FakeHttpError as error:
                    return _reply(error.status, _wrapped_exception(error.type_key, error.message))
        raise FakeRouteMissing(f"azdo fake has no route for {call.method} {call.path}")

    def _route_table(self) -> list[tuple[str, re.Pattern, Callable]]:
        project = r"/(?P<project>[^/]+)/_apis"
        repo = project + r"/git/repositories/(?P<repo>[^/]+)"
        pr = repo + r"/pullRequests/(?P<pr_id>\d+)"
        table = [
            ("OPTIONS", r"/_apis", self._options),
            ("GET", r"/_apis/ResourceAreas", self._resource_areas),
            ("GET", r"/_apis/ConnectionData", self._connection_data),
            ("GET", r"/_apis/projects/(?P<project>[^/]+)", self._get_project),
            ("GET", r"/_apis/hooks/subscriptions", self._list_subscriptions),
            ("POST", r"/_apis/hooks/subscriptions", self._create_subscription),
            ("PUT", r"/_apis/hooks/subscriptions/(?P<subscription_id>[^/]+)", self._replace_subscription),
            ("GET", repo, self._get_repository),
            ("GET", repo + r"/refs", self._get_refs),
            ("GET", repo + r"/items", self._get_item),
            ("GET", repo + r"/pullRequests", self._list_prs),
            ("POST", repo + r"/pullRequests", self._create_pr),
            ("GET", pr, self._get_pr),
            ("PATCH", pr, self._update_pr),
            ("GET", pr + r"/reviewers", self._list_reviewers),
            ("PUT", pr + r"/reviewers/(?P<reviewer_id>[^/]+)", self._put_reviewer),
            ("GET", pr + r"/iterations", self._list_iterations),
            ("GET", pr + r"/iterations/(?P<iteration_id>\d+)/changes", self._iteration_changes),
            ("GET", pr + r"/threads", self._list_threads),
            ("POST", pr + r"/threads", self._create_thread),
            ("PATCH", pr + r"/threads/(?P<thread_id>\d+)/comments/(?P<comment_id>\d+)", self._update_comment),
            ("PATCH", pr + r"/threads/(?P<thread_id>\d+)", self._update_thread),
            ("GET", project + r"/policy/Evaluations", self._list_policy_evaluations),
        ]
        return [(method, re.compile(pattern, re.IGNORECASE), handler) for method, pattern, handler in table]

    # -- lookups ----------------------------------------------------------------------------------

    def _repo(self, project: str, name_or_id: str) -> FakeRepo:
        self._check_project(project)
        for repo in self.repos.values():
            if name_or_id.lower() in (repo.id.lower(), repo.name.lower()):
                return repo
        raise FakeHttpError(404, "GitRepositoryNotFoundException",
                            f"TF401019: The Git repository with name or identifier {name_or_id} does not exist "
                            "or you do not have permissions for the operation you are attempting.")

    def _pull_request(self, project: str, repo: str, pr_id: str) -> FakePullRequest:
        found = self._repo(project, repo)
        pr = self.prs.get(int(pr_id))
        if pr is None or pr.repo is not found:
            raise FakeHttpError(404, "GitPullRequestNotFoundException",
                                "TF401180: The requested pull request was not found.")
        return pr

    @staticmethod
    def _check_project(project: str) -> None:
        if project.lower() not in (PROJECT.lower(), PROJECT_ID):
            raise FakeHttpError(404, "ProjectDoesNotExistWithNameException",
                                f"TF200016: The following project does not exist: {project}.")

    def _take_pr_id(self) -> int:
        pr_id, self._next_pr_id = self._next_pr_id, self._next_pr_id + 1
        return pr_id

    # -- handlers: location and identity ----------------------------------------------------------

    def _options(self, call: RecordedCall):
        return _reply(200, _collection([_location(*location) for location in _LOCATIONS]))

    def _resource_areas(self, call: RecordedCall):
        # Empty: the SDK then builds every client on the org URL (on-prem behaviour, reference §3.7 point 4).
        return _reply(200, _collection([]))

    def _connection_data(self, call: RecordedCall):
        user = {"id": self.identity["id"], "providerDisplayName": self.identity["displayName"], "isActive": True,
                "descriptor": f"Microsoft.IdentityModel.Claims.ClaimsIdentity;{self.identity['uniqueName']}"}
        return _reply(200, {"authenticatedUser": user, "authorizedUser": user,
                            "instanceId": "d8e1c3b6-1f5a-4c1e-9d7e-2a6c0f0b8e31", "deploymentType": "hosted"})

    def _get_project(self, call: RecordedCall, project: str):
        self._check_project(project)
        return _reply(200, {"id": PROJECT_ID, "name": PROJECT, "state": "wellFormed", "visibility": "private"})

    # -- handlers: repositories and content -------------------------------------------------------

    def _get_repository(self, call: RecordedCall, project: str, repo: str):
        found = self._repo(project, repo)
        return _reply(200, self._repo_json(found))

    def _get_refs(self, call: RecordedCall, project: str, repo: str):
        found = self._repo(project, repo)
        prefix = "refs/" + call.query.get("filter", "")
        refs = [{"name": name, "objectId": commit} for name, commit in sorted(found.refs.items())
                if name.startswith(prefix)]
        return _reply(200, _collection(refs))

    def _get_item(self, call: RecordedCall, project: str, repo: str):
        found = self._repo(project, repo)
        path = _item_path(call.query.get("path", "/"))
        version_type = call.query.get("versionDescriptor.versionType", "branch").lower()
        version = call.query.get("versionDescriptor.version", "main")
        commit = found.refs.get(f"refs/heads/{version}") if version_type == "branch" else version
        if commit is None or commit not in found.commits:
            raise FakeHttpError(404, "GitUnresolvableToCommitException",
                                f"TF401175: The version descriptor <{version_type.title()}: {version}> could not "
                                "be resolved to a version in the repository.")
        content = found.commits[commit].get(path)
        if content is None:
            raise FakeHttpError(404, "GitItemNotFoundException",
                                f"TF401174: The item '{path}' could not be found in the repository "
                                f"'{found.name}' at the version specified by '<Commit: {commit}>'.")
        return 200, {"Content-Type": "application/octet-stream"}, content

    # -- handlers: pull requests ------------------------------------------------------------------

    def _list_prs(self, call: RecordedCall, project: str, repo: str):
        found = self._repo(project, repo)
        q = call.query
        status = q.get("searchCriteria.status", "active")
        selected = [pr for pr in sorted(self.prs.values(), key=lambda pr: -pr.id)
                    if pr.repo is found
                    and (status == "all" or pr.status == status)
                    and q.get("searchCriteria.sourceRefName", pr.source_ref) == pr.source_ref
                    and q.get("searchCriteria.targetRefName", pr.target_ref) == pr.target_ref
                    and q.get("searchCriteria.creatorId", pr.created_by["id"]) == pr.created_by["id"]
                    and ("searchCriteria.reviewerId" not in q or q["searchCriteria.reviewerId"] in pr.reviewers)]
        skip, top = int(q.get("$skip", 0)), int(q.get("$top", 101))
        return _reply(200, _collection([self._pr_json(pr) for pr in selected[skip:skip + top]]))

    def _create_pr(self, call: RecordedCall, project: str, repo: str):
        found = self._repo(project, repo)
        body = call.body or {}
        source, target = body.get("sourceRefName"), body.get("targetRefName")
        if not source or not target or not body.get("title"):
            raise FakeHttpError(400, "InvalidArgumentValueException",
                                "sourceRefName, targetRefName and title are required.")
        _check_description(body.get("description"))
        for pr in self.prs.values():
            if pr.repo is found and pr.status == "active" and (pr.source_ref, pr.target_ref) == (source, target):
                raise FakeHttpError(409, "GitPullRequestExistsException",
                                    f"TF401179: An active pull request for the source and target branch "
                                    f"already exists. (pull request {pr.id})")
        pr = self.add_pr(found, source, target, title=body["title"], description=body.get("description") or "",
                         is_draft=bool(body.get("isDraft")))
        for reviewer in body.get("reviewers") or []:
            pr.reviewers[reviewer["id"]] = 0
        return _reply(201, self._pr_json(pr))

    def _get_pr(self, call: RecordedCall, project: str, repo: str, pr_id: str):
        return _reply(200, self._pr_json(self._pull_request(project, repo, pr_id)))

    def _update_pr(self, call: RecordedCall, project: str, repo: str, pr_id: str):
        pr = self._pull_request(project, repo, pr_id)
        body = call.body or {}
        if "description" in body:
            _check_description(body["description"])
            pr.description = body["description"] or ""
        if "title" in body:
            pr.title = body["title"]
        if "status" in body:
            pr.status = body["status"]
        if "isDraft" in body:
            pr.is_draft = bool(body["isDraft"])
        if "targetRefName" in body:
            pr.target_ref = body["targetRefName"]
        if "completionOptions" in body:
            pr.completion_options = body["completionOptions"]
        if "autoCompleteSetBy" in body:
            setter = (body["autoCompleteSetBy"] or {}).get("id")
            # Clearing with the empty GUID is common practice, not documented (reference §3.6 notes, [I]).
            pr.auto_complete_set_by = None if setter in (None, EMPTY_GUID) else setter
        return _reply(200, self._pr_json(pr))

    def _list_reviewers(self, call: RecordedCall, project: str, repo: str, pr_id: str):
        pr = self._pull_request(project, repo, pr_id)
        return _reply(200, _collection([{"id": rid, "vote": vote} for rid, vote in pr.reviewers.items()]))

    def _put_reviewer(self, call: RecordedCall, project: str, repo: str, pr_id: str, reviewer_id: str):
        pr = self._pull_request(project, repo, pr_id)
        vote = int((call.body or {}).get("vote", 0))
        pr.reviewers[reviewer_id] = vote
        return _reply(200, {"id": reviewer_id, "vote": vote, "isRequired": False})

    def _list_iterations(self, call: RecordedCall, project: str, repo: str, pr_id: str):
        pr = self._pull_request(project, repo, pr_id)
        return _reply(200, _collection([
            {"id": it.id, "sourceRefCommit": {"commitId": it.source_commit},
             "targetRefCommit": {"commitId": pr.last_merge_target_commit}} for it in pr.iterations]))

    def _iteration_changes(self, call: RecordedCall, project: str, repo: str, pr_id: str, iteration_id: str):
        pr = self._pull_request(project, repo, pr_id)
        iteration = next((it for it in pr.iterations if it.id == int(iteration_id)), None)
        if iteration is None:
            raise FakeHttpError(404, "GitPullRequestIterationNotFoundException",
                                f"The requested pull request iteration {iteration_id} was not found.")
        skip = int(call.query.get("$skip", 0))
        size = min(int(call.query.get("$top", self.changes_page_limit)), CHANGES_MAX_TOP, self.changes_page_limit)
        page = iteration.changes[skip:skip + size]
        more = skip + size < len(iteration.changes)
        entries = [{"changeTrackingId": skip + n + 1, "changeId": skip + n + 1,
                    "item": {"objectId": f"{skip + n + 1:040x}", "path": path}, "changeType": change_type}
                   for n, (path, change_type) in enumerate(page)]
        return _reply(200, {"changeEntries": entries, "nextSkip": skip + size if more else 0,
                            "nextTop": size if more else 0})

    # -- handlers: threads ------------------------------------------------------------------------

    def _list_threads(self, call: RecordedCall, project: str, repo: str, pr_id: str):
        pr = self._pull_request(project, repo, pr_id)
        return _reply(200, _collection([_thread_json(thread) for thread in pr.threads.values()]))

    def _create_thread(self, call: RecordedCall, project: str, repo: str, pr_id: str):
        pr = self._pull_request(project, repo, pr_id)
        body = call.body or {}
        comments = body.get("comments") or []
        if not comments:
            raise FakeHttpError(400, "InvalidArgumentValueException", "A thread needs at least one comment.")
        thread = FakeThread(id=len(pr.threads) + 1, status=body.get("status") or "active",
                            comments=[_comment(n + 1, c.get("content", ""), dict(self.identity),
                                               c.get("commentType", "text")) for n, c in enumerate(comments)])
        pr.threads[thread.id] = thread
        return _reply(200, _thread_json(thread))

    def _update_comment(self, call: RecordedCall, project: str, repo: str, pr_id: str, thread_id: str,
                        comment_id: str):
        pr = self._pull_request(project, repo, pr_id)
        thread = pr.threads.get(int(thread_id))
        comment = next((c for c in thread.comments if c["id"] == int(comment_id)), None) if thread else None
        if comment is None:
            raise FakeHttpError(404, "CommentNotFoundException",
                                f"Comment {comment_id} of thread {thread_id} was not found.")
        comment["content"] = (call.body or {}).get("content", comment["content"])
        return _reply(200, comment)

    def _update_thread(self, call: RecordedCall, project: str, repo: str, pr_id: str, thread_id: str):
        pr = self._pull_request(project, repo, pr_id)
        thread = pr.threads.get(int(thread_id))
        if thread is None:
            raise FakeHttpError(404, "CommentThreadNotFoundException", f"Thread {thread_id} was not found.")
        thread.status = (call.body or {}).get("status", thread.status)
        return _reply(200, _thread_json(thread))

    # -- handlers: policy and service hooks -------------------------------------------------------

    def _list_policy_evaluations(self, call: RecordedCall, project: str):
        self._check_project(project)
        artifact = call.query.get("artifactId")
        if not artifact:
            raise FakeHttpError(400, "ArgumentNullException", "Value cannot be null. Parameter name: artifactId")
        return _reply(200, _collection(self.policy_evaluations.get(artifact, [])))

    def _list_subscriptions(self, call: RecordedCall):
        filters = {k: v for k, v in call.query.items()
                   if k in ("publisherId", "eventType", "consumerId", "consumerActionId")}
        selected = [s for s in self.subscriptions.values() if all(s.get(k) == v for k, v in filters.items())]
        return _reply(200, _collection(selected))

    def _create_subscription(self, call: RecordedCall):
        return _reply(200, self.add_subscription(call.body or {}))

    def _replace_subscription(self, call: RecordedCall, subscription_id: str):
        if subscription_id not in self.subscriptions:
            raise FakeHttpError(404, "SubscriptionNotFoundException",
                                f"Subscription {subscription_id} was not found.")
        stored = {**(call.body or {}), "id": subscription_id,
                  "url": f"{ORG}/_apis/hooks/subscriptions/{subscription_id}"}
        stored.setdefault("status", "enabled")
        self.subscriptions[subscription_id] = stored
        return _reply(200, stored)

    # -- JSON shapes ------------------------------------------------------------------------------

    @staticmethod
    def _repo_json(repo: FakeRepo) -> dict:
        return {"id": repo.id, "name": repo.name, "url": f"{ORG}/{PROJECT_ID}/_apis/git/repositories/{repo.id}",
                "project": {"id": PROJECT_ID, "name": PROJECT, "state": "wellFormed"},
                "defaultBranch": "refs/heads/main"}

    def _pr_json(self, pr: FakePullRequest) -> dict:
        body = {
            "pullRequestId": pr.id, "codeReviewId": pr.id, "repository": self._repo_json(pr.repo),
            "status": pr.status, "isDraft": pr.is_draft, "createdBy": pr.created_by,
            "creationDate": "2024-05-01T10:00:00Z", "title": pr.title, "description": pr.description,
            "sourceRefName": pr.source_ref, "targetRefName": pr.target_ref, "mergeStatus": "succeeded",
            "reviewers": [{"id": rid, "vote": vote} for rid, vote in pr.reviewers.items()],
            "url": f"{ORG}/{PROJECT_ID}/_apis/git/repositories/{pr.repo.id}/pullRequests/{pr.id}",
        }
        for key, commit in (("lastMergeSourceCommit", pr.last_merge_source_commit),
                            ("lastMergeTargetCommit", pr.last_merge_target_commit),
                            ("lastMergeCommit", pr.last_merge_commit)):
            if commit:
                body[key] = {"commitId": commit}
        if pr.auto_complete_set_by:
            body["autoCompleteSetBy"] = {"id": pr.auto_complete_set_by}
        if pr.completion_options is not None:
            body["completionOptions"] = pr.completion_options
        return body


def _check_description(description: str | None) -> None:
    if description and len(description) > DESCRIPTION_LIMIT:
        raise FakeHttpError(400, "InvalidArgumentValueException",
                            f"The description is {len(description)} characters; the limit is {DESCRIPTION_LIMIT}.")


def _comment(comment_id: int, content: str, author: dict, comment_type: str = "text") -> dict:
    return {"id": comment_id, "parentCommentId": 0, "author": author, "content": content,
            "publishedDate": "2024-05-01T10:00:00Z", "commentType": comment_type}


def _thread_json(thread: FakeThread) -> dict:
    return {"id": thread.id, "status": thread.status, "comments": thread.comments, "isDeleted": False,
            "publishedDate": "2024-05-01T10:00:00Z", "properties": {}}


def _item_path(path: str) -> str:
    return "/" + path.lstrip("/")


def _collection(values: list) -> dict:
    return {"count": len(values), "value": values}


def _wrapped_exception(type_key: str, message: str) -> dict:
    return {"$id": "1", "innerException": None, "message": message,
            "typeName": f"Microsoft.TeamFoundation.Fake.{type_key}, Microsoft.TeamFoundation.Fake",
            "typeKey": type_key, "errorCode": 0, "eventId": 3000}


def _reply(status: int, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict, str]:
    if body is None or body == "":
        return status, dict(headers or {}), ""
    return status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, json.dumps(body)


def _decode(body: bytes | str | None) -> Any:
    if body in (None, b"", ""):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body


def clear_sdk_caches() -> None:
    """The SDK caches OPTIONS and ResourceAreas per process and on disk (reference §3.7)."""
    from azure.devops import _file_cache
    from azure.devops.client import Client

    Client._locations_cache.clear()
    for cache in (_file_cache.OPTIONS_CACHE, _file_cache.RESOURCE_CACHE):
        cache.clear()
        cache.data = {}


@contextmanager
def make_azdo_fake() -> Iterator[AzdoFake]:
    clear_sdk_caches()
    try:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            yield AzdoFake(rsps)
    finally:
        clear_sdk_caches()


@pytest.fixture
def azdo() -> Iterator[AzdoFake]:
    with make_azdo_fake() as fake:
        yield fake
