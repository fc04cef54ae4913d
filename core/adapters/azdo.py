"""The one gateway to Azure DevOps: a thin adapter over the azure-devops SDK's v7.1 clients.

Every HTTP failure surfaces as an AzdoError subclass chosen by status code; messages name the request
(method and path) and the server's message, never a credential.
"""
from __future__ import annotations

import email.utils
import re
import time
from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import urlsplit

import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.devops.connection import Connection
from azure.devops.v7_1.git.models import (
    Comment,
    GitPullRequest,
    GitPullRequestCommentThread,
    GitPullRequestCompletionOptions,
    GitPullRequestSearchCriteria,
    GitVersionDescriptor,
    IdentityRef,
    IdentityRefWithVote,
)
from msrest.authentication import Authentication, BasicAuthentication
from msrest.exceptions import ClientException
from urllib3.util.retry import Retry

from core.model.pull_request import ChangedFile, PolicyEvaluation, PullRequest, Reviewer, Thread
from core.errors import AutopilotError, Permanent, Retryable

ADO_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
DESCRIPTION_LIMIT = 4000
CHANGES_PAGE_SIZE = 2000  # the service's maximum $top for iteration changes
_MESSAGE_LIMIT = 500

# The SDK's default urllib3 policy retries every verb (POST and PATCH included) on 5xx and sleeps on
# Retry-After, hiding status and Retry-After from us. Callers own retrying, so only failures to connect
# (nothing reached the server) are retried here.
_RETRY = Retry(total=2, connect=2, read=0, status=0, other=0, status_forcelist=frozenset(),
               respect_retry_after_header=False, raise_on_status=False, backoff_factor=0.5)


class AzdoError(AutopilotError):
    """An Azure DevOps call failed. `status` is the HTTP status, `type_key` the server's exception type."""

    def __init__(self, message: str, *, status: int | None = None, type_key: str | None = None):
        super().__init__(message)
        self.status = status
        self.type_key = type_key


class AzdoAuthError(AzdoError, Permanent):
    """401/403, or no token could be obtained."""


class AzdoNotFound(AzdoError, Permanent):
    """404."""


