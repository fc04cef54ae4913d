"""The dashboard's data (core/ops/dashboard.py) for each state a deployment can be in, its filters, the what-runs-where
matrix, queues and health; the page's safety (core/ops/dashboard_page.py); the data handler's bad input."""
from __future__ import annotations

import asyncio
import json
import re

import azure.functions as func
import pytest

from core.adapters.trace import to_record
from core.model.trace_record import TraceRecord
from core.ops.cli import UsageError
from core.ops.dashboard import (STATES, Filters, clean_repo_url, commit_link, dashboard_data, deployment_json,
                            fold_failures, health_json, matrix, parse_filters, pr_link, queues_json, row_state)
from core.ops.dashboard_page import TEMPLATE, content_security_policy, foreign_origin, page_headers, render_page
from handlers import dashboard as handler

T0 = "2026-11-29T10:00:00+00:00"
AZDO_HLD = "https://fabrikam@dev.azure.com/fabrikam/Fabrikam/_git/hld"
AZDO_MANIFESTS = "https://dev.azure.com/fabrikam/Fabrikam/_git/manifests"
SHA = "0123456789abcdef0123456789abcdef01234567"


def at(seconds: float) -> str:
    return f"2026-11-29T10:{int(seconds) // 60:02d}:{seconds % 60:06.3f}+00:00"


def stage(name: str, seconds: float, **detail) -> dict:
    return {"stage": name, "at": at(seconds), "actor": "test", "latencySeconds": float(seconds), **detail}


def row(*stages: dict, service: str = "frontend", env: str = "dev", tag: str = "1.4.2", trace: str = "t" * 32,
        key: str = "", start: float = 0, **fields) -> TraceRecord:
    """A trace record as stored (unknown columns, such as a hostile one, are not read)."""
    return to_record({"traceId": trace, "targetKey": key or f"hld:{service}:{env}", "start": at(start),
                      "service": service, "env": env, "image": "fabrikam.azurecr.io/fabrikam/" + service,
                      "imageTag": tag, "hldRepo": AZDO_HLD, "manifestRepo": AZDO_MANIFESTS,
                      "stages": json.dumps(list(stages)), **fields})


def data(rows: list[dict], filters: Filters = Filters(), reviews: dict | None = None, queues: dict | None = None,
         health: tuple = (200, {"status": "healthy"})) -> dict:
    return dashboard_data(rows, lambda row: (reviews or {}).get(row.pr, []),
                          queues if queues is not None else {"image-pushed": {"depth": 0, "poison": 0}},
                          health, filters, T0)


# -- states -------------------------------------------------------------------------------------------------------

CHAIN = [stage("received", 1), stage("hld-commit", 2, commit=SHA), stage("manifest-commit", 3, commit=SHA)]


@pytest.mark.parametrize("stages, state, label", [
    ([stage("received", 1)], "in-progress", "received"),
    ([stage("received", 1), stage("hld-commit", 2, commit=SHA)], "in-progress", "HLD committed, manifests next"),
    (CHAIN, "deployed", "in manifests"),
    ([stage("received", 1), stage("hld-pr", 2, commit=SHA, pr=12)], "awaiting-approval",
     "HLD pull request awaiting approval"),
    ([stage("received", 1), stage("hld-pr", 2, pr=12), stage("review-ineligible", 3, pr=12, failed=["patchOnly"])],
     "awaiting-approval", "awaiting manual approval"),
    ([stage("received", 1), stage("hld-pr", 2, pr=12), stage("pr-approved", 3, pr=12)], "in-progress",
     "approved, awaiting merge"),
    ([stage("received", 1), stage("hld-pr", 2, pr=12), stage("pr-approved", 3, pr=12), stage("hld-merge", 4)],
     "in-progress", "merged, manifests next"),
    ([*CHAIN[:2], stage("manifest-pr", 3, commit=SHA, pr=40)], "awaiting-approval",
     "manifest pull request awaiting approval"),
    ([stage("received", 1), stage("failed", 2, reason="PolicyError: autopilot.yaml:2: invalid YAML",
                                      queue="image-pushed")], "failed", "failed in image-pushed"),
    ([*CHAIN, stage("applied@prod-eastus", 9)], "applied", "applied on prod-eastus"),
    ([*CHAIN, stage("failed@prod-westus", 9, message="HealthCheckFailed")], "failed", "failed on prod-westus"),
    ([*CHAIN, stage("notified@prod-eastus", 5)], "deployed", "in manifests"),
    ([*CHAIN, stage("soaking@staging", 5)], "soaking", "soaking on staging"),
    ([*CHAIN, stage("promotion", 5, state="paused")], "paused", "paused"),
    ([*CHAIN, stage("awaiting-approval", 5)], "awaiting-approval", "awaiting-approval"),
])
def test_each_stage_sequence_gives_its_state(stages, state, label):
    assert state in STATES
    assert (row_state(row(*stages)).state, row_state(row(*stages)).label) == (state, label)


