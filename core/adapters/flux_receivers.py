"""The Flux notification-controller Receivers to wake after a manifest commit: the `FLUX_RECEIVERS` app setting,
validated, and the `generic-hmac` signature they check.

    FLUX_RECEIVERS=[{"cluster": "prod-eastus", "env": "prod",
                     "url": "https://flux-webhook.prod-eastus.example.com/hook/<status.webhookPath digest>",
                     "secretSetting": "FLUX_RECEIVER_PROD_EASTUS"}]

Each entry names the app setting that holds its cluster's token (a Key Vault reference in Azure), never the token
itself, so the list can be read by anyone who may read app settings names. A bad entry does not stop the service
(the other clusters are still woken, and Flux still polls on its interval): it is kept as a problem line naming
the entry, which `/api/health` reports.

Signature, as notification-controller checks a `generic-hmac` Receiver (fluxcd/notification-controller,
internal/server/receiver_handlers.go, `validate`: `io.ReadAll(r.Body)` then
`github.ValidateSignature(r.Header.Get("X-Signature"), b, []byte(token))`, token = the Secret's `token` key; the
check is google/go-github github/messages.go `ValidateSignature` / `messageMAC`: the header is split once on "=",
the prefix must be `sha1`, `sha256` or `sha512`, the rest is hex-decoded and compared with `hmac.Equal` to the HMAC
of the raw body bytes). We always send `sha256=<lowercase hex>` of the exact bytes we POST.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence
from urllib.parse import urlsplit

from core.model.fleet import FluxReceiverRef
from core.rules import flux_receiver_rules as receiver_rules

SETTING = "FLUX_RECEIVERS"
MAX_RECEIVERS = 100
WEBHOOK_PREFIX = receiver_rules.WEBHOOK_PREFIX


@dataclass(frozen=True)
class FluxReceiver:
    cluster: str
    env: str
    url: str
    secret_setting: str
    secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class ReceiverConfig:
    receivers: tuple[FluxReceiver, ...] = ()
    problems: tuple[str, ...] = ()   # one line per bad entry (or for the whole setting), naming it; no secret


def sign(body: bytes, secret: str) -> str:
    """The `X-Signature` header value for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _entry(index: int, entry: object, env: Mapping[str, str]) -> tuple[FluxReceiver | None, str]:
    where = f"{SETTING}[{index}]"
    if not isinstance(entry, dict):
        return None, f"{where}: must be a JSON object"
    ref, _, problem = receiver_rules.check_entry(entry)
    if ref is None:
        if isinstance(entry.get("cluster"), str) and receiver_rules.CLUSTER.fullmatch(entry["cluster"]):
            where += f" (cluster {entry['cluster']})"
        return None, f"{where}: {problem}"
    where += f" (cluster {ref.cluster})"
    secret = (env.get(ref.secret_setting) or "").strip()
    if not secret:
        return None, f"{where}: app setting {ref.secret_setting} (its secretSetting) is not set"
    return FluxReceiver(ref.cluster, ref.env, ref.url, ref.secret_setting, secret), ""


def resolve_receivers(refs: Sequence[FluxReceiverRef], app_setting: Callable[[str], str],
                      tenant: str) -> ReceiverConfig:
    """A fleet tenant's receivers (fleet.yaml `flux.receivers`, already validated) with their tokens read from the
    app settings they name; one whose setting is empty is left out with a problem line (health reports it), like a
    bad FLUX_RECEIVERS entry: the tenant's other clusters are still woken."""
    receivers: list[FluxReceiver] = []
    problems: list[str] = []
    for ref in refs:
        secret = (app_setting(ref.secret_setting) or "").strip()
        if secret:
            receivers.append(FluxReceiver(ref.cluster, ref.env, ref.url, ref.secret_setting, secret))
        else:
            problems.append(f"tenant {tenant} receiver {ref.cluster}: app setting {ref.secret_setting} "
                            "(its secretSetting) is not set")
    return ReceiverConfig(tuple(receivers), tuple(problems))


