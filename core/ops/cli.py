"""Operating the service: replay, the deployment trace (with review decisions), health, and hook setup.

    python -m core.ops.cli replay --queue image-pushed [--message-id ID ...] [--dry-run]
    python -m core.ops.cli replay --event-id ID [--dry-run]
    python -m core.ops.cli trace [--service S] [--env E] [--image I] [--tag T] [--tenant N] [--top N] [--json]
                                 [--matrix]
    python -m core.ops.cli health
    python -m core.ops.cli resume --service S --env E [--tenant N]
    python -m core.ops.cli setup --url https://<app>.azurewebsites.net [--project-id GUID] [--function-key K]
                               [--registry NAME] [--dry-run] [--rotate-secret]
                               [--flux-namespace NS] [--flux-source NAME]
                               [--flux-cluster NAME [--flux-env E1,E2]]
        (with FLEET_REPO_URL: the hooks of every tenant's project, each with the tenant's own credentials, and a
        push hook on the fleet repo; a tenant that fails is reported, the others go on, exit status 1)

Settings come from the environment first, then the `Values` of local.settings.json in the current folder (else
local.settings.sample.json), as the function app reads them. Exit status: 0 done, 1 the operation failed
(storage or Azure DevOps unavailable, nothing found), 2 bad arguments or settings.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from azure.core.exceptions import AzureError

from core.adapters.azdo import AzdoError, AzdoGateway
from core.adapters.fleet_source import FleetUnavailable
from core.workers.cluster_feedback import provider_yaml
from core.errors import Permanent
from core.model.fleet import DEFAULT_TENANT, Tenant
from core.adapters.flux_receivers import (RECEIVER_NAME, receiver_check, receiver_yaml, resolve_receivers,
                                          tenant_receiver_name)
from core.ops.health import HealthProbes, check_health
from core.ops.hook_setup import (HookSetupError, SetupResult, acr_commands, flux_hook_url, setup_fleet,
                                 setup_subscriptions)
from core.ops.replay import Replayer, ReplayRequestError, parse_replay_request
from core.adapters.cluster_records import RunningStore
from core.adapters.review_records import ReviewRecord, ReviewStore
from core.wiring import Services
from core.settings import Settings, SettingsError, apply_local_settings, load_settings, read_local_settings
from core.adapters.storage import StorageUnavailable
from core.adapters.trace import TraceStore
from core.model.trace_record import StageEntry, TraceRecord

DEFAULT_TOP = 50
MAX_TOP = 1000
SETTINGS_FILES = ("local.settings.json", "local.settings.sample.json")


class UsageError(Permanent, ValueError):
    """A command-line argument or query parameter is wrong; the message names it."""


# -- review decisions ---------------------------------------------------------------------------------------------

def review_json(record: ReviewRecord) -> dict[str, Any]:
    return {"pr": record.pr, "iteration": record.iteration, "action": record.action,
            "passed": list(record.passed), "failed": [{"rule": f.rule, "reason": f.reason} for f in record.failed],
            "at": record.at.isoformat(), "traceIds": list(record.trace_ids)}


# -- deployments --------------------------------------------------------------------------------------------------

def parse_top(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_TOP
    try:
        top = int(value)
    except ValueError:
        top = 0
    if not 1 <= top <= MAX_TOP:
        raise UsageError(f"top={value!r} must be an integer from 1 to {MAX_TOP}")
    return top


@dataclass(frozen=True)
class Deployment:
    """A trace record with the review decisions of its pull request (None: it has none)."""
    record: TraceRecord
    reviews: tuple[dict[str, Any], ...] | None = None

    def as_json(self) -> dict[str, Any]:
        out = self.record.as_json()
        if self.reviews is not None:
            out["reviews"] = list(self.reviews)
        return out


def reviews_of(reviews: ReviewStore, row: TraceRecord) -> list[ReviewRecord]:
    """The review decisions of a trace record's pull request: its tenant's PR (PR numbers are per organization)."""
    return reviews.for_tenant(row.tenant or DEFAULT_TENANT).for_pr(int(row.pr))


def deployments(trace: TraceStore, reviews: ReviewStore, *, service: str = "", env: str = "", image: str = "",
                tag: str = "", tenant: str = "", top: int = DEFAULT_TOP) -> list[Deployment]:
    """Trace records newest first; a record with a pull request carries that PR's review decisions."""
    by_pr: dict[tuple[str, str], tuple[dict[str, Any], ...]] = {}   # (tenant, pr): PR numbers are per organization
    out = []
    for row in trace.query(service=service, env=env, image=image, tag=tag, tenant=tenant, top=top):
        key = (row.tenant or DEFAULT_TENANT, row.pr)
        if row.pr.isdigit() and key not in by_pr:
            by_pr[key] = tuple(review_json(r) for r in reviews_of(reviews, row))
        out.append(Deployment(row, by_pr.get(key)))
    return out


