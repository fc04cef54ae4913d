"""The dashboard page: a static template (core/ops/dashboard.html, inline CSS and vanilla JS, no external resource)
served with a per-response nonce and the headers that keep it safe, and the same-origin rule for the actions.

The page holds no data and no key: its script reads the key the viewer opened it with (`?code=`) from the address
bar and sends it as `x-functions-key` on its own calls, and builds every element with `textContent` (never
`innerHTML`), so a tag or title holding markup renders as text. The Content-Security-Policy allows only the
script and style carrying this response's nonce, calls to the page's own origin, and no framing.
"""
from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

TEMPLATE = Path(__file__).with_name("dashboard.html")
NONCE_MARK = "{{NONCE}}"


@lru_cache(maxsize=1)
def _template() -> str:
    text = TEMPLATE.read_text(encoding="utf-8")
    if NONCE_MARK not in text:
        raise RuntimeError(f"{TEMPLATE.name} has no {NONCE_MARK} mark")
    return text


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def render_page(nonce: str) -> str:
    return _template().replace(NONCE_MARK, nonce)


def content_security_policy(nonce: str) -> str:
    return "; ".join((
        "default-src 'none'",
        f"script-src 'nonce-{nonce}'",
        f"style-src 'nonce-{nonce}'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ))


def page_headers(nonce: str) -> dict[str, str]:
    return {"Content-Security-Policy": content_security_policy(nonce),
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",  # links out (PRs, commits) must not carry ?code= in a Referer
            "Cache-Control": "no-store"}


DATA_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _authority(scheme: str, netloc: str) -> str:
    host, _, port = netloc.lower().rpartition(":") if netloc.count(":") == 1 else (netloc.lower(), "", "")
    default = {"http": "80", "https": "443"}.get(scheme, "")
    return host if not port or port == default else f"{host}:{port}"


def foreign_origin(headers: Mapping[str, str], request_url: str) -> str | None:
    """Why a browser request comes from another site (one line), or None when it is same-origin or not from a
    browser page at all (curl and the CLI send neither header). `Sec-Fetch-Site` is trusted when present (browsers
    set it and pages cannot); otherwise `Origin` must name this request's own host and port."""
    lowered = {k.lower(): v for k, v in headers.items()}
    site = lowered.get("sec-fetch-site", "").strip().lower()
    if site and site not in ("same-origin", "none"):
        return f"cross-origin request refused (Sec-Fetch-Site: {site})"
    origin = lowered.get("origin", "").strip()
    if not origin:
        return None
    if origin == "null":
        return "cross-origin request refused (Origin: null)"
    mine, theirs = urlsplit(request_url), urlsplit(origin)
    # TLS ends at the Functions front end, and on Linux Dedicated/Premium the request URL the host passes on says
    # http for an https request (azure-functions-host#6602): compare host and port, with the Origin's scheme
    # deciding the default port.
    if _authority(theirs.scheme, theirs.netloc) != _authority(theirs.scheme, mine.netloc):
        return f"cross-origin request refused (Origin {origin[:100]} is not this site)"
    return None
