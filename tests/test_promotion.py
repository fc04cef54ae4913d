"""Promotion: the `promotion:` schema, the gate rules, first-stage-only pushes, and the promoter end to end (Flux
event -> gate -> exact tag bumped into the next stage, exactly once)."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from core.adapters.git_workspace import GitWorkspace
from core.adapters.trace import to_record
from core.model.trace_record import TraceRecord, TraceStage
from core.model.workitems import ClusterEvent, ImagePushed
from core.rules.policy import PolicyError, load_policy
from core.rules.promotion import parse_duration, parse_window
from core.rules.promotion_gate import Candidate, decide_gate
from core.settings import load_settings
from core.workers.bump import BumpService
from core.workers.cluster_feedback import FeedbackJob
from core.workers.promoter import Promoter, promoter_for
from devkit.gitrepos import bare_repo, commits, file_at
from tests.fakes.records import FakeRecords, fake_services, table_records

REGISTRY = "fabrikam.azurecr.io"
POLICY = """\
promotion:
  - env: dev
  - env: prod
    soak: 0
"""


# -- schema ---------------------------------------------------------------------------------------------------------

def test_a_three_stage_policy_parses():
    policy = load_policy("""\
promotion:
  - env: dev
  - env: staging
    soak: 10m
  - env: prod
    soak: 1h30m
    approval: manual
    window: "Mon-Fri 08:00-16:00 Europe/Amsterdam"
    onFailure: rollback
""")
    dev, staging, prod = policy.promotion
    assert (dev.env, staging.soak_seconds, prod.soak_seconds, prod.approval, prod.on_failure) == (
        "dev", 600, 5400, "manual", "rollback")
    assert prod.window.zone == "Europe/Amsterdam" and load_policy("").promotion == ()


@pytest.mark.parametrize("text, message", [
    ("promotion: dev\n", "autopilot.yaml:1: promotion must be a list"),
    ("promotion:\n  - env: dev\n", "autopilot.yaml:1: promotion needs at least two stages"),
    ("promotion:\n  - env: dev\n  - env: prod\n    soak: soon\n", "autopilot.yaml:4: promotion[1].soak 'soon'"),
    ("promotion:\n  - env: dev\n  - env: prod\n    approval: maybe\n", "autopilot.yaml:4: promotion[1].approval"),
    ("promotion:\n  - env: dev\n  - env: dev\n", "autopilot.yaml:3: promotion[1].env 'dev' is already a stage"),
    ("promotion:\n  - env: dev\n  - env: prod\n    gate: open\n", "autopilot.yaml:4: unknown key 'gate'"),
    ("promotion:\n  - env: dev\n  - env: prod\n    window: Mon-Fri 08:00-16:00 Mars/Olympus\n",
     "autopilot.yaml:4: promotion[1].window: time zone 'Mars/Olympus'"),
    ("promotion:\n  - env: dev\n    soak: 1m\n  - env: prod\n", "autopilot.yaml:2: promotion[0] is the first stage"),
    ("promotion:\n  - env: dev\n  - env: prod\n    onFailure: ignore\n", "autopilot.yaml:4: promotion[1].onFailure"),
])
def test_schema_errors_name_the_line(text, message):
    with pytest.raises(PolicyError) as err:
        load_policy(text)
    assert str(err.value).startswith(message)


def test_durations_and_windows():
    assert [parse_duration(t) for t in ("0", 0, "30s", "10m", "1h", "2d", "1h30m")] == [0, 0, 30, 600, 3600,
                                                                                          172800, 5400]
    assert [parse_duration(t) for t in ("", "1x", "m", True, 5, "-1m")] == [None] * 6
    window = parse_window("Mon-Fri 08:00-16:00 Europe/Amsterdam")
    monday_9 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)     # 09:00 in Amsterdam, a Monday
    assert window.inside(monday_9)
    assert not window.inside(monday_9 + timedelta(hours=7))          # 16:00 there: the end is exclusive
    assert not window.inside(monday_9 - timedelta(days=1))           # Sunday
    night = parse_window("Sat,Sun 22:00-02:00 UTC")
    assert night.inside(datetime(2026, 11, 29, 1, 0, tzinfo=timezone.utc))       # Sunday 01:00: Saturday's night
    assert night.inside(datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc))       # Monday 01:00: Sunday's night
    assert not night.inside(datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc))   # Friday 01:00: Thursday's
    assert not night.inside(datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc))  # Monday 23:00
    assert isinstance(parse_window("Mon-Fri 8-16 UTC"), str)


# -- gate rules -----------------------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)
STAGES = load_policy("""\
promotion:
  - env: dev
  - env: prod
    soak: 10m
