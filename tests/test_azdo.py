"""AzdoGateway against the HTTP-level Azure DevOps fake: real SDK requests, real bodies."""
import base64
import email.utils
import logging
import time

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from core.adapters.azdo import (
    ADO_SCOPE,
    EMPTY_GUID,
    AzdoAuthError,
    AzdoError,
    AzdoGateway,
    AzdoNotFound,
    AzdoTransientError,
    ChangedFile,
    PolicyEvaluation,
    Reviewer,
)
from tests.azdo_fake import (  # noqa: F401  (azdo is the fixture)
    BOT_ID,
    BUILD_POLICY_TYPE,
    MIN_REVIEWERS_POLICY_TYPE,
    ORG,
    PAT,
    PROJECT,
    PROJECT_ID,
    azdo,
    make_azdo_fake,
)

SOURCE = "refs/heads/bot/app-1.1"
MAIN = "refs/heads/main"


@pytest.fixture
def repo(azdo):
    return azdo.add_repo("hld")


@pytest.fixture
def gateway(azdo):
    return azdo.gateway()


# -- identity, repositories, auth wiring -----------------------------------------------------------

def test_identity_id_comes_from_connection_data_and_is_fetched_once(azdo, gateway):
    assert gateway.identity_id() == BOT_ID
    assert gateway.identity_id() == BOT_ID
    assert len(azdo.find_calls("GET", r"^/_apis/ConnectionData$")) == 1


def test_pat_is_sent_as_basic_auth_with_empty_user(azdo, gateway):
    gateway.identity_id()
    expected = "Basic " + base64.b64encode(f":{PAT}".encode()).decode()
    assert {call.headers["Authorization"] for call in azdo.find_calls("GET")} == {expected}


def test_credential_token_is_requested_for_the_devops_scope_and_sent_as_bearer(azdo):
    scopes = []

    class Credential:
        def get_token(self, *requested):
            scopes.extend(requested)
            return AccessToken("entra-token", int(time.time()) + 3600)

    gateway = AzdoGateway(ORG, PROJECT, credential=Credential())
    assert gateway.identity_id() == BOT_ID
    assert set(scopes) == {ADO_SCOPE}
    assert azdo.find_calls("GET", "ConnectionData")[0].headers["Authorization"] == "Bearer entra-token"


def test_credential_failure_is_an_auth_error(azdo):
    class Credential:
        def get_token(self, *scopes):
            raise ClientAuthenticationError(message="managed identity unavailable")

    with pytest.raises(AzdoAuthError, match="managed identity unavailable"):
        AzdoGateway(ORG, PROJECT, credential=Credential()).identity_id()
    assert azdo.calls == []


def test_gateway_needs_exactly_one_credential():
    with pytest.raises(ValueError):
        AzdoGateway(ORG, PROJECT)
    with pytest.raises(ValueError):
        AzdoGateway(ORG, PROJECT, pat=PAT, credential=object())


def test_repository_id_resolves_a_name(azdo, repo, gateway):
    assert gateway.repository_id("HLD") == repo.id
    with pytest.raises(AzdoNotFound) as raised:
        gateway.repository_id("nope")
    assert raised.value.type_key == "GitRepositoryNotFoundException"


# -- pull requests ----------------------------------------------------------------------------------

def test_create_pr_sends_refs_title_description_and_maps_the_answer(azdo, repo, gateway):
    pr = gateway.create_pr("hld", SOURCE, MAIN, "Bump app to 1.1", "Automated")
    assert azdo.find_calls("POST", r"/git/repositories/hld/pullRequests$")[0].body == {
        "sourceRefName": SOURCE, "targetRefName": MAIN, "title": "Bump app to 1.1", "description": "Automated"}
    assert azdo.pr(pr.id).title == "Bump app to 1.1"
    assert (pr.repository_id, pr.project_id) == (repo.id, PROJECT_ID)
    assert (pr.source_ref, pr.target_ref, pr.status, pr.is_draft) == (SOURCE, MAIN, "active", False)
    assert (pr.created_by_id, pr.created_by_name) == (BOT_ID, "gitops-autopilot")
    assert pr.auto_complete_set_by_id is None and pr.reviewers == ()


def test_create_pr_twice_for_the_same_branches_is_a_conflict_not_transient(azdo, repo, gateway):
    gateway.create_pr("hld", SOURCE, MAIN, "t", "d")
    with pytest.raises(AzdoError) as raised:
        gateway.create_pr("hld", SOURCE, MAIN, "t", "d")
    assert type(raised.value) is AzdoError
    assert (raised.value.status, raised.value.type_key) == (409, "GitPullRequestExistsException")


