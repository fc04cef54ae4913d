"""Cluster feedback: Flux tells us what each cluster applied, and we record it on the pushes it carries.

The hook (`POST /api/hooks/flux`, and `POST /api/hooks/flux/<tenant>` for each tenant of a fleet) receives the
events of a notification-controller `Provider` of type `generic-hmac`. A Provider's `address` is a plain URL it
POSTs to as it is (query included: the function key travels as `?code=`), so the tenant is a path segment. Each
tenant has its own key, the app setting its fleet.yaml `flux.secretSetting` names: one tenant's key never validates
another tenant's events, and the event names the tenant whose route and key accepted it. Without a fleet the one
tenant `default` keeps `/api/hooks/flux` and `FLUX_WEBHOOK_SECRET`. How Flux signs them
(fluxcd/notification-controller, internal/notifier/forwarder.go, `Forwarder.Post`: `eventJSON, _ :=
json.Marshal(event)`, `sig = fmt.Sprintf("sha256=%s", sign(eventJSON, f.HMACKey))` with `sign` = hex of
`hmac.New(sha256.New, key)` over the payload, sent as header `X-Signature`; the key is the Provider Secret's
`token`): we recompute HMAC-SHA256 over the raw body bytes with the route's key (`FLUX_WEBHOOK_SECRET`, or the
tenant's) and compare the hex in constant time.

The event (fluxcd/pkg apis/event `Event`): `involvedObject{kind,name,namespace}`, `severity` info|error, `timestamp`,
`message`, `reason`, `metadata` (string map), `reportingController`. The Alert's `spec.eventMetadata` adds `cluster`
and `env` (comma-separated environments the cluster serves; none: every one) to `metadata`. The revision is
`metadata.revision` or a `<group>/revision` key (kustomize-controller: `kustomize.toolkit.fluxcd.io/revision`), as
`<branch>@sha1:<sha>` (Flux 2.1+) or the older `<branch>/<sha>`.

The hook checks, de-duplicates (a resend is the same bytes: the event id is their SHA-256) and hands a `ClusterEvent`
on through the function's queue output binding. The `cluster-events` worker (`FeedbackJob`) decides with git which
manifest commits the revision includes (`GitWorkspace.included_in`: the revision itself or an ancestor, so a later
commit that includes ours counts, and a PR merge commit too) and records `applied@<cluster>` or
`failed@<cluster>` on those pushes' trace records, and the service x cluster "what runs where" record
(core.adapters.cluster_records).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

from core.workers.job_stores import OnServices
from core.adapters.cluster_records import Marked
from core.adapters.deliveries import Claim
from core.errors import Permanent, Retryable
from core.adapters.storage import CLUSTER_EVENTS
from core.telemetry import metrics
from core.adapters.trace import TraceStore, now_iso
from core.model.fleet import DEFAULT_TENANT, UnknownTenant
from core.model.trace_record import StageName, TraceRecord, TraceStage, latency_seconds
from core.workers.tenancy import services_for
from core.model.workitems import ClusterEvent, WorkItem, encode

log = logging.getLogger("autopilot.feedback")

SECRET_SETTING = "FLUX_WEBHOOK_SECRET"
MAX_BODY = 256 * 1024              # a Flux event is a few KiB; the message is truncated by Flux long before this
LOOKBACK_DAYS = 30                 # pushes older than this are not matched against new revisions
RECORD_WAIT_S = 3.0                # in-run wait for the trace records of our own just-landed commit
RECORD_POLL_S = 0.05
APPLIED_REASONS = {"ReconciliationSucceeded", "UpgradeSucceeded", "InstallSucceeded"}
FAILED_REASONS = {"HealthCheckFailed", "ReconciliationFailed", "BuildFailed", "UpgradeFailed", "InstallFailed",
                  "ArtifactFailed", "PruneFailed"}
KINDS = ("Kustomization", "HelmRelease")
_CLUSTER = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_ENV = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
_SHA = r"[0-9a-f]{40}"
_REVISIONS = (re.compile(rf"(?P<branch>[^@\s]+)@sha1:(?P<sha>{_SHA})"),   # main@sha1:<sha> (Flux 2.1+)
              re.compile(rf"sha1:(?P<sha>{_SHA})"),                       # a commit without a branch
              re.compile(rf"(?P<branch>\S+)/(?P<sha>{_SHA})"),            # main/<sha> (older Flux)
              re.compile(rf"(?P<sha>{_SHA})"))


class FluxEventError(Permanent, ValueError):
    """A Flux event is malformed; the message names the field."""


class RecordsNotYetWritten(Retryable):
    """Flux reports our own commit before its trace records are written: the queue retries the event."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Ignored:
    reason: str