""").promotion


def record(*stages: tuple[str, datetime]) -> TraceRecord:
    return to_record({"traceId": "t", "targetKey": "k",
                      "stages": json.dumps([{"stage": s, "at": at.isoformat()} for s, at in stages])})


def gate(rec, clusters=("dev-1", "dev-2"), stages=STAGES, **kw):
    return decide_gate(Candidate("web", "1.2.0", 0, rec), stages, clusters, NOW, **kw)


def test_gate_waits_for_every_cluster_of_the_stage():
    decision = gate(record(("applied@dev-1", NOW - timedelta(hours=1))))
    assert decision.action == "wait" and "dev-2" in decision.reason
    assert gate(record(), clusters=()).action == "wait"


def test_gate_waits_for_the_soak_from_the_last_applied():
    decision = gate(record(("applied@dev-1", NOW - timedelta(hours=1)), ("applied@dev-2", NOW - timedelta(minutes=4))))
    assert decision.action == "wait" and "360 s more" in decision.reason
    assert gate(record(("applied@dev-1", NOW - timedelta(hours=1)),
                       ("applied@dev-2", NOW - timedelta(minutes=10)))).action == "promote"


def test_a_failure_halts_the_tag_in_its_stage():
    decision = gate(record(("applied@dev-1", NOW - timedelta(hours=1)), ("failed@dev-2", NOW - timedelta(hours=1))))
    assert decision.action == "halt" and "dev-2" in decision.reason


def test_gate_respects_window_pause_and_manual_approval():
    applied = record(("applied@dev-1", NOW - timedelta(hours=1)), ("applied@dev-2", NOW - timedelta(hours=1)))
    closed = load_policy('promotion:\n  - env: dev\n  - env: prod\n    window: "Sat,Sun 00:00-23:59 UTC"\n').promotion
    assert gate(applied, stages=closed).action == "wait" and "window" in gate(applied, stages=closed).reason
    assert "paused" in gate(applied, paused="web rolled back by a person").reason
    manual = load_policy("promotion:\n  - env: dev\n  - env: prod\n    approval: manual\n").promotion
    assert gate(applied, stages=manual).action == "wait"
    assert gate(applied, stages=manual, write_mode="pull-request").action == "promote"
    last = decide_gate(Candidate("web", "1.2.0", 1, applied), STAGES, ("p",), NOW)
    assert last.action == "last"


# -- end to end: push -> dev only -> applied@dev-1 -> promoted to prod, once ---------------------------------------

def deployment(tag: str) -> str:
    return ("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n"
            f"      containers:\n      - name: web\n        image: {REGISTRY}/web:{tag}\n")


@pytest.fixture
def world(request, tmp_path):
    """The manifest repo with a two-stage policy, the bump service and the record stores (the dict fakes; Table
    storage on Azurite when a test is parametrized with "table")."""
    url = bare_repo(tmp_path, {"autopilot.yaml": POLICY, "dev/web.yaml": deployment("1.0.0"),
                               "prod/web.yaml": deployment("1.0.0")}, name="manifests")
    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MANIFEST_REPO_URL": url})
    on_table = getattr(request, "param", "fake") == "table"
    records = table_records(request.getfixturevalue("storage")) if on_table else FakeRecords()
    bump = BumpService(repo_url=url, branch="main", workspace=GitWorkspace(url, "main", base_dir=tmp_path / "w"),
                       high_water=records.high_water, trace=records.trace, mode="direct", is_hld=False)
    spaces: dict = {}
    services = fake_services(
        settings, records=records, bump=bump,
        workspace=lambda u, b, purpose="write": spaces.setdefault(purpose, GitWorkspace(u, b,
                                                                                        base_dir=tmp_path / purpose)))
    return SimpleNamespace(url=url, services=services, trace=records.trace, bump=bump, records=records)


def pushed(tag: str, n: int = 1) -> ImagePushed:
    at = datetime.now(timezone.utc).isoformat()
    return ImagePushed(event_id=f"acr:e{n}", trace_id=f"trace{n:027d}", registry=REGISTRY, repository="web", tag=tag,
                       digest="", media_type="", pushed_at=at, acr_event_id=f"e{n}", received_at=at)


def applied(revision: str, cluster: str, env: str, outcome: str = "applied") -> ClusterEvent:
    return ClusterEvent(event_id=f"flux:{cluster}{revision}{outcome}", trace_id="f" * 32, cluster=cluster,
                        revision=revision, outcome=outcome, envs=(env,), message="boom" if outcome == "failed" else "",
                        at=datetime.now(timezone.utc).isoformat())


@pytest.mark.parametrize("world", ["fake", "table"], indirect=True)
def test_a_push_lands_in_the_first_stage_only_and_is_promoted_once_its_gate_opens(world):
    result = world.bump.process([pushed("1.1.0")])
    assert [o.target.env for o in result.bumped] == ["dev"]
    [prod_skip] = [o for o in result.outcomes if o.target.env == "prod"]
    assert prod_skip.action == "skip" and "promotion" in prod_skip.reason
    assert b"web:1.0.0" in file_at(world.url, "main", "prod/web.yaml")

    # Flux on dev-1 applies the dev commit: the gate (soak 0) opens and the exact tag goes to prod
    feedback = FeedbackJob(world.services).process([applied(result.commit, "dev-1", "dev")])
    [evaluated] = [e for e in feedback.promotions if e.promoted]
    assert evaluated.decision.to_env == "prod"
    assert b"web:1.1.0" in file_at(world.url, "main", "prod/web.yaml")
    rows = {r.env: r for r in world.trace.rows_for_trace("trace" + "1".zfill(27))}
    assert set(rows) == {"dev", "prod"}
    assert [s.name for s in rows["dev"].stages][-2:] == ["applied@dev-1", "promoted@prod"]
    assert rows["prod"].manifest_commit_id == commits(world.url, "main")[0].sha

    # a replayed event, the timer, a second evaluation: nothing more
    before = len(commits(world.url, "main"))
    assert not any(e.promoted for e in promoter_for(world.services).evaluate())
    assert len(commits(world.url, "main")) == before


def test_two_concurrent_gate_evaluations_promote_once(world):
    result = world.bump.process([pushed("1.2.0")])
    world.trace.record("trace" + "1".zfill(27), next(r.target_key for r in world.trace.rows_for_trace(
        "trace" + "1".zfill(27)) if r.env == "dev"), TraceStage.APPLIED.at("dev-1"), actor="flux")
    r = world.records
    promoters = [Promoter(trace=r.trace, claims=r.claims, pauses=r.pauses, running=r.running, bump=world.bump,
                          policy=lambda: load_policy(POLICY), clusters_for=lambda env: ["dev-1"]) for _ in range(2)]
    results: list = []
    barrier = threading.Barrier(2)

    def run(p):
        barrier.wait()
        results.extend(p.evaluate())

    threads = [threading.Thread(target=run, args=(p,)) for p in promoters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(1 for e in results if e.promoted) == 1
    assert world.records.claims.claimed("web", "prod", "1.2.0")
    assert sum(1 for c in commits(world.url, "main") if "prod" in c.subject) == 1
    assert result.commit


def test_a_failure_halts_and_a_pause_holds_until_resumed(world):
    result = world.bump.process([pushed("1.3.0")])
    job = FeedbackJob(world.services)
    job.process([applied(result.commit, "dev-2", "dev", outcome="failed")])
    promoter = promoter_for(world.services)
    [halted] = promoter.evaluate()
    assert halted.decision.action == "halt" and not halted.promoted
    dev = next(r for r in world.trace.rows_for_trace("trace" + "1".zfill(27)) if r.env == "dev")
    assert "halted@dev" in [s.name for s in dev.stages]

    pauses = world.records.pauses
    result = world.bump.process([pushed("1.4.0", n=2)])       # a newer tag overtakes the halted one
    pauses.pause("web", "prod", "a person rolled web back to 1.0.0")
    job.process([applied(result.commit, "dev-1", "dev")])
    evaluated = promoter.evaluate()
    assert not any(e.promoted for e in evaluated)
    assert any("paused" in e.decision.reason for e in evaluated)
    assert pauses.resume("web", "prod") and not pauses.resume("web", "prod")
    assert not any(e.promoted for e in promoter.evaluate())     # dev-2 (it serves dev too) has not applied 1.4.0
    done = job.process([applied(result.commit, "dev-2", "dev")])
    assert [e.candidate.tag for e in done.promotions if e.promoted] == ["1.4.0"]
    assert b"web:1.4.0" in file_at(world.url, "main", "prod/web.yaml")


def test_a_manual_rollback_pauses_the_target_until_resumed(world):
    from devkit.gitrepos import push_files

    world.bump.pauses = world.records.pauses
    assert world.bump.process([pushed("1.1.0")]).bumped
    push_files(world.url, "main", {"dev/web.yaml": deployment("1.0.0")}, "Roll web back in dev (a person)")
    [dev] = [o for o in world.bump.process([pushed("1.2.0", n=2)]).outcomes if o.target.env == "dev"]
    assert dev.action == "skip" and dev.reason.startswith("paused: a person set dev/web.yaml to 1.0.0 below 1.1.0")
    assert b"web:1.0.0" in file_at(world.url, "main", "dev/web.yaml")
    assert [(p["service"], p["env"]) for p in world.bump.pauses.listed()] == [("web", "dev")]

    assert world.bump.pauses.resume("web", "dev")
    assert world.bump.pauses.listed() == []
    [dev] = [o for o in world.bump.process([pushed("1.3.0", n=3)]).outcomes if o.target.env == "dev"]
    assert dev.action == "bump" and b"web:1.3.0" in file_at(world.url, "main", "dev/web.yaml")


def test_a_malformed_policy_does_not_lose_the_cluster_feedback(world):
    from devkit.gitrepos import push_files

    result = world.bump.process([pushed("1.1.0")])
    push_files(world.url, "main", {"autopilot.yaml": "promotion: [dev]\n"}, "break the policy")
    feedback = FeedbackJob(world.services).process([applied(result.commit, "dev-1", "dev")])
    assert [m.env for m in feedback.marked] == ["dev"] and feedback.promotions == ()
    assert b"web:1.0.0" in file_at(world.url, "main", "prod/web.yaml")


def test_on_failure_rollback_commits_the_previous_good_tag_once(world):
    from devkit.gitrepos import push_files

    push_files(world.url, "main", {"autopilot.yaml": POLICY.replace("  - env: dev\n",
                                                                    "  - env: dev\n    onFailure: rollback\n")},
               "dev rolls back on failure")
    world.bump.pauses = world.records.pauses
    good = world.bump.process([pushed("1.1.0")])
    job = FeedbackJob(world.services)
    job.process([applied(good.commit, "dev-1", "dev")])            # 1.1.0 healthy in dev (and promoted)
    bad = world.bump.process([pushed("1.2.0", n=2)])
    done = job.process([applied(bad.commit, "dev-1", "dev", outcome="failed")])
    assert b"web:1.1.0" in file_at(world.url, "main", "dev/web.yaml")   # back to the previous good tag
    assert any("rolled back to 1.1.0" in e.decision.reason for e in done.promotions)
    bad_row = next(r for r in world.trace.rows_for_trace("trace" + "2".zfill(27)) if r.env == "dev")
    assert {"failed@dev-1", "halted@dev", "rolled-back@dev"} <= {s.name for s in bad_row.stages}
    before = len(commits(world.url, "main"))
    promoter_for(world.services).evaluate()                         # the timer again: no second rollback
    assert len(commits(world.url, "main")) == before
    assert world.bump.pauses.listed() == []
    # a newer push still enters dev: the lower tag the rollback left is not taken for a person's rollback
    [dev] = [o for o in world.bump.process([pushed("1.3.0", n=3)]).outcomes if o.target.env == "dev"]
    assert dev.action == "bump"
