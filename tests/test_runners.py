"""The queue runner: failures decided by class, batches that never poison a healthy neighbour, invocations that wait
for their batch without a thread, and output bindings the real worker accepts.

Everything runs on the fake queues, journal and trace (tests/fakes/; tests/contracts/ holds them to Azure Storage's
behaviour) except the case that starts the app under devhost, which runs on Azurite."""
from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
import typing
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable

import azure.functions as func
import pytest
from azure.functions._thirdparty import typing_inspect
from azure.functions.queue import QueueMessageOutConverter

import core.workers.runners
from core.errors import Permanent, Retryable
from core.ops.replay import Replayer
from core.workers.runners import POISON_REASON_FIELD, BumpJob, GenerateJob, QueuedMessage, QueueWorker, Settled
from core.adapters.deliveries import DeliveryJournal
from core.adapters.storage import HLD_CHANGED, IMAGE_PUSHED, WorkQueues, poison_queue
from core.adapters.trace import TraceStore
from core.model.workitems import HldChanged, ImagePushed, decode, encode
from devkit.gitrepos import bare_repo, branches, commits, file_at, push_files
from tests.fakes.deliveries import FakeDeliveryJournal
from tests.fakes.queues import FakeQueues
from tests.fakes.records import FakeRecords, FakeTrace, records  # noqa: F401  (records: a fixture)
from tests.functions import Out
from tests.test_bump import EXAMPLE_HLD, REGISTRY, make_service, push
from tests.test_generation import changed, make_generation

EXAMPLES = EXAMPLE_HLD.parent
RETRY_DELAY_AS_DECLARED = core.workers.runners.RETRY_DELAY_SECONDS   # before the autouse fixture below sets it to 0


class Flaky(Retryable):
    """Fails every time, but a retry could help in principle."""


class Broken(Permanent):
    """Fails every time, and says so."""


@dataclass
class FakeJob:
    """An image-pushed job whose work fails for the tags `fail` names, over the given queues, journal and trace."""
    queues: WorkQueues
    deliveries: DeliveryJournal = field(default_factory=FakeDeliveryJournal)
    fail: Callable[[ImagePushed], Exception | None] = lambda item: None
    trace: TraceStore = field(default_factory=FakeTrace)
    runs: list[list[str]] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    queue: str = IMAGE_PUSHED
    stage: str = "bump"
    batches: bool = True

    def process(self, items):
        self.runs.append([i.tag for i in items])
        for item in items:
            error = self.fail(item)
            if error is not None:
                raise error
        self.done += [i.tag for i in items]
        return [i.tag for i in items]

    def follow_ups(self, tags):
        return (HldChanged(event_id="gen-" + "-".join(tags), trace_id="f" * 32, reason="bump"),)

    def report(self, result, items) -> None:
        pass


def item(tag: str, trace_id: str = "") -> ImagePushed:
    return ImagePushed(event_id=f"acr:{tag}", trace_id=trace_id or f"{tag:0>32}"[-32:], registry=REGISTRY,
                       repository="fabrikam/api", tag=tag, digest="", media_type="", pushed_at="2026-01-01T00:00:00Z",
                       acr_event_id=tag, received_at="2026-01-01T00:00:01+00:00")


def worker_services(queues: FakeQueues, records: FakeRecords, **services) -> SimpleNamespace:
    """What the jobs need of Services, on the fakes."""
    return SimpleNamespace(queues=queues, deliveries=FakeDeliveryJournal(), trace=records.trace, **services)


@pytest.fixture
def queues() -> FakeQueues:
    return FakeQueues()


def host_round(queues: WorkQueues, worker: QueueWorker, queue: str, *, batch_size: int, max_dequeue: int = 5,
               outputs: dict[str, list[str]] | None = None) -> list[int]:
    """One poll of the Functions host's queue listener: receive `batch_size` messages, run their invocations side by
    side on one event loop, then delete (writing the output bindings), release, or poison after `max_dequeue`.
    Returns the dequeue counts the host saw."""
    messages = queues.receive(queue, batch_size, 60)[:batch_size]

    async def invoke_all():
        return await asyncio.gather(*(worker.run(QueuedMessage(m.id, m.text, m.dequeue_count)) for m in messages),
                                    return_exceptions=True)

    for message, outcome in zip(messages, asyncio.run(invoke_all()) if messages else []):
        if isinstance(outcome, Settled):
            for text in outcome.poison:
                queues.enqueue(poison_queue(queue), text)
            for follow_up in outcome.follow_ups:
                (outputs if outputs is not None else {}).setdefault(follow_up.queue, []).append(encode(follow_up))
            queues.delete(queue, message)
        elif message.dequeue_count >= max_dequeue:
            queues.enqueue(poison_queue(queue), message.text)
            queues.delete(queue, message)
        else:
            queues.release(queue, message, 0)
    return [m.dequeue_count for m in messages]