class AzdoTransientError(AzdoError, Retryable):
    """408/429/5xx or a connection failure; worth retrying after `retry_after` seconds when given."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None,
                 type_key: str | None = None):
        super().__init__(message, status=status, type_key=type_key)
        self.retry_after = retry_after


class AzdoGateway:
    """Azure DevOps operations used by the service, for one organization and project."""

    def __init__(self, org_url: str, project: str, *, pat: str | None = None, credential: Any = None):
        if (pat is None) == (credential is None):
            raise ValueError("AzdoGateway needs exactly one of pat= or credential=")
        creds = _PatAuthentication(pat) if pat is not None else _CredentialAuthentication(credential)
        self._project = project
        self._clients = Connection(base_url=org_url, creds=creds).clients_v7_1
        self._project_id: str | None = None
        self._identity_id: str | None = None

    # -- identity and repositories ---------------------------------------------------------------

    def identity_id(self) -> str:
        if self._identity_id is None:
            with _sdk_errors("read connection data"):
                data = self._clients.get_location_client().get_connection_data()
            self._identity_id = data.authenticated_user.id
        return self._identity_id

    def repository_id(self, name_or_id: str) -> str:
        with _sdk_errors(f"get repository {name_or_id}"):
            return self._git().get_repository(name_or_id, project=self._project).id

    # -- pull requests ---------------------------------------------------------------------------

    def find_active_pr(self, repo: str, source_ref: str, target_ref: str) -> PullRequest | None:
        """Refs are full names ("refs/heads/..."), as the service compares them verbatim."""
        criteria = GitPullRequestSearchCriteria(source_ref_name=source_ref, target_ref_name=target_ref,
                                                status="active")
        with _sdk_errors(f"search pull requests in {repo}"):
            found = self._git().get_pull_requests(repo, criteria, project=self._project)
        return _pull_request(found[0]) if found else None

    def create_pr(self, repo: str, source_ref: str, target_ref: str, title: str, description: str) -> PullRequest:
        body = GitPullRequest(source_ref_name=source_ref, target_ref_name=target_ref, title=title,
                              description=description[:DESCRIPTION_LIMIT])
        with _sdk_errors(f"create pull request in {repo}"):
            return _pull_request(self._git().create_pull_request(body, repo, project=self._project))

    def update_pr_text(self, repo: str, pr_id: int, title: str, description: str) -> PullRequest:
        body = GitPullRequest(title=title, description=description[:DESCRIPTION_LIMIT])
        return self._update_pr(repo, pr_id, body)

    def get_pr(self, repo: str, pr_id: int) -> PullRequest:
        with _sdk_errors(f"get pull request {pr_id} in {repo}"):
            return _pull_request(self._git().get_pull_request(repo, pr_id, project=self._project))

    def vote(self, repo: str, pr_id: int, vote: int) -> None:
        me = self.identity_id()
        with _sdk_errors(f"vote on pull request {pr_id} in {repo}"):
            self._git().create_pull_request_reviewer(IdentityRefWithVote(vote=vote), repo, pr_id, me,
                                                     project=self._project)

    def set_auto_complete(self, repo: str, pr_id: int, merge_strategy: str, message: str,
                          delete_source_branch: bool = True) -> None:
        options = GitPullRequestCompletionOptions(merge_strategy=merge_strategy, merge_commit_message=message,
                                                  delete_source_branch=delete_source_branch)
        body = GitPullRequest(auto_complete_set_by=IdentityRef(id=self.identity_id()), completion_options=options)
        self._update_pr(repo, pr_id, body)

    def clear_auto_complete(self, repo: str, pr_id: int) -> None:
        self._update_pr(repo, pr_id, GitPullRequest(auto_complete_set_by=IdentityRef(id=EMPTY_GUID)))

    # -- iterations and content ------------------------------------------------------------------

    def latest_iteration(self, repo: str, pr_id: int) -> int:
        with _sdk_errors(f"list iterations of pull request {pr_id} in {repo}"):
            iterations = self._git().get_pull_request_iterations(repo, pr_id, project=self._project)
        if not iterations:
            raise AzdoNotFound(f"pull request {pr_id} in {repo} has no iterations")
        return max(iteration.id for iteration in iterations)

    def changed_files(self, repo: str, pr_id: int, iteration_id: int) -> list[ChangedFile]:
        files: list[ChangedFile] = []
        skip = 0
        with _sdk_errors(f"list changes of pull request {pr_id} iteration {iteration_id} in {repo}"):
            while True:
                page = self._git().get_pull_request_iteration_changes(
                    repo, pr_id, iteration_id, project=self._project, top=CHANGES_PAGE_SIZE, skip=skip)
                # The SDK model drops item/changeType (microsoft/azure-devops-python-api#166).
                files.extend(ChangedFile(path=entry.additional_properties["item"]["path"],
                                         change_type=entry.additional_properties["changeType"])
                             for entry in page.change_entries or ())
                if not page.next_top:
                    return files
                skip = page.next_skip

    def file_at_commit(self, repo: str, path: str, commit_id: str) -> bytes | None:
        version = GitVersionDescriptor(version=commit_id, version_type="commit")
        try:
            with _sdk_errors(f"read {path} at {commit_id} in {repo}"):
                chunks = self._git().get_item_content(repo, path=path, project=self._project,
                                                      version_descriptor=version)
                return b"".join(chunks)
        except AzdoNotFound as error:
            # A missing repository or commit is also a 404; only a missing item means "no such file".
            if error.type_key in (None, "GitItemNotFoundException"):
                return None
            raise

    # -- policies --------------------------------------------------------------------------------

    def policy_evaluations(self, project_id: str, pr_id: int) -> list[PolicyEvaluation]:
        artifact = f"vstfs:///CodeReview/CodeReviewId/{project_id}/{pr_id}"
        with _sdk_errors(f"list policy evaluations of pull request {pr_id}"):
            records = self._clients.get_policy_client().get_policy_evaluations(self._project, artifact)
        return [_policy_evaluation(record) for record in records]

    # -- comment threads -------------------------------------------------------------------------

    def list_threads(self, repo: str, pr_id: int) -> list[Thread]:
        with _sdk_errors(f"list threads of pull request {pr_id} in {repo}"):
            threads = self._git().get_threads(repo, pr_id, project=self._project)
        return [_thread(thread) for thread in threads]

    def create_thread(self, repo: str, pr_id: int, text: str, status: str = "active") -> Thread:
        body = GitPullRequestCommentThread(
            comments=[Comment(parent_comment_id=0, content=text, comment_type="text")], status=status)
        with _sdk_errors(f"create thread on pull request {pr_id} in {repo}"):
            return _thread(self._git().create_thread(body, repo, pr_id, project=self._project))

    def update_thread_comment(self, repo: str, pr_id: int, thread_id: int, text: str) -> None:
        with _sdk_errors(f"update thread {thread_id} of pull request {pr_id} in {repo}"):
            self._git().update_comment(Comment(content=text), repo, pr_id, thread_id, 1, project=self._project)

    def set_thread_status(self, repo: str, pr_id: int, thread_id: int, status: str) -> None:
        """active | fixed | wontFix | closed | byDesign | pending: a resolved thread no longer blocks a
        "comments must be resolved" policy."""
        with _sdk_errors(f"set status of thread {thread_id} of pull request {pr_id} in {repo}"):
            self._git().update_thread(GitPullRequestCommentThread(status=status), repo, pr_id, thread_id,
                                      project=self._project)

    # -- service hooks ---------------------------------------------------------------------------

    def list_subscriptions(self) -> list[dict]:
        """Subscriptions in REST JSON shape (camelCase keys, as in reference §1.6), like the bodies below."""
        with _sdk_errors("list service hook subscriptions"):
            subscriptions = self._clients.get_service_hooks_client().list_subscriptions()
        return [subscription.serialize(keep_readonly=True) for subscription in subscriptions]

    def create_subscription(self, body: dict) -> dict:
        with _sdk_errors("create service hook subscription"):
            created = self._clients.get_service_hooks_client().create_subscription(body)
        return created.serialize(keep_readonly=True)

    def replace_subscription(self, subscription_id: str, body: dict) -> dict:
        with _sdk_errors(f"replace service hook subscription {subscription_id}"):
            replaced = self._clients.get_service_hooks_client().replace_subscription(body, subscription_id)
        return replaced.serialize(keep_readonly=True)

    # -- internals -------------------------------------------------------------------------------

    def project_id(self) -> str:
        """The project's GUID (service hook filters and policy artifact ids need it, not the name)."""
        if self._project_id is None:
            with _sdk_errors(f"get project {self._project}"):
                self._project_id = self._clients.get_core_client().get_project(self._project).id
        return self._project_id

    def _git(self):
        return self._clients.get_git_client()

    def _update_pr(self, repo: str, pr_id: int, body: GitPullRequest) -> PullRequest:
        with _sdk_errors(f"update pull request {pr_id} in {repo}"):
            return _pull_request(self._git().update_pull_request(body, repo, pr_id, project=self._project))


