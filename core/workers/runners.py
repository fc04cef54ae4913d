"""Run dequeued work items: batching, the failure rules by error class, and what each invocation hands back.

Threads. The Python worker runs a synchronous function on its one shared pool (`Dispatcher._sync_call_tp`, a
`ThreadPoolExecutor` of `PYTHON_THREADPOOL_THREAD_COUNT` or min(32, cores + 4) threads) and awaits a coroutine
function on its event loop (`_handle__invocation_request`: `await self._run_async_func(...)` for `is_async`, else
`await self._loop.run_in_executor(self._sync_call_tp, self._run_sync_func, ...)`; Azure/azure-functions-python-worker,
azure_functions_worker/dispatcher.py). The queue functions are coroutines: an invocation hands its message to the
queue's `QueueWorker` and awaits the verdict without holding any thread. The blocking work (git, Azure DevOps SDK,
storage SDK) runs on a small pool of the queue's own (one thread for a batching queue, whose batches run one at a
time; `UNBATCHED_THREADS` for reviews): neither the worker's sync pool nor the event loop's default executor
(`run_in_executor(None)` / `asyncio.to_thread`, which the worker never sets and async HTTP code may use), so queue
work never takes a thread the HTTP side needs, and one queue's burst never delays another queue's work.

Batching. Invocations that arrive while a batch runs hand their message over and are settled by the next batch; a
batch also takes the messages still waiting on the queue (core.adapters.queue_batch), so one run commits a burst.

Failures, by class (core.errors):
- `Permanent`: the message goes straight to `<queue>-poison` carrying the reason (through the function's poison
  output binding for the trigger message; then the function returns and the host deletes the original), the reason
  is recorded on the trace of the work item's push(es) and logged once. A replay after the fix processes it.
- anything else (`Retryable` or unknown): the invocation raises; the host makes the message visible again after
  `visibilityTimeout` and poisons it after `maxDequeueCount` attempts. Azure DevOps' Retry-After is waited (bounded)
  before raising, on the event loop.
- A batch that fails is run again item by item, so one bad message cannot fail (or poison) its neighbours: the
  healthy ones commit and only the failing one is retried or poisoned. A message that failed before
  (dequeue count > 1) runs alone and takes no others, so messages are not taken into a batch not known to be good.
  When the single runs keep failing for a retryable reason (the remote is down), the rest are not run now.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Protocol, Sequence

from core.workers.job_stores import OnServices
from core.adapters.azdo import AzdoTransientError
from core.workers.bump import BumpResult, push_time
from core.adapters.deliveries import DeliveryJournal
from core.errors import Retryable, is_permanent
from core.workers.flux_notify import changed_envs, manifest_notification
from core.adapters.queue_batch import Taken, TakenMessages, take_waiting
from core.adapters.storage import HLD_CHANGED, IMAGE_PUSHED, StorageUnavailable, WorkQueues, poison_queue
from core.telemetry import metrics, trace_context
from core.adapters.trace import TraceStore, latency_seconds, now_iso
from core.model.workitems import FluxNotify, HldChanged, ImagePushed, WorkItem, decode, encode
from core.model.fleet import DEFAULT_TENANT
from core.workers.tenancy import services_for

log = logging.getLogger("autopilot.worker")

UNBATCHED_THREADS = 2           # concurrent runs of a queue whose messages are each their own run (reviews)
RETRY_DELAY_SECONDS = 5         # a taken message that failed comes back after this (host.json visibilityTimeout)
MAX_RETRY_AFTER_WAIT = 30.0
TENANT_RUNS = 16                # tenants whose share of one batch run at once (host.json batchSize; each its own repos)
SYSTEMIC_FAILURES = 2           # retryable failures in a row, running a failed batch item by item, that end it
POISON_REASON_FIELD = "poisonReason"
_TRACE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class QueuedMessage:
    """The trigger message of one invocation, as plain data."""
    id: str
    text: str
    dequeue_count: int = 1


@dataclass(frozen=True)
class Settled:
    """What an invocation hands back when it returns: messages for its output bindings, and the result of the
    run that carried its work item (None when it was poisoned)."""
    follow_ups: tuple[WorkItem, ...] = ()
    poison: tuple[str, ...] = ()
    result: Any = None


class Job(Protocol):
    """One kind of queue work: `process` is the blocking domain call for a list of items."""
    queue: str
    stage: str
    batches: bool           # take the other waiting messages into a run
    trace: TraceStore       # where a poisoned message's reason is recorded
    queues: WorkQueues      # taking waiting messages, poison copies, follow-ups sent directly
    deliveries: DeliveryJournal   # settled work items are marked done here

    def process(self, items: Sequence[WorkItem]) -> Any: ...

    def follow_ups(self, result: Any) -> Sequence[WorkItem]: ...

    def report(self, result: Any, items: Sequence[WorkItem]) -> None: ...


def on_done(job: Job, items: Sequence[WorkItem]) -> None:
    """The one place where a run reports the work items it settled: processed, poisoned with a reason, or failed and
    left on the queue for the host's retry (from here on the queue owns them either way). Called once per run, after
    the work and before the invocations return. The intake outbox marks their deliveries picked up here, so its
    timer does not enqueue them again (never raises; core/adapters/deliveries.py)."""
    log.debug("%s: settled %d item(s)", job.queue, len(items))
    job.deliveries.mark_done(i.event_id for i in items)


# -- one run, blocking (on the queue's executor) ------------------------------------------------------------------

@dataclass(eq=False)
class _Unit:
    """A message in a run: the trigger of an invocation or one taken with the SDK, and how its work went."""
    text: str
    message_id: str
    dequeue_count: int = 1
    item: WorkItem | None = None
    trigger: bool = False
    taken: Taken | None = None
    result: Any = None
    error: Exception | None = None
    done: bool = False


@dataclass(frozen=True)
class _Verdict:
    settled: Settled | None = None
    error: Exception | None = None
    retry_after: float = 0.0


def _unit(queue: str, text: str, message_id: str, *, dequeue_count: int = 1, trigger: bool = False,
          taken: Taken | None = None) -> _Unit:
    unit = _Unit(text, message_id, taken.dequeue_count if taken else dequeue_count, trigger=trigger, taken=taken)
    try:
        unit.item = decode(text, queue)
    except Exception as exc:  # noqa: BLE001 - WorkItemError (Permanent); anything else is a bug, retried
        unit.error = exc
    return unit


def _distinct(items: Sequence[WorkItem]) -> list[WorkItem]:
    """The items in their order, each event once (the first delivery of it)."""
    first: dict[str, WorkItem] = {}
    for item in items:
        first.setdefault(item.event_id, item)
    return list(first.values())


def _run(job: Job, units: Sequence[_Unit]) -> list[WorkItem]:
    """Process `units` as one batch; when that fails and there is more than one, process each alone. Returns the
    follow-ups of the runs that succeeded and marks each unit done or failed."""
    if not units:
        return []
    items = _distinct([u.item for u in units])
    try:
        with trace_context(items[0].trace_id):
            result = job.process(items)
    except Exception as exc:  # noqa: BLE001 - classified below; BaseException (shutdown) is not ours to catch
        if len(items) == 1:
            for u in units:
                u.error = exc
            return []
        log.warning("%s: a batch of %d items failed (%s); running each alone", job.stage, len(items),
                    type(exc).__name__)
        return _run_each(job, units)
    job.report(result, items)
    for u in units:
        u.result, u.done = result, True
    return list(job.follow_ups(result))


def _run_tenants(job: Job, units: Sequence[_Unit]) -> list[WorkItem]:
    """Run a batch as one run per tenant, those of different tenants side by side (at most TENANT_RUNS at once):
    one tenant's failing repo or credentials fails (and retries, or poisons) that tenant's items only, and never
    waits in line behind another tenant's work. Follow-ups carry the tenant of the work that produced them."""
    by_tenant: dict[str, list[_Unit]] = defaultdict(list)
    for u in units:
        by_tenant[u.item.tenant].append(u)

    def run(tenant: str, group: list[_Unit]) -> list[WorkItem]:
        return [f if f.tenant == tenant else replace(f, tenant=tenant) for f in _run(job, group)]

    if len(by_tenant) <= 1:
        return [f for tenant, group in by_tenant.items() for f in run(tenant, group)]
    with ThreadPoolExecutor(max_workers=min(TENANT_RUNS, len(by_tenant)), thread_name_prefix="tenant") as pool:
        futures = [pool.submit(contextvars.copy_context().run, run, tenant, group)
                   for tenant, group in by_tenant.items()]
        return [f for future in futures for f in future.result()]


