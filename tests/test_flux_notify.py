"""Waking Flux: the FLUX_RECEIVERS setting, the generic-hmac signature as notification-controller checks it, which
clusters a manifest commit wakes, retries with back-off, isolation of dead and slow receivers, and the trace."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from core.workers.flux_notify import (
    FluxNotifyJob,
    Notifier,
    Posted,
    changed_envs,
    manifest_notification,
    notification_body,
    post_http,
)
from core.adapters.flux_receivers import FluxReceiver, parse_receivers, receivers_for, sign
from core.workers.runners import QueuedMessage, QueueWorker
from core.settings import load_settings
from core.adapters.storage import FLUX_NOTIFY
from core.model.trace_record import TraceStage
from tests.fakes.deliveries import FakeDeliveryJournal
from tests.fakes.env import NO_STORAGE   # nothing listens: the fakes answer
from tests.fakes.queues import FakeQueues
from tests.fakes.records import FakeTrace
from core.model.workitems import FluxNotify, WorkItemError, decode, encode
from devkit.flux_receiver import StandInReceiver, validate_signature

COMMIT = "c0ffee" + "0" * 34


def receiver(cluster: str, url: str, env: str = "prod", secret: str = "s3cret") -> FluxReceiver:
    return FluxReceiver(cluster, env, url, "FLUX_" + cluster.upper().replace("-", "_"), secret)


def item(**kw) -> FluxNotify:
    return FluxNotify(**{"event_id": f"flux:{COMMIT}", "trace_id": COMMIT[:32], "commit": COMMIT, **kw})


def dead_url() -> str:
    """A loopback port nothing listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook/dead"


# -- the signature, exactly as notification-controller (go-github ValidateSignature) checks it ---------------------

def test_our_signature_is_hex_hmac_sha256_of_the_exact_body():
    body = b'{"commit":"abc"}'
    expected = hmac.new(b"tok", body, hashlib.sha256).hexdigest()
    assert sign(body, "tok") == "sha256=" + expected
    assert validate_signature(sign(body, "tok"), body, b"tok") == ""
    assert validate_signature(sign(body, "tok"), body + b" ", b"tok") == "payload signature check failed"
    assert validate_signature(sign(body, "other"), body, b"tok") == "payload signature check failed"


def test_the_stand_in_checks_the_header_as_go_github_does():
    body = b"x"
    for name, fn in (("sha1", hashlib.sha1), ("sha256", hashlib.sha256), ("sha512", hashlib.sha512)):
        digest = hmac.new(b"k", body, fn).hexdigest()
        assert validate_signature(f"{name}={digest}", body, b"k") == ""
        assert validate_signature(f"{name}={digest.upper()}", body, b"k") == ""   # hex.DecodeString: any case
    good = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert validate_signature("", body, b"k") == "missing signature"
    assert validate_signature(good, body, b"k").startswith("error parsing signature")
    assert validate_signature(f"SHA256={good}", body, b"k").startswith("unknown hash type prefix")
    assert validate_signature(f"md5={good}", body, b"k").startswith("unknown hash type prefix")
    assert validate_signature(f"sha256={good[:-1]}", body, b"k").startswith("error decoding")   # odd length
    assert validate_signature(f"sha256= {good}", body, b"k").startswith("error decoding")
    assert validate_signature("sha256=", body, b"k") == "payload signature check failed"


def test_the_stand_in_answers_like_the_receiver_server():
    with StandInReceiver("tok", "/hook/abc") as stand_in:
        body = b'{"a":1}'
        ok = post_http(stand_in.url, body, {"X-Signature": sign(body, "tok")}, 2.0)
        bad = post_http(stand_in.url, body, {"X-Signature": sign(body, "nope")}, 2.0)
        unknown = post_http(stand_in.url.replace("/hook/abc", "/hook/zzz"), body, {"X-Signature": sign(body, "tok")},
                            2.0)
    assert (ok.status, bad.status, unknown.status) == (200, 400, 404)
    assert [c.status for c in stand_in.calls] == [200, 400, 404]
    assert stand_in.calls[1].error == "payload signature check failed"


