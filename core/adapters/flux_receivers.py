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
import re
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit

SETTING = "FLUX_RECEIVERS"
WEBHOOK_PREFIX = "/hook/"   # apiv1.ReceiverWebhookPath: every status.webhookPath starts with it
MAX_RECEIVERS = 100
_KEYS = {"cluster", "env", "url", "secretSetting"}
_CLUSTER = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")       # an RFC 1123 label: used in YAML names
_ENV = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")              # one top-level folder of the manifest repo
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


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


def _check_url(url: object) -> str:
    """'' when `url` is a receiver URL, else what is wrong."""
    if not isinstance(url, str) or not url.strip():
        return "url must be a non-empty string"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "url is not a URL"
    if parts.scheme not in ("https", "http") or not host:
        return "url must be https://<host>/hook/..."
    if parts.scheme == "http" and host not in _LOOPBACK:
        return "url must use https (http only for 127.0.0.1/localhost)"
    if parts.username or parts.password:
        return "url must not carry credentials"
    if not parts.path.startswith(WEBHOOK_PREFIX) or len(parts.path) <= len(WEBHOOK_PREFIX):
        return "url path must be the Receiver's status.webhookPath (/hook/<digest>)"
    if parts.query or parts.fragment:
        # notification-controller looks the Receiver up by the exact request URI: a query would miss it
        return "url must not have a query or fragment"
    return ""


def _entry(index: int, entry: object, env: Mapping[str, str]) -> tuple[FluxReceiver | None, str]:
    where = f"{SETTING}[{index}]"
    if not isinstance(entry, dict):
        return None, f"{where}: must be a JSON object"
    cluster = entry.get("cluster")
    if isinstance(cluster, str) and _CLUSTER.fullmatch(cluster):
        where += f" (cluster {cluster})"
    else:
        return None, f"{where}: cluster must be a lowercase name of letters, digits and '-' (at most 63)"
    unknown = sorted(str(k)[:40] for k in entry if k not in _KEYS)
    if unknown:
        return None, f"{where}: unknown key(s) {', '.join(unknown)} (expected {', '.join(sorted(_KEYS))})"
    value = entry.get("env")
    if not isinstance(value, str) or not _ENV.fullmatch(value) or value in (".", ".."):
        return None, f"{where}: env must be the name of one top-level folder of the manifest repo"
    problem = _check_url(entry.get("url"))
    if problem:
        return None, f"{where}: {problem}"
    setting = entry.get("secretSetting")
    if not isinstance(setting, str) or not _SETTING_NAME.fullmatch(setting):
        return None, f"{where}: secretSetting must be the name of the app setting holding the Receiver token"
    secret = (env.get(setting) or "").strip()
    if not secret:
        return None, f"{where}: app setting {setting} (its secretSetting) is not set"
    return FluxReceiver(cluster, value, entry["url"].strip(), setting, secret), ""


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


def receiver_yaml(receiver: FluxReceiver, *, namespace: str = "flux-system", source: str = "flux-system") -> str:
    """The Secret and Receiver to apply on `receiver`'s cluster: a generic-hmac Receiver that reconciles the
    GitRepository `source` (the manifest repo) when woken. The token is never printed: it is the cluster's app
    setting, copied into the Secret by the operator."""
    return f"""\
# cluster {receiver.cluster} (env folder {receiver.env}); token = the value of app setting {receiver.secret_setting}
apiVersion: v1
kind: Secret
metadata:
  name: {SECRET_NAME}
  namespace: {namespace}
type: Opaque
stringData:
  token: "<value of app setting {receiver.secret_setting}>"
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata:
  name: {RECEIVER_NAME}
  namespace: {namespace}
spec:
  type: generic-hmac
  secretRef:
    name: {SECRET_NAME}
  resources:
    - apiVersion: source.toolkit.fluxcd.io/v1
      kind: GitRepository
      name: {source}
"""


def receiver_check(receiver: FluxReceiver, namespace: str = "flux-system") -> str:
    """Does the configured URL end in the webhook path Flux will compute from this token? (A hash: nothing secret.)"""
    expected = webhook_path(receiver.secret, RECEIVER_NAME, namespace)
    actual = urlsplit(receiver.url).path
    if actual == expected:
        return f"url path matches the expected status.webhookPath {expected}"
    return (f"url path {actual} differs from the expected status.webhookPath {expected} "
            f"(token, Receiver name or namespace differ)")