def poisoned(queues: WorkQueues, queue: str = IMAGE_PUSHED) -> list[str]:
    return [m.text for m in queues.peek(poison_queue(queue))]


def drain(queues: WorkQueues, worker: QueueWorker, queue: str, *, batch_size: int, rounds: int = 20,
          outputs: dict | None = None) -> list[int]:
    seen: list[int] = []
    for _ in range(rounds):
        counts = host_round(queues, worker, queue, batch_size=batch_size, outputs=outputs)
        seen += counts
        if not counts:
            if queues.queue_depth(queue) == 0:
                return seen
            time.sleep(0.2)
    raise AssertionError(f"{queue} not drained after {rounds} rounds")


# -- batching never poisons a healthy neighbour --------------------------------------------------------------------

@pytest.fixture(autouse=True)
def quick_release(monkeypatch):
    monkeypatch.setattr("core.workers.runners.RETRY_DELAY_SECONDS", 0)   # a released taken message is visible again at once


@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_repeating_retryable_failure_next_to_healthy_messages_poisons_only_itself(queues, batch_size):
    job = FakeJob(queues, fail=lambda i: Flaky("registry answered 503") if i.tag == "bad" else None)
    worker = QueueWorker(IMAGE_PUSHED, lambda: job)
    tags = ["h1", "h2", "bad", "h3", "h4", "h5", "h6"]
    for tag in tags:
        queues.enqueue(IMAGE_PUSHED, encode(item(tag)))
    outputs: dict[str, list[str]] = {}
    drain(queues, worker, IMAGE_PUSHED, batch_size=batch_size, outputs=outputs)

    assert sorted(job.done) == sorted(t for t in tags if t != "bad")     # every healthy one committed, once
    [poison] = poisoned(queues)
    assert decode(poison, IMAGE_PUSHED).tag == "bad"                     # after maxDequeueCount attempts
    assert job.runs.count(["bad"]) == 5                                  # maxDequeueCount attempts, each alone
    assert len([run for run in job.runs if "bad" in run and len(run) > 1]) == 1   # only its first was in a batch
    assert outputs[HLD_CHANGED]                                          # the healthy runs' follow-ups went out


def test_a_permanent_failure_next_to_healthy_messages_is_poisoned_on_its_first_attempt(queues):
    job = FakeJob(queues, fail=lambda i: Broken("autopilot.yaml:3: bad rule") if i.tag == "bad" else None)
    worker = QueueWorker(IMAGE_PUSHED, lambda: job)
    for tag in ["h1", "bad", "h2"]:
        queues.enqueue(IMAGE_PUSHED, encode(item(tag)))
    counts = drain(queues, worker, IMAGE_PUSHED, batch_size=1)   # h1 triggers, takes bad and h2 into its batch

    assert counts == [1] and sorted(job.done) == ["h1", "h2"]
    assert job.runs == [["h1", "bad", "h2"], ["h1"], ["bad"], ["h2"]]
    [poison] = poisoned(queues)
    body = json.loads(poison)
    assert body["tag"] == "bad" and body[POISON_REASON_FIELD] == "Broken: autopilot.yaml:3: bad rule"
    [row] = job.trace.rows_for_trace(item("bad").trace_id)
    assert row.image_tag == "bad" and row.stages[0].detail["reason"] == "Broken: autopilot.yaml:3: bad rule"


