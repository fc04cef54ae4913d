"""Service hook setup against the Azure DevOps fake: idempotent create / replace / leave alone."""
from __future__ import annotations

import pytest

from core.ops.hook_setup import (HookSetupError, acr_commands, hook_url, setup_subscriptions)
from core.settings import load_settings
from tests.azdo_fake import ORG, PROJECT, PROJECT_ID, azdo  # noqa: F401  (the fixture)

BASE = "https://autopilot-func.azurewebsites.net"
SECRET = "hook-secret-1"
KEY = "fn/key=="
HOOK = f"{BASE}/api/hooks/azdo?code=fn%2Fkey%3D%3D"


def settings(**overrides: str):
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "AZDO_WEBHOOK_SECRET": SECRET,
           "HLD_REPO_URL": f"{ORG}/{PROJECT}/_git/hld", "MANIFEST_REPO_URL": f"{ORG}/{PROJECT}/_git/manifests",
           "MANIFEST_BRANCH": "deploy", "AZDO_ORG_URL": ORG, "AZDO_PROJECT": PROJECT, "WRITE_MODE": "pull-request"}
    env.update(overrides)
    return load_settings({k: v for k, v in env.items() if v is not None})


@pytest.fixture
def repos(azdo):  # noqa: F811
    return azdo.add_repo("hld"), azdo.add_repo("manifests")


def run(azdo, config=None, **kwargs):  # noqa: F811
    kwargs.setdefault("function_key", KEY)
    return setup_subscriptions(azdo.gateway(), config or settings(), base_url=BASE, project_id=PROJECT_ID, **kwargs)


def writes(azdo) -> tuple[list, list]:  # noqa: F811
    return azdo.find_calls("POST", "/hooks/subscriptions$"), azdo.find_calls("PUT", "/hooks/subscriptions/")


def test_first_run_creates_every_subscription(azdo, repos):  # noqa: F811
    hld, manifests = repos
    result = run(azdo)

    posts, puts = writes(azdo)
    assert (len(posts), puts) == (8, [])
    assert [c.action for c in result.changes] == ["create"] * 8
    assert all(c.subscription_id in azdo.subscriptions for c in result.changes)
    made = {(b["eventType"], b["publisherInputs"].get("repository"), b["publisherInputs"].get("branch"))
            for b in (p.body for p in posts)}
    assert made == {
        ("git.pullrequest.created", hld.id, "main"), ("git.pullrequest.updated", hld.id, "main"),
        ("git.pullrequest.merged", hld.id, "main"), ("git.push", hld.id, "main"),
        ("git.pullrequest.created", manifests.id, "deploy"), ("git.pullrequest.updated", manifests.id, "deploy"),
        ("git.pullrequest.merged", manifests.id, "deploy"), ("build.complete", None, None)}
    push = next(p.body for p in posts if p.body["eventType"] == "git.push")
    assert push == {
        "publisherId": "tfs", "eventType": "git.push", "resourceVersion": "1.0",
        "consumerId": "webHooks", "consumerActionId": "httpRequest",
        "publisherInputs": {"projectId": PROJECT_ID, "repository": hld.id, "branch": "main"},
        "consumerInputs": {"url": HOOK, "basicAuthUsername": "autopilot", "basicAuthPassword": SECRET,
                           "resourceDetailsToSend": "all"}}
    build = next(p.body for p in posts if p.body["eventType"] == "build.complete")
    assert build["publisherInputs"] == {"projectId": PROJECT_ID} and build["resourceVersion"] == "2.0"


def test_second_run_changes_nothing(azdo, repos):  # noqa: F811
    run(azdo)
    azdo.calls.clear()

    result = run(azdo)

    assert writes(azdo) == ([], [])
    assert [c.action for c in result.changes] == ["unchanged"] * 8
    assert len(azdo.subscriptions) == 8


def test_a_changed_secret_replaces_each_subscription(azdo, repos):  # noqa: F811
    run(azdo)
    ids = set(azdo.subscriptions)
    azdo.calls.clear()

    result = run(azdo, settings(AZDO_WEBHOOK_SECRET="hook-secret-2"))

    posts, puts = writes(azdo)
    assert posts == [] and len(puts) == 8
    assert {c.differences for c in result.changes} == {("consumerInputs.basicAuthPassword",)}
    assert set(azdo.subscriptions) == ids
    assert {s["consumerInputs"]["basicAuthPassword"] for s in azdo.subscriptions.values()} == {"hook-secret-2"}
    azdo.calls.clear()
    assert [c.action for c in run(azdo, settings(AZDO_WEBHOOK_SECRET="hook-secret-2")).changes] == ["unchanged"] * 8


def test_dry_run_plans_without_writing(azdo, repos):  # noqa: F811
    planned = run(azdo, dry_run=True)
    assert [c.action for c in planned.changes] == ["create"] * 8
    assert writes(azdo) == ([], []) and azdo.subscriptions == {}

    run(azdo)
    azdo.calls.clear()
    planned = run(azdo, settings(AZDO_WEBHOOK_SECRET="rotated"), dry_run=True)
    assert [c.action for c in planned.changes] == ["update"] * 8
    assert writes(azdo) == ([], [])
    assert {s["consumerInputs"]["basicAuthPassword"] for s in azdo.subscriptions.values()} == {SECRET}


def test_a_new_function_key_updates_rather_than_duplicates(azdo, repos):  # noqa: F811
    run(azdo)
    azdo.calls.clear()

    result = run(azdo, function_key="new-key")

    posts, puts = writes(azdo)
    assert posts == [] and len(puts) == 8
    assert {c.differences for c in result.changes} == {("consumerInputs.url",)}
    assert {s["consumerInputs"]["url"] for s in azdo.subscriptions.values()} == {f"{BASE}/api/hooks/azdo?code=new-key"}