def parse_receivers(text: str, env: Mapping[str, str]) -> ReceiverConfig:
    """The receivers of a `FLUX_RECEIVERS` value (empty: none), with one problem line per bad entry."""
    if not text.strip():
        return ReceiverConfig()
    try:
        entries = json.loads(text)
    except ValueError as exc:
        return ReceiverConfig(problems=(f"{SETTING}: not JSON ({str(exc).splitlines()[0][:120]})",))
    if not isinstance(entries, list):
        return ReceiverConfig(problems=(f"{SETTING}: must be a JSON array of receiver objects",))
    if len(entries) > MAX_RECEIVERS:
        return ReceiverConfig(problems=(f"{SETTING}: {len(entries)} entries, at most {MAX_RECEIVERS}",))
    receivers: list[FluxReceiver] = []
    problems: list[str] = []
    for index, entry in enumerate(entries):
        receiver, problem = _entry(index, entry, env)
        if receiver is not None and any(r.cluster == receiver.cluster for r in receivers):
            receiver, problem = None, f"{SETTING}[{index}] (cluster {receiver.cluster}): cluster named twice"
        if receiver is None:
            problems.append(problem)
        else:
            receivers.append(receiver)
    return ReceiverConfig(tuple(receivers), tuple(problems))


def receivers_for(receivers: tuple[FluxReceiver, ...], envs: tuple[str, ...],
                  clusters: tuple[str, ...] = ()) -> tuple[FluxReceiver, ...]:
    """The receivers to wake: those of `clusters` when named (a retry), else those serving one of the changed
    environment folders `envs`, else (the changed folders are unknown) all of them."""
    if clusters:
        return tuple(r for r in receivers if r.cluster in clusters)
    if not envs:
        return receivers
    return tuple(r for r in receivers if r.env in envs)


# -- what `python -m core.ops.cli setup` prints for each cluster ------------------------------------------------------

RECEIVER_NAME = "gitops-autopilot"
SECRET_NAME = "gitops-autopilot-receiver-token"


def webhook_path(token: str, name: str = RECEIVER_NAME, namespace: str = "flux-system") -> str:
    """The `status.webhookPath` notification-controller gives a Receiver: "/hook/" + hex SHA-256 of
    token + name + namespace (fluxcd/notification-controller api/v1/receiver_types.go, `GetWebhookPath`)."""
    return WEBHOOK_PREFIX + hashlib.sha256((token + name + namespace).encode("utf-8")).hexdigest()


def tenant_receiver_name(tenant: str) -> str:
    """A fleet tenant's Receiver (and its Secret is that + "-token"): its own name, so its own webhook path."""
    return f"{RECEIVER_NAME}-{tenant}"


def receiver_yaml(receiver: FluxReceiver, *, namespace: str = "flux-system", source: str = "flux-system",
                  name: str = RECEIVER_NAME, secret_name: str = SECRET_NAME) -> str:
    """The Secret and Receiver to apply on `receiver`'s cluster: a generic-hmac Receiver that reconciles the
    GitRepository `source` (the manifest repo) when woken. The token is never printed: it is the cluster's app
    setting, copied into the Secret by the operator."""
    return f"""\
# cluster {receiver.cluster} (env folder {receiver.env}); token = the value of app setting {receiver.secret_setting}
apiVersion: v1
kind: Secret
metadata:
  name: {secret_name}
  namespace: {namespace}
type: Opaque
stringData:
  token: "<value of app setting {receiver.secret_setting}>"
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata:
  name: {name}
  namespace: {namespace}
spec:
  type: generic-hmac
  secretRef:
    name: {secret_name}
  resources:
    - apiVersion: source.toolkit.fluxcd.io/v1
      kind: GitRepository
      name: {source}
"""


def receiver_check(receiver: FluxReceiver, namespace: str = "flux-system", name: str = RECEIVER_NAME) -> str:
    """Does the configured URL end in the webhook path Flux will compute from this token? (A hash: nothing secret.)"""
    expected = webhook_path(receiver.secret, name, namespace)
    actual = urlsplit(receiver.url).path
    if actual == expected:
        return f"url path matches the expected status.webhookPath {expected}"
    return (f"url path {actual} differs from the expected status.webhookPath {expected} "
            f"(token, Receiver name or namespace differ)")