# -- SDK model → our records ---------------------------------------------------------------------

def _pull_request(pr: GitPullRequest) -> PullRequest:
    repository = pr.repository
    auto_complete = pr.auto_complete_set_by.id if pr.auto_complete_set_by else None
    return PullRequest(
        id=pr.pull_request_id,
        repository_id=repository.id if repository else "",
        project_id=repository.project.id if repository and repository.project else None,
        title=pr.title or "",
        description=pr.description or "",
        source_ref=pr.source_ref_name or "",
        target_ref=pr.target_ref_name or "",
        status=pr.status or "",
        is_draft=bool(pr.is_draft),
        created_by_id=pr.created_by.id if pr.created_by else "",
        created_by_name=(pr.created_by.display_name or "") if pr.created_by else "",
        auto_complete_set_by_id=None if auto_complete in (None, EMPTY_GUID) else auto_complete,
        last_merge_source_commit=_commit_id(pr.last_merge_source_commit),
        last_merge_target_commit=_commit_id(pr.last_merge_target_commit),
        last_merge_commit=_commit_id(pr.last_merge_commit),
        reviewers=tuple(Reviewer(id=r.id, vote=r.vote or 0) for r in pr.reviewers or ()),
    )


def _commit_id(commit) -> str | None:
    return commit.commit_id if commit else None


