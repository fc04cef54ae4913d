"""The deployment dashboard's data: one plain function from trace records, review records, queue depths and the health
report to the JSON the page renders (`GET /api/ops/dashboard/data`).

Each deployment (one trace record: one push for one target) gets a state and a timeline of its stages. The state is
decided by the last stage that carries one, so a failure that a replay later fixed shows as deployed with the failed
stage still in the timeline. Stage names are read generically (`<base>@<cluster>`): a stage this module does not
know (a cluster notification, say) is shown with its own name and leaves the state alone, and names or row fields
that speak of pausing, soaking or approval show those states, so the data other work adds appears without a change
here.

Nothing secret leaves this module: only allow-listed row fields are copied, every string passes `redact`, and repo
URLs lose their user-info before they become links (only http(s) links to Azure Repos or GitHub are built).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import quote, urlsplit

from core.model.trace_record import COLUMNS, StageEntry, TraceRecord, latency_seconds
from core.ops.cli import UsageError
from core.telemetry import redact

STATES = ("failed", "paused", "awaiting-approval", "soaking", "skipped", "in-progress", "deployed", "applied")
DEFAULT_TOP = 100
MAX_TOP = 1000
SCAN_TOP = 1000        # trace rows read per refresh: the newest ones, for the facets, the matrix and the list
MAX_FILTER_CHARS = 200
# Rings in the order people read them; other environments follow alphabetically.
_RING_ORDER = ("dev", "development", "test", "qa", "int", "integration", "stage", "staging", "preprod", "uat",
               "prod", "production")
_ROW_FIELDS = ("trace_id", "target_key", "start", "updated_at", "service", "env", "image", "image_tag", "digest",
               "target_file", "hld_commit_id", "manifest_commit_id", "pr", "tenant")   # shown under their COLUMNS names
_STAGE_DETAIL_FIELDS = ("reason", "action", "queue", "poisonQueue", "messageId", "iteration", "failed", "message",
                        "revision", "severity")
_HEX = re.compile(r"^[0-9a-fA-F]{7,64}$")


@dataclass(frozen=True)
class Filters:
    service: str = ""
    env: str = ""
    tag: str = ""      # a case-insensitive substring of the image tag
    state: str = ""    # one of STATES
    top: int = DEFAULT_TOP
    tenant: str = ""   # a fleet tenant's records only

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "env": self.env, "tag": self.tag, "state": self.state, "top": self.top,
                "tenant": self.tenant}


def parse_filters(params: Mapping[str, str]) -> Filters:
    """The filters of a data request; UsageError names a bad parameter."""
    values = {}
    for name in ("service", "env", "tag", "state", "tenant"):
        value = (params.get(name) or "").strip()
        if len(value) > MAX_FILTER_CHARS:
            raise UsageError(f"{name} is longer than {MAX_FILTER_CHARS} characters")
        values[name] = value
    if values["state"] and values["state"] not in STATES:
        raise UsageError(f"state={values['state']!r} must be one of {', '.join(STATES)}")
    top_text = params.get("top") or ""
    if top_text:
        top = int(top_text) if top_text.isdigit() else 0
        if not 1 <= top <= MAX_TOP:
            raise UsageError(f"top={top_text!r} must be an integer from 1 to {MAX_TOP}")
    else:
        top = DEFAULT_TOP
    return Filters(top=top, **values)


# -- states -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageView:
    state: str | None   # the state this stage puts the deployment in, None when it leaves it alone
    kind: str           # ok | wait | skip | fail | info: how the stage is drawn
    label: str


def skip_view(reason: str, action: str = "") -> StageView:
    """What kind of skip a bump decision's reason describes (core/rules/bump_decision.py and core/workers/bump.py word them)."""
    text = reason.lower()
    if "automation is paused" in text:
        return StageView("paused", "wait", "paused by autopilot.yaml")
    if "superseded" in text:
        return StageView("skipped", "skip", "skipped: overridden by a newer tag")
    if "high-water mark" in text:
        return StageView("skipped", "skip", "skipped: older than the high-water mark")
    if "never downgrade" in text or "older than current" in text:
        return StageView("skipped", "skip", "skipped: older than the current tag")
    if "tagfilter" in text or "not orderable" in text or "outside range" in text:
        return StageView("skipped", "skip", "skipped: filtered tag")
    if "allowed environments" in text:
        return StageView("skipped", "skip", "skipped: environment not allowed")
    if action == "noop" or "already current" in text:
        return StageView("skipped", "skip", "skipped: already current")
    return StageView("skipped", "skip", "skipped")