def test_a_trigger_that_fails_is_retried_while_the_taken_neighbours_commit_and_their_follow_ups_go_out(queues):
    job = FakeJob(queues, fail=lambda i: Flaky("git remote hung up") if i.tag == "bad" else None)
    worker = QueueWorker(IMAGE_PUSHED, lambda: job)
    queues.enqueue(IMAGE_PUSHED, encode(item("h1")))
    queues.enqueue(IMAGE_PUSHED, encode(item("h2")))
    with pytest.raises(Flaky):
        asyncio.run(worker.run(QueuedMessage("trigger", encode(item("bad")))))
    assert sorted(job.done) == ["h1", "h2"] and queues.queue_depth(IMAGE_PUSHED) == 0   # the taken ones deleted
    follow_ups = queues.peek(HLD_CHANGED)    # no invocation returned: written with the SDK, one per healthy run
    assert sorted(decode(f.text, HLD_CHANGED).event_id for f in follow_ups) == ["gen-h1", "gen-h2"]


def test_a_message_that_failed_before_runs_alone_and_takes_no_others(queues):
    job = FakeJob(queues)
    worker = QueueWorker(IMAGE_PUSHED, lambda: job)
    queues.enqueue(IMAGE_PUSHED, encode(item("waiting")))
    settled = asyncio.run(worker.run(QueuedMessage("again", encode(item("retried")), dequeue_count=2)))
    assert job.runs == [["retried"]] and settled.result == ["retried"]
    assert queues.queue_depth(IMAGE_PUSHED) == 1


def test_an_undecodable_taken_message_is_poisoned_directly(queues):
    job = FakeJob(queues)
    worker = QueueWorker(IMAGE_PUSHED, lambda: job)
    queues.enqueue(IMAGE_PUSHED, "not a work item")
    settled = asyncio.run(worker.run(QueuedMessage("t", encode(item("ok")))))
    assert settled.poison == () and job.done == ["ok"]
    assert poisoned(queues) == ["not a work item"] and queues.queue_depth(IMAGE_PUSHED) == 0


# -- invocations wait for their batch without a thread ------------------------------------------------------------

def test_concurrent_invocations_hand_over_and_hold_no_thread_while_a_batch_runs(queues):
    release = threading.Event()
    started = threading.Event()
    job = FakeJob(queues)
    original = job.process

    def slow(items):
        started.set()
        assert release.wait(30)
        return original(items)

    job.process = slow
    worker = QueueWorker(IMAGE_PUSHED, lambda: job)

    async def scenario():
        first = asyncio.ensure_future(worker.run(QueuedMessage("m0", encode(item("t0")))))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
        rest = [asyncio.ensure_future(worker.run(QueuedMessage(f"m{n}", encode(item(f"t{n}"))))) for n in range(1, 13)]
        await asyncio.sleep(0.2)
        waiting = len(worker._state.pending)
        queued_jobs = worker.executor._work_queue.qsize()
        release.set()
        settled = await asyncio.gather(first, *rest)
        return waiting, queued_jobs, settled

    waiting, queued_jobs, settled = asyncio.run(scenario())
    assert (waiting, queued_jobs) == (12, 0)   # twelve invocations wait on the event loop: no thread, no pool slot
    assert job.runs == [["t0"], [f"t{n}" for n in range(1, 13)]]   # and were handed over to one batch
    assert sum(len(s.follow_ups) for s in settled) == 2            # each batch's follow-up goes out once


def worker_accepts_out_annotation(annotation) -> bool:
    """The Python worker's load-time check of a `func.Out[X]` queue output parameter (azure_functions_worker/
    functions.py, `FunctionRegistry` parameter validation, with its vendored typing_inspect): X must be a class or a
    typing generic, and the queue converter must accept it; otherwise the function fails to load."""
    [inner] = typing_inspect.get_args(annotation)
    if not isinstance(inner, type) and not typing_inspect.is_generic_type(inner):
        return False      # "binding ... has invalid non-type annotation", e.g. func.Out[list[str]]
    return QueueMessageOutConverter.check_output_type_annotation(inner)


def test_the_worker_check_refuses_builtin_list_annotations():
    assert worker_accepts_out_annotation(func.Out[typing.List[str]])
    assert not worker_accepts_out_annotation(func.Out[list[str]])