# -- FLUX_RECEIVERS -------------------------------------------------------------------------------------------------

def entry(**kw) -> dict:
    return {"cluster": "prod-eastus", "env": "prod", "url": "https://flux.example.com/hook/abc",
            "secretSetting": "FLUX_RECEIVER_PROD_EASTUS", **kw}


def test_good_entries_load_with_their_secret_from_the_named_setting():
    env = {"FLUX_RECEIVER_PROD_EASTUS": "tok-1", "FLUX_DEV": "tok-2"}
    config = parse_receivers(json.dumps([entry(), entry(cluster="dev-1", env="dev", secretSetting="FLUX_DEV",
                                                        url="http://127.0.0.1:9/hook/d")]), env)
    assert config.problems == ()
    assert [(r.cluster, r.env, r.secret) for r in config.receivers] == [("prod-eastus", "prod", "tok-1"),
                                                                        ("dev-1", "dev", "tok-2")]
    assert "tok-1" not in repr(config)
    assert parse_receivers("", env).receivers == ()


@pytest.mark.parametrize("bad, problem", [
    (entry(cluster="Prod_East"), "FLUX_RECEIVERS[1]: cluster must be"),
    (entry(env="../etc"), "FLUX_RECEIVERS[1] (cluster prod-eastus): env must be"),
    (entry(url="http://flux.example.com/hook/abc"), "url must use https"),
    (entry(url="https://flux.example.com/api/abc"), "url path must be the Receiver's status.webhookPath"),
    (entry(url="https://flux.example.com/hook/abc?x=1"), "must not have a query"),
    (entry(url="https://user:pw@flux.example.com/hook/abc"), "must not carry credentials"),
    (entry(secretSetting="NOT_SET"), "app setting NOT_SET (its secretSetting) is not set"),
    (entry(secretSetting="bad name"), "secretSetting must be the name"),
    (entry(token="inline"), "unknown key(s) token"),
    ("prod", "FLUX_RECEIVERS[1]: must be a JSON object"),
])
def test_a_bad_entry_is_named_and_the_others_still_load(bad, problem):
    good = entry(cluster="dev-1", env="dev")
    config = parse_receivers(json.dumps([good, bad]), {"FLUX_RECEIVER_PROD_EASTUS": "Zq9-secret"})
    assert [r.cluster for r in config.receivers] == ["dev-1"]
    [line] = config.problems
    assert line.startswith("FLUX_RECEIVERS[1]") and problem in line and "Zq9-secret" not in line


def test_the_whole_setting_wrong():
    assert parse_receivers("[{", {}).problems[0].startswith("FLUX_RECEIVERS: not JSON")
    assert parse_receivers('{"a": 1}', {}).problems == ("FLUX_RECEIVERS: must be a JSON array of receiver objects",)
    twice = parse_receivers(json.dumps([entry(), entry()]), {"FLUX_RECEIVER_PROD_EASTUS": "t"})
    assert [r.cluster for r in twice.receivers] == ["prod-eastus"]
    assert twice.problems == ("FLUX_RECEIVERS[1] (cluster prod-eastus): cluster named twice",)


def test_settings_loader_carries_receivers_and_problems():
    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                              "FLUX_RECEIVERS": json.dumps([entry(), entry(cluster="x", secretSetting="MISSING")]),
                              "FLUX_RECEIVER_PROD_EASTUS": "tok"})
    assert [r.cluster for r in settings.flux.receivers] == ["prod-eastus"]
    assert len(settings.flux.problems) == 1 and "tok" not in repr(settings)


# -- which clusters a manifest commit wakes -------------------------------------------------------------------------