def _policy_evaluation(record) -> PolicyEvaluation:
    configuration = record.configuration
    return PolicyEvaluation(
        id=record.evaluation_id,
        status=record.status,
        is_blocking=bool(configuration.is_blocking),
        is_enabled=bool(configuration.is_enabled),
        type_id=configuration.type.id,
        type_name=configuration.type.display_name or "",
    )


def _thread(thread: GitPullRequestCommentThread) -> Thread:
    comments = sorted(thread.comments or (), key=lambda comment: comment.id or 0)
    return Thread(id=thread.id, status=thread.status or "unknown",
                  first_comment=(comments[0].content or "") if comments else "")


# -- authentication and error mapping -------------------------------------------------------------

class _PatAuthentication(BasicAuthentication):
    def __init__(self, pat: str):
        super().__init__("", pat)

    def signed_session(self, session=None):
        return _guard(super().signed_session(session))


class _CredentialAuthentication(Authentication):
    """Bearer token from an azure-identity credential, fetched per request (the credential caches it)."""

    def __init__(self, credential: Any):
        super().__init__()
        self._credential = credential

    def signed_session(self, session=None):
        session = super().signed_session(session)
        try:
            token = self._credential.get_token(ADO_SCOPE).token
        except ClientAuthenticationError as error:
            raise AzdoAuthError(_one_line(f"no Azure DevOps token for {ADO_SCOPE}: {error.message}")) from error
        session.headers["Authorization"] = f"Bearer {token}"
        return _guard(session)


def _guard(session: requests.Session) -> requests.Session:
    """Every SDK request (OPTIONS and ResourceAreas included) passes the credentials' signed_session,
    so this is where our status mapping and retry policy are attached."""
    if _raise_for_status not in session.hooks["response"]:
        session.hooks["response"].append(_raise_for_status)
    for adapter in session.adapters.values():
        adapter.max_retries = _RETRY
    return session


def _raise_for_status(response: requests.Response, *args, **kwargs) -> None:
    # Raised from a requests hook, so the SDK never turns the response into its status-less exceptions.
    if response.status_code >= 400:
        raise _http_error(response)


def _http_error(response: requests.Response) -> AzdoError:
    status = response.status_code
    wrapped = _json_object(response)
    type_key = wrapped.get("typeKey") if isinstance(wrapped.get("typeKey"), str) else None
    detail = wrapped.get("message") or response.reason or ""
    message = _one_line(f"Azure DevOps {response.request.method} {urlsplit(response.url).path} "
                        f"returned HTTP {status}: {detail}")
    response.close()
    if status in (401, 403):
        return AzdoAuthError(message, status=status, type_key=type_key)
    if status == 404:
        return AzdoNotFound(message, status=status, type_key=type_key)
    if status in (408, 429) or status >= 500:
        return AzdoTransientError(message, retry_after=_retry_after(response.headers.get("Retry-After")),
                                  status=status, type_key=type_key)
    return AzdoError(message, status=status, type_key=type_key)


def _json_object(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(value: str | None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@contextmanager
def _sdk_errors(action: str) -> Iterator[None]:
    """Map what the SDK and msrest raise (transport failures, unexpected responses) to AzdoError."""
    try:
        yield
    except ClientException as error:
        # msrest wraps transport failures inside an `except` block, so the requests exception is the context.
        cause = error.__context__
        if isinstance(cause, (requests.ConnectionError, requests.Timeout)):
            raise AzdoTransientError(_one_line(f"Azure DevOps {action} failed: {type(cause).__name__}: {cause}")
                                     ) from error
        raise AzdoError(_one_line(f"Azure DevOps {action} failed: {error}")) from error


def _one_line(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT - 1] + "…"