@pytest.mark.parametrize("reason, action, state, label", [
    ("tag 'nightly' filtered out by tagFilter '^v'", "skip", "skipped", "skipped: filtered tag"),
    ("tag 'latest' is not orderable under semver ordering", "skip", "skipped", "skipped: filtered tag"),
    ("tag '2.0.0' is outside range '<2'", "skip", "skipped", "skipped: filtered tag"),
    ("1.0.0 is not newer than high-water mark 1.4.2 (replayed or out-of-order delivery, or a rollback in the HLD)",
     "skip", "skipped", "skipped: older than the high-water mark"),
    ("1.0.0 is older than current 1.4.2; never downgrade", "skip", "skipped", "skipped: older than the current tag"),
    ("superseded in the same run by 1.4.3", "skip", "skipped", "skipped: overridden by a newer tag"),
    ("1.4.2 is already current", "noop", "skipped", "skipped: already current"),
    ("environment 'prod' is not among the allowed environments [dev]", "skip", "skipped",
     "skipped: environment not allowed"),
    ("automation is paused by autopilot.yaml rules[0]", "skip", "paused", "paused by autopilot.yaml"),
])
def test_skips_say_why_and_a_paused_policy_is_paused(reason, action, state, label):
    result = row_state(row(stage("received", 1), stage("skipped", 2, reason=reason, action=action)))
    assert (result.state, result.label, result.reason) == (state, label, reason)


def test_no_target_is_a_skip_with_its_reason():
    result = row_state(row(stage("no-target", 1, reason="no file in hld uses fabrikam/x")))
    assert (result.state, result.label, result.reason) == ("skipped", "skipped: no target uses the image",
                                                           "no file in hld uses fabrikam/x")


def test_a_row_level_promotion_state_wins_with_its_reason():
    result = row_state(row(*CHAIN, state="soaking", stateReason="soak 10m on dev: 4m left"))
    assert (result.state, result.label, result.reason) == ("soaking", "soaking", "soak 10m on dev: 4m left")
    assert row_state(row(*CHAIN, state="bogus")).state == "deployed"


def test_a_failure_later_fixed_by_a_replay_folds_into_the_chain():
    failed = row(stage("failed", 2, reason="PolicyError: bad", queue="image-pushed"), key="failed:image-pushed",
                 service="", env="", trace="r" * 32)
    replayed = [row(stage("received", 1), stage("hld-commit", 30, commit=SHA), stage("manifest-commit", 31),
                    trace="r" * 32, env=env) for env in ("dev", "prod")]
    folded = fold_failures([failed, *replayed])
    assert len(folded) == 2
    for folded_row in folded:
        assert [s.name for s in folded_row.stages] == ["received", "failed", "hld-commit", "manifest-commit"]
        assert row_state(folded_row).state == "deployed"
    alone = fold_failures([failed])
    assert alone == [failed] and row_state(alone[0]).state == "failed"
    body = data([failed, *replayed])
    assert body["counts"]["failed"] == 0 and body["counts"]["deployed"] == 2


# -- rows: timeline, links, reviews, safety -----------------------------------------------------------------------

def test_a_pull_request_chain_links_each_stage_where_it_can():
    body = deployment_json(row(stage("received", 1), stage("hld-pr", 2, commit=SHA, pr=12),
                               stage("pr-approved", 3, pr=12, iteration=1), stage("hld-merge", 4, commit=SHA),
                               stage("manifest-commit", 5, commit=SHA), pr="12"),
                           [{"pr": 12, "iteration": 1, "action": "approved", "at": T0, "passed": ["patchOnly"],
                             "failed": []}])
    stages = {s["name"]: s for s in body["stages"]}
    assert stages["received"]["latencySeconds"] == 1.0 and "link" not in stages["received"]
    assert stages["hld-pr"]["label"] == "HLD pull request #12"
    assert stages["hld-pr"]["link"] == "https://dev.azure.com/fabrikam/Fabrikam/_git/hld/pullrequest/12"
    assert stages["pr-approved"]["link"] == stages["hld-pr"]["link"] and "PR #12" in stages["pr-approved"]["label"]
    assert stages["hld-merge"]["link"] == f"https://dev.azure.com/fabrikam/Fabrikam/_git/hld/commit/{SHA}"
    assert stages["manifest-commit"]["link"] == f"{AZDO_MANIFESTS}/commit/{SHA}"
    assert body["prLink"] == stages["hld-pr"]["link"]
    assert body["hldRepo"] == "https://dev.azure.com/fabrikam/Fabrikam/_git/hld"  # no user-info
    assert body["reviews"][0]["action"] == "approved" and body["state"] == "deployed"