_KNOWN: dict[str, StageView] = {
    "received": StageView("in-progress", "ok", "received"),
    "hld-commit": StageView("in-progress", "ok", "HLD commit"),
    "hld-pr": StageView("awaiting-approval", "wait", "HLD pull request"),
    "review-ineligible": StageView("awaiting-approval", "wait", "needs manual approval"),
    "pr-approved": StageView("in-progress", "ok", "approved"),
    "pr-completed": StageView("in-progress", "ok", "merged"),
    "hld-merge": StageView("in-progress", "ok", "merged"),
    "manifest-pr": StageView("awaiting-approval", "wait", "manifest pull request"),
    "manifest-commit": StageView("deployed", "ok", "manifest commit"),
    "no-target": StageView("skipped", "skip", "skipped: no target uses the image"),
}
# How a deployment whose last state-bearing stage is this one is described (the stage's own label otherwise).
_ROW_LABELS = {"received": "received", "hld-commit": "HLD committed, manifests next",
               "hld-pr": "HLD pull request awaiting approval", "review-ineligible": "awaiting manual approval",
               "pr-approved": "approved, awaiting merge", "pr-completed": "merged, manifests next",
               "hld-merge": "merged, manifests next", "manifest-pr": "manifest pull request awaiting approval",
               "manifest-commit": "in manifests"}
_STATE_LABELS = {"failed": "failed", "paused": "paused", "awaiting-approval": "awaiting approval",
                 "soaking": "soaking", "skipped": "skipped", "in-progress": "in progress",
                 "deployed": "in manifests", "applied": "applied"}


def stage_view(stage: StageEntry) -> StageView:
    name = stage.name
    base, _, cluster = name.partition("@")
    where = f" on {cluster}" if cluster else ""
    detail = stage.detail
    declared = detail.get("state")
    if isinstance(declared, str) and declared in STATES:
        return StageView(declared, _kind_of(declared), f"{_STATE_LABELS[declared]}{where}")
    if base == "skipped":
        return skip_view(str(detail.get("reason") or ""), str(detail.get("action") or ""))
    if base == "failed" or base.endswith("-failed") or base.startswith("failed-"):
        queue = f" in {detail['queue']}" if detail.get("queue") and not cluster else ""
        return StageView("failed", "fail", f"{base}{where}{queue}")
    if base in ("applied", "ready", "healthy"):
        return StageView("applied", "ok", f"{base}{where}")
    if base in _KNOWN and not cluster:
        return _KNOWN[base]
    lowered = base.lower()
    if "pause" in lowered:
        return StageView("paused", "wait", f"{base}{where}")
    if "soak" in lowered:
        return StageView("soaking", "wait", f"{base}{where}")
    if "approval" in lowered:
        return StageView("awaiting-approval", "wait", f"{base}{where}")
    return StageView(None, "info", name or "?")


def _kind_of(state: str) -> str:
    return {"failed": "fail", "skipped": "skip", "paused": "wait", "awaiting-approval": "wait",
            "soaking": "wait"}.get(state, "ok")


@dataclass(frozen=True)
class RowState:
    state: str
    label: str
    reason: str


def row_state(row: TraceRecord) -> RowState:
    """The state of one trace record: its last state-bearing stage; a row-level `state` field (paused, soaking,
    awaiting approval, set by promotion) wins when it names one of STATES."""
    state, label, reason = "in-progress", _STATE_LABELS["in-progress"], ""
    for stage in row.stages:
        view = stage_view(stage)
        if view.state is None:
            continue
        state, label = view.state, _ROW_LABELS.get(stage.name, view.label)
        reason = str(stage.detail.get("reason") or stage.detail.get("message") or "") \
            if view.kind in ("fail", "skip", "wait") else ""
    if row.state in STATES:
        state, label = row.state, _STATE_LABELS[row.state]
        reason = row.state_reason or reason
    return RowState(state, redact(label), redact(reason))


# -- links --------------------------------------------------------------------------------------------------------

