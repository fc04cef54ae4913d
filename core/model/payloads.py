"""Webhook payload models: ACR webhooks, Event Grid / CloudEvents, Azure DevOps service hooks.

Parsing is lenient (unknown fields are ignored) but every field we rely on is checked, and a bad one raises
PayloadError naming it, so intake can answer 400 with that name. A whole request is parsed before anything is
claimed or enqueued, so one bad event in an Event Grid batch refuses the batch and leaves nothing behind.

What is checked, and against what:
- image names against what a registry itself accepts (`core.model.images`: distribution/reference grammar, OCI digests);
- ids (they become table keys, queue message fields, commit trailers and log fields) against the CloudEvents 1.0
  `String` type (spec.md "Type System": no control characters U+0000-001F and U+007F-009F, no noncharacters, no
  unpaired surrogates) and a length bound: CloudEvents and Event Grid only say "non-empty string"; the senders
  use GUIDs, and a table string property holds 64 KiB at most, which an unbounded id overran (issue #16.9);
- CloudEvents `specversion` against "1.0" (spec.md: "Compliant event producers MUST use a value of 1.0").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core.errors import Permanent
from core.model.images import is_registered_digest, is_registry_host, is_registry_repository, is_registry_tag

MAX_ID = 256          # event ids, delivery ids, resource ids
MAX_TEXT = 256        # event types, media types, timestamps
MAX_REF = 1024        # git ref names
# Characters a CloudEvents String must not hold: C0 and C1 controls, unpaired surrogates (json.loads pairs the
# paired ones, so any surrogate left in a str is unpaired) and the 66 Unicode noncharacters.
_NOT_STRING_TYPE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
                              + "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(17))
                              + "]")


class PayloadError(Permanent, ValueError):
    """The JSON has the wrong shape; the message names the field."""


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class AcrPush:
    event_id: str
    timestamp: str
    registry: str
    repository: str
    tag: str
    digest: str
    media_type: str


@dataclass(frozen=True)
class AzdoEvent:
    delivery_id: str
    event_type: str
    resource: dict


def _obj(value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        raise PayloadError(f"{name} must be a JSON object")
    return value


def _str(obj: dict, key: str, name: str, required: bool = True) -> str:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise PayloadError(f"{name} is missing")
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{name} must be a string")
    return value


def show(value: str, limit: int = 40) -> str:
    """A value for an error message: escaped (never a raw line break or NUL) and shortened."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def check_text(value: str, name: str, limit: int) -> str:
    """A CloudEvents `String` of at most `limit` characters (empty passes: presence is the caller's business)."""
    if len(value) > limit:
        raise PayloadError(f"{name}: {show(value)} is too long; the limit is {limit} characters")
    bad = _NOT_STRING_TYPE.search(value)
    if bad is not None:
        raise PayloadError(f"{name}: {show(value)} holds the character U+{ord(bad.group()):04X}, which is not allowed")
    return value


def _text(obj: dict, key: str, name: str, limit: int = MAX_TEXT, required: bool = False) -> str:
    return check_text(_str(obj, key, name, required), name, limit)


def _id(obj: dict, key: str, name: str) -> str:
    return _text(obj, key, name, MAX_ID, required=True)


IGNORED_ACR_ACTIONS = {"delete", "quarantine", "chart_push", "chart_delete"}


