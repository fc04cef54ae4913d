"""What a Flux Receiver entry must be, wherever it is written (the `FLUX_RECEIVERS` app setting, or a tenant's
`flux.receivers` in fleet.yaml): pure checks, one rule set for both. The token is never in the entry: it names the
app setting holding it (`secretSetting`)."""
from __future__ import annotations

import re
from typing import Any, Mapping
from urllib.parse import urlsplit

from core.model.fleet import FluxReceiverRef

WEBHOOK_PREFIX = "/hook/"   # apiv1.ReceiverWebhookPath: every status.webhookPath starts with it
KEYS = ("cluster", "env", "url", "secretSetting")
CLUSTER = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")       # an RFC 1123 label: used in YAML names
ENV = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")              # one top-level folder of the manifest repo
SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def url_problem(url: object) -> str:
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
    if parts.scheme == "http" and host not in LOOPBACK:
        return "url must use https (http only for 127.0.0.1/localhost)"
    if parts.username or parts.password:
        return "url must not carry credentials"
    if not parts.path.startswith(WEBHOOK_PREFIX) or len(parts.path) <= len(WEBHOOK_PREFIX):
        return "url path must be the Receiver's status.webhookPath (/hook/<digest>)"
    if parts.query or parts.fragment:
        # notification-controller looks the Receiver up by the exact request URI: a query would miss it
        return "url must not have a query or fragment"
    if any(c.isspace() or ord(c) < 32 for c in url.strip()):
        return "url contains white space or control characters"
    return ""


def check_entry(entry: Mapping[Any, Any]) -> tuple[FluxReceiverRef | None, str, str]:
    """(the receiver, "", "") for a valid entry, else (None, the key at fault or "", what is wrong)."""
    cluster = entry.get("cluster")
    if not (isinstance(cluster, str) and CLUSTER.fullmatch(cluster)):
        return None, "cluster", "cluster must be a lowercase name of letters, digits and '-' (at most 63)"
    unknown = sorted(str(k)[:40] for k in entry if k not in KEYS)
    if unknown:
        return None, "", f"unknown key(s) {', '.join(unknown)} (expected {', '.join(sorted(KEYS))})"
    env = entry.get("env")
    if not isinstance(env, str) or not ENV.fullmatch(env) or env in (".", ".."):
        return None, "env", "env must be the name of one top-level folder of the manifest repo"
    problem = url_problem(entry.get("url"))
    if problem:
        return None, "url", problem
    setting = entry.get("secretSetting")
    if not isinstance(setting, str) or not SETTING_NAME.fullmatch(setting):
        return None, "secretSetting", "secretSetting must be the name of the app setting holding the Receiver token"
    return FluxReceiverRef(str(cluster), str(env), str(entry["url"]).strip(), str(setting)), "", ""