def test_queue_functions_are_coroutines_with_output_bindings_the_worker_accepts():
    import function_app

    functions = {f.get_function_name(): f for f in (b.build() for b in function_app.app._function_builders)}
    for name, outputs in {"bump_worker": {"hld-changed", "flux-notify", "image-pushed-poison"},
                          "generate_worker": {"flux-notify", "hld-changed-poison"},
                          "review_worker": {"pr-review-poison"},
                          "flux_notify_worker": {"flux-notify-poison"}}.items():
        assert inspect.iscoroutinefunction(functions[name].get_user_function()), name
        bindings = [json.loads(b) for b in functions[name].get_raw_bindings()]
        assert {b["queueName"] for b in bindings if b["type"] == "queue"} == outputs
    for name, fn in functions.items():
        hints = typing.get_type_hints(fn.get_user_function())
        for binding in (json.loads(b) for b in fn.get_raw_bindings()):
            if binding["type"] == "queue":
                assert worker_accepts_out_annotation(hints[binding["name"]]), (name, binding["name"])


# -- a permanent failure per class is poisoned on its first attempt, with its reason on the trace -------------------

def run_invocation(worker: QueueWorker, text: str) -> Settled:
    return asyncio.run(worker.run(QueuedMessage("msg-1", text)))


def test_policy_error_is_poisoned_at_once_and_a_replay_after_the_fix_commits(tmp_path, queues, records):
    good = f"kind: Pod\nspec:\n  containers:\n  - image: {REGISTRY}/web:1.0.0\n"
    url = bare_repo(tmp_path, {"autopilot.yaml": "rules:\n  - image: x\n    ordering: sideways\n",
                               "prod/web.yaml": good}, name="m")
    services = worker_services(queues, records, bump=make_service(url, records, tmp_path, is_hld=False))
    worker = QueueWorker(IMAGE_PUSHED, lambda: BumpJob(services))
    pushed = push("web", "1.0.1")
    settled = run_invocation(worker, encode(pushed))
    [copy] = settled.poison
    reason = json.loads(copy)[POISON_REASON_FIELD]
    assert reason.startswith("PolicyError: ") and "autopilot.yaml:3" in reason
    [row] = records.trace.rows_for_trace(pushed.trace_id)
    assert [s.name for s in row.stages] == ["failed"] and row.stages[0].detail["reason"] == reason
    assert row.image == pushed.image and row.image_tag == "1.0.1"

    push_files(url, "main", {"autopilot.yaml": "rules: []\n"}, "Fix the policy")
    queues.enqueue(poison_queue(IMAGE_PUSHED), copy)                   # what the host wrote from the binding
    assert len(Replayer(queues, None, None).poison(IMAGE_PUSHED).moved) == 1
    [message] = queues.receive(IMAGE_PUSHED, 1, 30)
    replayed = asyncio.run(worker.run(QueuedMessage(message.id, message.text, message.dequeue_count)))
    assert replayed.poison == () and replayed.result.commit == branches(url)["main"]
    assert b"web:1.0.1" in file_at(url, "main", "prod/web.yaml")


@pytest.mark.parametrize("text, reason", [
    ("not json", "WorkItemError: image-pushed: message is not JSON"),
    ('{"v": 1, "kind": "image-pushed", "trace_id": "abc123"}', "WorkItemError: image-pushed: missing field(s)"),
])
def test_work_item_decode_error_is_poisoned_at_once(queues, text, reason):
    job = FakeJob(queues)
    settled = run_invocation(QueueWorker(IMAGE_PUSHED, lambda: job), text)
    [copy] = settled.poison
    assert job.runs == [] and settled.result is None
    if text.startswith("{"):
        assert json.loads(copy)[POISON_REASON_FIELD].startswith(reason)
        [row] = job.trace.rows_for_trace("abc123")
        assert row.stages[0].name == "failed" and row.stages[0].detail["reason"].startswith(reason)
    else:
        assert copy == text      # kept as it is; the reason is logged (and shown by the replay summary)