def _run_each(job: Job, units: Sequence[_Unit]) -> list[WorkItem]:
    """Each unit alone, so only the failing ones fail. When SYSTEMIC_FAILURES runs in a row fail for a reason a retry
    may cure, the cause is not one message (the remote or storage is down): the rest are failed with that error
    instead of each waiting for it again, and come back for a retry."""
    follow_ups: list[WorkItem] = []
    in_a_row: list[_Unit] = []
    skipped = 0
    for u in units:
        if len(in_a_row) >= SYSTEMIC_FAILURES:
            u.error, skipped = in_a_row[-1].error, skipped + 1
            continue
        follow_ups += _run(job, [u])
        in_a_row = [] if u.done or is_permanent(u.error) else in_a_row + [u]
    if skipped:
        log.warning("%s: %d runs in a row failed (%s); the other %d item(s) of the batch are left for a retry",
                    job.stage, len(in_a_row), type(in_a_row[-1].error).__name__, skipped)
    return follow_ups


def reason_of(exc: BaseException) -> str:
    """`Type: first line of the message`, at most 500 characters: what a poisoned message carries."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (f"{type(exc).__name__}: {first}" if first else type(exc).__name__)[:500]


def with_reason(text: str, reason: str) -> str:
    """The poison copy of a message: a JSON work item gains a `poisonReason` field (work item decoding ignores it,
    so a replay processes it as before); any other text is kept as it is."""
    try:
        body = json.loads(text)
    except ValueError:
        return text
    if not isinstance(body, dict):
        return text
    return json.dumps({**body, POISON_REASON_FIELD: reason}, separators=(",", ":"), sort_keys=True)


def _trace_ids(unit: _Unit) -> list[str]:
    if unit.item is not None:
        ids = [unit.item.trace_id]
        if isinstance(unit.item, (HldChanged, FluxNotify)):
            ids += list(unit.item.image_trace_ids)
        return list(dict.fromkeys(i for i in ids if i))
    try:
        body = json.loads(unit.text)
    except ValueError:
        return []
    value = body.get("trace_id") if isinstance(body, dict) else None
    return [value] if isinstance(value, str) and _TRACE_ID.match(value) else []


def record_poisoned(trace: TraceStore, queue: str, unit: _Unit, reason: str) -> None:
    """Put the reason on the trace of the push(es) the message concerns: a `failed` stage on each of their records,
    or on a record of its own (image and tag set, for a push) when there is none yet."""
    detail = {"reason": reason, "queue": queue, "poisonQueue": poison_queue(queue), "messageId": unit.message_id}
    for trace_id in _trace_ids(unit):
        rows = trace.rows_for_trace(trace_id)
        for row in rows:
            trace.record(trace_id, row.target_key, "failed", actor="gitops-autopilot", detail=detail)
        if rows:
            continue
        item = unit.item
        if isinstance(item, ImagePushed):
            trace.record(trace_id, f"failed:{queue}", "failed", actor="gitops-autopilot", start=push_time(item),
                         fields={"image": item.image, "imageTag": item.tag, "digest": item.digest}, detail=detail)
        else:
            trace.record(trace_id, f"failed:{queue}", "failed", actor="gitops-autopilot", detail=detail)


def _poison_copy(job: Job, unit: _Unit) -> str:
    """Log the permanent failure once, record it on the trace, and return the message's poison copy."""
    reason = reason_of(unit.error)
    trace_id = unit.item.trace_id if unit.item else ""
    log.error("%s: message %s poisoned to %s: %s", job.stage, unit.message_id, poison_queue(job.queue), reason,
              extra={"trace_id": trace_id})
    metrics.failure(job.stage)
    try:
        record_poisoned(job.trace, job.queue, unit, reason)
    except StorageUnavailable as exc:
        log.warning("%s: could not record the poisoning of %s on the trace: %s", job.stage, unit.message_id, exc)
    return with_reason(unit.text, reason)