def test_links_only_for_known_web_hosts_and_never_with_credentials():
    assert commit_link("https://github.com/fabrikam/hld.git", SHA) == f"https://github.com/fabrikam/hld/commit/{SHA}"
    assert pr_link("https://github.com/fabrikam/hld", 7) == "https://github.com/fabrikam/hld/pull/7"
    assert pr_link("https://fabrikam.visualstudio.com/P/_git/hld", 7) == \
        "https://fabrikam.visualstudio.com/P/_git/hld/pullrequest/7"
    assert commit_link("/tmp/hld.git", SHA) == "" and commit_link("file:///tmp/hld.git", SHA) == ""
    assert commit_link("javascript:alert(1)//dev.azure.com/o/p/_git/r", SHA) == ""
    assert commit_link(AZDO_MANIFESTS, "not-a-sha") == "" and pr_link(AZDO_MANIFESTS, "1 or 1") == ""
    assert commit_link("https://user:pat@dev.azure.com/o/p/_git/r", SHA) == \
        f"https://dev.azure.com/o/p/_git/r/commit/{SHA}"
    assert clean_repo_url("https://user:s3cr3t@dev.azure.com/o/p/_git/r") == "https://dev.azure.com/o/p/_git/r"


def test_only_known_fields_leave_and_credentials_in_text_are_redacted():
    hostile = row(stage("failed", 1, reason="git push: Authorization: Bearer eyJhbGciOi.secret.token",
                        token="ghp_should_not_leave"), secretField="pat-123", targetFile="<b>x</b>.yaml")
    body = deployment_json(hostile)
    text = json.dumps(body)
    assert "pat-123" not in text and "ghp_should_not_leave" not in text and "eyJhbGciOi" not in text
    assert body["targetFile"] == "<b>x</b>.yaml"  # kept verbatim: the page renders it as text


def test_reviews_are_fetched_only_for_shown_rows_with_a_pr():
    asked = []
    rows = [row(*CHAIN, pr="12"), row(*CHAIN, pr="", env="prod")]
    dashboard_data(rows, lambda row: asked.append(row.pr) or [], {}, (200, {}), Filters(), T0)
    assert asked == ["12"]


# -- filters ------------------------------------------------------------------------------------------------------

ROWS = [row(*CHAIN, tag="1.4.2"), row(*CHAIN, env="prod", tag="1.4.2"),
        row(stage("received", 1), stage("skipped", 2, reason="1.0.0 is older than current 1.4.2; never downgrade"),
            tag="1.0.0"),
        row(stage("received", 1), stage("failed", 2, reason="boom"), service="backend", tag="2.0.9")]


@pytest.mark.parametrize("filters, expected", [
    (Filters(), 4),
    (Filters(service="backend"), 1),
    (Filters(env="prod"), 1),
    (Filters(tag="1.4"), 2),
    (Filters(tag="1.4", env="dev"), 1),
    (Filters(state="failed"), 1),
    (Filters(state="skipped"), 1),
    (Filters(state="paused"), 0),
    (Filters(top=2), 2),
])
def test_filters_narrow_the_list_but_not_the_facets_or_counts(filters, expected):
    body = data(ROWS, filters)
    assert len(body["deployments"]) == expected
    assert body["matching"] == (4 if filters == Filters(top=2) else expected)
    assert body["facets"]["services"] == ["backend", "frontend"] and body["facets"]["envs"] == ["dev", "prod"]
    assert body["counts"]["deployed"] == 2 and body["counts"]["failed"] == 1 and body["total"] == 4
    if filters.state:
        assert {d["state"] for d in body["deployments"]} <= {filters.state}


def test_parse_filters_names_what_is_wrong():
    assert parse_filters({"service": " frontend ", "state": "failed", "top": "20"}) == \
        Filters(service="frontend", state="failed", top=20)
    for params, word in (({"state": "broken"}, "state"), ({"top": "0"}, "top"), ({"top": "x"}, "top"),
                         ({"top": "1001"}, "top"), ({"tag": "x" * 201}, "tag")):
        with pytest.raises(UsageError, match=word):
            parse_filters(params)


