"""Real local git repositories for tests: bare remotes reached by ``file://`` URL, and the plain-git view of them.

- ``bare_repo(parent, files)``: create a bare repo seeded with one commit; returns its ``file://`` URL.
- ``push_files(url, branch, files, message)``: commit and push as another writer (its own fresh clone) would.
- ``file_at(url, ref, path)``, ``branches(url)``, ``commits(url, ref)``: read what the remote holds.
- ``git(*args)``, ``repo_path(url)``: anything else, e.g. ``git("--git-dir", str(repo_path(url)), "branch", ...)``.

Everything runs the git CLI with a fixed test identity; nothing here imports the code under test.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

Files = Mapping[str, "str | bytes | None"]  # path → content; None deletes the path (push_files only)

_ENV = {
    "GIT_AUTHOR_NAME": "test-writer",
    "GIT_AUTHOR_EMAIL": "test-writer@example.invalid",
    "GIT_COMMITTER_NAME": "test-writer",
    "GIT_COMMITTER_EMAIL": "test-writer@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass(frozen=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    author: str  # "name <email>"
    message: str  # full message, trailing newline stripped
    trailers: dict[str, str]  # as git parses them from the last paragraph; a repeated key keeps its last value

    @property
    def subject(self) -> str:
        return self.message.splitlines()[0] if self.message else ""


def git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> bytes:
    """Run git with the test identity; raise with git's stderr on failure; return stdout."""
    result = subprocess.run(
        ["git", *args], cwd=cwd, input=input, capture_output=True, env={**os.environ, **_ENV}, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def bare_repo(
    parent: Path, files: Files | Path | None = None, *, branch: str = "main", name: str = "remote",
    message: str = "seed",
) -> str:
    """Create ``parent/<name>.git`` and return its ``file://`` URL. ``files`` (a mapping or a directory tree to
    copy) becomes one commit on ``branch``; with None the repository stays empty (no branch at all)."""
    path = Path(parent) / f"{name}.git"
    git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(path))
    url = path.resolve().as_uri()
    if files is not None:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "seed"
            if isinstance(files, Path):
                shutil.copytree(files, work)
            else:
                work.mkdir()
                _write(work, files)
            git("init", "--quiet", f"--initial-branch={branch}", cwd=work)
            git("add", "--all", cwd=work)
            git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
            git("push", "--quiet", url, f"HEAD:refs/heads/{branch}", cwd=work)
    return url


def push_files(url: str, branch: str, files: Files, message: str) -> str:
    """Commit ``files`` on top of ``branch`` from a fresh clone and push it, as another writer would; return the
    new commit's sha."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "clone"
        git("clone", "--quiet", "--branch", branch, url, str(work))
        _write(work, files)
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "-m", message, cwd=work)
        git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
        return git("rev-parse", "HEAD", cwd=work).decode().strip()


def file_at(url: str, ref: str, path: str) -> bytes | None:
    """Content of ``path`` at ``ref`` (branch or sha) in the bare repo, or None when it is not there."""
    result = subprocess.run(
        ["git", "--git-dir", str(repo_path(url)), "cat-file", "blob", f"{ref}:{path}"], capture_output=True, check=False
    )
    return result.stdout if result.returncode == 0 else None


def branches(url: str) -> dict[str, str]:
    """Branch name → sha of every branch in the bare repo."""
    fmt = "--format=%(refname:lstrip=2) %(objectname)"
    out = git("--git-dir", str(repo_path(url)), "for-each-ref", fmt, "refs/heads")
    return dict(line.split(" ", 1) for line in out.decode().splitlines())


def commits(url: str, ref: str, max_count: int | None = None) -> list[Commit]:
    """Commits reachable from ``ref`` in the bare repo, newest first."""
    limit = [f"--max-count={max_count}"] if max_count is not None else []
    fmt = "--format=%H%x1f%P%x1f%an <%ae>%x1f%B%x1f%(trailers:only,unfold)%x1e"
    out = git("--git-dir", str(repo_path(url)), "log", *limit, fmt, ref).decode()
    result = []
    for record in out.split("\x1e"):
        if not record.strip():
            continue
        sha, parents, author, message, trailer_block = record.lstrip("\n").split("\x1f")
        trailers = {}
        for line in trailer_block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                trailers[key.strip()] = value.strip()
        result.append(Commit(sha, tuple(parents.split()), author, message.rstrip("\n"), trailers))
    return result


def repo_path(url: str) -> Path:
    """The bare repository's directory behind a ``file://`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise ValueError(f"not a file:// URL: {url}")
    return Path(unquote(parts.path))


def _write(root: Path, files: Files) -> None:
    for rel, content in files.items():
        target = root / rel
        if content is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