def parse_acr_event(body: Any, where: str = "") -> AcrPush | Ignored:
    """One ACR event (webhook body, or Event Grid `data`)."""
    body = _obj(body, where.rstrip(".") or "body")
    action = _str(body, "action", f"{where}action")
    if action == "ping":
        return Ignored("ping")
    if action in IGNORED_ACR_ACTIONS:
        return Ignored(f"action {action} is not acted on")
    if action != "push":
        return Ignored(f"unknown action {show(action)}")
    event_id = _id(body, "id", f"{where}id")
    target = _obj(body.get("target"), f"{where}target")
    repository = _str(target, "repository", f"{where}target.repository")
    if not is_registry_repository(repository):
        raise PayloadError(f"{where}target.repository: {show(repository)} is not a valid repository name "
                           "(lower-case path components [a-z0-9] joined by '.', '_', '__' or '-' runs, "
                           "separated by '/', 255 characters at most)")
    tag = _str(target, "tag", f"{where}target.tag", required=False)
    if tag and not is_registry_tag(tag):
        raise PayloadError(f"{where}target.tag: {show(tag)} is not a valid tag "
                           "([A-Za-z0-9_] then up to 127 of [A-Za-z0-9_.-])")
    digest = _str(target, "digest", f"{where}target.digest", required=False)
    if digest and not is_registered_digest(digest):
        raise PayloadError(f"{where}target.digest: {show(digest)} is not a valid digest "
                           "(sha256: and 64, or sha512: and 128, lower-case hex digits)")
    media_type = _text(target, "mediaType", f"{where}target.mediaType")
    timestamp = _text(body, "timestamp", f"{where}timestamp")
    if not tag:
        return Ignored("push by digest without a tag")
    request = body.get("request")
    registry = ""
    if request is not None:
        registry = _str(_obj(request, f"{where}request"), "host", f"{where}request.host", required=False)
        if registry and not is_registry_host(registry):
            raise PayloadError(f"{where}request.host: {show(registry)} is not a valid registry host "
                               "(domain[:port])")
    return AcrPush(
        event_id=event_id,
        timestamp=timestamp,
        registry=registry.lower(),
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=media_type,
    )


EVENTGRID_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
ACR_IMAGE_PUSHED = "Microsoft.ContainerRegistry.ImagePushed"


@dataclass(frozen=True)
class GridEvent:
    event_id: str
    event_type: str
    data: Any


CLOUDEVENTS_VERSION = "1.0"


def _is_cloudevent(event: dict) -> bool:
    """CloudEvents carry `specversion`; one that lost it is still told from the Event Grid schema (whose
    `eventType` is required) by its CloudEvents `type` or `source`."""
    return "specversion" in event or ("eventType" not in event and ("type" in event or "source" in event))


def parse_eventgrid(body: Any) -> list[GridEvent]:
    """Event Grid schema (an array) or CloudEvents 1.0 (one object or a batch array); every event is checked."""
    events = body if isinstance(body, list) else [body]
    if not events:
        raise PayloadError("body is an empty array")
    parsed = []
    for i, event in enumerate(events):
        where = f"[{i}]." if isinstance(body, list) else ""
        event = _obj(event, where.rstrip(".") or "body")
        if _is_cloudevent(event):
            version = event.get("specversion")
            if version is None:
                raise PayloadError(f"{where}specversion is missing")
            if version != CLOUDEVENTS_VERSION:
                shown = show(version) if isinstance(version, str) else f"{version!r}"[:40]
                raise PayloadError(f"{where}specversion: {shown} is not supported; only CloudEvents "
                                   f"{CLOUDEVENTS_VERSION!r} is accepted")
            event_type = _text(event, "type", f"{where}type", required=True)
        else:
            event_type = _text(event, "eventType", f"{where}eventType", required=True)
        parsed.append(GridEvent(_id(event, "id", f"{where}id"), event_type, event.get("data")))
    return parsed


MAX_INT32 = 2**31 - 1  # Azure DevOps ids (pull request, build, notification) are Int32


def check_int_id(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_INT32:
        raise PayloadError(f"{name} must be an integer from 1 to {MAX_INT32}")
    return value


def parse_azdo(body: Any) -> AzdoEvent:
    body = _obj(body, "body")
    event_type = _text(body, "eventType", "eventType", required=True)
    subscription = body.get("subscriptionId")
    notification = body.get("notificationId")
    if isinstance(subscription, str) and subscription and isinstance(notification, int) \
            and not isinstance(notification, bool):
        check_text(subscription, "subscriptionId", MAX_ID)
        delivery = f"{subscription}:{check_int_id(notification, 'notificationId')}"
    else:
        delivery = _id(body, "id", "id")
    return AzdoEvent(delivery, event_type, _obj(body.get("resource", {}), "resource"))


def normalize_repo_url(url: str) -> str:
    """Compare git URLs: lower-case host and path, no credentials, no trailing .git or slash."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    path = parts.path.rstrip("/")
    if path.endswith(".git"):
        path = path[:-4]
    return f"{parts.scheme}://{host}{path}".lower()


def repo_name_from_url(url: str) -> str:
    path = urlsplit(url).path.rstrip("/")
    name = path.rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".git") else name