def test_env_routing():
    fleet = (receiver("prod-eastus", "u", "prod"), receiver("prod-westus", "u", "prod"), receiver("dev-1", "u", "dev"),
             receiver("qa-1", "u", "qa"))
    names = lambda rs: [r.cluster for r in rs]  # noqa: E731
    assert names(receivers_for(fleet, ("prod",))) == ["prod-eastus", "prod-westus"]
    assert names(receivers_for(fleet, ("dev", "qa"))) == ["dev-1", "qa-1"]
    assert names(receivers_for(fleet, ("staging",))) == []
    assert names(receivers_for(fleet, ())) == names(fleet)                       # unknown: every cluster
    assert names(receivers_for(fleet, ("prod",), ("prod-westus",))) == ["prod-westus"]   # a retry round


def test_changed_environment_folders():
    paths = ["prod/svc/a.yaml", "dev/svc/b.yaml", "prod/x.yaml"]
    assert changed_envs(paths, root_is_env=True) == ("dev", "prod")
    assert changed_envs(paths + ["qa"], root_is_env=True) == ("dev", "prod", "qa")   # a replaced env folder
    assert changed_envs(paths + ["deployment.yaml"], root_is_env=False) == ()       # a root file: unknown
    assert changed_envs([], root_is_env=True) == ()


def test_work_item_round_trip_and_bad_fields():
    notify = manifest_notification(COMMIT, ("prod",), ["t1", "t1", "t2"])
    assert notify.image_trace_ids == ("t1", "t2") and notify.envs == ("prod",)
    assert decode(encode(notify), FLUX_NOTIFY) == notify
    body = json.loads(encode(notify))
    with pytest.raises(WorkItemError, match="envs must be an array of strings"):
        decode(json.dumps({**body, "envs": "prod"}), FLUX_NOTIFY)
    with pytest.raises(WorkItemError, match="round must be an integer"):
        decode(json.dumps({**body, "round": "2"}), FLUX_NOTIFY)


# -- the notifier: retries, back-off, isolation ---------------------------------------------------------------------

class Sleeps:
    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(min(seconds, 0.01))


def test_5xx_is_retried_with_growing_back_off_until_it_answers():
    sleeps = Sleeps()
    with StandInReceiver("tok") as stand_in:
        stand_in.fail_next(2, 503)
        attempts = []
        r = receiver("prod-eastus", stand_in.url, secret="tok")
        last = Notifier(sleep=sleeps, backoff=(0.2, 0.6, 1.5), jitter=lambda: 0.5).notify(
            [(r, b'{"x":1}')], attempts.append)
    assert [c.status for c in stand_in.calls] == [503, 503, 200]
    assert [(a.number, a.status, a.ok) for a in attempts] == [(1, 503, False), (2, 503, False), (3, 200, True)]
    assert sleeps.waits == pytest.approx([0.2, 0.6])
    assert last["prod-eastus"].ok


def test_a_timeout_goes_to_the_queue_a_refused_connection_is_retried_and_a_4xx_is_not():
    with StandInReceiver("tok", delay=1.0) as slow, StandInReceiver("tok") as strict:
        attempts = []
        notifier = Notifier(attempt_timeout=0.3, deadline=2.0, backoff=(0.05, 0.05), sleep=time.sleep)
        last = notifier.notify([(receiver("slow", slow.url, secret="tok"), b"{}"),
                                (receiver("dead", dead_url(), secret="tok"), b"{}"),
                                (receiver("wrong-token", strict.url, secret="not-the-token"), b"{}")],
                               attempts.append)
    [timed_out] = [a for a in attempts if a.cluster == "slow"]   # not retried in the run: it would hold it
    assert timed_out.status is None and "timed out" in timed_out.error and timed_out.retry_in is None
    assert last["slow"].retryable and not last["slow"].ok           # ... the queue round retries it
    refused = [a for a in attempts if a.cluster == "dead"]
    assert [a.number for a in refused] == [1, 2, 3] and all(a.retryable for a in refused)
    assert [a.retry_in is not None for a in refused] == [True, True, False]
    assert [(a.status, a.retryable) for a in attempts if a.cluster == "wrong-token"] == [(400, False)]
    assert len(strict.calls) == 1


