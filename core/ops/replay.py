"""Replaying work: poison messages back onto their work queue, and journaled deliveries through intake again.

A poison message is moved by sending its original text to the work queue and only then deleting it from the
poison queue, so a failure in between leaves a copy in both places, never in neither.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from dataclasses import dataclass
from typing import Any, Iterable

from core.adapters.deliveries import DeliveryJournal
from core.errors import Permanent
from core.workers.intake import Intake, Reply
from core.adapters.storage import WORK_QUEUES, Received, StorageUnavailable, WorkQueues, poison_queue
from core.model.workitems import WorkItemError, decode

log = logging.getLogger("autopilot.replay")

REQUEST_FIELDS = ("queue", "messageIds", "eventId", "dryRun")
LEASE_SECONDS = 300  # poison messages stay hidden from other readers while a replay works through them
MAX_MESSAGES = 5000  # per call: a bigger backlog is replayed by calling again


class ReplayRequestError(Permanent, ValueError):
    """The replay request is malformed; the message names the field."""


@dataclass(frozen=True)
class ReplayRequest:
    queue: str = ""
    message_ids: tuple[str, ...] | None = None
    event_id: str = ""
    dry_run: bool = False


def parse_replay_request(body: Any) -> ReplayRequest:
    """Validate a `POST /replay` body: `{"queue", "messageIds"?, "dryRun"?}` or `{"eventId", "dryRun"?}`."""
    if not isinstance(body, dict):
        raise ReplayRequestError("body must be a JSON object with queue or eventId")
    unknown = sorted(set(body) - set(REQUEST_FIELDS))
    if unknown:
        raise ReplayRequestError(f"unknown field {unknown[0]!r} (expected {', '.join(REQUEST_FIELDS)})")
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise ReplayRequestError("dryRun must be true or false")
    if ("queue" in body) == ("eventId" in body):
        raise ReplayRequestError("give exactly one of queue or eventId")
    if "eventId" in body:
        event_id = body["eventId"]
        if not isinstance(event_id, str) or not event_id.strip():
            raise ReplayRequestError("eventId must be a non-empty string")
        if "messageIds" in body:
            raise ReplayRequestError("messageIds goes with queue, not with eventId")
        return ReplayRequest(event_id=event_id.strip(), dry_run=dry_run)
    queue = body["queue"]
    if queue not in WORK_QUEUES:
        raise ReplayRequestError(f"queue {queue!r} is not a work queue (valid: {', '.join(WORK_QUEUES)})")
    message_ids = body.get("messageIds")
    if message_ids is not None:
        if (not isinstance(message_ids, list) or not message_ids
                or not all(isinstance(m, str) and m.strip() for m in message_ids)):
            raise ReplayRequestError("messageIds must be a non-empty array of message id strings")
        message_ids = tuple(dict.fromkeys(m.strip() for m in message_ids))
    return ReplayRequest(queue=queue, message_ids=message_ids, dry_run=dry_run)


@dataclass(frozen=True)
class MessageSummary:
    """What a queue message holds, decoded from its work item (or why it could not be decoded)."""
    message_id: str
    kind: str = ""
    event_id: str = ""
    trace_id: str = ""
    error: str = ""

    def as_json(self) -> dict[str, str]:
        body = {"messageId": self.message_id, "kind": self.kind, "eventId": self.event_id,
                "traceId": self.trace_id}
        if self.error:
            body["error"] = self.error
        return body


def summarize(message_id: str, text: str, queue: str) -> MessageSummary:
    try:
        item = decode(text, queue)
    except WorkItemError as exc:
        return MessageSummary(message_id, error=str(exc))
    return MessageSummary(message_id, item.queue, item.event_id, item.trace_id)


@dataclass(frozen=True)
class PoisonReplay:
    queue: str
    dry_run: bool
    moved: tuple[MessageSummary, ...]
    not_found: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"queue": self.queue, "from": poison_queue(self.queue), "dryRun": self.dry_run,
                "count": len(self.moved), "moved": [m.as_json() for m in self.moved],
                "notFound": list(self.not_found)}


class ReplayInterrupted(StorageUnavailable):
    """Storage failed part way; `moved` lists what was moved before that."""

    def __init__(self, message: str, moved: tuple[MessageSummary, ...]):
        super().__init__(message)
        self.moved = moved


class Replayer:
    def __init__(self, queues: WorkQueues, intake: Intake, deliveries: DeliveryJournal):
        self._queues = queues
        self._intake = intake
        self._deliveries = deliveries

    def run(self, request: ReplayRequest) -> Reply:
        """The HTTP-shaped answer to a parsed request (the admin handler and the CLI both use it)."""
        if request.event_id:
            return self.event(request.event_id, dry_run=request.dry_run)
        try:
            result = self.poison(request.queue, request.message_ids, dry_run=request.dry_run)
        except ReplayInterrupted as exc:
            return Reply(503, {"error": f"storage unavailable: {exc}", "moved": [m.as_json() for m in exc.moved]})
        except StorageUnavailable as exc:
            return Reply(503, {"error": f"storage unavailable: {exc}"})
        return Reply(200, result.as_json())

    def poison(self, queue: str, message_ids: Iterable[str] | None = None, *, dry_run: bool = False) -> PoisonReplay:
        """Move the messages of `<queue>-poison` (all, or those with `message_ids`) back to `queue`."""
        if queue not in WORK_QUEUES:
            raise ReplayRequestError(f"queue {queue!r} is not a work queue (valid: {', '.join(WORK_QUEUES)})")
        wanted = None if message_ids is None else tuple(message_ids)
        source = poison_queue(queue)
        leased: list[Received] = []
        moved: list[MessageSummary] = []
        try:
            self._lease_all(source, leased)
            selected = [m for m in leased if wanted is None or m.id in wanted]
            for message in selected:
                summary = summarize(message.id, message.text, queue)
                if not dry_run:
                    self._move(source, queue, message)
                    leased.remove(message)
                    log.info("replayed %s from %s to %s", message.id, source, queue,
                             extra={"trace_id": summary.trace_id})
                moved.append(summary)
        except StorageUnavailable as exc:
            raise ReplayInterrupted(str(exc), tuple(moved)) from exc
        finally:
            self._release(source, leased)
        found = {m.message_id for m in moved}
        not_found = tuple(m for m in wanted if m not in found) if wanted is not None else ()
        return PoisonReplay(queue, dry_run, tuple(moved), not_found)

    def event(self, event_id: str, *, dry_run: bool = False) -> Reply:
        """Run a journaled delivery through intake again (no duplicate check); dry run only looks it up."""
        if not dry_run:
            reply = self._intake.replay(event_id)
            if reply.status in (200, 202):
                return Reply(200, {**reply.body, "replayed": True})
            return self._not_journaled(event_id) if reply.status == 404 else reply
        try:
            journaled = self._deliveries.journaled(event_id)
        except StorageUnavailable as exc:
            return Reply(503, {"error": f"storage unavailable: {exc}"})
        if journaled is None:
            return self._not_journaled(event_id)
        return Reply(200, {"eventId": journaled.event_id, "source": journaled.source,
                           "receivedAt": journaled.received_at, "bytes": len(journaled.body), "dryRun": True})

    def _not_journaled(self, event_id: str) -> Reply:
        """404: once the journal has been purged, an id it lacks may be a delivery past retention; say so."""
        try:
            horizon = self._deliveries.purged_before()
        except StorageUnavailable:
            horizon = None
        if horizon is None:
            return Reply(404, {"error": f"no journaled delivery with eventId {event_id}"})
        when = datetime.fromtimestamp(horizon, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Reply(404, {"error": f"no journaled delivery with eventId {event_id}: past retention if it was "
                                    f"received (deliveries done before {when} are purged, JOURNAL_RETENTION_DAYS)"})

    # -- queue plumbing -----------------------------------------------------------------------------------------
    def _lease_all(self, source: str, leased: list[Received]) -> None:
        """Receive (and so hide) every message, page by page: hidden ones are not handed out twice. Fills
        `leased` in place so the caller can release what was leased even when a later page fails."""
        while len(leased) < MAX_MESSAGES:
            page = self._queues.receive(source, 32, LEASE_SECONDS)
            if not page:
                return
            leased.extend(page)

    def _move(self, source: str, queue: str, message: Received) -> None:
        self._queues.enqueue(queue, message.text)
        try:
            gone = not self._queues.delete(source, message)
        except StorageUnavailable as exc:
            raise StorageUnavailable(f"{exc} deleting {message.id} (it is now on {queue} as well)") from exc
        if gone:
            log.warning("%s was already gone from %s after it was re-sent to %s", message.id, source, queue)

    def _release(self, source: str, messages: list[Received]) -> None:
        """Make messages that stay on the poison queue visible again at once (else they reappear after the lease)."""
        for message in messages:
            try:
                self._queues.release(source, message, 0)
            except StorageUnavailable:
                log.warning("could not unhide %s on %s; it reappears within %d s", message.id, source, LEASE_SECONDS)
