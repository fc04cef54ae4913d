"""Which git sources a component.yaml may name: the `ALLOWED_SOURCE_HOSTS` allow-list.

A `method: git` component is cloned on the service host, so a `file://` source copied any repository on that host
(the service's own cached working copies included) into the manifests. Only these are allowed:

- `https://<host>/...` when `<host>` (with its port, if the URL has one) is an entry: `dev.azure.com`;
- `ssh://<host>/...` and scp-like `user@<host>:path` when `ssh://<host>` is an entry;
- `file://...` only when the entry `file://` is listed (local tests and demos).

Anything else (http://, git://, ext::, a path) is refused. The default allow-list is the HLD repository's own host.
Entries are compared case-insensitively; `https://host/` is accepted as an entry and means `host`.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

FILE_ENTRY = "file://"
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?")
_SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@(?P<host>[A-Za-z0-9.-]+):(?!//)")

__all__ = ["FILE_ENTRY", "chart_repository_allowed", "default_allowed_sources", "parse_allowed_sources",
           "source_allowed"]


def _host_port(netloc_host: str | None, port: int | None) -> str:
    host = (netloc_host or "").lower()
    return f"{host}:{port}" if port is not None else host


def parse_allowed_sources(text: str) -> tuple[str, ...]:
    """`"dev.azure.com, ssh://ssh.dev.azure.com, file://"` → normalised entries; ValueError naming a bad one."""
    entries: list[str] = []
    for raw in text.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry in (FILE_ENTRY, "file:"):
            normalised = FILE_ENTRY
        else:
            scheme, _, rest = entry.rpartition("://")
            if scheme not in ("", "https", "ssh"):
                raise ValueError(f"{raw.strip()!r}: only https hosts, ssh://host or file:// can be allowed")
            host = rest.rstrip("/").rpartition("@")[2]
            if not _HOST.fullmatch(host):
                raise ValueError(f"{raw.strip()!r} is not a host name (e.g. dev.azure.com or ssh://host)")
            normalised = f"ssh://{host}" if scheme == "ssh" else host
        if normalised not in entries:
            entries.append(normalised)
    return tuple(entries)


def default_allowed_sources(hld_repo_url: str | None) -> tuple[str, ...]:
    """The HLD repository's own host (https or ssh); nothing for a file:// or missing HLD URL."""
    if not hld_repo_url:
        return ()
    parts = urlsplit(hld_repo_url)
    try:
        host = _host_port(parts.hostname, parts.port)
    except ValueError:
        return ()
    if not host:
        return ()
    if parts.scheme == "https":
        return (host,)
    if parts.scheme == "ssh":
        return (f"ssh://{host}",)
    return ()


def source_allowed(url: str, allowed: Iterable[str]) -> bool:
    """Whether the git source `url` is on the allow-list."""
    allowed = set(allowed)
    scp = _SCP_LIKE.match(url)
    if scp and "://" not in url.split("@", 1)[0]:
        return f"ssh://{scp['host'].lower()}" in allowed
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return FILE_ENTRY in allowed
    try:
        host = _host_port(parts.hostname, parts.port)
    except ValueError:
        return False
    if not host:
        return False
    if scheme == "https":
        return host in allowed
    if scheme == "ssh":
        return f"ssh://{host}" in allowed
    return False


def chart_repository_allowed(url: str, allowed: Iterable[str]) -> bool:
    """Whether a Helm chart repository `url` (https:// or oci://) is on a host of the allow-list: the generator's
    rendered mode fetches it (`helm template --repo`), so a component.yaml may not send that fetch anywhere."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("https", "oci") or parts.username or parts.password:
        return False
    try:
        host = _host_port(parts.hostname, parts.port)
    except ValueError:
        return False
    return bool(host) and host in set(allowed)
