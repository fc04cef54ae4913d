"""Webhook intake: check, de-duplicate, journal and accept deliveries, and say what happened.

HTTP-agnostic: handlers pass lower-cased headers, query params and the raw body, turn the Reply into a response and
hand the accepted work items to the function's queue output bindings. A delivery is accepted when its claim (the
journal entry and its outbox marker, one table transaction) is written; the outbox timer re-enqueues what the
output write then lost (core/adapters/deliveries.py).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from core.rules.azdo_routing import fleet_push, route_fleet
from core.adapters.fleet_source import FleetSource
from core.adapters.deliveries import (MAX_EVENT_ID_CHARS, MAX_MESSAGES_CHARS, AsyncDeliveryJournal, Claim,
                                     DeliveryJournal)
from core.model.payloads import (ACR_IMAGE_PUSHED, EVENTGRID_VALIDATION, Ignored, PayloadError, parse_acr_event,
                           parse_azdo, parse_eventgrid)
from core.settings import Settings
from core.adapters.storage import AsyncWorkQueues, StorageUnavailable, WorkQueues
from core.telemetry import metrics
from core.model.fleet import DEFAULT_TENANT, Fleet
from core.model.workitems import ImagePushed, WorkItem, encode, new_trace_id

log = logging.getLogger("autopilot.intake")

MAX_BODY = 1 << 20
OUTPUT_BINDING_LIMIT = 32   # messages per request through the output bindings; the rest via the SDK (_send)
SEND_CONCURRENCY = 32
SOURCES = ("acr", "eventgrid", "azdo")
JSON_TYPES = ("application/json", "application/cloudevents+json", "application/cloudevents-batch+json",
              "text/json", "text/plain")
_ORIGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")  # a host name, nothing for a header to smuggle


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Delivery:
    """One event inside a request (an Event Grid request may carry several)."""
    event_id: str
    raw: bytes
    items: tuple[WorkItem, ...] = ()
    ignored: str = ""


@dataclass
class _Outcome:
    queued: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _error(status: int, message: str) -> Reply:
    return Reply(status, {"error": message})


def _push_item(push, event_id: str, source: str, tenant: str) -> ImagePushed:
    return ImagePushed(event_id=event_id, trace_id=new_trace_id(), registry=push.registry,
                       repository=push.repository, tag=push.tag, digest=push.digest, media_type=push.media_type,
                       pushed_at=push.timestamp, acr_event_id=push.event_id, source=source,
                       received_at=datetime.now(timezone.utc).isoformat(), tenant=tenant)


def tenant_event_id(event_id: str, tenant: str) -> str:
    """A push's delivery identity for one tenant: each tenant's share is claimed, retried, poisoned and replayed on
    its own. Tenant `default` keeps the bare id, so a one-tenant deployment's journal reads as before."""
    return event_id if tenant == DEFAULT_TENANT else f"{event_id}@{tenant}"


def _fan_out(fleet: Fleet, push, event_id: str, raw: bytes, source: str) -> list[Delivery]:
    """One delivery per tenant whose `images:` take the pushed image; a paused tenant's share is ignored (said so).
    A fleet of no tenant at all (nothing configured yet) still accepts the push for `default`, as before: its worker
    says what is missing and poisons it, replayable once configured, rather than the event being dropped here."""
    image = f"{push.registry}/{push.repository}" if push.registry else push.repository
    if not fleet.tenants:
        return [Delivery(event_id, raw, items=(_push_item(push, event_id, source, DEFAULT_TENANT),))]
    active = fleet.for_image(image)
    paused = [t for t in fleet.tenants if t.paused and t.takes_image(image)]
    if not active and not paused:
        return [Delivery(event_id, raw, ignored=f"no tenant takes image {image}")]
    return ([Delivery(tenant_event_id(event_id, t.name), raw,
                      items=(_push_item(push, tenant_event_id(event_id, t.name), source, t.name),)) for t in active]
            + [Delivery(tenant_event_id(event_id, t.name), raw, ignored=f"tenant {t.name} is paused") for t in paused])


@dataclass(frozen=True)
class Accepted:
    """The reply, and the encoded work items by queue for the function's queue output bindings."""
    reply: Reply
    outputs: dict[str, list[str]] = field(default_factory=dict)