def running(store: RunningStore, *, service: str = "", env: str = "") -> list[dict[str, Any]]:
    """What runs where: one entry per (service, environment, cluster), from the clusters' Flux events."""
    return store.matrix(service=service, env=env)


def format_matrix(rows: list[dict[str, Any]]) -> list[str]:
    """Service x cluster: each cell the tag applied there, since when, and `failed <tag>` when the cluster's last
    word was a failure (the tag it still runs stays in front)."""
    clusters = sorted({str(r.get("cluster")) for r in rows})
    lines_of: dict[tuple[str, str], dict[str, str]] = {}
    for r in rows:
        cell = f"{r.get('tag') or '-'} since {str(r.get('since') or '')[11:19] or '?'}"
        if r.get("state") == "failed":
            cell = f"{r.get('tag') or '-'} FAILED {r.get('failedTag') or '?'}"
        lines_of.setdefault((str(r.get("service")), str(r.get("env"))), {})[str(r.get("cluster"))] = cell
    header = ("Service", "Env", *clusters)
    cells = [(service, env, *(by.get(c, "") for c in clusters)) for (service, env), by in sorted(lines_of.items())]
    widths = [max(len(str(c[i])) for c in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(values, widths)).rstrip() for values in [header, *cells]]
    lines += [f"  {r.get('service')}@{r.get('cluster')}: {r.get('message')}" for r in rows
              if r.get("state") == "failed" and r.get("message")]
    return lines


def _short(value: Any, width: int = 8) -> str:
    return str(value or "")[:width] or "-"


def _stage_line(stages: Sequence[StageEntry]) -> str:
    parts = []
    for stage in stages:
        latency = stage.latency_seconds
        parts.append(f"{stage.name} " + (f"+{latency:.2f}s" if latency is not None else "+?"))
    return " | ".join(parts)


def format_deployments(rows: list[Deployment]) -> list[str]:
    """A table (one line per deployment), each followed by its stages and review decisions, indented."""
    header = ("Start", "Service", "Env", "Image Tag", "HLD commit", "PR", "Manifest commit")
    cells = [(r.start[:19].replace("T", " "), r.service or "-", r.env or "-", r.image_tag or "-",
              _short(r.hld_commit_id), r.pr or "-", _short(r.manifest_commit_id)) for r in (d.record for d in rows)]
    widths = [max(len(str(c[i])) for c in [header, *cells]) for i in range(len(header))]

    def line(values: Sequence[Any]) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(values, widths)).rstrip()

    lines = [line(header)]
    for deployment, values in zip(rows, cells):
        lines.append(line(values))
        stages = deployment.record.stages
        if stages:
            lines.append("    " + _stage_line(stages))
            lines += [f"    {stage.name}: {stage.detail['reason']}" for stage in stages if stage.detail.get("reason")]
        for review in deployment.reviews or ():
            failed = "; ".join(f"{f['rule']}: {f['reason']}" for f in review["failed"]) or "-"
            lines.append(f"    review PR {review['pr']} iteration {review['iteration']}: {review['action'] or '?'}"
                         f" at {review['at'][:19].replace('T', ' ')} (passed: {', '.join(review['passed']) or '-'};"
                         f" failed: {failed})")
    return lines


# -- the command line ---------------------------------------------------------------------------------------------

