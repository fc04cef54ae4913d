"""The result of a generation and writing it into a manifest repository working tree."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class GeneratedFile:
    path: str  # relative to the output root, e.g. "prod/fabrikam-project/fabrikam/dev/chart.yaml"
    content: bytes


@dataclass(frozen=True)
class Generation:
    files: tuple[GeneratedFile, ...]  # sorted by path
    environments: tuple[str, ...]  # the top-level folders this generation owns


def _files_by_environment(generation: Generation) -> dict[str, dict[str, bytes]]:
    owned: dict[str, dict[str, bytes]] = {environment: {} for environment in generation.environments}
    for generated in generation.files:
        parts = PurePosixPath(generated.path).parts
        if len(parts) < 2 or parts[0] not in owned or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"generated path {generated.path!r} is outside the generation's environment folders")
        owned[parts[0]][generated.path] = generated.content
    return owned


def _existing_files(folder: Path, out_root: Path) -> set[str]:
    found = set()
    for root, dirs, files in os.walk(folder):
        for name in files + [entry for entry in dirs if Path(root, entry).is_symlink()]:
            found.add(Path(root, name).relative_to(out_root).as_posix())
    return found


def _make_directories(target: Path, folder: Path) -> None:
    """Create the parents of `target` below `folder`, replacing anything in the way that is not a real directory."""
    current = folder
    for part in target.relative_to(folder).parts[:-1]:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            current.unlink()
        current.mkdir(exist_ok=True)


def _same_content(target: Path, content: bytes) -> bool:
    if target.is_symlink() or not target.is_file():
        return False
    return target.stat().st_size == len(content) and target.read_bytes() == content


def _remove_empty_directories(folder: Path) -> None:
    for root, _, _ in os.walk(folder, topdown=False):
        if root != str(folder):
            try:
                os.rmdir(root)
            except OSError:  # not empty
                pass


def write_generation(generation: Generation, out_root: Path) -> list[str]:
    """Make each environment folder of `out_root` hold exactly the generated files. Other top-level folders and
    files are left alone (Bedrock deleted every top-level folder). Returns the sorted paths created, changed or
    removed; empty on an identical second write."""
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    changed: list[str] = []
    for environment, wanted in _files_by_environment(generation).items():
        folder = out_root / environment
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            folder.unlink()
            changed.append(environment)
        folder.mkdir(exist_ok=True)
        existing = _existing_files(folder, out_root)
        for stale in sorted(existing - wanted.keys()):
            (out_root / stale).unlink()
            changed.append(stale)
        for path, content in wanted.items():
            target = out_root / path
            if path in existing and _same_content(target, content):
                continue
            _make_directories(target, folder)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.is_symlink():
                target.unlink()
            target.write_bytes(content)
            changed.append(path)
        _remove_empty_directories(folder)
    return sorted(set(changed))