def test_find_active_pr_filters_by_refs_and_status(azdo, repo, gateway):
    azdo.add_pr(repo, SOURCE, MAIN, status="completed")
    azdo.add_pr(repo, "refs/heads/bot/other", MAIN)
    wanted = azdo.add_pr(repo, SOURCE, MAIN, source_commit="a" * 40)

    found = gateway.find_active_pr("hld", SOURCE, MAIN)

    assert found is not None and found.id == wanted.id
    assert found.last_merge_source_commit == "a" * 40
    assert azdo.find_calls("GET", r"/pullRequests$")[0].query == {
        "searchCriteria.sourceRefName": SOURCE, "searchCriteria.targetRefName": MAIN,
        "searchCriteria.status": "active"}
    assert gateway.find_active_pr("hld", "refs/heads/bot/none", MAIN) is None


def test_get_pr_maps_people_commits_and_reviewers(azdo, repo, gateway):
    human = {"id": "5f1b2c3d-0000-4000-8000-000000000001", "displayName": "Ada"}
    created = azdo.add_pr(repo, SOURCE, MAIN, title="t", description="d", created_by=human, is_draft=True,
                          source_commit="a" * 40, target_commit="b" * 40, merge_commit="c" * 40)
    created.reviewers[human["id"]] = -5

    pr = gateway.get_pr("hld", created.id)

    assert (pr.created_by_id, pr.created_by_name, pr.is_draft) == (human["id"], "Ada", True)
    assert (pr.last_merge_source_commit, pr.last_merge_target_commit, pr.last_merge_commit) == (
        "a" * 40, "b" * 40, "c" * 40)
    assert pr.reviewers == (Reviewer(id=human["id"], vote=-5),)


def test_get_missing_pr_is_not_found(gateway, repo):
    with pytest.raises(AzdoNotFound, match="HTTP 404"):
        gateway.get_pr("hld", 99)


def test_update_pr_text_patches_title_and_truncated_description(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN)

    pr = gateway.update_pr_text("hld", created.id, "New title", "x" * 5000)

    body = azdo.find_calls("PATCH", rf"/pullRequests/{created.id}$")[0].body
    assert body == {"title": "New title", "description": "x" * 4000}
    assert (pr.title, pr.description) == ("New title", "x" * 4000)
    assert azdo.pr(created.id).description == "x" * 4000


def test_vote_puts_the_bot_as_reviewer_with_the_vote(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN)

    gateway.vote("hld", created.id, 10)

    put = azdo.find_calls("PUT", r"/reviewers/")
    assert [call.path for call in put] == [
        f"/{PROJECT}/_apis/git/repositories/hld/pullRequests/{created.id}/reviewers/{BOT_ID}"]
    assert put[0].body == {"vote": 10}
    assert gateway.get_pr("hld", created.id).reviewers == (Reviewer(id=BOT_ID, vote=10),)


def test_set_auto_complete_patches_setter_and_completion_options(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN)

    gateway.set_auto_complete("hld", created.id, "squash", "Bump app to 1.1", delete_source_branch=False)

    assert azdo.find_calls("PATCH")[0].body == {
        "autoCompleteSetBy": {"id": BOT_ID},
        "completionOptions": {"mergeStrategy": "squash", "deleteSourceBranch": False,
                              "mergeCommitMessage": "Bump app to 1.1"}}
    assert gateway.get_pr("hld", created.id).auto_complete_set_by_id == BOT_ID


def test_clear_auto_complete_patches_the_empty_guid(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN)
    gateway.set_auto_complete("hld", created.id, "noFastForward", "m")

    gateway.clear_auto_complete("hld", created.id)

    assert azdo.find_calls("PATCH")[-1].body == {"autoCompleteSetBy": {"id": EMPTY_GUID}}
    assert gateway.get_pr("hld", created.id).auto_complete_set_by_id is None


# -- iterations and content ------------------------------------------------------------------------

def test_latest_iteration_is_the_highest_id(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN, changes=[("/a", "edit")])
    azdo.add_iteration(created.id, [("/a", "edit")])
    assert gateway.latest_iteration("hld", created.id) == 2


def test_changed_files_follows_next_skip_across_pages(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN, changes=[("/a.yaml", "edit"), ("/b.yaml", "add"), ("/c.yaml", "delete")])
    azdo.changes_page_limit = 2

    files = gateway.changed_files("hld", created.id, 1)

    assert files == [ChangedFile("/a.yaml", "edit"), ChangedFile("/b.yaml", "add"), ChangedFile("/c.yaml", "delete")]
    assert [call.query["$skip"] for call in azdo.find_calls("GET", r"/iterations/1/changes$")] == ["0", "2"]


