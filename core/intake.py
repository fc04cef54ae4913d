"""Webhook intake: check, de-duplicate, journal and enqueue one delivery, and say what happened.

HTTP-agnostic: handlers pass lower-cased headers, query params and the raw body, and turn the Reply into a response.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from core.azdo_routing import RepoConfig, route_azdo
from core.deliveries import DeliveryLog
from core.payloads import (ACR_IMAGE_PUSHED, EVENTGRID_VALIDATION, Ignored, PayloadError, parse_acr_event,
                           parse_azdo, parse_eventgrid)
from core.settings import Settings
from core.storage import Storage, StorageUnavailable
from core.telemetry import metrics
from core.workitems import ImagePushed, WorkItem, encode, new_trace_id

log = logging.getLogger("autopilot.intake")

MAX_BODY = 1 << 20
SOURCES = ("acr", "eventgrid", "azdo")
JSON_TYPES = ("application/json", "application/cloudevents+json", "application/cloudevents-batch+json",
              "text/json", "text/plain")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


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


def _push_item(push, event_id: str, source: str) -> ImagePushed:
    return ImagePushed(event_id=event_id, trace_id=new_trace_id(), registry=push.registry,
                       repository=push.repository, tag=push.tag, digest=push.digest, media_type=push.media_type,
                       pushed_at=push.timestamp, acr_event_id=push.event_id, source=source,
                       received_at=datetime.now(timezone.utc).isoformat())


class Intake:
    def __init__(self, settings: Settings, storage: Storage, deliveries: DeliveryLog):
        self._settings = settings
        self._storage = storage
        self._deliveries = deliveries
        self._repos = RepoConfig(settings.hld_repo_url, settings.hld_branch,
                                 settings.manifest_repo_url, settings.manifest_branch)

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

    # -- interpretation (pure) ----------------------------------------------------------------------------------
    def interpret(self, source: str, data: Any, raw: bytes) -> list[Delivery] | Reply:
        if source == "acr":
            push = parse_acr_event(data)
            if isinstance(push, Ignored):
                return [Delivery(_acr_event_id(data), raw, ignored=push.reason)]
            event_id = f"acr:{push.event_id}"
            return [Delivery(event_id, raw, items=(_push_item(push, event_id, "acr"),))]
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
                    deliveries.append(Delivery(event_id, event_raw,
                                               items=(_push_item(push, event_id, "eventgrid"),)))
            return deliveries
        event = parse_azdo(data)
        event_id = f"azdo:{event.delivery_id}"
        routed = route_azdo(event, self._repos, event_id, new_trace_id())
        if isinstance(routed, Ignored):
            return [Delivery(event_id, raw, ignored=routed.reason)]
        return [Delivery(event_id, raw, items=tuple(routed))]

    # -- the pipeline -------------------------------------------------------------------------------------------
    def receive(self, source: str, headers: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Reply:
        checked = self._check(source, headers, params, body)
        if isinstance(checked, Reply):
            metrics.delivery(source, f"rejected-{checked.status}")
            return checked
        reply = self._accept(source, checked, body, headers.get("content-type", ""), dedupe=True)
        metrics.delivery(source, {202: "queued", 200: "duplicate" if reply.body.get("duplicate") else "ignored"}
                         .get(reply.status, f"rejected-{reply.status}"))
        return reply

    def replay(self, event_id: str) -> Reply:
        """Run a journaled delivery through intake again, bypassing the duplicate check."""
        try:
            journaled = self._deliveries.journaled(event_id)
        except StorageUnavailable as exc:
            return _error(503, f"storage unavailable: {exc}")
        if journaled is None:
            return _error(404, f"no journaled delivery with eventId {event_id}")
        data = json.loads(journaled.body)
        return self._accept(journaled.source, data, journaled.body, journaled.content_type, dedupe=False)

    def _accept(self, source: str, data: Any, raw: bytes, content_type: str, *, dedupe: bool) -> Reply:
        try:
            deliveries = self.interpret(source, data, raw)
        except PayloadError as exc:
            return _error(400, str(exc))
        if isinstance(deliveries, Reply):
            return deliveries
        outcome = _Outcome()
        for delivery in deliveries:
            outcome.event_ids.append(delivery.event_id)
            if delivery.ignored:
                outcome.ignored.append(delivery.ignored)
                log.info("ignored %s: %s", delivery.event_id, delivery.ignored)
                continue
            try:
                if dedupe and not self._deliveries.claim(delivery.event_id, source, delivery.raw, content_type):
                    outcome.duplicates.append(delivery.event_id)
                    metrics.duplicate(source)
                    log.info("duplicate %s", delivery.event_id)
                    continue
                self._enqueue(delivery, outcome, mark=dedupe)
            except StorageUnavailable as exc:
                if dedupe:
                    self._deliveries.release(delivery.event_id)
                log.warning("storage unavailable for %s: %s", delivery.event_id, exc)
                return _error(503, f"storage unavailable: {exc}")
        return _reply(outcome)

    def _enqueue(self, delivery: Delivery, outcome: _Outcome, *, mark: bool) -> None:
        queues = []
        for item in delivery.items:
            self._storage.enqueue(item.queue, encode(item))
            queues.append(item.queue)
            log.info("queued %s on %s", delivery.event_id, item.queue, extra={"trace_id": item.trace_id})
        if mark:
            self._deliveries.mark_queued(delivery.event_id, queues)
        outcome.queued.extend(queues)


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