def test_generation_error_is_poisoned_at_once_with_the_reason_on_the_pushs_record(tmp_path, queues, records):
    hld = bare_repo(tmp_path, EXAMPLE_HLD, name="hld")
    manifests = bare_repo(tmp_path, EXAMPLES / "manifests", name="manifests")
    trace = records.trace
    trace.record("p" * 32, "frontend/dev", "received", actor="acr")
    trace.record("p" * 32, "frontend/dev", "hld-commit", actor="gitops-autopilot")
    push_files(hld, "main", {"fabrikam-project/frontend/dev/component.yaml":
                             "name: dev\nsubcomponents:\n- name: evil\n  method: local\n  path: ../../../../etc\n"},
               "Point a component outside the checkout")
    services = worker_services(queues, records, generation=make_generation((hld, manifests), records, tmp_path))
    before = branches(manifests)["main"]
    settled = run_invocation(QueueWorker(HLD_CHANGED, lambda: GenerateJob(services)),
                             encode(changed("bump", image_trace_ids=("p" * 32,))))
    [copy] = settled.poison
    reason = json.loads(copy)[POISON_REASON_FIELD]
    assert reason.startswith("GenerationError: ") and branches(manifests)["main"] == before
    [row] = trace.rows_for_trace("p" * 32)
    assert [s.name for s in row.stages] == ["received", "hld-commit", "failed"]
    assert row.stages[-1].detail["reason"] == reason and row.stages[-1].detail["queue"] == HLD_CHANGED


def test_a_settings_error_poisons_without_running():
    from core.settings import SettingsError

    def unwired():
        raise SettingsError("HLD_REPO_URL is not set")

    settled = run_invocation(QueueWorker(IMAGE_PUSHED, unwired), encode(item("x")))
    assert json.loads(settled.poison[0])[POISON_REASON_FIELD] == "SettingsError: HLD_REPO_URL is not set"


def test_retry_after_is_waited_on_the_event_loop_before_the_retry(queues):
    from core.adapters.azdo import AzdoTransientError

    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    job = FakeJob(queues, fail=lambda i: AzdoTransientError("429", retry_after=90, status=429))
    worker = QueueWorker(IMAGE_PUSHED, lambda: job, sleep=sleep)
    with pytest.raises(AzdoTransientError):
        run_invocation(worker, encode(item("x")))
    assert sleeps == [30.0]      # bounded


def test_commits_through_the_runner_record_no_failure(tmp_path, queues, records):
    url = bare_repo(tmp_path, {"prod/web.yaml": f"kind: Pod\nspec:\n  containers:\n  - image: {REGISTRY}/web:1.0.0\n"},
                    name="m")
    services = worker_services(queues, records, bump=make_service(url, records, tmp_path))
    settled = run_invocation(QueueWorker(IMAGE_PUSHED, lambda: BumpJob(services)), encode(push("web", "1.0.1")))
    [follow_up] = settled.follow_ups
    assert settled.poison == () and follow_up.commit == branches(url)["main"] == commits(url, "main")[0].sha
    assert all(s.name != "failed" for row in records.trace.query() for s in row.stages)


def test_git_auth_error_is_poisoned_at_once(tmp_path, queues, records):
    from core.workers.bump import BumpService
    from core.adapters.git_workspace import GitWorkspace

    url = bare_repo(tmp_path, EXAMPLE_HLD, name="hld")
    bump = BumpService(repo_url=url, branch="main", high_water=records.high_water, trace=records.trace,
                       mode="direct", workspace=GitWorkspace(url, "main", base_dir=tmp_path / "w",
                                                             auth_header=lambda: "Basic a\nInjected: b"))
    pushed = push("fabrikam/frontend", "1.4.9")
    settled = run_invocation(QueueWorker(IMAGE_PUSHED, lambda: BumpJob(worker_services(queues, records, bump=bump))),
                             encode(pushed))
    reason = json.loads(settled.poison[0])[POISON_REASON_FIELD]
    assert reason.startswith("GitAuthError: ")
    [row] = records.trace.rows_for_trace(pushed.trace_id)
    assert row.stages[0].detail["reason"] == reason


def test_the_handler_sets_the_poison_and_follow_up_bindings_and_never_drops_an_unbound_follow_up(queues):
    from handlers import queues as handler

    job = FakeJob(queues, fail=lambda i: Broken("no") if i.tag == "bad" else None)
    worker = QueueWorker(IMAGE_PUSHED, lambda: job)
    message = func.QueueMessage(id="m1", body=encode(item("ok")).encode())
    changed_out, poison_out = Out(), Out()
    asyncio.run(handler.run(worker, message, poison_out, {HLD_CHANGED: changed_out}))
    [text] = changed_out.get()
    assert decode(text, HLD_CHANGED).event_id == "gen-ok" and poison_out.get() is None

    bad = func.QueueMessage(id="m2", body=encode(item("bad")).encode())
    asyncio.run(handler.run(worker, bad, poison_out, {HLD_CHANGED: Out()}))
    assert json.loads(poison_out.get()[0])[POISON_REASON_FIELD] == "Broken: no"

    with pytest.raises(KeyError):
        asyncio.run(handler.run(worker, func.QueueMessage(id="m3", body=encode(item("x")).encode()), Out()))