def load_cli_settings(settings_file: Path | None = None, folder: Path | None = None) -> Settings:
    """Environment first, then the Values of `settings_file` (else local.settings.json, else the sample)."""
    if settings_file is not None:
        if not settings_file.is_file():
            raise SettingsError(f"{settings_file}: settings file not found")
        path: Path | None = settings_file
    else:
        folder = folder or Path.cwd()
        path = next((folder / n for n in SETTINGS_FILES if (folder / n).is_file()), None)
    if path is not None:
        apply_local_settings(read_local_settings(path))
    return load_settings()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.ops.cli", description="Operate gitops-autopilot.")
    parser.add_argument("--settings", type=Path, help="settings file instead of local.settings(.sample).json")
    commands = parser.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", help="move poison messages back, or re-run a journaled delivery")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--queue", help="work queue whose <queue>-poison messages to move back")
    which.add_argument("--event-id", help="journaled delivery to run through intake again")
    replay.add_argument("--message-id", action="append", dest="message_ids", metavar="ID",
                        help="only this poison message (repeatable)")
    replay.add_argument("--dry-run", action="store_true", help="list what would be replayed; change nothing")
    replay.add_argument("--json", action="store_true", help="print the JSON answer")

    trace = commands.add_parser("trace", help="recent deployments with stage latencies and review decisions")
    for name in ("service", "env", "image", "tag", "tenant"):
        trace.add_argument(f"--{name}", default="")
    trace.add_argument("--top", default=str(DEFAULT_TOP), help=f"at most this many (1-{MAX_TOP})")
    trace.add_argument("--json", action="store_true")
    trace.add_argument("--matrix", action="store_true", help="what runs where: service x cluster (from Flux events)")

    commands.add_parser("health", help="the /api/health report")

    resume = commands.add_parser("resume", help="lift the pause a manual rollback set on a service's environment")
    resume.add_argument("--service", required=True)
    resume.add_argument("--env", required=True)
    resume.add_argument("--tenant", default="default", help="the fleet tenant whose pause to lift")

    setup = commands.add_parser("setup", help="create/update the Azure DevOps service hooks; print the ACR commands")
    setup.add_argument("--url", required=True, help="function app base URL, e.g. https://<app>.azurewebsites.net")
    setup.add_argument("--project-id", default="",
                       help="project GUID (default: looked up from AZDO_PROJECT)")
    setup.add_argument("--function-key", help="function key for ?code= (default: the FUNCTIONS_KEY setting)")
    setup.add_argument("--registry", default="<registry>", help="ACR name for the printed az commands")
    setup.add_argument("--dry-run", action="store_true", help="print the plan; create or change nothing")
    setup.add_argument("--rotate-secret", action="store_true",
                       help="rewrite subscriptions whose (masked) password cannot be compared")
    setup.add_argument("--flux-namespace", default="flux-system", help="namespace of the printed Flux Receivers")
    setup.add_argument("--flux-source", default="flux-system",
                       help="name of the GitRepository (the manifest repo) the Receivers reconcile")
    setup.add_argument("--flux-cluster", default="",
                       help="also print the Flux Provider/Alert that sends this cluster's events to /api/hooks/flux")
    setup.add_argument("--flux-env", default="", help="the environment(s) that cluster serves, comma-separated")
    return parser


def _print_json(body: Any, out: TextIO) -> None:
    print(json.dumps(body, indent=2, default=str), file=out)


def _replay(args: argparse.Namespace, services: Services, out: TextIO) -> int:
    request: dict[str, Any] = {"dryRun": args.dry_run}
    if args.event_id:
        if args.message_ids:
            raise UsageError("--message-id goes with --queue, not with --event-id")
        request["eventId"] = args.event_id
    else:
        request["queue"] = args.queue
        if args.message_ids:
            request["messageIds"] = args.message_ids
    try:
        parsed = parse_replay_request(request)
    except ReplayRequestError as exc:
        raise UsageError(str(exc)) from exc
    reply = Replayer(services.queues, services.intake, services.deliveries).run(parsed)
    body = reply.body
    if args.json:
        _print_json(body, out)
    elif reply.status == 200 and parsed.event_id:
        if parsed.dry_run:
            print(f"journaled {body['eventId']} from {body['source']}, {body['bytes']} bytes "
                  "(dry run: nothing queued)", file=out)
        else:
            queued = ", ".join(body.get("queued", [])) or "nothing"
            ignored = f" (ignored: {body['ignored']})" if body.get("ignored") else ""
            print(f"replayed {parsed.event_id}: queued {queued}{ignored}", file=out)
    elif reply.status == 200:
        verb = "would move" if parsed.dry_run else "moved"
        print(f"{verb} {body['count']} message(s) from {body['from']} to {body['queue']}"
              + (" (dry run: nothing moved)" if parsed.dry_run else ""), file=out)
        for moved in body["moved"]:
            what = moved.get("error") or f"{moved['kind']}  event {moved['eventId']}  trace {moved['traceId']}"
            print(f"  {moved['messageId']}  {what}", file=out)
    if reply.status != 200:
        raise _Failed(body.get("error") or f"replay answered HTTP {reply.status}")
    if body.get("notFound"):
        raise _Failed(f"not on {body['from']}: {', '.join(body['notFound'])}")
    return 0