class Intake:
    def __init__(self, settings: Settings, queues: WorkQueues, deliveries: DeliveryJournal,
                 aio_queues: Callable[[], AsyncWorkQueues], aio_deliveries: Callable[[], AsyncDeliveryJournal],
                 fleet: Callable[[], Fleet], fleet_source: FleetSource | None = None):
        self._settings = settings
        self._fleet_source = fleet_source        # a push to the fleet repository reloads it (not journaled: idempotent)
        self._queues = queues
        self._deliveries = deliveries
        self._aio_queues = aio_queues            # per event loop: the aio clients belong to the loop using them
        self._aio_deliveries = aio_deliveries
        self._background: set[asyncio.Task] = set()
        self._fleet = fleet                      # asked per delivery: a fleet reload takes effect at once

    # -- checks -------------------------------------------------------------------------------------------------
    def _secret(self, source: str) -> tuple[str, str]:
        if source == "azdo":
            return self._settings.azdo_webhook_secret, "AZDO_WEBHOOK_SECRET"
        return self._settings.acr_webhook_secret, "ACR_WEBHOOK_SECRET"

    @staticmethod
    def _authorized(source: str, secret: str, headers: Mapping[str, str], params: Mapping[str, str]) -> bool:
        auth = headers.get("authorization", "")
        offered = ""
        if source == "azdo":
            if auth[:6].lower() == "basic ":
                try:
                    decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    return False
                offered = decoded.partition(":")[2]
        else:
            if auth[:7].lower() == "bearer ":
                offered = auth[7:].strip()
            elif source == "eventgrid":
                offered = params.get("secret", "")
        return bool(offered) and hmac.compare_digest(offered.encode("utf-8"), secret.encode("utf-8"))

    def _check(self, source: str, headers: Mapping[str, str], params: Mapping[str, str],
               body: bytes) -> Reply | Any:
        secret, setting = self._secret(source)
        if not secret:
            return _error(503, f"hook not configured: {setting} is empty")
        if not self._authorized(source, secret, headers, params):
            return _error(401, "missing or wrong credentials")
        if len(body) > MAX_BODY:
            return _error(413, f"body is {len(body)} bytes; the limit is {MAX_BODY}")
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and content_type not in JSON_TYPES:
            return _error(415, f"content type {content_type} is not JSON")
        try:
            return json.loads(body)
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, an int over 4300 digits
            return _error(400, "body is not valid JSON")

    def handshake(self, source: str, headers: Mapping[str, str], params: Mapping[str, str]) -> Reply:
        """CloudEvents v1.0 abuse protection: an Event Grid subscription with the CloudEvents schema proves the
        endpoint with an HTTP OPTIONS request carrying `WebHook-Request-Origin` instead of a validation event, and
        delivers only after the answer allows that origin (learn.microsoft.com/azure/event-grid/
        end-point-validation-cloud-events-schema). Same credentials as a delivery: only our subscriptions agree."""
        secret, setting = self._secret(source)
        if not secret:
            return _error(503, f"hook not configured: {setting} is empty")
        if not self._authorized(source, secret, headers, params):
            return _error(401, "missing or wrong credentials")
        origin = headers.get("webhook-request-origin", "").strip()
        if not origin:
            return _error(400, "WebHook-Request-Origin header is missing")
        if not _ORIGIN.fullmatch(origin):
            return _error(400, "WebHook-Request-Origin is not a host name")
        return Reply(200, {"allowedOrigin": origin},
                     (("WebHook-Allowed-Origin", origin), ("WebHook-Allowed-Rate", "*")))

    # -- interpretation (pure) ----------------------------------------------------------------------------------
    def interpret(self, source: str, data: Any, raw: bytes) -> list[Delivery] | Reply:
        if source == "acr":
            push = parse_acr_event(data)
            if isinstance(push, Ignored):
                return [Delivery(_acr_event_id(data), raw, ignored=push.reason)]
            return _fan_out(self._fleet(), push, f"acr:{push.event_id}", raw, "acr")
        if source == "eventgrid":
            events = parse_eventgrid(data)
            validation = [e for e in events if e.event_type == EVENTGRID_VALIDATION]
            if validation:
                payload = validation[0].data
                code = payload.get("validationCode") if isinstance(payload, dict) else None
                if not isinstance(code, str) or not code:
                    raise PayloadError("data.validationCode is missing")
                return Reply(200, {"validationResponse": code})
            deliveries = []
            fleet = self._fleet()
            raw_events = data if isinstance(data, list) else [data]
            for i, event in enumerate(events):
                event_id = f"eventgrid:{event.event_id}"
                event_raw = json.dumps(raw_events[i] if isinstance(data, list) else data).encode("utf-8")
                if event.event_type != ACR_IMAGE_PUSHED:
                    deliveries.append(Delivery(event_id, event_raw, ignored=f"event type {event.event_type}"))
                    continue
                where = f"[{i}].data." if isinstance(data, list) else "data."
                push = parse_acr_event(event.data, where)
                if isinstance(push, Ignored):
                    deliveries.append(Delivery(event_id, event_raw, ignored=push.reason))
                else:
                    deliveries += _fan_out(fleet, push, event_id, event_raw, "eventgrid")
            return deliveries
        event = parse_azdo(data)
        event_id = f"azdo:{event.delivery_id}"
        routed = route_fleet(event, self._fleet(), event_id, new_trace_id())
        if isinstance(routed, Ignored):
            return [Delivery(event_id, raw, ignored=routed.reason)]
        return [Delivery(event_id, raw, items=tuple(routed))]

    def _fleet_push(self, source: str, data: Any) -> str | Ignored | None:
        if source != "azdo" or self._fleet_source is None:
            return None
        return fleet_push(parse_azdo(data), self._settings.fleet_repo_url, self._settings.fleet_branch)

    async def _reload_fleet(self, data: Any, push: str | Ignored) -> Reply:
        """200 with what was loaded, or why the new commit was refused and which fleet stays in use; 503 when the
        fleet repository could not be read (Azure DevOps retries 503; the head check catches up anyway)."""
        event_id = f"azdo:{parse_azdo(data).delivery_id}"
        if isinstance(push, Ignored):
            return Reply(200, {"eventId": event_id, "ignored": push.reason})
        result = await asyncio.to_thread(self._fleet_source.reload)
        log.info("fleet push %s: %s", push[:12], result.body())
        return Reply(503 if result.retryable else 200, {"eventId": event_id, **result.body()})

    # -- the pipeline -------------------------------------------------------------------------------------------
    async def receive(self, source: str, headers: Mapping[str, str], params: Mapping[str, str],
                      body: bytes) -> Accepted:
        """Check, interpret, claim: the reply, and the messages the caller's queue output bindings must write."""
        checked = self._check(source, headers, params, body)
        if isinstance(checked, Reply):
            metrics.delivery(source, f"rejected-{checked.status}")
            return Accepted(checked)
        accepted = await self._accept(source, checked, body, headers.get("content-type", ""))
        reply = accepted.reply
        metrics.delivery(source, {202: "queued", 200: "duplicate" if reply.body.get("duplicate") else "ignored"}
                         .get(reply.status, f"rejected-{reply.status}"))
        return accepted

    async def _accept(self, source: str, data: Any, raw: bytes, content_type: str) -> Accepted:
        try:
            reload = self._fleet_push(source, data)
        except PayloadError as exc:
            return Accepted(_error(400, str(exc)))
        if reload is not None:
            return Accepted(await self._reload_fleet(data, reload))
        try:
            deliveries = self.interpret(source, data, raw)
        except PayloadError as exc:
            return Accepted(_error(400, str(exc)))
        if isinstance(deliveries, Reply):
            return Accepted(deliveries)
        outcome = _Outcome()
        claims: dict[str, Claim] = {}
        traces: dict[str, str] = {}
        for delivery in deliveries:
            outcome.event_ids.append(delivery.event_id)
            if delivery.ignored:
                outcome.ignored.append(delivery.ignored)
                log.info("ignored %s: %s", delivery.event_id, delivery.ignored)
            elif delivery.event_id in claims:
                outcome.duplicates.append(delivery.event_id)  # the same event twice in one request
            else:
                claims[delivery.event_id] = Claim(delivery.event_id, source, delivery.raw, content_type,
                                                  tuple((item.queue, encode(item)) for item in delivery.items))
                traces[delivery.event_id] = delivery.items[0].trace_id if delivery.items else ""
        for claim in claims.values():
            if len(json.dumps(claim.event_id)) > MAX_EVENT_ID_CHARS:
                return Accepted(_error(400, f"event id {claim.event_id[:80]}... is longer than "
                                            f"{MAX_EVENT_ID_CHARS} characters"))
            size = len(json.dumps(claim.messages))
            if size > MAX_MESSAGES_CHARS:
                return Accepted(_error(400, f"event {claim.event_id[:80]}: its work item is {size} characters "
                                            f"encoded; the limit is {MAX_MESSAGES_CHARS}"))
        result = await self._aio_deliveries().claim(list(claims.values()))
        for event_id in result.duplicates:
            outcome.duplicates.append(event_id)
            metrics.duplicate(source)
            log.info("duplicate %s", event_id)
        won_ids = set(result.won)
        won = [claim for event_id, claim in claims.items() if event_id in won_ids]
        outputs = self._send([m for claim in won for m in claim.messages])
        for claim in won:
            for queue, _ in claim.messages:
                outcome.queued.append(queue)
                log.info("accepted %s for %s", claim.event_id, queue, extra={"trace_id": traces[claim.event_id]})
        if result.failed:
            log.warning("storage unavailable for %d of %d deliveries: %s", len(result.failed), len(claims),
                        result.error)
            body: dict[str, Any] = {"error": f"storage unavailable: {result.error}"}
            if won:
                body["accepted"] = [c.event_id for c in won]
            return Accepted(Reply(503, body), outputs)
        return Accepted(_reply(outcome), outputs)

    def _send(self, messages: list[tuple[str, str]]) -> dict[str, list[str]]:
        """Messages for the output bindings, by queue; beyond OUTPUT_BINDING_LIMIT, the rest is sent with the
        storage SDK by a task on the event loop that goes on after the reply.

        The host writes a queue output binding's list one message at a time after the function returned (the
        WebJobs queue collector adds each message with its own request) and answers the HTTP request only then,
        so thousands of messages from one Event Grid batch would keep Event Grid waiting past its 30 s. The
        deliveries are accepted once claimed (their outbox markers hold the messages), so the reply need not
        wait for the rest: the first messages through the binding wake the queue listener at once
        (SharedQueueWatcher), the listener keeps polling without back-off while it finds messages, and whatever
        the background send does not get onto the queue (an error, the process ending) the outbox re-enqueues.
        """
        outputs: dict[str, list[str]] = {}
        for queue, text in messages[:OUTPUT_BINDING_LIMIT]:
            outputs.setdefault(queue, []).append(text)
        rest = messages[OUTPUT_BINDING_LIMIT:]
        if rest:
            task = asyncio.get_running_loop().create_task(self._send_rest(rest))
            self._background.add(task)  # a task nobody references can be collected before it finishes
            task.add_done_callback(self._background.discard)
        return outputs

    async def _send_rest(self, messages: list[tuple[str, str]]) -> None:
        queues = self._aio_queues()
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def send(queue: str, text: str) -> bool:
            async with gate:
                try:
                    await queues.enqueue(queue, text)
                    return True
                except StorageUnavailable:
                    return False

        sent = await asyncio.gather(*(send(q, t) for q, t in messages))
        if not all(sent):
            log.warning("%d of %d messages could not be sent now; the outbox re-enqueues them",
                        sent.count(False), len(messages))

    async def drain(self) -> None:
        """Wait for the running loop's background sends (tests, benchmarks and tools ending their loop)."""
        loop = asyncio.get_running_loop()
        mine = [t for t in self._background if t.get_loop() is loop]
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)

    def replay(self, event_id: str) -> Reply:
        """Run a journaled delivery through intake again, bypassing the duplicate check: its work items are
        enqueued now with the storage SDK (an operator's call, answered once they are on the queue)."""
        try:
            journaled = self._deliveries.journaled(event_id) or self._sibling(event_id)
        except StorageUnavailable as exc:
            return _error(503, f"storage unavailable: {exc}")
        if journaled is None:
            return _error(404, f"no journaled delivery with eventId {event_id}")
        try:
            deliveries = self.interpret(journaled.source, json.loads(journaled.body), journaled.body)
        except PayloadError as exc:
            return _error(400, str(exc))
        if isinstance(deliveries, Reply):
            return deliveries
        if any(d.event_id == event_id for d in deliveries):   # a fanned-out push: that tenant's share only
            deliveries = [d for d in deliveries if d.event_id == event_id]
        outcome = _Outcome()
        for delivery in deliveries:
            outcome.event_ids.append(delivery.event_id)
            if delivery.ignored:
                outcome.ignored.append(delivery.ignored)
                continue
            try:
                for item in delivery.items:
                    self._queues.enqueue(item.queue, encode(item))
                    outcome.queued.append(item.queue)
                    log.info("replayed %s on %s", delivery.event_id, item.queue, extra={"trace_id": item.trace_id})
            except StorageUnavailable as exc:
                return _error(503, f"storage unavailable: {exc}")
        return _reply(outcome)


    def _sibling(self, event_id: str):
        """A tenant's share of a push that tenant did not take (paused then) is not journaled under its own id:
        the push's body is, under another tenant's share, and a replay of the paused tenant's id brings it."""
        base, at, tenant = event_id.rpartition("@")
        if not at or not base:
            return None
        for name in (DEFAULT_TENANT, *self._fleet().names):
            if name != tenant:
                journaled = self._deliveries.journaled(tenant_event_id(base, name))
                if journaled is not None:
                    return journaled
        return None


def _acr_event_id(data: Any) -> str:
    event_id = data.get("id") if isinstance(data, dict) else None
    return f"acr:{event_id}" if isinstance(event_id, str) and event_id else ""


def _reply(outcome: _Outcome) -> Reply:
    body: dict[str, Any] = {"eventId": outcome.event_ids[0] if len(outcome.event_ids) == 1 else outcome.event_ids}
    if outcome.queued:
        body["queued"] = outcome.queued
    if outcome.duplicates:
        body["duplicate"] = True
    if outcome.ignored:
        body["ignored"] = outcome.ignored[0] if len(outcome.ignored) == 1 else outcome.ignored
    return Reply(202 if outcome.queued else 200, body)
