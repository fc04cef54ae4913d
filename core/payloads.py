"""Webhook payload models: ACR webhooks, Event Grid / CloudEvents, Azure DevOps service hooks.

Parsing is lenient (unknown fields are ignored) but every field we rely on is checked, and a bad one raises
PayloadError naming it, so intake can answer 400 with that name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core.errors import Permanent


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
        return Ignored(f"unknown action {action!r}")
    event_id = _str(body, "id", f"{where}id")
    target = _obj(body.get("target"), f"{where}target")
    repository = _str(target, "repository", f"{where}target.repository")
    tag = _str(target, "tag", f"{where}target.tag", required=False)
    digest = _str(target, "digest", f"{where}target.digest", required=False)
    if not tag:
        return Ignored("push by digest without a tag")
    request = body.get("request")
    registry = ""
    if request is not None:
        registry = _str(_obj(request, f"{where}request"), "host", f"{where}request.host", required=False)
    return AcrPush(
        event_id=event_id,
        timestamp=_str(body, "timestamp", f"{where}timestamp", required=False),
        registry=registry.lower(),
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=_str(target, "mediaType", f"{where}target.mediaType", required=False),
    )


EVENTGRID_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
ACR_IMAGE_PUSHED = "Microsoft.ContainerRegistry.ImagePushed"


@dataclass(frozen=True)
class GridEvent:
    event_id: str
    event_type: str
    data: Any


def parse_eventgrid(body: Any) -> list[GridEvent]:
    """Event Grid schema (an array) or CloudEvents 1.0 (one object or a batch array)."""
    events = body if isinstance(body, list) else [body]
    if not events:
        raise PayloadError("body is an empty array")
    parsed = []
    for i, event in enumerate(events):
        name = f"[{i}]" if isinstance(body, list) else "body"
        event = _obj(event, name)
        if "specversion" in event:
            event_type = _str(event, "type", f"{name}.type")
        else:
            event_type = _str(event, "eventType", f"{name}.eventType")
        parsed.append(GridEvent(_str(event, "id", f"{name}.id"), event_type, event.get("data")))
    return parsed


def parse_azdo(body: Any) -> AzdoEvent:
    body = _obj(body, "body")
    event_type = _str(body, "eventType", "eventType")
    subscription = body.get("subscriptionId")
    notification = body.get("notificationId")
    if isinstance(subscription, str) and subscription and isinstance(notification, int) \
            and not isinstance(notification, bool):
        delivery = f"{subscription}:{notification}"
    else:
        delivery = _str(body, "id", "id")
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