def _trace(args: argparse.Namespace, services: Services, out: TextIO) -> int:
    if args.matrix:
        rows = running(services.running, service=args.service, env=args.env)
        paused = services.pauses.listed()
        if args.json:
            _print_json({"running": rows, "paused": paused}, out)
            return 0
        if not rows:
            print("no cluster has reported an applied push yet", file=out)
        else:
            print("\n".join(format_matrix(rows)), file=out)
        for p in paused:
            print(f"paused: {p['service']} in {p['env']} since {p['at'][:19].replace('T', ' ')}: {p['reason']} "
                  f"(python -m core.ops.cli resume --service {p['service']} --env {p['env']})", file=out)
        return 0
    rows = deployments(services.trace, services.review_records, service=args.service, env=args.env,
                       image=args.image, tag=args.tag, tenant=args.tenant, top=parse_top(args.top))
    if args.json:
        _print_json({"deployments": [d.as_json() for d in rows]}, out)
    elif not rows:
        print("no deployments recorded" + (" matching the filters" if any(
            (args.service, args.env, args.image, args.tag)) else ""), file=out)
    else:
        print("\n".join(format_deployments(rows)), file=out)
    return 0


def _health(args: argparse.Namespace, services: Services, out: TextIO) -> int:
    report = check_health(lambda: services, HealthProbes())
    _print_json(report.body, out)
    if report.status != 200:
        raise _Failed("unhealthy: " + "; ".join(report.body.get("failing", [])))
    return 0


def _print_feedback(args: argparse.Namespace, services: Services, out: TextIO) -> None:
    """The Provider/Alert YAML for --flux-cluster and for every FLUX_RECEIVERS cluster."""
    clusters = {r.cluster: r.env for r in services.settings.flux.receivers}
    if args.flux_cluster:
        clusters[args.flux_cluster] = args.flux_env
    if not clusters:
        return
    key = services.settings.functions_key if args.function_key is None else args.function_key
    url = flux_hook_url(args.url, key)
    print(f"\nFlux events back to the app ({len(clusters)} cluster(s)): apply on each cluster, put the value of "
          f"FLUX_WEBHOOK_SECRET in its Secret's token.", file=out)
    if not services.settings.flux_webhook_secret:
        print("warning: FLUX_WEBHOOK_SECRET is not set: /api/hooks/flux answers 503 until it is", file=out)
    for cluster, env in clusters.items():
        print("", file=out)
        print(provider_yaml(cluster, env, url, namespace=args.flux_namespace), end="", file=out)


def _print_fleet_feedback(args: argparse.Namespace, services: Services, out: TextIO) -> None:
    """Per tenant: the Secret/Provider/Alert of each of its clusters (fleet.yaml flux.clusters), with the tenant's
    own hook address and key setting; a tenant without flux.secretSetting is told how to get a hook."""
    key = services.settings.functions_key if args.function_key is None else args.function_key
    tenants = services.fleet.tenants
    if args.flux_cluster:
        print(f"\nnote: --flux-cluster {args.flux_cluster} is for a deployment without a fleet: list a tenant's "
              "clusters under its flux.clusters in fleet.yaml", file=out)
    print(f"\nFlux events back to the app, per tenant ({len(tenants)}): apply each block on that cluster and put "
          "the value of the tenant's key setting in its Secret's token.", file=out)
    for tenant in tenants:
        if not tenant.flux_secret_setting:
            print(f"tenant {tenant.name}: no Flux events hook: give it flux.secretSetting (and flux.clusters) in "
                  "fleet.yaml", file=out)
            continue
        url = flux_hook_url(args.url, key, tenant.name)
        if not services.settings.app_setting(tenant.flux_secret_setting):
            print(f"warning: tenant {tenant.name}: app setting {tenant.flux_secret_setting} is not set: its hook "
                  "answers 503 until it is", file=out)
        if not tenant.flux_clusters:
            print(f"tenant {tenant.name}: list its clusters under flux.clusters in fleet.yaml to print their "
                  f"Provider/Alert; its Provider address is {url}", file=out)
        for cluster in tenant.flux_clusters:
            print(f"\n# tenant {tenant.name}", file=out)
            print(provider_yaml(cluster.name, cluster.env, url, namespace=args.flux_namespace,
                                secret_setting=tenant.flux_secret_setting), end="", file=out)


