"""Typed, versioned work items: what intake puts on the queues and what the workers take off them."""
from __future__ import annotations

import json
import uuid
from dataclasses import MISSING, asdict, dataclass, fields
from typing import ClassVar, Union

from core.errors import Permanent
from core.model.fleet import DEFAULT_TENANT
from core.model.queues import CLUSTER_EVENTS, FLUX_NOTIFY, HLD_CHANGED, IMAGE_PUSHED, PR_REVIEW

SCHEMA_VERSION = 1


class WorkItemError(Permanent, ValueError):
    """A queue message is not a valid work item; the message names what is wrong."""


def new_trace_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class ImagePushed:
    queue: ClassVar[str] = IMAGE_PUSHED
    event_id: str          # delivery identity (ACR event id, Event Grid event id)
    trace_id: str
    registry: str          # login server, e.g. myacr.azurecr.io
    repository: str        # e.g. fabrikam/app
    tag: str
    digest: str
    media_type: str
    pushed_at: str         # ACR's own event timestamp (ISO 8601)
    acr_event_id: str      # the ACR event id (same as event_id for webhooks; data.id for Event Grid)
    source: str = "acr"    # acr | eventgrid
    received_at: str = ""  # when intake accepted the delivery (ISO 8601, UTC)
    tenant: str = DEFAULT_TENANT   # the fleet tenant whose repos this work touches (core/model/fleet.py)

    @property
    def image(self) -> str:
        return f"{self.registry}/{self.repository}" if self.registry else self.repository


@dataclass(frozen=True)
class HldChanged:
    queue: ClassVar[str] = HLD_CHANGED
    event_id: str
    trace_id: str
    reason: str                 # pr-completed | push | bump
    commit: str | None = None   # HLD commit that triggered it (generation always uses the branch head)
    pr_id: int | None = None
    image_trace_ids: tuple[str, ...] = ()   # trace ids of the bumps this HLD change carries
    tenant: str = DEFAULT_TENANT   # the fleet tenant whose repos this work touches (core/model/fleet.py)


@dataclass(frozen=True)
class PrReview:
    queue: ClassVar[str] = PR_REVIEW
    event_id: str
    trace_id: str
    event_type: str             # the Azure DevOps eventType that asked for the review
    repository_id: str = ""
    repository_url: str = ""
    project_id: str = ""
    pr_id: int | None = None
    build_id: int | None = None
    source_ref: str = ""
    tenant: str = DEFAULT_TENANT   # the fleet tenant whose repos this work touches (core/model/fleet.py)


@dataclass(frozen=True)
class FluxNotify:
    """Wake the Flux Receivers of the clusters serving `envs` (all when empty) for manifest commit `commit`."""
    queue: ClassVar[str] = FLUX_NOTIFY
    event_id: str
    trace_id: str
    commit: str
    reason: str = "manifest-commit"          # manifest-commit | manifest-pr-merged
    envs: tuple[str, ...] = ()               # changed environment folders; empty: unknown
    clusters: tuple[str, ...] = ()           # a retry round: only these clusters
    round: int = 1                           # 1, then 2, 3, ... for the queue's retry rounds
    image_trace_ids: tuple[str, ...] = ()    # the pushes this commit carries (their traces get the outcomes)
    committed_at: str = ""                   # when the commit landed (ISO 8601, UTC)
    pr_id: int | None = None
    tenant: str = DEFAULT_TENANT   # the fleet tenant whose repos this work touches (core/model/fleet.py)


@dataclass(frozen=True)
class ClusterEvent:
    """A Flux event from one cluster: `outcome` (applied | failed) of manifest revision `revision` there."""
    queue: ClassVar[str] = CLUSTER_EVENTS
    event_id: str
    trace_id: str
    cluster: str
    revision: str                  # the full commit sha Flux reconciled
    outcome: str                   # applied | failed
    envs: tuple[str, ...] = ()     # the environments the cluster serves; empty: every one
    branch: str = ""
    reason: str = ""               # Flux's reason, e.g. ReconciliationSucceeded, HealthCheckFailed
    message: str = ""
    object_kind: str = ""          # involvedObject: Kustomization | HelmRelease
    object_name: str = ""
    object_namespace: str = ""
    at: str = ""                   # the event's own timestamp (ISO 8601)
    received_at: str = ""
    tenant: str = DEFAULT_TENANT   # the fleet tenant whose repos this work touches (core/model/fleet.py)


WorkItem = Union[ImagePushed, HldChanged, PrReview, FluxNotify, ClusterEvent]
_BY_QUEUE: dict[str, type] = {cls.queue: cls for cls in (ImagePushed, HldChanged, PrReview, FluxNotify,
                                                         ClusterEvent)}


def encode(item: WorkItem) -> str:
    body = {"v": SCHEMA_VERSION, "kind": item.queue}
    body.update(asdict(item))
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def decode(text: str | bytes, queue: str) -> WorkItem:
    """Parse a queue message for `queue`; raises WorkItemError naming the problem."""
    cls = _BY_QUEUE.get(queue)
    if cls is None:
        raise WorkItemError(f"unknown queue {queue!r}")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WorkItemError(f"{queue}: message is not JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from exc
    if not isinstance(data, dict):
        raise WorkItemError(f"{queue}: message is not a JSON object")
    if data.get("v") != SCHEMA_VERSION:
        raise WorkItemError(f"{queue}: unsupported work item version {data.get('v')!r} (expected {SCHEMA_VERSION})")
    if data.get("kind") != queue:
        raise WorkItemError(f"{queue}: work item kind {data.get('kind')!r} does not belong on this queue")
    values = {}
    for f in fields(cls):
        if f.name in data:
            value = data[f.name]
            if f.type.startswith("tuple"):
                value = [] if value is None else value
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise WorkItemError(f"{queue}: field {f.name} must be an array of strings")
                value = tuple(value)
            values[f.name] = value
    try:
        item = cls(**values)
    except TypeError as exc:
        missing = [f.name for f in fields(cls)
                   if f.name not in data and f.default is MISSING and f.default_factory is MISSING]
        raise WorkItemError(f"{queue}: missing field(s) {', '.join(missing) or exc}") from exc
    for f in fields(cls):
        value = getattr(item, f.name)
        if f.type == "str" and not isinstance(value, str):
            raise WorkItemError(f"{queue}: field {f.name} must be a string")
        if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool)):
            raise WorkItemError(f"{queue}: field {f.name} must be an integer")
        if f.type == "int | None" and value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise WorkItemError(f"{queue}: field {f.name} must be an integer")
    if not item.tenant:
        raise WorkItemError(f"{queue}: field tenant must not be empty")
    return item
