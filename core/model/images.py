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


# What a registry itself accepts, for names that arrive in a push event (never normalised, only checked).
# https://github.com/distribution/reference regexp.go and reference.go (the grammar comment): path components are
# `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*` joined by `/`, at most RepositoryNameTotalLengthMax = 255 characters;
# a tag is `[\w][\w.-]{0,127}` where Go's `\w` is ASCII `[0-9A-Za-z_]` (Python's would take any letter, so the
# classes are spelled out); a domain is `domain-component ('.' domain-component)* [':' port]`, components
# `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`. The bracketed IPv6 host form is left out: no ACR login
# server is one, and `parse_image_ref` (the bump worker's matcher) does not read it.
# Digests: https://github.com/opencontainers/image-spec descriptor.md#digests (v1.1.1), registered algorithms
# sha256 (`[a-f0-9]{64}`) and sha512 (`[a-f0-9]{128}`); "[A-F] MUST NOT be used".
MAX_REPOSITORY = 255
_STRICT_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_STRICT_REPOSITORY = re.compile(rf"{_STRICT_COMPONENT}(?:/{_STRICT_COMPONENT})*")
_STRICT_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")


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


def is_registry_tag(text: str) -> bool:
    """A tag a registry accepts (distribution/reference `tag`)."""
    return isinstance(text, str) and len(text) <= 128 and _TAG.fullmatch(text) is not None


def is_registry_repository(text: str) -> bool:
    """A repository path a registry accepts: lower-case path components, at most 255 characters."""
    return isinstance(text, str) and 0 < len(text) <= MAX_REPOSITORY and _STRICT_REPOSITORY.fullmatch(text) is not None


def is_registry_host(text: str) -> bool:
    """A registry login server: `domain[:port]`, the domain a DNS name (RFC 1035 2.3.4: 253 characters, labels
    of 63 at most), the port a TCP port."""
    if not isinstance(text, str) or len(text) > 253 + 6 or _HOST.fullmatch(text) is None:
        return False
    domain, _, port = text.partition(":")
    return len(domain) <= 253 and all(len(label) <= 63 for label in domain.split(".")) and \
        (not port or int(port) <= 65535)


def is_registered_digest(text: str) -> bool:
    """A digest of a registered OCI algorithm, in its canonical lower-case hex."""
    return isinstance(text, str) and len(text) <= 7 + 128 and _STRICT_DIGEST.fullmatch(text) is not None


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