def _print_fleet_receivers(args: argparse.Namespace, services: Services, out: TextIO) -> None:
    """Per tenant: the Secret and Receiver (named for the tenant, so with its own webhook path) of each cluster its
    manifest commits wake (fleet.yaml flux.receivers), and which token settings are missing."""
    ns = args.flux_namespace
    tenants = [t for t in services.fleet.tenants if t.flux_receivers]
    if services.settings.flux.receivers or services.settings.flux.problems:
        print("\nnote: FLUX_RECEIVERS is not used with a fleet: list each tenant's under flux.receivers in fleet.yaml",
              file=out)
    if not tenants:
        return
    print(f"\nFlux Receivers, per tenant ({len(tenants)}): apply each block on that cluster, put the value of the "
          "named app setting in its Secret's token, then check the path its notification-controller serves:\n"
          f"  kubectl -n {ns} get receiver <name> -o jsonpath='{{.status.webhookPath}}'", file=out)
    for tenant in tenants:
        name = tenant_receiver_name(tenant.name)
        flux = resolve_receivers(tenant.flux_receivers, services.settings.app_setting, tenant.name)
        for problem in flux.problems:
            print(f"warning: {problem}", file=out)
        for receiver in flux.receivers:
            print(f"\n# tenant {tenant.name}, cluster {receiver.cluster}: {receiver_check(receiver, ns, name)}",
                  file=out)
            print(receiver_yaml(receiver, namespace=ns, source=args.flux_source, name=name,
                                secret_name=f"{name}-token"), end="", file=out)


def tenant_gateway(services: Services, tenant: Tenant) -> AzdoGateway:
    """The tenant's own Azure DevOps gateway (its org, project and credentials: never another tenant's)."""
    try:
        gateway = services.for_tenant(tenant.name).gateway
    except SettingsError as exc:
        raise HookSetupError(str(exc)) from None
    if gateway is None:
        raise HookSetupError(f"tenant {tenant.name} names no Azure DevOps organization")
    return gateway


def _setup_fleet(args: argparse.Namespace, services: Services, out: TextIO) -> int:
    function_key = services.settings.functions_key if args.function_key is None else args.function_key
    results = setup_fleet(services.fleet, lambda tenant: tenant_gateway(services, tenant), services.settings,
                          base_url=args.url, function_key=function_key, dry_run=args.dry_run,
                          rotate_secret=args.rotate_secret, fleet_gateway=services.gateway)
    failed = []
    for scope in results:
        if scope.result is not None:
            print(f"{scope.scope}:", file=out)
            print("\n".join(f"  {line}" for line in format_setup(scope.result)), file=out)
        elif scope.skipped:
            print(f"{scope.scope}: skipped: {scope.skipped}", file=out)
        else:
            print(f"{scope.scope}: FAILED: {scope.error}", file=out)
            failed.append(scope.scope)
    print("\nPoint ACR at the app with ONE of (export ACR_WEBHOOK_SECRET"
          + (" and FUNCTIONS_KEY" if function_key else "") + " first):", file=out)
    for command in acr_commands(args.registry, args.url, bool(function_key)):
        print(f"  {command}", file=out)
    _print_fleet_receivers(args, services, out)
    _print_fleet_feedback(args, services, out)
    if failed:
        raise _Failed(f"setup failed for {', '.join(failed)}; the others are set up")
    return 0