def test_a_dead_and_a_slow_receiver_do_not_delay_the_others():
    with StandInReceiver("tok", delay=4.0) as slow, StandInReceiver("tok") as a, StandInReceiver("tok") as b, \
            StandInReceiver("tok") as c:
        sends = [(receiver("slow", slow.url, secret="tok"), b"{}"), (receiver("dead", dead_url(), secret="tok"), b"{}")]
        sends += [(receiver(name, s.url, secret="tok"), b"{}") for name, s in (("a", a), ("b", b), ("c", c))]
        reported: dict[str, float] = {}
        began = time.monotonic()

        def report(attempt):
            reported.setdefault(f"{attempt.cluster}#{attempt.number}", time.monotonic() - began)

        last = Notifier(attempt_timeout=2.5, deadline=3.0, backoff=(0.1, 0.2)).notify(sends, report)
        took = time.monotonic() - began
    assert all(len(healthy.accepted()) == 1 for healthy in (a, b, c))
    # the healthy ones were notified and reported long before the slow one's attempt timed out (2.5 s)
    assert max(reported[f"{n}#1"] for n in "abc") < 1.5, reported
    assert reported["slow#1"] >= 2.4
    assert {n for n, at in last.items() if at.ok} == {"a", "b", "c"}
    assert last["dead"].retryable and "Connection" in last["dead"].error and last["dead"].number == 3
    assert last["slow"].retryable and last["slow"].status is None and last["slow"].number == 1
    assert took < 5.0   # bounded by the slow one's one attempt, not by its 4 s answer


# -- the flux-notify queue job ---------------------------------------------------------------------------------------

def fleet_settings(connection: str, stand_ins: dict[str, tuple[str, StandInReceiver]]):
    entries = [{"cluster": name, "env": env, "url": s.url, "secretSetting": f"TOKEN_{i}"}
               for i, (name, (env, s)) in enumerate(stand_ins.items())]
    env = {"AzureWebJobsStorage": connection, "FLUX_RECEIVERS": json.dumps(entries),
           "MANIFEST_REPO_URL": "https://dev.azure.com/fabrikam/Fabrikam/_git/manifests"}
    env.update({f"TOKEN_{i}": s.token.decode() for i, (_, s) in enumerate(stand_ins.values())})
    return load_settings(env)


def job_services(settings, queues: FakeQueues | None = None) -> SimpleNamespace:
    """What the job needs of Services, on the fakes: settings, the queues its next round goes on, the journal, the trace."""
    return SimpleNamespace(settings=settings, queues=queues or FakeQueues(), deliveries=FakeDeliveryJournal(),
                           trace=FakeTrace())


def run_job(services, notify: FluxNotify, notifier: Notifier | None = None):
    """Through the queue runner: the cases about retry rounds and poisoning."""
    worker = QueueWorker(FLUX_NOTIFY, lambda: FluxNotifyJob(services, notifier), batches=False)
    return asyncio.run(worker.run(QueuedMessage("m-1", encode(notify))))


def process(services, notify: FluxNotify, notifier: Notifier | None = None):
    """The job alone (what the runner calls), with the fake trace: the cases about whom it notifies and records."""
    return FluxNotifyJob(services, notifier).process([decode(encode(notify), FLUX_NOTIFY)])