def test_under_devhost_a_permanent_failure_is_poisoned_by_the_function_itself_with_its_reason(
        azurite, tmp_path, monkeypatch):
    """The whole app under devhost: a malformed autopilot.yaml poisons the push at its first attempt, through the
    bump_worker's poison output binding (the host's own poisoning would copy the text as it is, after retries)."""
    import function_app
    from core.adapters.storage import Storage
    from core.adapters.trace import TraceLog
    from core.wiring import reset_services
    from devhost import DevHost

    hld = bare_repo(tmp_path, {**{p.relative_to(EXAMPLE_HLD).as_posix(): p.read_text()
                                  for p in EXAMPLE_HLD.rglob("*") if p.is_file()},
                               "autopilot.yaml": "rules:\n  - image: x\n    ordering: sideways\n"}, name="hld")
    manifests = bare_repo(tmp_path, EXAMPLES / "manifests", name="manifests")
    for name, value in {"AzureWebJobsStorage": azurite, "ACR_WEBHOOK_SECRET": "s", "AZDO_WEBHOOK_SECRET": "s",
                        "HLD_REPO_URL": hld, "MANIFEST_REPO_URL": manifests, "WRITE_MODE": "direct",
                        "HELM_MODE": "helmrelease", "WORK_DIR": str(tmp_path / "work")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AZDO_ORG_URL", raising=False)
    reset_services()
    storage = Storage(azurite)
    storage.ensure()
    pushed = push("fabrikam/frontend", "1.4.9")
    storage.enqueue(IMAGE_PUSHED, encode(pushed))
    host_json = {"version": "2.0", "extensions": {"queues": {"maxPollingInterval": "00:00:00.200",
                                                             "visibilityTimeout": "00:00:10", "maxDequeueCount": 5}}}
    running = DevHost(function_app.app, host_json).start()
    try:
        deadline = time.monotonic() + 60
        while not poisoned(storage) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        running.stop()
        reset_services()
    [copy] = poisoned(storage)
    reason = json.loads(copy)[POISON_REASON_FIELD]
    assert reason.startswith("PolicyError: ") and storage.queue_depth(IMAGE_PUSHED) == 0
    [row] = TraceLog(storage).rows_for_trace(pushed.trace_id)
    assert row.stages[-1].name == "failed" and row.stages[-1].detail["reason"] == reason


def test_a_released_taken_message_comes_back_after_the_hosts_visibility_timeout():
    from devhost.host_config import parse_timespan
    from tests.conftest import ROOT

    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert parse_timespan(queues["maxPollingInterval"], "maxPollingInterval") >= 2    # cost-sane idle polling
    assert RETRY_DELAY_AS_DECLARED == parse_timespan(queues["visibilityTimeout"], "visibilityTimeout")


def test_a_batch_keeps_the_delivery_order_and_runs_each_event_once(queues):
    job = FakeJob(queues)
    for tag in ["b", "a", "c"]:
        queues.enqueue(IMAGE_PUSHED, encode(item(tag)))
    run_invocation(QueueWorker(IMAGE_PUSHED, lambda: job), encode(item("a")))
    assert job.runs == [["a", "b", "c"]] and queues.queue_depth(IMAGE_PUSHED) == 0


def test_when_the_cause_is_not_one_message_a_failed_batch_is_not_run_item_by_item_to_the_end(queues):
    job = FakeJob(queues, fail=lambda i: Flaky("remote unreachable"))
    for n in range(6):
        queues.enqueue(IMAGE_PUSHED, encode(item(f"w{n}")))
    with pytest.raises(Flaky):
        run_invocation(QueueWorker(IMAGE_PUSHED, lambda: job), encode(item("t")))
    assert len(job.runs) == 1 + 2       # the batch, then two single runs that fail the same way
    assert queues.queue_depth(IMAGE_PUSHED) == 6     # the taken ones are back for a retry