def _retry_after(exc: Exception) -> float:
    if isinstance(exc, AzdoTransientError) and exc.retry_after:
        return min(float(exc.retry_after), MAX_RETRY_AFTER_WAIT)
    return 0.0


def _log_retry(job: Job, unit: _Unit) -> None:
    metrics.failure(job.stage)
    trace_id = unit.item.trace_id if unit.item else ""
    if isinstance(unit.error, Retryable):
        log.warning("%s: message %s failed, to be retried: %s", job.stage, unit.message_id, reason_of(unit.error),
                    extra={"trace_id": trace_id})
    else:
        log.error("%s: message %s failed, to be retried", job.stage, unit.message_id, exc_info=unit.error,
                  extra={"trace_id": trace_id})


def settle(job: Job, triggers: Sequence[QueuedMessage]) -> list[_Verdict]:
    """Run the work of `triggers` (plus, when the job batches, the messages waiting on its queue) and decide what
    each trigger's invocation does: return with output-binding messages, or raise for a retry."""
    units = [_unit(job.queue, t.text, t.id, dequeue_count=t.dequeue_count, trigger=True) for t in triggers]
    fresh = [u for u in units if u.item is not None and u.dequeue_count <= 1]
    taken = (take_waiting(job.queues, job.queue) if job.batches and fresh
             else TakenMessages(job.queues, job.queue))
    pulled = [_unit(job.queue, m.text, m.id, taken=m) for m in taken.messages]
    follow_ups = _run_tenants(job, fresh + [u for u in pulled if u.item is not None and u.dequeue_count <= 1])
    for u in units + pulled:   # messages that failed before run alone, after the batch
        if u.item is not None and u.dequeue_count > 1:
            follow_ups += _run_tenants(job, [u])

    verdicts = [_trigger_verdict(job, u) for u in units]
    carrier = next((i for i, v in enumerate(verdicts) if v.settled is not None), None)
    if carrier is not None:
        verdicts[carrier] = replace(verdicts[carrier],
                                    settled=replace(verdicts[carrier].settled, follow_ups=tuple(follow_ups)))
    elif follow_ups:
        _enqueue_with_sdk(job, follow_ups)
    for u in pulled:
        _settle_taken(job, taken, u)
    on_done(job, [u.item for u in units + pulled if u.item is not None])
    return verdicts