def test_job_notifies_the_clusters_of_the_changed_folders_and_records_each_on_the_trace():
    with StandInReceiver("t-prod-1") as p1, StandInReceiver("t-prod-2") as p2, StandInReceiver("t-dev") as dev:
        settings = fleet_settings(NO_STORAGE, {"prod-1": ("prod", p1), "prod-2": ("prod", p2),
                                               "dev-1": ("dev", dev)})
        trace = FakeTrace()
        # the push's trace: one record per target env, each with its manifest commit
        for env in ("prod", "dev"):   # light-weight flow: the push bumped prod/ and dev/ files of the manifest repo
            trace.record("push1", f"web/{env}", TraceStage.MANIFEST_COMMIT, actor="t",
                         start="2026-01-01T00:00:00+00:00",
                         fields={"env": env, "service": "web", "targetFile": f"{env}/web.yaml"})
        services = SimpleNamespace(settings=settings, trace=trace)
        result = process(services, item(envs=("prod",), image_trace_ids=("push1",)))
    assert result.notified == ("prod-1", "prod-2") and result.failed == ()
    assert len(dev.calls) == 0
    for stand_in in (p1, p2):
        [call] = stand_in.accepted()
        body = json.loads(call.body)
        assert (body["commit"], body["environments"], body["reason"]) == (COMMIT, ["prod"], "manifest-commit")
        assert call.headers["X-Signature"] == sign(call.body, stand_in.token.decode())
    rows = {r.target_key: r for r in trace.rows_for_trace("push1")}
    prod_stages = [s.name for s in rows["web/prod"].stages]
    assert prod_stages[0] == "manifest-commit" and sorted(prod_stages[1:]) == ["notified@prod-1", "notified@prod-2"]
    assert [s.name for s in rows["web/dev"].stages] == ["manifest-commit"]
    assert all(s.detail["cluster"] in ("prod-1", "prod-2") and s.detail["seconds"] >= 0
               for s in rows["web/prod"].stages[1:])


def test_bedrock_rings_of_one_folder_all_get_the_cluster_s_outcome():
    with StandInReceiver("t-prod") as prod:
        settings = fleet_settings(NO_STORAGE, {"prod-1": ("prod", prod)})
        trace = FakeTrace()
        for ring in ("prod", "canary"):   # Bedrock records name the ring; both rings live in the prod/ folder
            trace.record("push2", f"web/{ring}", TraceStage.MANIFEST_COMMIT, actor="t",
                         fields={"env": ring, "hldRepo": "https://h", "targetFile": f"web/{ring}/config/common.yaml"})
        trace.record("push2", "web/other", TraceStage.HLD_COMMIT, actor="t", fields={"env": "qa"})   # no manifest
        services = SimpleNamespace(settings=settings, trace=trace)
        process(services, item(envs=("prod",), image_trace_ids=("push2",)))
    rows = {r.target_key: [s.name for s in r.stages] for r in trace.rows_for_trace("push2")}
    assert rows == {"web/prod": ["manifest-commit", "notified@prod-1"],
                    "web/canary": ["manifest-commit", "notified@prod-1"], "web/other": ["hld-commit"]}


def test_job_hands_a_failing_receiver_to_the_queue_for_a_later_round(monkeypatch):
    monkeypatch.setattr("core.workers.flux_notify.ROUND_DELAYS_S", (0, 60))   # visible at once, so the test can read it
    with StandInReceiver("t-ok") as ok, StandInReceiver("t-bad") as down:
        down.fail_next(100, 502)
        settings = fleet_settings(NO_STORAGE, {"ok-1": ("prod", ok), "down-1": ("prod", down)})
        services = job_services(settings)
        notifier = Notifier(backoff=(0.01, 0.01))
        settled = run_job(services, item(), notifier)
        assert settled.result.notified == ("ok-1",) and settled.result.retrying == ("down-1",)
        [message] = services.queues.receive(FLUX_NOTIFY, 5, 30)
        retry = decode(message.text, FLUX_NOTIFY)
        assert (retry.clusters, retry.round, retry.commit) == (("down-1",), 2, COMMIT)

        down._failures.clear()
        settled = run_job(services, retry, notifier)
    assert settled.result.notified == ("down-1",)
    assert len(ok.accepted()) == 1 and len(down.accepted()) == 1    # round 2 only for the failed cluster
    # no push trace: the attempts go on a record of the commit itself
    [row] = services.trace.rows_for_trace(COMMIT[:32])
    stages = [s.name for s in row.stages]
    assert stages.count("notify-failed@down-1") == 3 and stages[-1] == "notified@down-1"
    failed = next(s for s in row.stages if s.name == "notify-failed@down-1" and s.detail["attempt"] == 3)
    assert failed.detail["status"] == 502 and "the queue retries in 0 s" in failed.detail["reason"]
    assert row.manifest_commit_id == COMMIT