def test_narrowing_filters_and_disabled_subscriptions_are_repaired(azdo, repos):  # noqa: F811
    hld, _ = repos
    wanted = {"publisherId": "tfs", "resourceVersion": "1.0", "consumerId": "webHooks",
              "consumerActionId": "httpRequest",
              "consumerInputs": {"url": HOOK, "basicAuthUsername": "autopilot", "basicAuthPassword": SECRET,
                                 "resourceDetailsToSend": "all"}}
    narrowed = azdo.add_subscription({**wanted, "eventType": "git.pullrequest.updated", "publisherInputs": {
        "projectId": PROJECT_ID, "repository": hld.id, "branch": "main", "notificationType": "PushNotification"}})
    disabled = azdo.add_subscription({**wanted, "eventType": "git.push", "status": "disabledBySystem",
                                      "publisherInputs": {"projectId": PROJECT_ID, "repository": hld.id,
                                                          "branch": "main"}})

    result = run(azdo)

    by_id = {c.subscription_id: c for c in result.changes}
    assert by_id[narrowed["id"]].differences == ("publisherInputs.notificationType",)
    assert by_id[disabled["id"]].differences == ("status disabledBySystem",)
    assert "notificationType" not in azdo.subscriptions[narrowed["id"]]["publisherInputs"]
    assert azdo.subscriptions[disabled["id"]]["status"] == "enabled"
    assert len(azdo.subscriptions) == 8


def test_a_masked_password_is_left_alone_unless_rotating(azdo, repos):  # noqa: F811
    run(azdo)
    for subscription in azdo.subscriptions.values():
        subscription["consumerInputs"]["basicAuthPassword"] = "********"  # as the service returns secrets
    azdo.calls.clear()

    assert [c.action for c in run(azdo).changes] == ["unchanged"] * 8
    assert writes(azdo) == ([], [])

    rotated = run(azdo, rotate_secret=True)
    assert [c.action for c in rotated.changes] == ["update"] * 8
    assert {s["consumerInputs"]["basicAuthPassword"] for s in azdo.subscriptions.values()} == {SECRET}


def test_other_subscriptions_are_not_touched(azdo, repos):  # noqa: F811
    hld, _ = repos
    foreign = azdo.add_subscription({
        "publisherId": "tfs", "eventType": "git.push", "resourceVersion": "1.0", "consumerId": "webHooks",
        "consumerActionId": "httpRequest", "publisherInputs": {"projectId": PROJECT_ID, "repository": hld.id},
        "consumerInputs": {"url": "https://ci.example.com/hook"}})

    run(azdo)

    assert azdo.find_calls("PUT", foreign["id"]) == []
    assert azdo.subscriptions[foreign["id"]]["consumerInputs"] == {"url": "https://ci.example.com/hook"}
    assert len(azdo.subscriptions) == 9


def test_light_weight_flow_subscribes_the_manifest_repo_and_builds(azdo, repos):  # noqa: F811
    _, manifests = repos
    result = run(azdo, settings(HLD_REPO_URL=None))
    assert sorted((c.event_type, c.body["publisherInputs"].get("repository")) for c in result.changes) == [
        ("build.complete", None), ("git.pullrequest.created", manifests.id),
        ("git.pullrequest.merged", manifests.id), ("git.pullrequest.updated", manifests.id)]


@pytest.mark.parametrize("config, kwargs, fragment", [
    ({"AZDO_WEBHOOK_SECRET": None}, {}, "AZDO_WEBHOOK_SECRET is empty"),
    ({"HLD_REPO_URL": None, "MANIFEST_REPO_URL": None}, {}, "neither HLD_REPO_URL nor MANIFEST_REPO_URL"),
    ({}, {"base_url": "http://autopilot.example.com"}, "https://"),
    ({}, {"base_url": f"{BASE}?code=x"}, "--function-key"),
    ({}, {"project_id": " "}, "project id"),
])
def test_setup_refuses_bad_configuration(azdo, repos, config, kwargs, fragment):  # noqa: F811
    args = {"base_url": BASE, "project_id": PROJECT_ID, **kwargs}
    with pytest.raises(HookSetupError, match=fragment.replace("?", r"\?")):
        setup_subscriptions(azdo.gateway(), settings(**config), **args)
    assert writes(azdo) == ([], [])


def test_hook_url():
    assert hook_url(BASE + "/") == f"{BASE}/api/hooks/azdo"
    assert hook_url(BASE, KEY) == HOOK


def test_acr_commands_name_secrets_as_variables_only():
    webhook, eventgrid = acr_commands("myregistry", BASE, uses_function_key=True)
    assert webhook == (f'az acr webhook create --registry myregistry --name autopilot --actions push '
                       f'--uri "{BASE}/api/hooks/acr?code=$FUNCTIONS_KEY" '
                       '--headers "Authorization=Bearer $ACR_WEBHOOK_SECRET"')
    assert eventgrid.startswith("az eventgrid event-subscription create --name autopilot ")
    assert '--source-resource-id "$(az acr show --name myregistry --query id --output tsv)"' in eventgrid
    assert f'--endpoint "{BASE}/api/hooks/eventgrid?code=$FUNCTIONS_KEY&secret=$ACR_WEBHOOK_SECRET"' in eventgrid
    assert "--included-event-types Microsoft.ContainerRegistry.ImagePushed" in eventgrid
    keyless, _ = acr_commands("myregistry", BASE, uses_function_key=False)
    assert f'--uri "{BASE}/api/hooks/acr"' in keyless