def _web_repo(repo_url: str) -> tuple[str, str] | None:
    """(kind, base web URL) of an Azure Repos or GitHub remote, without user-info, query or `.git`; else None."""
    try:
        parts = urlsplit(repo_url or "")
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    netloc = host + (f":{parts.port}" if parts.port else "")
    path = parts.path.rstrip("/")
    if "/_git/" in path and (host == "dev.azure.com" or host.endswith(".visualstudio.com")):
        return "azdo", f"{parts.scheme}://{netloc}{quote(path, safe='/%')}"
    if host == "github.com" and path.count("/") == 2:
        return "github", f"https://github.com{quote(path.removesuffix('.git'), safe='/%')}"
    return None


def commit_link(repo_url: str, sha: Any) -> str:
    web = _web_repo(repo_url)
    if web is None or not isinstance(sha, str) or not _HEX.match(sha):
        return ""
    return f"{web[1]}/commit/{sha}"


def pr_link(repo_url: str, pr: Any) -> str:
    web = _web_repo(repo_url)
    if web is None or not str(pr).isdigit():
        return ""
    return f"{web[1]}/pullrequest/{pr}" if web[0] == "azdo" else f"{web[1]}/pull/{pr}"


def clean_repo_url(url: Any) -> str:
    """A repo URL fit to show: user-info (an Azure Repos `org@`, or a token) removed."""
    text = str(url or "")
    try:
        parts = urlsplit(text)
    except ValueError:
        return ""
    if parts.netloc and "@" in parts.netloc:
        text = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return redact(text)


# -- rows ---------------------------------------------------------------------------------------------------------

def _text(value: Any) -> str:
    return redact(str(value)) if value is not None else ""


def _stage_json(stage: StageEntry, row: TraceRecord, prs: Mapping[str, str]) -> dict[str, Any]:
    view = stage_view(stage)
    name = stage.name
    base, _, cluster = name.partition("@")
    out: dict[str, Any] = {"name": _text(name), "label": _text(view.label), "kind": view.kind,
                           "at": _text(stage.at), "latencySeconds": stage.latency_seconds}
    if cluster:
        out["cluster"] = _text(cluster)
    for field in _STAGE_DETAIL_FIELDS:
        value = stage.detail.get(field)
        if value not in (None, "", []):
            out[field] = [_text(v) for v in value] if isinstance(value, list) else _text(value)
    commit, pr = stage.detail.get("commit"), stage.detail.get("pr")
    hld, manifests = row.hld_repo, row.manifest_repo
    if isinstance(commit, str) and _HEX.match(commit):
        out["commit"] = commit
        out["link"] = commit_link(manifests if base.startswith("manifest") else hld, commit)
    if str(pr or "").isdigit():
        out["pr"] = str(pr)
        repo = manifests if base.startswith("manifest") else hld if base.startswith("hld") else prs.get(str(pr), "")
        out["link"] = pr_link(repo, pr) or out.get("link", "")
        out["label"] = f"{out['label']} #{pr}" if base in ("hld-pr", "manifest-pr") else out["label"]
    if base in ("pr-approved", "review-ineligible") and "pr" in out:
        out["label"] = f"{out['label']} (PR #{out['pr']})"
    if not out.get("link"):
        out.pop("link", None)
    return out


def _pr_repos(row: TraceRecord) -> dict[str, str]:
    """Which repo each PR of the row was opened in (the stage that opened it says)."""
    repos: dict[str, str] = {}
    for stage in row.stages:
        pr = str(stage.detail.get("pr") or "")
        if pr.isdigit() and stage.name in ("hld-pr", "manifest-pr"):
            repos[pr] = row.manifest_repo if stage.name == "manifest-pr" else row.hld_repo
    return repos


def _review_json(review: Mapping[str, Any]) -> dict[str, Any]:
    return {"pr": _text(review.get("pr")), "iteration": review.get("iteration"), "action": _text(review.get("action")),
            "at": _text(review.get("at")), "passed": [_text(p) for p in review.get("passed") or []],
            "failed": [{"rule": _text(f.get("rule")), "reason": _text(f.get("reason"))}
                       for f in review.get("failed") or [] if isinstance(f, Mapping)]}