def _setup(args: argparse.Namespace, services: Services, out: TextIO) -> int:
    if services.fleet_source is not None:
        return _setup_fleet(args, services, out)
    if services.gateway is None and args.flux_cluster:
        print("AZDO_ORG_URL is not set: no Azure DevOps service hooks to set up.", file=out)
        _print_flux(args, services, out)
        _print_feedback(args, services, out)
        return 0
    if services.gateway is None:
        if services.settings.flux.receivers:   # e.g. a manifest repo outside Azure DevOps: the Flux part only
            print("AZDO_ORG_URL is not set: no Azure DevOps service hooks to set up.\n", file=out)
            _print_flux(args, services, out)
            _print_feedback(args, services, out)
            return 0
        raise SettingsError("AZDO_ORG_URL is not set: setup creates Azure DevOps service hooks")
    function_key = services.settings.functions_key if args.function_key is None else args.function_key
    result = setup_subscriptions(services.gateway, services.settings, base_url=args.url,
                                 project_id=args.project_id or services.gateway.project_id(),
                                 function_key=function_key, dry_run=args.dry_run, rotate_secret=args.rotate_secret)
    print("\n".join(format_setup(result)), file=out)
    print("\nPoint ACR at the app with ONE of (export ACR_WEBHOOK_SECRET"
          + (" and FUNCTIONS_KEY" if function_key else "") + " first):", file=out)
    for command in acr_commands(args.registry, args.url, bool(function_key)):
        print(f"  {command}", file=out)
    if services.settings.flux.receivers or services.settings.flux.problems:
        print("", file=out)
        _print_flux(args, services, out)
    _print_feedback(args, services, out)
    return 0


def _print_flux(args: argparse.Namespace, services: Services, out: TextIO) -> None:
    """Per FLUX_RECEIVERS cluster: the Secret and Receiver to apply there, and how to read its webhook path."""
    flux = services.settings.flux
    for problem in flux.problems:
        print(f"skipped: {problem}", file=out)
    if not flux.receivers:
        return
    ns = args.flux_namespace
    print(f"Flux Receivers ({len(flux.receivers)}): apply on each cluster, put the token in its Secret, then read "
          f"the path its notification-controller serves:\n"
          f"  kubectl -n {ns} get receiver {RECEIVER_NAME} -o jsonpath='{{.status.webhookPath}}'\n"
          f"The receiver URL in FLUX_RECEIVERS is the notification-controller's webhook-receiver service as "
          f"exposed to the app (Ingress or LoadBalancer, https) + that path.", file=out)
    for receiver in flux.receivers:
        print(f"\n# {receiver.cluster}: {receiver_check(receiver, ns)}", file=out)
        print(receiver_yaml(receiver, namespace=ns, source=args.flux_source), end="", file=out)


def format_setup(result: SetupResult) -> list[str]:
    verbs = ({"create": "would create", "update": "would update"} if result.dry_run
             else {"create": "created", "update": "updated"})
    width = max((len(c.event_type) for c in result.changes), default=0)
    lines = []
    for change in result.changes:
        action = verbs.get(change.action, change.action)
        why = f"  ({', '.join(change.differences)})" if change.differences else ""
        lines.append(f"{action:<12}  {change.event_type:<{width}}  {change.scope}{why}")
    lines.append(f"{result.count('create')} to create, {result.count('update')} to update, "
                 f"{result.count('unchanged')} unchanged" + (" (dry run: nothing changed)" if result.dry_run else ""))
    return lines


class _Failed(Exception):
    """The operation ran and failed; the message is the one-line reason."""


def _resume(args: argparse.Namespace, services: Services, out: TextIO) -> int:
    if not services.for_tenant(args.tenant).pauses.resume(args.service, args.env):
        raise _Failed(f"{args.service} in {args.env} is not paused")
    print(f"resumed {args.service} in {args.env}: automation updates it again", file=out)
    return 0


_COMMANDS = {"replay": _replay, "trace": _trace, "health": _health, "setup": _setup, "resume": _resume}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None,
         wire: Callable[[Settings], Services] = Services) -> int:
    """Run one command; `wire` builds the Services from the loaded settings (tests hand in fake stores)."""
    out, err = out or sys.stdout, err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        services = wire(load_cli_settings(args.settings))
        return _COMMANDS[args.command](args, services, out)
    except (UsageError, SettingsError, HookSetupError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    except StorageUnavailable as exc:
        print(f"error: storage unavailable: {exc}", file=err)
        return 1
    except (_Failed, AzdoError, FleetUnavailable) as exc:
        print(f"error: {exc}", file=err)
        return 1
    except AzureError as exc:
        print(f"error: storage unavailable ({type(exc).__name__})", file=err)
        return 1


if __name__ == "__main__":
    from core.telemetry import configure_json_logging

    configure_json_logging()
    raise SystemExit(main())