def _trigger_verdict(job: Job, unit: _Unit) -> _Verdict:
    if unit.done:
        return _Verdict(Settled(result=unit.result))
    if is_permanent(unit.error):
        return _Verdict(Settled(poison=(_poison_copy(job, unit),)))
    _log_retry(job, unit)
    return _Verdict(error=unit.error, retry_after=_retry_after(unit.error))


def _settle_taken(job: Job, taken: TakenMessages, unit: _Unit) -> None:
    if unit.done:
        taken.delete(unit.taken)
    elif is_permanent(unit.error):
        try:
            taken.poison(unit.taken, _poison_copy(job, unit))
        except StorageUnavailable as exc:
            log.warning("%s: could not poison taken message %s (%s); it comes back after its visibility timeout",
                        job.stage, unit.message_id, exc)
    else:
        _log_retry(job, unit)
        taken.release(unit.taken, max(RETRY_DELAY_SECONDS, int(_retry_after(unit.error))))


def _enqueue_with_sdk(job: Job, follow_ups: Sequence[WorkItem]) -> None:
    """Every trigger of this run will raise, so no output binding will be written: the follow-ups of the taken
    messages that succeeded go out with the SDK (seen at the target queue's next poll)."""
    for item in follow_ups:
        try:
            job.queues.enqueue(item.queue, encode(item))
        except StorageUnavailable as exc:
            log.error("%s: could not enqueue %s for %s: %s", job.stage, item.queue, item.event_id, exc,
                      extra={"trace_id": item.trace_id})