def test_file_at_commit_reads_bytes_at_that_commit(azdo, repo, gateway):
    azdo.add_file(repo, "a" * 40, "/apps/app/values.yaml", b"image: app:1.0\n")
    azdo.add_file(repo, "b" * 40, "/apps/app/values.yaml", b"image: app:1.1\n")

    assert gateway.file_at_commit("hld", "/apps/app/values.yaml", "a" * 40) == b"image: app:1.0\n"
    assert azdo.find_calls("GET", "/items$")[0].query == {
        "path": "/apps/app/values.yaml", "versionDescriptor.versionType": "commit",
        "versionDescriptor.version": "a" * 40}


def test_file_missing_at_commit_is_none(azdo, repo, gateway):
    azdo.add_file(repo, "a" * 40, "/other.yaml", b"x")
    assert gateway.file_at_commit("hld", "/apps/app/values.yaml", "a" * 40) is None


def test_unknown_commit_or_repository_is_not_mistaken_for_a_missing_file(azdo, repo, gateway):
    with pytest.raises(AzdoNotFound) as raised:
        gateway.file_at_commit("hld", "/x.yaml", "f" * 40)
    assert raised.value.type_key == "GitUnresolvableToCommitException"
    with pytest.raises(AzdoNotFound):
        gateway.file_at_commit("manifests", "/x.yaml", "f" * 40)


# -- policies and threads --------------------------------------------------------------------------

def test_policy_evaluations_query_the_code_review_artifact_of_the_project_guid(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN)
    build = azdo.add_policy_evaluation(created.id, "running")
    azdo.add_policy_evaluation(created.id, "approved", type_id=MIN_REVIEWERS_POLICY_TYPE,
                               type_name="Minimum number of reviewers", is_blocking=False)

    evaluations = gateway.policy_evaluations(PROJECT_ID, created.id)

    assert azdo.find_calls("GET", "/policy/Evaluations$")[0].query == {
        "artifactId": f"vstfs:///CodeReview/CodeReviewId/{PROJECT_ID}/{created.id}"}
    assert evaluations == [
        PolicyEvaluation(build["evaluationId"], "running", True, True, BUILD_POLICY_TYPE, "Build"),
        PolicyEvaluation(evaluations[1].id, "approved", False, True, MIN_REVIEWERS_POLICY_TYPE,
                         "Minimum number of reviewers")]


def test_create_thread_and_edit_its_first_comment(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN)

    thread = gateway.create_thread("hld", created.id, "Autopilot: waiting for build", status="pending")
    gateway.update_thread_comment("hld", created.id, thread.id, "Autopilot: approved")

    assert azdo.find_calls("POST", "/threads$")[0].body == {
        "comments": [{"parentCommentId": 0, "content": "Autopilot: waiting for build", "commentType": "text"}],
        "status": "pending"}
    assert azdo.find_calls("PATCH", rf"/threads/{thread.id}/comments/1$")[0].body == {"content": "Autopilot: approved"}
    [listed] = gateway.list_threads("hld", created.id)
    assert (listed.id, listed.status, listed.first_comment) == (thread.id, "pending", "Autopilot: approved")


def test_list_threads_takes_comment_one_as_the_first_comment(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN)
    thread = azdo.add_thread(created.id, "original")
    thread.comments.insert(0, {**thread.comments[0], "id": 2, "parentCommentId": 1, "content": "a reply"})

    assert [t.first_comment for t in gateway.list_threads("hld", created.id)] == ["original"]


# -- service hooks ---------------------------------------------------------------------------------

def test_subscriptions_create_replace_and_list(azdo, gateway):
    body = {"publisherId": "tfs", "eventType": "git.pullrequest.updated", "resourceVersion": "1.0",
            "consumerId": "webHooks", "consumerActionId": "httpRequest",
            "publisherInputs": {"projectId": PROJECT_ID, "repository": "r1"},
            "consumerInputs": {"url": "https://func.example/api/hooks/ado"}}

    created = gateway.create_subscription(body)
    replaced = gateway.replace_subscription(created["id"], {**body, "consumerInputs": {"url": "https://new.example"}})

    assert azdo.find_calls("POST", "/hooks/subscriptions$")[0].body == body
    assert azdo.find_calls("PUT", rf"/hooks/subscriptions/{created['id']}$")[0].body["consumerInputs"] == {
        "url": "https://new.example"}
    assert replaced["id"] == created["id"]
    assert gateway.list_subscriptions() == [replaced]
    assert replaced["consumerInputs"] == {"url": "https://new.example"}
    assert replaced["eventType"] == "git.pullrequest.updated"


# -- error mapping ---------------------------------------------------------------------------------

def test_401_is_an_auth_error(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN)
    azdo.fail_next("GET", rf"/pullRequests/{created.id}$", status=401)
    with pytest.raises(AzdoAuthError) as raised:
        gateway.get_pr("hld", created.id)
    assert raised.value.status == 401


