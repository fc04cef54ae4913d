"""Wake Flux: after a manifest commit (or manifest PR merge), POST a signed `generic-hmac` request to the
notification-controller Receiver of every cluster that serves a changed environment folder.

Where it runs. Not in the generation worker: the generation run only hands a `FluxNotify` work item to the
`flux-notify` queue through its output binding (so the host wakes this queue's listener at once, see
handlers/queues.py), and returns. The `flux_notify_worker` queue function then notifies every receiver of the item
in parallel, each on its own thread with a bounded attempt timeout, so a dead or slow receiver delays neither the
generation batch nor any other receiver. A quick failure (5xx, 408, 429, connection refused) is retried in the run
after a short back-off (`BACKOFF_S`, within `DEADLINE_S`); a timeout is not retried in the run. Receivers still
failing with such a retryable outcome are handed to the queue again as one new message naming only those clusters,
made visible after a growing delay (`ROUND_DELAYS_S`): the queue carries the slow retries, not a held thread. A 4xx other than 408/429 (400 is how
notification-controller answers a bad signature, 404 an unknown webhook path) is not retried: it needs a fix.

Each attempt and its outcome go on the deployment trace as `notified@<cluster>` or `notify-failed@<cluster>` (with
the HTTP status or error, the attempt and what happens next), on the records of the pushes the commit carries (see
`FluxTrace`), else on a record of the commit itself.
"""
from __future__ import annotations

import http.client
import json
import logging
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import core
from core.workers.job_stores import OnServices
from core.adapters.git_runner import GitError
from core.errors import Permanent
from core.adapters.flux_receivers import FluxReceiver, receivers_for, sign
from core.adapters.storage import FLUX_NOTIFY, StorageUnavailable
from core.adapters.trace import TraceStore, now_iso
from core.model.fleet import DEFAULT_TENANT
from core.model.trace_record import StageName, TraceRecord, TraceStage
from core.workers.tenancy import services_for
from core.model.workitems import FluxNotify, WorkItem, encode

log = logging.getLogger("autopilot.flux")

ATTEMPT_TIMEOUT_S = 2.0              # one POST: connect and each read (a Receiver answers in milliseconds)
DEADLINE_S = 5.0                     # all in-run attempts of one item, every receiver in parallel
RUN_THREADS = 8                      # flux-notify runs at once in one instance (each mostly waits on the network)
BACKOFF_S = (0.2, 0.6, 1.5)          # waits before the 2nd, 3rd, 4th in-run attempt (x 0.8..1.2 jitter)
ROUND_DELAYS_S = (15, 60, 300, 900)  # queue retry rounds: visible again after these many seconds
MAX_ROUNDS = 1 + len(ROUND_DELAYS_S)
MANIFEST_STAGES = (TraceStage.MANIFEST_COMMIT, TraceStage.MANIFEST_PR)


@dataclass(frozen=True)
class Posted:
    """What one POST got back: the HTTP status, or None and the error when none came."""
    status: int | None
    error: str = ""
    timed_out: bool = False


@dataclass(frozen=True)
class Attempt:
    cluster: str
    env: str
    number: int           # 1, 2, ... within this run
    status: int | None
    error: str
    at: str               # ISO time when the attempt ended
    seconds: float        # since the notification (this run) began
    ok: bool
    retryable: bool
    retry_in: float | None = None   # seconds until the next in-run attempt; None: none in this run

    @property
    def describe(self) -> str:
        what = f"HTTP {self.status}" if self.status is not None else (self.error or "no answer")
        return what if self.ok else f"{what}, attempt {self.number}"


