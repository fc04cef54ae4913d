"""Container image references: parse, format and compare `host/path/repo:tag@digest` text."""
from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import Permanent

_HOST = re.compile(
    r"(?:localhost|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
    r"(?::[0-9]+)?"
)
# Docker's path-component grammar, with upper case tolerated: the text is compared, not normalised.
_PATH_COMPONENT = re.compile(r"[A-Za-z0-9]+(?:(?:[._]|__|-+)[A-Za-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}")


class ImageRefError(Permanent, ValueError):
    """Text that is not a container image reference (or tag, or digest)."""


@dataclass(frozen=True)
class ImageRef:
    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def format(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def validate_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise ImageRefError(f"invalid image tag {tag!r}")
    return tag


def validate_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ImageRefError(f"invalid image digest {digest!r}")
    return digest


def parse_image_ref(text: str) -> ImageRef:
    """Parse `[host[:port]/]path[:tag][@digest]`.

    The first path part is a registry host when it holds a `.` or `:` or is `localhost`
    (Docker's rule), and only when more parts follow it.
    """
    if not isinstance(text, str) or not text:
        raise ImageRefError(f"empty image reference {text!r}")
    name, at, digest = text.partition("@")
    if at:
        try:
            validate_digest(digest)
        except ImageRefError:
            raise ImageRefError(f"invalid digest in image reference {text!r}") from None
    tag: str | None = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise ImageRefError(f"invalid tag in image reference {text!r}")
    parts = name.split("/")
    registry: str | None = None
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry = parts.pop(0)
        if not _HOST.fullmatch(registry):
            raise ImageRefError(f"invalid registry host in image reference {text!r}")
    if not all(_PATH_COMPONENT.fullmatch(part) for part in parts):
        raise ImageRefError(f"invalid repository path in image reference {text!r}")
    return ImageRef(registry, "/".join(parts), tag, digest if at else None)


def same_image(a: str, b: str) -> bool:
    """Whether two references name the same repository; tags and digests are ignored.

    The registry host compares case-insensitively, the repository path exactly.
    """
    ra, rb = parse_image_ref(a), parse_image_ref(b)
    return (ra.registry or "").lower() == (rb.registry or "").lower() and ra.repository == rb.repository