def test_401_on_the_first_options_request_is_an_auth_error(azdo, gateway):
    azdo.fail_next("OPTIONS", r"^/_apis$", status=401)
    with pytest.raises(AzdoAuthError):
        gateway.identity_id()


def test_403_is_an_auth_error(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN)
    azdo.fail_next("PATCH", "/pullRequests/", status=403)
    with pytest.raises(AzdoAuthError):
        gateway.clear_auto_complete("hld", created.id)


def test_429_is_transient_with_retry_after_and_is_not_retried(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN)
    gateway.identity_id()
    azdo.fail_next("PUT", "/reviewers/", status=429, retry_after=3)

    with pytest.raises(AzdoTransientError) as raised:
        gateway.vote("hld", created.id, 10)

    assert raised.value.retry_after == 3
    assert raised.value.status == 429
    assert len(azdo.find_calls("PUT", "/reviewers/")) == 1
    assert azdo.pr(created.id).reviewers == {}


def test_retry_after_as_http_date(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN)
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    azdo.fail_next("GET", rf"/pullRequests/{created.id}$", status=503, retry_after=when)
    with pytest.raises(AzdoTransientError) as raised:
        gateway.get_pr("hld", created.id)
    assert 25 <= raised.value.retry_after <= 31


def test_503_is_transient_and_a_post_is_sent_once(azdo, repo, gateway):
    azdo.fail_next("POST", r"/pullRequests$", status=503)
    with pytest.raises(AzdoTransientError) as raised:
        gateway.create_pr("hld", SOURCE, MAIN, "t", "d")
    assert (raised.value.status, raised.value.retry_after) == (503, None)
    assert len(azdo.find_calls("POST", r"/pullRequests$")) == 1
    assert azdo.prs == {}


def test_500_is_transient(azdo, repo, gateway):
    azdo.fail_next("GET", "/iterations$", status=500)
    created = azdo.add_pr(repo, SOURCE, MAIN)
    with pytest.raises(AzdoTransientError):
        gateway.latest_iteration("hld", created.id)


def test_connection_failure_is_transient(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN)
    azdo.fail_next("GET", "/threads$", exception=requests.ConnectionError("connection reset"))
    with pytest.raises(AzdoTransientError, match="ConnectionError") as raised:
        gateway.list_threads("hld", created.id)
    assert raised.value.retry_after is None


def test_400_is_a_plain_error_naming_the_request(azdo, repo, gateway):
    created = azdo.add_pr(repo, SOURCE, MAIN)
    azdo.fail_next("PATCH", "/pullRequests/", status=400, type_key="InvalidArgumentValueException")
    with pytest.raises(AzdoError) as raised:
        gateway.update_pr_text("hld", created.id, "t", "d")
    assert type(raised.value) is AzdoError
    assert f"PATCH /fabrikam/{PROJECT}/_apis/git/repositories/hld/pullRequests/{created.id}" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_no_message_or_log_record_contains_the_pat(azdo, repo, gateway, caplog):
    caplog.set_level(logging.DEBUG)
    created = azdo.add_pr(repo, SOURCE, MAIN)
    secrets = (PAT, base64.b64encode(f":{PAT}".encode()).decode())
    failures = [
        ("OPTIONS", r"^/_apis$", {"status": 401}),
        ("GET", "ConnectionData", {"status": 403}),
        ("PUT", "/reviewers/", {"status": 429, "retry_after": 3}),
        ("PATCH", "/pullRequests/", {"status": 503}),
        ("GET", "/items$", {"status": 404}),
        ("GET", "/threads$", {"exception": requests.ConnectionError("reset")}),
    ]
    calls = [
        lambda: gateway.identity_id(),
        lambda: gateway.identity_id(),
        lambda: gateway.vote("hld", created.id, 10),
        lambda: gateway.set_auto_complete("hld", created.id, "squash", "m"),
        lambda: gateway.file_at_commit("hld", "/x", "a" * 40),
        lambda: gateway.list_threads("hld", created.id),
    ]
    texts = []
    for (method, path, failure), call in zip(failures, calls):
        azdo.fail_next(method, path, **failure)
        try:
            call()
        except AzdoError as error:
            cause = error
            while cause is not None:
                texts += [str(cause), repr(cause)]
                cause = cause.__cause__ or cause.__context__
    texts += [record.getMessage() for record in caplog.records]

    assert len(texts) > 12 and caplog.records
    assert not [text for text in texts if any(secret in text for secret in secrets)]


# -- the fake itself -------------------------------------------------------------------------------

def test_each_fake_starts_from_cold_sdk_caches():
    for _ in range(2):
        with make_azdo_fake() as fake:
            fake.gateway().identity_id()
            assert [call.method for call in fake.find_calls(path=r"^/_apis$")] == ["OPTIONS"]