def retryable(posted: Posted) -> bool:
    status = posted.status
    return status is None or status >= 500 or status in (408, 429)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect is an answer (3xx), never a silent re-POST as GET
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post_http(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Posted:
    """POST `body`; the status, or None with the error (timeout, connection refused, TLS, ...)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(4096)
            return Posted(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return Posted(exc.code)
    except (OSError, http.client.HTTPException) as exc:   # URLError and TimeoutError are OSErrors
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return Posted(None, f"timed out after {timeout:.1f} s", timed_out=True)
        text = " ".join(str(reason).split())[:120]   # one line: it can quote what the other end sent
        return Posted(None, f"{type(reason).__name__}: {text}" if text else type(reason).__name__)


def notification_body(item: FluxNotify, receiver: FluxReceiver, repository: str, branch: str) -> bytes:
    """The small JSON document a Receiver is sent (Flux only checks its signature; people read it in its logs)."""
    return json.dumps({"source": "gitops-autopilot", "reason": item.reason, "commit": item.commit,
                       "repository": repository, "branch": branch, "environments": list(item.envs),
                       "cluster": receiver.cluster, **({"pullRequest": item.pr_id} if item.pr_id else {})},
                      separators=(",", ":"), sort_keys=True).encode("utf-8")


class Notifier:
    """Notify receivers in parallel (one thread each), bounded: every attempt by `attempt_timeout`, all of them by
    `deadline`. `report` is called on the calling thread for every attempt as it ends, so its writes (the trace)
    are serial and never hold a receiver's thread."""

    def __init__(self, post: Callable[[str, bytes, dict[str, str], float], Posted] = post_http, *,
                 attempt_timeout: float = ATTEMPT_TIMEOUT_S, deadline: float = DEADLINE_S,
                 backoff: Sequence[float] = BACKOFF_S, sleep: Callable[[float], Any] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, jitter: Callable[[], float] = random.random):
        self._post = post
        self.attempt_timeout = attempt_timeout
        self.deadline = deadline
        self.backoff = tuple(backoff)
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter

    def notify(self, sends: Sequence[tuple[FluxReceiver, bytes]],
               report: Callable[[Attempt], None] = lambda a: None) -> dict[str, Attempt]:
        """POST each (receiver, body); the last attempt per cluster."""
        if not sends:
            return {}
        began = self._clock()
        attempts: "queue.SimpleQueue[Attempt | None]" = queue.SimpleQueue()
        last: dict[str, Attempt] = {}
        with ThreadPoolExecutor(max_workers=len(sends), thread_name_prefix="flux-notify") as pool:
            for receiver, body in sends:
                pool.submit(self._one, receiver, body, began, attempts)
            running = len(sends)
            while running:
                attempt = attempts.get()
                if attempt is None:
                    running -= 1
                    continue
                last[attempt.cluster] = attempt
                try:
                    report(attempt)
                except Exception:  # noqa: BLE001 - a report (trace) failure must not stop the notifications
                    log.warning("could not report the attempt on %s", attempt.cluster, exc_info=True)
        return last

    def _one(self, receiver: FluxReceiver, body: bytes, began: float,
             attempts: "queue.SimpleQueue[Attempt | None]") -> None:
        headers = {"Content-Type": "application/json", "X-Signature": sign(body, receiver.secret),
                   "User-Agent": f"gitops-autopilot/{core.__version__}"}
        try:
            number = 0
            while True:
                number += 1
                remaining = self.deadline - (self._clock() - began)
                posted = self._post(receiver.url, body, headers, max(0.05, min(self.attempt_timeout, remaining)))
                elapsed = self._clock() - began
                ok = posted.status is not None and 200 <= posted.status < 300
                wait = None
                # A quick failure (5xx, refused) is retried here after a short back-off; a timeout is not: another
                # full attempt_timeout would hold this run (and a queue thread) for nothing, the queue round retries it.
                if not ok and retryable(posted) and not posted.timed_out and number <= len(self.backoff):
                    wait = round(self.backoff[number - 1] * (0.8 + 0.4 * self._jitter()), 3)
                    if elapsed + wait + min(self.attempt_timeout, 0.5) > self.deadline:
                        wait = None   # no time left for a useful attempt: the queue retries it
                attempts.put(Attempt(receiver.cluster, receiver.env, number, posted.status, posted.error, now_iso(),
                                     round(elapsed, 3), ok, not ok and retryable(posted), wait))
                if wait is None:
                    return
                self._sleep(wait)
        except Exception as exc:  # noqa: BLE001 - a bug in one receiver's thread must not hang the others
            attempts.put(Attempt(receiver.cluster, receiver.env, 0, None, f"{type(exc).__name__}: {exc}"[:200],
                                 now_iso(), round(self._clock() - began, 3), False, True))
        finally:
            attempts.put(None)


@dataclass(frozen=True)
class NotifyResult:
    commit: str
    notified: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()       # not retried (a 4xx), or out of retry rounds
    retrying: tuple[str, ...] = ()     # handed to the queue for the next round
    next_round_in: int | None = None


class FluxNotifyError(Permanent, ValueError):
    """A flux-notify item cannot be acted on (no commit named, a round below 1)."""


def _failure_reason(attempt: Attempt, item: FluxNotify, next_delay: int | None) -> str:
    if attempt.retry_in is not None:
        then = f"retrying in {attempt.retry_in:.1f} s"
    elif not attempt.retryable:
        then = "not retried (the Receiver rejected the request; check its URL and token)"
    elif next_delay is not None:
        then = f"round {item.round} of {MAX_ROUNDS}: the queue retries in {next_delay} s"
    else:
        then = f"round {item.round} of {MAX_ROUNDS}: given up (Flux still polls on its interval)"
    return f"{attempt.describe}; {then}"


def _serves(row: TraceRecord, env: str) -> bool:
    """Is a push record's target in environment folder `env` of the manifest repo? Known only when the push bumped
    the manifest repo itself (light-weight flow: `targetFile` is a manifest path, its first segment the folder); an
    HLD target's folder is decided by generation (a record's `env` is then the Bedrock ring), so it counts as yes."""
    if row.hld_repo or "/" not in row.target_file:
        return True
    return row.target_file.split("/", 1)[0] == env


class FluxTrace:
    """Where a notification's attempts are recorded: the records of the item's pushes with a manifest stage whose
    target the cluster serves (`_serves`), else one record of the commit itself (trace `item.trace_id`)."""

    def __init__(self, trace: TraceStore, item: FluxNotify, repository: str):
        self._trace = trace
        self._item = item
        self._repository = repository
        self._rows: list[TraceRecord] | None = None

    def _push_rows(self) -> list[TraceRecord]:
        """Read when the first attempt is recorded, not before the POSTs: the receivers are not kept waiting."""
        if self._rows is None:
            self._rows = []
            for trace_id in self._item.image_trace_ids:
                try:
                    rows = self._trace.rows_for_trace(trace_id)
                except StorageUnavailable as exc:
                    log.warning("flux: cannot read trace %s: %s", trace_id, exc)
                    continue
                self._rows += [r for r in rows if any(r.has(stage) for stage in MANIFEST_STAGES)]
        return self._rows

    def record(self, attempt: Attempt, stage: StageName, reason: str = "") -> None:
        item = self._item
        detail = {"cluster": attempt.cluster, "env": attempt.env, "attempt": attempt.number, "round": item.round,
                  "commit": item.commit, "seconds": attempt.seconds,
                  **({"status": attempt.status} if attempt.status is not None else {}),
                  **({"reason": reason} if reason else {})}
        rows = [r for r in self._push_rows() if _serves(r, attempt.env)]
        try:
            for row in rows:
                self._trace.record(row.trace_id, row.target_key, stage, actor="flux-notify", at=attempt.at,
                                   detail=detail)
            if not rows:
                self._trace.record(item.trace_id, f"flux:{item.commit}", stage, actor="flux-notify", at=attempt.at,
                                   start=item.committed_at,
                                   fields={"manifestCommitId": item.commit, "manifestRepo": self._repository},
                                   detail=detail)
        except StorageUnavailable as exc:
            log.warning("flux: could not record %s on the trace: %s", stage, exc)


class FluxNotifyJob(OnServices):
    """The `flux-notify` queue's job (core.workers.runners.Job): one item per run, never batched."""
    queue = FLUX_NOTIFY
    stage = "flux-notify"
    batches = False

    def __init__(self, services: Any, notifier: Notifier | None = None):
        self.services = services
        self.notifier = notifier or default_notifier()

    def process(self, items: Sequence[WorkItem]) -> NotifyResult:
        [item] = items
        assert isinstance(item, FluxNotify)
        services = services_for(self.services, item.tenant)   # the tenant's manifest repo and trace
        if services is not self.services:
            return FluxNotifyJob(services, self.notifier).process(items)
        if not item.commit:
            raise FluxNotifyError("flux-notify item names no commit")
        if item.round < 1:
            raise FluxNotifyError(f"flux-notify item round {item.round} is not 1 or more")
        settings = self.services.settings
        if item.reason == "manifest-pr-merged" and not item.envs and not item.clusters:
            item = replace(item, envs=self._merged_folders(item))   # later rounds keep them
        receivers = receivers_for(settings.flux.receivers, item.envs, item.clusters)
        if not receivers:
            log.info("flux: no receiver serves %s", ", ".join(item.envs) or "any environment",
                     extra={"trace_id": item.trace_id})
            return NotifyResult(item.commit)
        repository, branch = settings.manifest_repo_url, settings.manifest_branch
        trace = FluxTrace(self.services.trace, item, repository)
        next_delay = ROUND_DELAYS_S[item.round - 1] if item.round <= len(ROUND_DELAYS_S) else None

        def report(attempt: Attempt) -> None:
            if attempt.ok:
                log.info("flux: notified %s +%.2fs", attempt.cluster, attempt.seconds,
                         extra={"trace_id": item.trace_id})
                trace.record(attempt, TraceStage.NOTIFIED.at(attempt.cluster))
                return
            reason = _failure_reason(attempt, item, next_delay)
            log.warning("flux: %s: %s", attempt.cluster, reason, extra={"trace_id": item.trace_id})
            trace.record(attempt, TraceStage.NOTIFY_FAILED.at(attempt.cluster), reason)

        last = self.notifier.notify([(r, notification_body(item, r, repository, branch)) for r in receivers],
                                    report)
        notified = tuple(sorted(c for c, a in last.items() if a.ok))
        again = tuple(sorted(c for c, a in last.items() if not a.ok and a.retryable))
        if again and next_delay is not None:
            retry = replace(item, clusters=again, round=item.round + 1, event_id=f"{item.event_id}#r{item.round + 1}")
            # With the SDK, not an output binding: the binding cannot delay a message (the Storage Queues extension
            # sends with `QueueClient.SendMessageAsync(body)`, no visibility timeout: StorageQueueExtensions.
            # AddMessageAndCreateIfNotExistsAsync, Microsoft.Azure.WebJobs.Extensions.Storage.Common, in
            # Azure/azure-sdk-for-net). If this write fails the run fails and the host retries the whole item:
            # notifying a cluster twice only asks Flux to reconcile twice.
            self.queues.enqueue(FLUX_NOTIFY, encode(retry), visibility_timeout=next_delay)
            failed = tuple(sorted(c for c, a in last.items() if not a.ok and not a.retryable))
            return NotifyResult(item.commit, notified, failed, again, next_delay)
        failed = tuple(sorted(c for c, a in last.items() if not a.ok))
        return NotifyResult(item.commit, notified, failed)

    def _merged_folders(self, item: FluxNotify) -> tuple[str, ...]:
        """The environment folders a merged manifest PR changed (its merge commit against the first parent), so only
        their clusters are woken; () (wake every receiver) when the manifest repo cannot tell: waking a cluster
        that has nothing new costs it one reconcile, missing one delays a deployment."""
        settings = self.services.settings
        try:
            workspace = self.services.workspace(settings.manifest_repo_url, settings.manifest_branch, purpose="flux")
            folders = workspace.changed_top_folders(item.commit)
        except GitError as exc:
            log.warning("flux: changed folders of %s unknown (%s): waking every receiver", item.commit[:12], exc,
                        extra={"trace_id": item.trace_id})
            return ()
        return folders or ()

    def follow_ups(self, result: NotifyResult) -> Sequence[WorkItem]:
        return ()

    def report(self, result: NotifyResult, items: Sequence[WorkItem]) -> None:
        log.info("flux: commit %s: notified %s%s%s", result.commit[:12], ", ".join(result.notified) or "none",
                 f"; failed {', '.join(result.failed)}" if result.failed else "",
                 f"; retrying {', '.join(result.retrying)} in {result.next_round_in} s" if result.retrying else "",
                 extra={"trace_id": items[0].trace_id if items else ""})


def changed_envs(changed_paths: Sequence[str], *, root_is_env: bool) -> tuple[str, ...]:
    """The environment folders (first path segments) `changed_paths` touch. A path of one segment is an environment
    folder itself when `root_is_env` (generation replaces whole folders), else a file at the repository root: the
    environment is then unknown and the answer is () (every cluster)."""
    envs: set[str] = set()
    for path in changed_paths:
        head, slash, _ = path.partition("/")
        if not slash and not root_is_env:
            return ()
        envs.add(head)
    return tuple(sorted(envs))


def manifest_notification(commit: str, envs: Sequence[str], image_trace_ids: Sequence[str],
                          reason: str = "manifest-commit", tenant: str = DEFAULT_TENANT) -> FluxNotify:
    """The work item for tenant `tenant`'s manifest commit that changed the environment folders `envs` (empty:
    unknown): only that tenant's receivers are woken."""
    return FluxNotify(event_id=f"flux:{commit}", trace_id=commit[:32], commit=commit, reason=reason,
                      envs=tuple(envs), image_trace_ids=tuple(dict.fromkeys(image_trace_ids)),
                      committed_at=now_iso(), tenant=tenant)


_notifier: Notifier | None = None
_notifier_lock = threading.Lock()


def default_notifier() -> Notifier:
    global _notifier
    with _notifier_lock:
        if _notifier is None:
            _notifier = Notifier()
        return _notifier
