"""Target discovery over a working copy on disk: the thin reader around core.rules.targets.discover (the pure
rules over (path, bytes)). Files are read lazily, symbolic links are never followed, and parsed files are cached
across calls by (mtime, size, inode)."""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Iterable, Sequence

from core.model.images import parse_image_ref, same_image
from core.rules.targets import (MAX_FILE_BYTES, ImageFields, Target, YamlIndex, discover, is_discovered, path_parts,
                                parse_indexable, subcomponent_dirs)

__all__ = ["find_all_targets", "find_targets"]


def find_targets(root: Path, image_name: str, environments: Sequence[str] | None = None,
                 fields: Sequence[ImageFields] = ()) -> list[Target]:
    """Every image field in the tree that holds `image_name` (host/repository; a tag or digest is ignored)."""
    parse_image_ref(image_name)
    return [target for target in find_all_targets(root, environments=environments, fields=fields)
            if same_image(target.repository, image_name)]


def find_all_targets(root: Path, candidates: Iterable[str] | None = None,
                     environments: Sequence[str] | None = None,
                     fields: Sequence[ImageFields] = ()) -> list[Target]:
    """Every image field in the checkout at `root`. `candidates` (repo-relative paths, e.g. the files `git grep -l`
    finds mentioning a repository) replaces the walk of the whole tree; the other config files of the components
    concerned are still read to resolve which file wins.

    A Fabrikate image is resolved per environment (`environments` as the generator names them, e.g.
    `["prod", "staging west"]`; None: every environment a config file on the way names, and `common`): the
    target is the field in the file whose value the generator uses for that environment.

    The checkout is read lazily (only the files discovery asks for), without following symbolic links, and
    parsed files are cached across calls; the rules are `discover_targets`'s."""
    return discover(_Checkout(Path(root)), candidates, environments, fields)


_FileKey = tuple[int, int, int]
_FILE_CACHE_LIMIT = 50_000
_RACY_NS = 2_000_000_000
# Parsed files of warm working copies, reused across runs while (mtime, size, inode) is unchanged: git rewrites
# only the files a fetch changed, so a bump in an HLD of 1,000 services parses a handful of files, not thousands.
_file_cache: dict[str, tuple[_FileKey, bytes, "YamlIndex | None | bool"]] = {}
_component_cache: dict[str, tuple["YamlIndex", dict[str, str | None]]] = {}


def _cached_file(path: str) -> tuple[_FileKey, bytes, "YamlIndex | None | bool"] | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    key = (st.st_mtime_ns, st.st_size, st.st_ino)
    entry = _file_cache.get(path)
    # Like git's "racily clean" rule: a file changed within the timestamp granularity may have been rewritten
    # with the same size and time, so recent files are compared by content.
    if entry is not None and entry[0] == key and time.time_ns() - st.st_mtime_ns > _RACY_NS:
        return entry
    if st.st_size > MAX_FILE_BYTES or not stat.S_ISREG(st.st_mode):
        return None
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    if entry is not None and entry[1] == data:
        entry = (key, data, entry[2])
    else:
        if len(_file_cache) >= _FILE_CACHE_LIMIT:
            _file_cache.clear()
        entry = (key, data, False)  # False: not parsed yet
    _file_cache[path] = entry
    return entry


class _Checkout:
    """A working copy on disk, read on demand: symlinks never followed, parses cached by (mtime, size, inode)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._root = str(root)
        self._indexes: dict[str, YamlIndex | None] = {}
        self._plain: dict[str, bool] = {}

    def walk(self) -> list[str]:
        """Plain os.scandir and strings: this runs on every bump over trees of thousands of files."""
        files: list[str] = []

        def walk(directory: str, prefix: str) -> None:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda entry: entry.name)
            subdirs = []
            for entry in entries:
                if entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != ".git":
                        subdirs.append(entry)
                elif is_discovered(prefix + entry.name):
                    files.append(prefix + entry.name)
            for entry in subdirs:
                walk(entry.path, prefix + entry.name + "/")

        walk(self._root, "")
        return files

    def index(self, rel: str) -> YamlIndex | None:
        if rel not in self._indexes:
            self._indexes[rel] = self._load(rel)
        return self._indexes[rel]

    def _load(self, rel: str) -> YamlIndex | None:
        path = os.path.join(self._root, rel)
        entry = _cached_file(path)
        if entry is None:
            return None
        key, data, index = entry
        if index is False:
            index = parse_indexable(data)
            _file_cache[path] = (key, data, index)
        return index

    def is_dir(self, rel: str) -> bool:
        return (self.root / rel).is_dir()

    def plain_dir(self, rel: str) -> bool:
        if rel not in self._plain:
            self._plain[rel] = _plain_directory(self._root, rel)
        return self._plain[rel]

    def file_names(self, rel_dir: str) -> list[str]:
        try:
            with os.scandir(os.path.join(self._root, rel_dir)) as it:
                return [entry.name for entry in it if entry.is_file(follow_symlinks=False)]
        except OSError:
            return []

    def component_dirs(self, rel: str, index: YamlIndex, component_dir: str) -> dict[str, str | None]:
        # A project component.yaml can list a thousand services: map it once per content, not once per bump.
        path = os.path.join(self._root, rel)
        cached = _component_cache.get(path)
        if cached is not None and cached[0] is index:
            return cached[1]
        dirs = subcomponent_dirs(index, component_dir)
        _component_cache[path] = (index, dirs)
        return dirs


def _plain_directory(root: str, rel: str | None) -> bool:
    """A directory inside the tree whose every component is a real directory (never a symlink)."""
    if rel is None:
        return False
    path = root
    for part in path_parts(rel):
        path = os.path.join(path, part)
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return False
        except OSError:
            return False
    return True