def _settle_without_job(exc: Exception, queue: str, triggers: Sequence[QueuedMessage]) -> list[_Verdict]:
    """The job could not even be wired (settings): poison each trigger for a permanent error, else retry."""
    if not is_permanent(exc):
        log.error("%s: cannot run: %s", queue, reason_of(exc))
        return [_Verdict(error=exc) for _ in triggers]
    reason = reason_of(exc)
    log.error("%s: %d message(s) poisoned to %s: %s", queue, len(triggers), poison_queue(queue), reason)
    return [_Verdict(Settled(poison=(with_reason(t.text, reason),))) for t in triggers]


# -- the invocations, on the event loop -------------------------------------------------------------------------

@dataclass
class _LoopState:
    loop: asyncio.AbstractEventLoop
    pending: list[tuple[QueuedMessage, asyncio.Future]] = field(default_factory=list)
    drainer: asyncio.Task | None = None


class QueueWorker:
    """The invocations of one queue function in this process: each hands its message over and awaits its verdict;
    one drain task at a time runs the handed-over messages as a batch on the queue's own executor."""

    def __init__(self, queue: str, job: Callable[[], Job], *, batches: bool = True,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, threads: int | None = None):
        self.queue = queue
        self._job = job
        self._batches = batches
        self._sleep = sleep
        self._state: _LoopState | None = None
        self.executor = ThreadPoolExecutor(max_workers=threads or (1 if batches else UNBATCHED_THREADS),
                                           thread_name_prefix=f"queue-{queue}")

    async def run(self, message: QueuedMessage) -> Settled:
        """Settle one trigger message: return what the output bindings write, or raise for a retry."""
        if self._batches:
            verdict = await self._handed_over(message)
        else:
            [verdict] = await self._blocking([message])
        if verdict.error is not None:
            if verdict.retry_after:
                await self._sleep(verdict.retry_after)
            raise verdict.error
        return verdict.settled

    async def _blocking(self, triggers: list[QueuedMessage]) -> list[_Verdict]:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self.executor, context.run, self._settle, triggers)

    def _settle(self, triggers: list[QueuedMessage]) -> list[_Verdict]:
        try:
            job = self._job()
        except Exception as exc:  # noqa: BLE001 - classified: Permanent poisons, the rest is retried
            return _settle_without_job(exc, self.queue, triggers)
        return settle(job, triggers)

    async def _handed_over(self, message: QueuedMessage) -> _Verdict:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            self._state = _LoopState(loop)
        state = self._state
        future: asyncio.Future = loop.create_future()
        state.pending.append((message, future))
        if state.drainer is None or state.drainer.done():
            state.drainer = loop.create_task(self._drain(state))
        return await future

    async def _drain(self, state: _LoopState) -> None:
        while state.pending:
            await asyncio.sleep(0)   # invocations dispatched in the same tick join this batch
            taken, state.pending = state.pending, []
            try:
                verdicts = await self._blocking([message for message, _ in taken])
            except BaseException as exc:  # noqa: BLE001 - a bug or shutdown: every waiting invocation fails
                for _, future in taken:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), verdict in zip(taken, verdicts):
                if not future.done():
                    future.set_result(verdict)


# -- the jobs ---------------------------------------------------------------------------------------------------

def _tenant_services(services: Any, items: Sequence[WorkItem]) -> Any:
    """The services of the one tenant a run's items belong to."""
    return services_for(services, _run_tenant(items))


