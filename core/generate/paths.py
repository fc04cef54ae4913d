"""Keeping every path a component names inside the checkout it came from, and reading files with a size cap."""
from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from .errors import GenerationError


def _resolve(path: Path, label: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: symlink loop
        raise GenerationError(f"{label}: cannot resolve {path.name!r}: {error}") from None


def _walk_down(base: Path, relative: str, label: str) -> Path:
    """`base/relative` with symlinks resolved, `base` being resolved already: only the new components are
    checked, which is much cheaper than resolving the whole path again."""
    current = base
    for part in PurePosixPath(relative).parts:
        if part == "..":
            current = current.parent
        elif part != ".":
            current = current / part
            if os.path.islink(current):
                current = _resolve(current, label)
    return current


def inside(checkout: Path, base: Path, relative: str, label: str) -> Path:
    """`base/relative` resolved (symlinks followed; `base` is resolved); refused when absolute or when it leaves
    `checkout`."""
    if "\0" in relative or "\\" in relative:
        raise GenerationError(f"{label}: path {relative!r} has a forbidden character")
    if PurePosixPath(relative).is_absolute() or relative.startswith("~"):
        raise GenerationError(f"{label}: absolute path {relative!r} is not allowed")
    resolved = _walk_down(base, relative, label)
    if not resolved.is_relative_to(checkout):
        raise GenerationError(f"{label}: path {relative!r} leaves the checkout")
    return resolved


def read_capped(path: Path, checkout: Path, limit: int, label: str) -> bytes | None:
    """Bytes of a regular file inside `checkout`; None when it does not exist. `path.parent` must be resolved."""
    try:
        if os.path.islink(path):
            path = _resolve(path, label)
            if not path.is_relative_to(checkout):
                raise GenerationError(f"{label}: links outside the checkout")
        status = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(status.st_mode):
        raise GenerationError(f"{label}: not a regular file")
    if status.st_size > limit:
        raise GenerationError(f"{label}: file is larger than {limit} bytes")
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise GenerationError(f"{label}: cannot read: {error.strerror}") from None
    if len(data) > limit:
        raise GenerationError(f"{label}: file is larger than {limit} bytes")
    return data


def decode(data: bytes, label: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise GenerationError(f"{label}: not UTF-8 text") from None


def links_leaving(directory: Path, checkout: Path) -> str | None:
    """The first entry under `directory` that is a symlink resolving outside `checkout` (Helm follows them)."""
    for root, dirs, files in os.walk(directory):
        for name in sorted(dirs + files):
            entry = Path(root, name)
            if entry.is_symlink() and not _resolve(entry, name).is_relative_to(checkout):
                return str(entry.relative_to(directory))
    return None