def test_the_data_handler_answers_400_for_a_bad_filter():
    req = func.HttpRequest("GET", "http://127.0.0.1/api/ops/dashboard/data", params={"state": "nope"}, body=b"")
    response = asyncio.run(handler.data(req))
    assert response.status_code == 400 and "state='nope'" in json.loads(response.get_body())["error"]


# -- what runs where ----------------------------------------------------------------------------------------------

def test_matrix_shows_the_tag_in_the_manifests_per_env_and_cluster_with_drift_and_pending():
    rows = [
        row(stage("received", 1), stage("hld-commit", 2), tag="1.5.0", start=50),  # dev: on its way
        row(*CHAIN, tag="1.4.2", start=10),
        row(*CHAIN, stage("applied@prod-eastus", 20), env="prod", tag="1.4.2", start=10),
        row(*CHAIN, stage("applied@prod-westus", 5), env="prod", tag="1.3.0", start=0),
        row(*CHAIN, service="backend", env="test", tag="2.0.3"),
        row(stage("received", 1), service="", env="", tag="9.9.9"),  # no target: not in the matrix
    ]
    m = matrix(rows)
    assert m["services"] == ["backend", "frontend"]
    assert m["columns"] == [{"env": "dev", "cluster": ""}, {"env": "test", "cluster": ""},
                            {"env": "prod", "cluster": ""}, {"env": "prod", "cluster": "prod-eastus"},
                            {"env": "prod", "cluster": "prod-westus"}]
    cells = {(c["service"], c["env"], c["cluster"]): c for c in m["cells"]}
    assert cells[("frontend", "dev", "")]["tag"] == "1.4.2"
    assert cells[("frontend", "dev", "")]["pending"] == {"tag": "1.5.0", "state": "in-progress"}
    assert cells[("frontend", "prod", "prod-eastus")]["tag"] == "1.4.2"
    assert cells[("frontend", "prod", "prod-westus")]["tag"] == "1.3.0"
    assert cells[("frontend", "prod", "prod-westus")]["behind"] is True
    assert cells[("frontend", "prod", "prod-westus")]["newest"] == "1.4.2"
    assert cells[("frontend", "prod", "")]["behind"] is False and "pending" not in cells[("frontend", "prod", "")]
    assert cells[("backend", "test", "")]["since"] == at(3)


def test_matrix_follows_the_service_and_env_filters_only():
    body = data(ROWS, Filters(state="failed"))
    assert {(c["service"], c["env"]) for c in body["matrix"]["cells"]} == {("frontend", "dev"), ("frontend", "prod")}
    assert {c["env"] for c in data(ROWS, Filters(env="prod"))["matrix"]["cells"]} == {"prod"}


# -- queues and health --------------------------------------------------------------------------------------------

def test_queues_and_health():
    assert queues_json({"image-pushed": {"depth": 2, "poison": 1}, "hld-changed": "unreadable: queue x: Timeout"}) == [
        {"name": "image-pushed", "poisonQueue": "image-pushed-poison", "depth": 2, "poison": 1},
        {"name": "hld-changed", "poisonQueue": "hld-changed-poison", "error": "unreadable: queue x: Timeout"}]
    report = health_json(503, {"status": "unhealthy", "version": "0.1.0", "storage": {"reachable": True},
                               "tools": {"git": True}, "repos": {"hld": {"reachable": False, "branch": "main"},
                                                                 "manifest": {"reachable": True, "branch": "main",
                                                                              "head": SHA}},
                               "azdo": {"reachable": True, "identityId": "x"},
                               "failing": ["hld repo: Authorization: Basic dXNlcjpwYXQ= refused"]})
    assert report["status"] == "unhealthy" and report["version"] == "0.1.0"
    assert [(c["name"], c["ok"]) for c in report["checks"]] == [
        ("storage", True), ("git executable", True), ("hld repo", False), ("manifest repo", True),
        ("Azure DevOps", True)]
    assert report["checks"][3]["detail"] == "main at 0123456"
    assert "dXNlcjpwYXQ" not in json.dumps(report)


# -- the page -----------------------------------------------------------------------------------------------------

def test_the_page_is_static_with_the_nonce_and_builds_nothing_from_html():
    html = render_page("n0nce")
    assert html.count('nonce="n0nce"') == 2 and "{{NONCE}}" not in html
    script = html.split('<script nonce="n0nce">', 1)[1]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert not re.search(r"\s(src|href)=\"(https?:)?//", html), "an external resource"
    assert not re.search(r"\sstyle=\"", html) and not re.search(r"\son[a-z]+=\"", html), "inline style or handler"