def _run_tenant(items: Sequence[WorkItem]) -> str:
    """The one tenant a run's items belong to (_run_tenants never mixes tenants in a run)."""
    [tenant] = {getattr(i, "tenant", DEFAULT_TENANT) for i in items}   # test doubles' items may name none
    return tenant


def _wakes_flux(services: Any, tenant: str) -> bool:
    """Does `tenant` have Flux receivers (its fleet.yaml flux.receivers; without a fleet, FLUX_RECEIVERS)? A manifest
    commit then asks flux-notify to wake them: the item names the tenant, so only its own receivers are woken."""
    settings = getattr(services, "settings", None)   # test doubles wire only what their job uses
    if settings is None:
        return False
    if getattr(services, "fleet_source", None) is None or getattr(services, "definition", None) is not None:
        return bool(settings.flux.receivers)
    return bool(services.for_tenant(tenant).settings.flux.receivers)


@dataclass
class BumpJob(OnServices):
    services: Any
    queue: str = IMAGE_PUSHED
    stage: str = "bump"
    batches: bool = True

    def process(self, items: Sequence[WorkItem]) -> BumpResult:
        assert all(isinstance(i, ImagePushed) for i in items)
        return _tenant_services(self.services, items).bump.process(items)

    def follow_ups(self, result: BumpResult) -> Sequence[WorkItem]:
        tenant = _run_tenant([o.item for o in result.bumped]) if result.bumped else None
        if (result.commit and tenant is not None and _wakes_flux(self.services, tenant)
                and not services_for(self.services, tenant).bump.is_hld):
            # light-weight flow: the bump itself is the manifest commit; Flux is woken for the folders it touched
            envs = changed_envs([o.target.file for o in result.bumped], root_is_env=False)
            return (*result.follow_ups, manifest_notification(result.commit, envs,
                                                              [o.item.trace_id for o in result.bumped], tenant=tenant))
        return result.follow_ups

    def report(self, result: BumpResult, items: Sequence[WorkItem]) -> None:
        now = now_iso()
        for pushed in result.no_target:
            metrics.bump("no-target")
            log.info("no target uses %s:%s", pushed.image, pushed.tag, extra={"trace_id": pushed.trace_id})
        for outcome in result.outcomes:
            metrics.bump(outcome.action)
            log.info("%s %s: %s", outcome.action, outcome.target.key, outcome.reason,
                     extra={"trace_id": outcome.item.trace_id if outcome.item else ""})
            if outcome.action == "bump" and (result.commit or result.pull_requests):
                seconds = latency_seconds(push_time(outcome.item), now)
                if seconds is not None and seconds >= 0:
                    metrics.push_to_hld_commit(seconds)
        for _ in result.pull_requests:
            metrics.pull_request("bump")


@dataclass
class GenerateJob(OnServices):
    services: Any
    queue: str = HLD_CHANGED
    stage: str = "generate"
    batches: bool = True

    def process(self, items: Sequence[WorkItem]):
        assert all(isinstance(i, HldChanged) for i in items)
        tenant = _run_tenant(items)
        return replace(services_for(self.services, tenant).generation.process(items), tenant=tenant)

    def follow_ups(self, result) -> Sequence[WorkItem]:
        tenant = getattr(result, "tenant", DEFAULT_TENANT)
        if result.action == "committed" and _wakes_flux(self.services, tenant):
            # The notification runs on its own queue: this batch returns now, whatever the receivers do.
            return (manifest_notification(result.manifest_commit, changed_envs(result.changed_paths, root_is_env=True),
                                          result.trace_ids, tenant=tenant),)
        return ()

    def report(self, result, items: Sequence[WorkItem]) -> None:
        metrics.generation(result.action)
        if result.pr_id:
            metrics.pull_request("manifest")
        log.info("generation from HLD %s: %s %s", result.hld_commit[:7], result.action, result.manifest_commit or "",
                 extra={"trace_id": items[0].trace_id})