def test_the_next_round_waits_its_back_off_on_the_queue(monkeypatch):
    monkeypatch.setattr("core.workers.flux_notify.ROUND_DELAYS_S", (2, 60))
    now = [1000.0]
    queues = FakeQueues(clock=lambda: now[0])
    with StandInReceiver("t") as down:
        down.fail_next(100, 503)
        settings = fleet_settings(NO_STORAGE, {"down-1": ("prod", down)})
        settled = run_job(job_services(settings, queues), item(), Notifier(backoff=()))
    assert settled.result.retrying == ("down-1",) and settled.result.next_round_in == 2
    assert queues.queue_depth(FLUX_NOTIFY) == 1 and queues.receive(FLUX_NOTIFY, 32, 30) == []
    now[0] += 1.9
    assert queues.receive(FLUX_NOTIFY, 32, 30) == []
    now[0] += 0.1
    assert [decode(m.text, FLUX_NOTIFY).round for m in queues.receive(FLUX_NOTIFY, 32, 30)] == [2]


def test_job_gives_up_after_the_last_round():
    with StandInReceiver("t") as down:
        down.fail_next(100, 500)
        settings = fleet_settings(NO_STORAGE, {"down-1": ("prod", down)})
        services = job_services(settings)
        settled = run_job(services, item(round=5), Notifier(backoff=()))
    assert settled.result.failed == ("down-1",) and settled.result.retrying == ()
    assert services.queues.queue_depth(FLUX_NOTIFY) == 0
    [row] = services.trace.rows_for_trace(COMMIT[:32])
    assert "given up" in row.stages[-1].detail["reason"]


def test_no_receiver_for_the_folders_is_a_quiet_success():
    with StandInReceiver("t") as dev:
        settings = fleet_settings(NO_STORAGE, {"dev-1": ("dev", dev)})
        result = process(SimpleNamespace(settings=settings, trace=FakeTrace()), item(envs=("prod",)))
    assert result.notified == () and dev.calls == []


@pytest.mark.parametrize("bad", [{"commit": ""}, {"round": 0}])
def test_an_item_that_cannot_be_acted_on_is_poisoned_with_its_reason(bad):
    with StandInReceiver("t") as prod:
        settings = fleet_settings(NO_STORAGE, {"prod-1": ("prod", prod)})
        services = job_services(settings)
        settled = run_job(services, item(**bad))
    [poisoned] = settled.poison
    assert "FluxNotifyError" in json.loads(poisoned)["poisonReason"] and prod.calls == []


def test_the_body_names_the_commit():
    body = json.loads(notification_body(item(envs=("prod",), pr_id=9), receiver("c", "u"), "https://r", "main"))
    assert body == {"source": "gitops-autopilot", "reason": "manifest-commit", "commit": COMMIT,
                    "repository": "https://r", "branch": "main", "environments": ["prod"], "cluster": "c",
                    "pullRequest": 9}


def test_a_garbage_answer_is_a_retryable_one_line_error():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer():
            conn, _ = server.accept()
            conn.recv(65536)
            conn.sendall(b"garbage\r\nX-Evil: 1\r\n\r\n")
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        posted = post_http(f"http://127.0.0.1:{server.getsockname()[1]}/hook/x", b"{}", {}, 2.0)
    assert posted.status is None and posted.error.startswith("BadStatusLine") and "\n" not in posted.error


def test_a_post_that_raises_is_reported_not_hung():
    def broken(*args):
        raise RuntimeError("boom")

    last = Notifier(post=broken).notify([(receiver("a", "u"), b"{}")])
    assert not last["a"].ok and "boom" in last["a"].error


def test_the_notifier_threads_are_released():
    before = threading.active_count()
    Notifier(post=lambda *a: Posted(200)).notify([(receiver(f"c{i}", "u"), b"{}") for i in range(10)])
    assert threading.active_count() <= before + 1