def signature_ok(secret: str, header: str, body: bytes) -> bool:
    """Is `header` `sha256=<hex HMAC-SHA256 of body with secret>`? Constant-time on the digest."""
    algorithm, sep, offered = (header or "").strip().partition("=")
    if not sep or algorithm.lower() != "sha256":
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), offered.strip().lower().encode("utf-8", "replace"))


def sign(body: bytes, secret: str) -> str:
    """The `X-Signature` Flux sends for `body` (used by the demo's simulated Flux and the tests)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def parse_revision(text: str, where: str = "metadata.revision") -> tuple[str, str] | Ignored:
    """(branch, sha) of a Flux source revision; Ignored for a revision that is not a git commit (a chart version,
    an OCI digest); FluxEventError for a git revision that is malformed."""
    text = text.strip()
    for pattern in _REVISIONS:
        match = pattern.fullmatch(text)
        if match:
            return match.groupdict().get("branch") or "", match.group("sha")
    if "@sha1:" in text or "sha1:" in text:
        raise FluxEventError(f"{where}: {text[:80]!r} is not <branch>@sha1:<40 hex digits>")
    return Ignored(f"revision {text[:80]!r} is not a git commit")


def _string(data: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise FluxEventError(f"{where}{key} is missing or not a string")
    return value


def _timestamp(text: str) -> str:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FluxEventError(f"timestamp {text[:40]!r} is not an RFC 3339 time") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()


def outcome_of(severity: str, reason: str) -> str | None:
    if severity == "info" and reason in APPLIED_REASONS:
        return "applied"
    if severity == "error" and reason in FAILED_REASONS:
        return "failed"
    return None


def parse_event(data: Any, event_id: str, received_at: str = "", *,
                tenant: str = DEFAULT_TENANT) -> ClusterEvent | Ignored:
    """The work item of a Flux event, Ignored when it says nothing about an applied or failed revision."""
    if not isinstance(data, dict):
        raise FluxEventError("body is not a JSON object (a Flux event)")
    obj = data.get("involvedObject")
    if not isinstance(obj, dict):
        raise FluxEventError("involvedObject is missing or not an object")
    kind = _string(obj, "kind", "involvedObject.")
    name = _string(obj, "name", "involvedObject.")
    namespace = _string(obj, "namespace", "involvedObject.", required=False)
    severity = _string(data, "severity", "")
    if severity not in ("info", "error", "trace"):
        raise FluxEventError(f"severity {severity[:20]!r} is not info or error")
    reason = _string(data, "reason", "")
    message = _string(data, "message", "", required=False)
    at = _timestamp(_string(data, "timestamp", ""))
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FluxEventError("metadata must be an object of strings")
    cluster = metadata.get("cluster", "")
    if not cluster:
        raise FluxEventError("metadata.cluster is missing (set it in the Alert's spec.eventMetadata)")
    if not _CLUSTER.fullmatch(cluster):
        raise FluxEventError("metadata.cluster must be a lowercase name of letters, digits and '-' (at most 63)")
    envs = tuple(e.strip() for e in metadata.get("env", "").split(",") if e.strip())
    bad = [e for e in envs if not _ENV.fullmatch(e)]
    if bad:
        raise FluxEventError(f"metadata.env: {bad[0][:40]!r} is not an environment name")
    if kind not in KINDS:
        return Ignored(f"events of {kind[:40]} are not deployments")
    outcome = outcome_of(severity, reason)
    if outcome is None:
        return Ignored(f"{severity} {reason[:60]} says nothing about an applied revision")
    key = "revision" if "revision" in metadata else next((k for k in sorted(metadata) if k.endswith("/revision")), "")
    if not key:
        return Ignored(f"{reason[:60]} names no revision")
    revision = parse_revision(metadata[key], f"metadata.{key}")
    if isinstance(revision, Ignored):
        return revision
    branch, sha = revision
    return ClusterEvent(event_id=event_id, trace_id=event_id.rsplit(":", 1)[-1][:32], cluster=cluster, revision=sha,
                        outcome=outcome, envs=envs, branch=branch, reason=reason, message=message[:2000], object_kind=kind,
                        object_name=name, object_namespace=namespace, at=at, received_at=received_at or now_iso(),
                        tenant=tenant)


def event_id_of(body: bytes, tenant: str = DEFAULT_TENANT) -> str:
    """A resend is the same bytes (Flux marshals the same event again): the id is their digest, and for a fleet
    tenant `@<tenant>` (as the per-tenant deliveries of a push: `acr:<id>@<tenant>`)."""
    digest = "flux:" + hashlib.sha256(body).hexdigest()
    return digest if tenant == DEFAULT_TENANT else f"{digest}@{tenant}"


_TENANT_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def hook_for(services: Any, tenant: str | None, deliveries: Any) -> "FeedbackHook | Reply":
    """The hook of the route's tenant (None: the route names none), with that tenant's key and `deliveries` (the
    async journal, of the caller's loop); or the reply refusing the request. Without a fleet, tenant `default`
    (bare route or named) uses FLUX_WEBHOOK_SECRET, as always. In a fleet the route must name a tenant, and its key
    is the app setting its `flux.secretSetting` names, never FLUX_WEBHOOK_SECRET or another tenant's (a missing key
    is a 503 naming the setting, not a fall-back)."""
    settings = services.settings
    if services.fleet_source is None:
        if tenant not in (None, DEFAULT_TENANT):
            return Reply(404, {"error": f"no tenant {tenant[:63]!r}: this deployment serves one tenant "
                                        f"({DEFAULT_TENANT}) at /api/hooks/flux"})
        return FeedbackHook(settings.flux_webhook_secret, deliveries)
    if tenant is None:
        return Reply(404, {"error": "this deployment serves a fleet: send each tenant's Flux events to "
                                    "/api/hooks/flux/<tenant>"})
    if not _TENANT_NAME.fullmatch(tenant):
        return Reply(404, {"error": "the route's tenant is not a tenant name (a slug)"})
    try:
        definition = services.fleet.tenant(tenant)
    except UnknownTenant:
        return Reply(404, {"error": f"no tenant {tenant!r} in the fleet"})
    except Retryable as exc:   # FleetUnavailable: no fleet loaded yet; Flux retries a 5xx
        return Reply(503, {"error": f"fleet not loaded: {exc}"})
    setting = definition.flux_secret_setting
    if not setting:
        return Reply(503, {"error": f"hook not configured: tenant {tenant} has no flux.secretSetting in fleet.yaml"})
    return FeedbackHook(settings.app_setting(setting), deliveries, tenant=tenant, secret_setting=setting)


class FeedbackHook:
    """The HTTP-agnostic part of `POST /api/hooks/flux[/<tenant>]`: check, parse, de-duplicate. `deliveries` is the
    intake's AsyncDeliveryLog: the claim is one table transaction (the delivery with its work item and an outbox
    marker), so two copies of one event cannot both pass, and a work item whose output-binding write is lost is
    re-enqueued by the outbox timer (core.workers.outbox); the worker's runner marks it done
    (core.workers.runners.on_done). `tenant`: whose events these are (the key is that tenant's)."""

    def __init__(self, secret: str, deliveries: Any, *, tenant: str = DEFAULT_TENANT,
                 secret_setting: str = SECRET_SETTING):
        self._secret = secret
        self._deliveries = deliveries
        self.tenant = tenant
        self._secret_setting = secret_setting

    def check(self, headers: Mapping[str, str], body: bytes) -> Reply | ClusterEvent:
        if not self._secret:
            return Reply(503, {"error": f"hook not configured: {self._secret_setting} is empty"})
        if len(body) > MAX_BODY:
            return Reply(413, {"error": f"body is {len(body)} bytes; the limit is {MAX_BODY}"})
        if not signature_ok(self._secret, headers.get("x-signature", ""), body):
            return Reply(401, {"error": "missing or wrong X-Signature"})
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return Reply(400, {"error": "body is not valid JSON"})
        event_id = event_id_of(body, self.tenant)
        try:
            parsed = parse_event(data, event_id, tenant=self.tenant)
        except FluxEventError as exc:
            return Reply(400, {"error": str(exc)})
        if isinstance(parsed, Ignored):
            return Reply(200, {"eventId": event_id, "ignored": parsed.reason})
        return parsed

    async def claim(self, event: ClusterEvent, body: bytes) -> Reply | None:
        """None when this is the first copy of the event (enqueue it), else the duplicate's (or 503's) reply."""
        result = await self._deliveries.claim([Claim(event.event_id, "flux", body, "application/json",
                                                     ((CLUSTER_EVENTS, encode(event)),))])
        if result.failed:
            return Reply(503, {"error": f"storage unavailable: {result.error}"})
        if event.event_id in result.duplicates:
            metrics.duplicate("flux")
            return Reply(200, {"eventId": event.event_id, "duplicate": True})
        return None

    @staticmethod
    def accepted(event: ClusterEvent) -> Reply:
        return Reply(202, {"eventId": event.event_id, "queued": [CLUSTER_EVENTS], "cluster": event.cluster,
                           "outcome": event.outcome, "revision": event.revision, "tenant": event.tenant})


# -- the worker -----------------------------------------------------------------------------------------------------

def serves(row: TraceRecord, envs: Sequence[str]) -> bool:
    """Does a cluster serving `envs` (empty: every environment) run the target of this push record? Light-weight flow:
    the target file's first folder is the environment; HLD flow: the record's `env` (the Bedrock ring)."""
    if not envs:
        return True
    target = row.target_file
    if not row.hld_repo and "/" in target and target.split("/", 1)[0] in envs:
        return True
    return row.env in envs


@dataclass(frozen=True)
class FeedbackResult:
    event: ClusterEvent
    marked: tuple[Marked, ...] = ()
    promotions: tuple[Any, ...] = ()     # core.workers.promoter.Evaluated of the gates this event re-evaluated


class FeedbackJob(OnServices):
    """The `cluster-events` queue's job (core.workers.runners.Job): one event per run, in order."""
    queue = CLUSTER_EVENTS
    stage = "cluster-feedback"
    batches = False

    def __init__(self, services: Any):
        self.services = services

    def _workspace(self):
        s = self.services.settings
        # Its own working copy ("feedback"): ancestry checks never wait for the writer's lock.
        return self.services.workspace(s.manifest_repo_url, s.manifest_branch, purpose="feedback")

    def process(self, items: Sequence[WorkItem]) -> FeedbackResult:
        [event] = items
        assert isinstance(event, ClusterEvent)
        services = services_for(self.services, event.tenant)   # the tenant's manifest repo, trace and promotion
        if services is not self.services:
            return FeedbackJob(services).process(items)
        trace: TraceStore = self.services.trace   # a tenant's view: its records only
        self.services.clusters.seen(event.cluster, event.envs, event.at)
        since = (datetime.now(timezone.utc) - timedelta(days=LOOKBACK_DAYS)).isoformat()
        stage = TraceStage(event.outcome).at(event.cluster)
        applied = TraceStage.APPLIED.at(event.cluster)
        workspace = self._workspace()
        every = trace.with_manifest_commit(since)
        rows = [r for r in every if serves(r, event.envs) and not r.has(applied)]
        if event.outcome == "failed":
            rows = [r for r in rows if not r.has(stage, revision=event.revision)]
        included = workspace.included_in([r.manifest_commit_id for r in rows], event.revision)
        if not any(r.manifest_commit_id == event.revision for r in every) and self._ours(workspace, event.revision):
            # Our own commit, whose trace records are not written yet (Flux, woken by our Receiver call, can be
            # quicker than the bump's trace writes): wait a little, then let the queue retry.
            rows, included = self._wait_for_records(event, workspace, since, stage, applied)
        marked = []
        for row in sorted((r for r in rows if r.manifest_commit_id in included), key=lambda r: r.start):
            detail = {"cluster": event.cluster, "revision": event.revision, "reason": event.reason,
                      "kind": event.object_kind, "name": event.object_name, "flux": event.message[:500],
                      "fluxTimestamp": event.at}
            if event.outcome == "failed":
                detail["reason"] = f"{event.reason}: {event.message[:500]}"
            # When we learned it (the hook's receive time): Flux's own timestamp has whole seconds only
            # (metav1.Time), so it may fall before the commit it reports.
            at = event.received_at or event.at
            trace.record(row.trace_id, row.target_key, stage, actor=f"flux@{event.cluster}", at=at,
                         detail=detail)
            one = Marked(row.trace_id, row.target_key, row.service, row.env, row.image_tag, row.manifest_commit_id,
                         latency_seconds(row.start, at))
            marked.append(one)
            if one.service:
                self.services.running.update(
                    event.cluster, one, state="healthy" if event.outcome == "applied" else "failed", at=event.at,
                    start=row.start, image=row.image, revision=event.revision, message=event.message)
        promoted = self._promote() if marked else ()
        return FeedbackResult(event, tuple(marked), promoted)

    def _promote(self) -> tuple[Any, ...]:
        """Re-evaluate the promotion gates: this event may have opened one."""
        from core.workers.promoter import promoter_for   # promotion needs the bump service; feedback alone does not
        promoter = promoter_for(self.services)
        if promoter is None:
            return ()
        try:
            return tuple(promoter.evaluate())
        except Permanent as exc:   # e.g. a malformed autopilot.yaml: the feedback is recorded; the timer says it again
            log.error("promotion not evaluated: %s", exc)
            return ()

    def _ours(self, workspace: Any, revision: str) -> bool:
        return workspace.author_email(revision) == self.services.settings.git_author_email

    def _wait_for_records(self, event: ClusterEvent, workspace: Any, since: str, stage: StageName,
                          applied: StageName) -> tuple[list[TraceRecord], set[str]]:
        for _ in range(int(RECORD_WAIT_S / RECORD_POLL_S)):
            time.sleep(RECORD_POLL_S)
            every = self.services.trace.with_manifest_commit(since)
            if any(r.manifest_commit_id == event.revision for r in every):
                rows = [r for r in every if serves(r, event.envs) and not r.has(applied)
                        and not (event.outcome == "failed" and r.has(stage, revision=event.revision))]
                return rows, workspace.included_in([r.manifest_commit_id for r in rows], event.revision)
        raise RecordsNotYetWritten(f"no trace record of our commit {event.revision[:12]} yet; retrying")

    def follow_ups(self, result: FeedbackResult) -> Sequence[WorkItem]:
        return ()

    def report(self, result: FeedbackResult, items: Sequence[WorkItem]) -> None:
        event = result.event
        for one in result.marked:
            if event.outcome == "applied" and one.seconds is not None and one.seconds >= 0:
                metrics.push_to_applied(one.seconds, one.env)
        log.info("flux %s: %s at %s on %d push record(s)", event.cluster, event.outcome, event.revision[:12],
                 len(result.marked), extra={"trace_id": event.trace_id})


# -- what `python -m core.ops.cli setup` prints for each cluster ------------------------------------------------------

PROVIDER_NAME = "gitops-autopilot"
PROVIDER_SECRET = "gitops-autopilot-events"


def provider_yaml(cluster: str, env: str, hook_url: str, *, namespace: str = "flux-system",
                  secret_setting: str = SECRET_SETTING) -> str:
    """The Secret, Provider (generic-hmac) and Alert that send `cluster`'s Kustomization and HelmRelease events to
    the hook, with `eventMetadata` naming the cluster and the environment(s) it serves (empty: every one). The
    address (with the function key) and the HMAC key (the value of app setting `secret_setting`: FLUX_WEBHOOK_SECRET,
    or in a fleet the tenant's flux.secretSetting) live in the Secret; the key is never printed."""
    env_line = f"\n    env: {env}" if env else ""
    return f"""\
# cluster {cluster}: events to gitops-autopilot; token = the value of app setting {secret_setting}
apiVersion: v1
kind: Secret
metadata:
  name: {PROVIDER_SECRET}
  namespace: {namespace}
type: Opaque
stringData:
  address: "{hook_url}"
  token: "<value of app setting {secret_setting}>"
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata:
  name: {PROVIDER_NAME}
  namespace: {namespace}
spec:
  type: generic-hmac
  secretRef:
    name: {PROVIDER_SECRET}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata:
  name: {PROVIDER_NAME}
  namespace: {namespace}
spec:
  providerRef:
    name: {PROVIDER_NAME}
  eventSeverity: info          # info also lets error events through
  eventSources:
    - kind: Kustomization
      name: "*"
    - kind: HelmRelease
      name: "*"
  eventMetadata:
    cluster: {cluster}{env_line}
"""