def test_headers_forbid_other_scripts_framing_and_referrers():
    csp = content_security_policy("abc")
    assert "script-src 'nonce-abc'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "connect-src 'self'" in csp
    headers = page_headers("abc")
    assert headers["Referrer-Policy"] == "no-referrer" and headers["X-Frame-Options"] == "DENY"
    assert TEMPLATE.name == "dashboard.html"


@pytest.mark.parametrize("headers, url, refused", [
    ({}, "http://127.0.0.1:7071/api/ops/replay", False),
    ({"Origin": "http://127.0.0.1:7071", "Sec-Fetch-Site": "same-origin"}, "http://127.0.0.1:7071/api/ops/replay",
     False),
    ({"Origin": "https://app.azurewebsites.net"}, "http://app.azurewebsites.net/api/ops/replay", False),
    ({"Origin": "https://App.azurewebsites.net:443"}, "https://app.azurewebsites.net/api/ops/replay", False),
    ({"Origin": "http://evil.example"}, "http://127.0.0.1:7071/api/ops/replay", True),
    ({"Origin": "http://127.0.0.1:7072"}, "http://127.0.0.1:7071/api/ops/replay", True),
    ({"Origin": "null"}, "http://127.0.0.1:7071/api/ops/replay", True),
    ({"Sec-Fetch-Site": "cross-site"}, "http://127.0.0.1:7071/api/ops/replay", True),
    ({"sec-fetch-site": "same-site", "origin": "http://127.0.0.1:7071"}, "http://127.0.0.1:7071/api/ops/replay",
     True),
])
def test_actions_from_another_site_are_refused(headers, url, refused):
    why = foreign_origin(headers, url)
    assert (why is not None) == refused
    if refused:
        assert why.startswith("cross-origin request refused")


def test_the_data_handler_answers_503_when_unconfigured_or_storage_is_down(monkeypatch):
    from core.settings import SettingsError
    from core.adapters.storage import StorageUnavailable

    req = func.HttpRequest("GET", "http://127.0.0.1/api/ops/dashboard/data", params={}, body=b"")

    def unconfigured():
        raise SettingsError("AzureWebJobsStorage is not set")

    monkeypatch.setattr(handler, "get_services", unconfigured)
    response = asyncio.run(handler.data(req))
    assert response.status_code == 503 and "AzureWebJobsStorage" in json.loads(response.get_body())["error"]

    class DownTrace:
        def query(self, **_):
            raise StorageUnavailable("trace table: ServiceRequestError")

    class Down:
        trace = DownTrace()
        storage = None

    monkeypatch.setattr(handler, "get_services", lambda: Down())
    response = asyncio.run(handler.data(req))
    assert response.status_code == 503
    assert json.loads(response.get_body())["error"] == "storage unavailable: trace table: ServiceRequestError"


def test_the_page_handler_sends_a_fresh_nonce_with_its_policy():
    req = func.HttpRequest("GET", "http://127.0.0.1/api/ops/dashboard", params={}, body=b"")
    first, second = asyncio.run(handler.page(req)), asyncio.run(handler.page(req))
    nonces = [re.search(r"'nonce-([^']+)'", r.headers["Content-Security-Policy"]).group(1) for r in (first, second)]
    assert nonces[0] != nonces[1] and len(nonces[0]) >= 16
    assert f'<script nonce="{nonces[0]}">' in first.get_body().decode()
    assert first.mimetype == "text/html" and first.headers["X-Content-Type-Options"] == "nosniff"


def test_paused_targets_are_listed_as_text_with_their_reason():
    from core.ops.dashboard import paused_json

    shown = paused_json([{"service": "web", "env": "prod", "reason": "a person set 1.0.0 <script>", "at": "t2"},
                         {"service": "api", "env": "dev", "reason": "rollback", "at": "t1"}])
    assert [(p["service"], p["env"]) for p in shown] == [("api", "dev"), ("web", "prod")]
    assert shown[1]["reason"] == "a person set 1.0.0 <script>"   # text: the page renders it with textContent
    assert shown[1]["since"] == "t2"


def test_the_page_offers_resume_for_paused_targets_through_a_post():
    from core.ops.dashboard_page import render_page

    page = render_page("n0nce")
    assert 'fetch("resume", {method: "POST"' in page and "renderPaused(data)" in page