def deployment_json(row: TraceRecord, reviews: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    state = row_state(row)
    prs = _pr_repos(row)
    out: dict[str, Any] = {COLUMNS[field]: _text(getattr(row, field)) for field in _ROW_FIELDS
                           if getattr(row, field)}
    out["id"] = f"{out.get('traceId', '')}/{out.get('targetKey', '')}"
    out.update(state=state.state, stateLabel=state.label, reason=state.reason,
               stages=[_stage_json(s, row, prs) for s in row.stages], reviews=[_review_json(r) for r in reviews])
    if row.hld_repo:
        out["hldRepo"] = clean_repo_url(row.hld_repo)
    if row.manifest_repo:
        out["manifestRepo"] = clean_repo_url(row.manifest_repo)
    if row.pr.isdigit():
        out["prLink"] = pr_link(prs.get(row.pr) or row.hld_repo, row.pr)
    return out


def _matches(row: TraceRecord, state: str, filters: Filters) -> bool:
    return ((not filters.tenant or row.tenant == filters.tenant)
            and (not filters.service or row.service == filters.service)
            and (not filters.env or row.env == filters.env)
            and (not filters.tag or filters.tag.lower() in row.image_tag.lower())
            and (not filters.state or state == filters.state))


# -- what runs where ----------------------------------------------------------------------------------------------

def env_sort_key(env: str) -> tuple[int, str]:
    lowered = env.lower()
    return (_RING_ORDER.index(lowered) if lowered in _RING_ORDER else len(_RING_ORDER), lowered)


def matrix(rows: Iterable[TraceRecord]) -> dict[str, Any]:
    """Service x environment (x cluster when a stage names one) of the tag last put in the manifests (or applied
    on the cluster), since when, a newer tag still on its way, and whether the cell lags the service's newest tag."""
    deployed: dict[tuple[str, str, str], dict[str, Any]] = {}
    pending: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        service, env, tag = row.service, row.env, row.image_tag
        if not service or not env or not tag:
            continue
        state = row_state(row).state
        for stage in row.stages:
            base, _, cluster = stage.name.partition("@")
            if (base == "manifest-commit" and not cluster) or (base == "applied" and cluster):
                key, at = (service, env, cluster), stage.at
                if key not in deployed or at > deployed[key]["since"]:
                    deployed[key] = {"service": service, "env": env, "cluster": cluster, "tag": tag, "since": at,
                                     "start": row.start, "traceId": row.trace_id}
        if state in ("in-progress", "awaiting-approval", "paused", "soaking"):
            start = row.start
            if (service, env) not in pending or start > pending[(service, env)]["start"]:
                pending[(service, env)] = {"tag": tag, "state": state, "start": start}
    newest: dict[str, dict[str, Any]] = {}
    for cell in deployed.values():
        best = newest.get(cell["service"])
        if best is None or (cell["start"], cell["since"]) > (best["start"], best["since"]):
            newest[cell["service"]] = cell
    cells = []
    for key in sorted(deployed, key=lambda k: (k[0], env_sort_key(k[1]), k[2])):
        cell = deployed[key]
        waiting = pending.get((cell["service"], cell["env"]))
        out = {"service": _text(cell["service"]), "env": _text(cell["env"]), "cluster": _text(cell["cluster"]),
               "tag": _text(cell["tag"]), "since": _text(cell["since"]), "traceId": _text(cell["traceId"]),
               "newest": _text(newest[cell["service"]]["tag"]),
               "behind": cell["tag"] != newest[cell["service"]]["tag"]}
        if waiting and waiting["start"] > cell["start"] and waiting["tag"] != cell["tag"]:
            out["pending"] = {"tag": _text(waiting["tag"]), "state": waiting["state"]}
        cells.append(out)
    columns = sorted({(c["env"], c["cluster"]) for c in cells}, key=lambda c: (env_sort_key(c[0]), c[1]))
    return {"services": sorted({c["service"] for c in cells}),
            "columns": [{"env": env, "cluster": cluster} for env, cluster in columns], "cells": cells}


# -- queues and health --------------------------------------------------------------------------------------------

def queues_json(depths: Mapping[str, Mapping[str, int] | str]) -> list[dict[str, Any]]:
    """One entry per work queue: its depth and its poison queue's, or the error that kept them from being read."""
    out = []
    for name, depth in depths.items():
        if isinstance(depth, str):
            out.append({"name": name, "poisonQueue": f"{name}-poison", "error": redact(depth)})
        else:
            out.append({"name": name, "poisonQueue": f"{name}-poison", "depth": int(depth.get("depth", 0)),
                        "poison": int(depth.get("poison", 0))})
    return out


def health_json(status: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """The health report reduced to checks (name, ok, detail); queue depths are shown live elsewhere."""
    checks: list[dict[str, Any]] = []
    storage = body.get("storage")
    if isinstance(storage, Mapping):
        checks.append({"name": "storage", "ok": bool(storage.get("reachable"))})
    for tool, present in (body.get("tools") or {}).items():
        checks.append({"name": f"{tool} executable", "ok": bool(present)})
    for role, repo in (body.get("repos") or {}).items():
        if isinstance(repo, Mapping):
            head = str(repo.get("head") or "")[:7]
            checks.append({"name": f"{role} repo", "ok": bool(repo.get("reachable")),
                           "detail": _text(f"{repo.get('branch', '')} at {head}" if head else repo.get("branch", ""))})
    azdo = body.get("azdo")
    if isinstance(azdo, Mapping):
        checks.append({"name": "Azure DevOps", "ok": bool(azdo.get("reachable"))})
    return {"status": _text(body.get("status") or ("healthy" if status == 200 else "unhealthy")),
            "version": _text(body.get("version") or ""), "checks": checks,
            "failing": [_text(f) for f in body.get("failing") or []]}


# -- the whole page's data ----------------------------------------------------------------------------------------

def fold_failures(rows: list[TraceRecord]) -> list[TraceRecord]:
    """A message that failed before its push reached a target is traced on a record of its own (`failed:<queue>`,
    core/workers/runners.py). Once the same trace has target records (the push was replayed and got further), the failure
    belongs in their timelines, in time order, and the record of its own is dropped: the chain then reads
    received -> failed -> HLD commit -> ..., and its state is where it ended."""
    by_trace: dict[str, list[TraceRecord]] = {}
    for row in rows:
        by_trace.setdefault(row.trace_id, []).append(row)
    folded: list[TraceRecord] = []
    for row in rows:
        if row.target_key.startswith("failed:"):
            if any(not o.target_key.startswith("failed:") for o in by_trace[row.trace_id]):
                continue
            folded.append(row)
            continue
        failures = [s for o in by_trace[row.trace_id] if o.target_key.startswith("failed:") for s in o.stages]
        if not failures:
            folded.append(row)
            continue
        stages = [replace(s, latency_seconds=latency_seconds(row.start, s.at)) for s in [*row.stages, *failures]]
        stages.sort(key=lambda s: s.latency_seconds if s.latency_seconds is not None else 0.0)
        folded.append(replace(row, stages=tuple(stages)))
    return folded


def paused_json(paused: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Targets a person's manual rollback paused (core.adapters.promotion_records), as text, by service and env."""
    shown = [{"service": _text(p.get("service")), "env": _text(p.get("env")), "reason": _text(p.get("reason")),
              "since": _text(p.get("at"))} for p in paused]
    return sorted(shown, key=lambda p: (p["service"], env_sort_key(p["env"])))


def dashboard_data(rows: list[TraceRecord], reviews_for: Callable[[TraceRecord], Iterable[Mapping[str, Any]]],
                   queues: Mapping[str, Mapping[str, int] | str], health: tuple[int, Mapping[str, Any]],
                   filters: Filters, now_iso: str, paused: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """`rows` newest first (the trace's order); `reviews_for(row)` gives a shown row's review decisions (those of its
    tenant's PR). Facets and state counts cover every row; the deployments list and the matrix follow the filters
    (the matrix only service and environment: it shows what runs, whatever state later pushes are in)."""
    rows = fold_failures(rows)
    states = [row_state(row).state for row in rows]
    counts = {state: 0 for state in STATES}
    for state in states:
        counts[state] += 1
    chosen = [(row, state) for row, state in zip(rows, states) if _matches(row, state, filters)]
    shown = [deployment_json(row, reviews_for(row) if row.pr.isdigit() else ()) for row, _ in chosen[:filters.top]]
    in_scope = [row for row in rows if _matches(row, "", Filters(service=filters.service, env=filters.env))]
    return {
        "generatedAt": now_iso,
        "filters": filters.as_dict(),
        "facets": {"services": sorted({_text(r.service) for r in rows if r.service}),
                   "envs": sorted({_text(r.env) for r in rows if r.env}, key=env_sort_key),
                   "states": list(STATES)},
        "counts": counts,
        "total": len(rows),
        "matching": len(chosen),
        "deployments": shown,
        "matrix": matrix(in_scope),
        "queues": queues_json(queues),
        "health": health_json(*health),
        "paused": paused_json(paused),
    }
