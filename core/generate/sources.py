"""Git-sourced components: shallow fetches into a cache shared by every generation.

A checkout is cached under `<cache_dir>/git/<url digest>-<commit>`, so a cached directory never changes once
written and concurrent generations can read it without locks. A pinned full commit needs no network at all once
cached; a branch or tag is resolved with `git ls-remote` on every generation, so a moved branch is picked up
(Fabrikate re-cloned on every run). Git never prompts (GIT_TERMINAL_PROMPT=0, ssh BatchMode).

Before a cached checkout is used it is checked with one local `git diff-index` against its commit: a checkout
without HEAD, with a corrupt index or lost objects, with files changed or missing, or that is no longer a
directory is discarded and fetched again. Only sources on the `ALLOWED_SOURCE_HOSTS` allow-list are fetched
(`core.rules.source_hosts`): never `file://` unless listed, never plain http or git://.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.adapters.git_workspace import gitpython
from core.rules.source_hosts import source_allowed

from .errors import GenerationError

GIT_TIMEOUT_SECONDS = 300
_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
_SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~/-]")
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*@")
_ENVIRONMENT = {
    "GIT_TERMINAL_PROMPT": "0",
    "GCM_INTERACTIVE": "never",
    "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
}


def strip_credentials(url: str) -> str:
    """`https://user:token@host/x` → `https://host/x`."""
    return _USERINFO.sub(r"\1", url)


def redact(text: str) -> str:
    return _USERINFO.sub(r"\1", text)


def is_full_sha(version: str) -> bool:
    return bool(_FULL_SHA.fullmatch(version))


@dataclass(frozen=True)
class GitRef:
    url: str
    version: str = ""
    branch: str = ""

    def describe(self) -> str:
        at = self.version or self.branch
        return f"{strip_credentials(self.url)}@{at}" if at else strip_credentials(self.url)


def check_url(url: str, label: str, allowed: Iterable[str]) -> None:
    """Only ordinary transports (no `ext::` commands, no option-looking or local-path sources), and only
    sources the allow-list admits."""
    if not (url.startswith(_SCHEMES) or _SCP_LIKE.match(url)) or any(char.isspace() for char in url):
        raise GenerationError(f"{label}: unsupported git source {strip_credentials(url)!r}")
    if url.startswith(_SCHEMES) and not urlsplit(url).netloc and not url.startswith("file://"):
        raise GenerationError(f"{label}: git source {strip_credentials(url)!r} has no host")
    allowed = tuple(allowed)
    if not source_allowed(url, allowed):
        raise GenerationError(
            f"{label}: git source {strip_credentials(url)!r} is not allowed: only https:// (or ssh:// where "
            f"configured) sources on a host in ALLOWED_SOURCE_HOSTS ({', '.join(allowed) or 'none'})")


def _intact(checkout: Path, commit: str) -> bool:
    """Whether a cached checkout still holds exactly `commit` (HEAD, index, objects and files all usable)."""
    if checkout.is_symlink() or not checkout.is_dir():
        return False
    git_dir = checkout / ".git"
    try:
        run = subprocess.run(["git", "--git-dir", str(git_dir), "--work-tree", str(checkout), "diff-index",
                              "--quiet", commit, "--"], cwd=checkout, env={**os.environ, **_ENVIRONMENT},
                             capture_output=True, timeout=GIT_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0 and (git_dir / "HEAD").is_file()


def _discard(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _last_line(error) -> str:  # a git.GitCommandError
    lines = [line.strip() for line in str(error.stderr or "").splitlines() if line.strip()]
    return redact(lines[-1]) if lines else f"git exited with status {error.status}"


class GitCheckouts:
    """Checkouts of git sources under a cache directory, memoised for the lifetime of one object."""

    def __init__(self, cache_dir: Path, allowed: Iterable[str] = ()) -> None:
        self._root = cache_dir / "git"
        self._allowed = tuple(allowed)
        self._memo: dict[GitRef, Path] = {}

    def checkout(self, ref: GitRef, label: str) -> Path:
        if ref not in self._memo:
            check_url(ref.url, label, self._allowed)
            command_error = gitpython().GitCommandError  # GitMissing (permanent) on a host without git
            try:
                self._memo[ref] = self._checkout(ref, label)
            except command_error as error:
                raise GenerationError(f"{label}: cannot fetch {ref.describe()}: {_last_line(error)}") from None
        return self._memo[ref]

    def _target(self, ref: GitRef, commit: str) -> Path:
        digest = hashlib.sha256(strip_credentials(ref.url).encode()).hexdigest()[:16]
        return self._root / f"{digest}-{commit}"

    def _checkout(self, ref: GitRef, label: str) -> Path:
        commit = ref.version if is_full_sha(ref.version) else self._remote_commit(ref)
        if commit:
            cached = self._target(ref, commit)
            if _intact(cached, commit):
                return cached
            _discard(cached)
        self._root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=self._root))
        try:
            repo = gitpython().Repo.init(work)
            self._fetch(repo, ref, commit, label)
            actual = repo.git.rev_parse("HEAD")
            target = self._target(ref, actual)
            if not _intact(target, actual):
                _discard(target)
            try:
                os.rename(work, target)
            except OSError:  # another generation cached the same commit first
                if not target.is_dir():
                    raise
            return target
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _remote_commit(self, ref: GitRef) -> str | None:
        name = ref.version or ref.branch or "HEAD"
        listing = gitpython().Git().ls_remote(ref.url, name, f"{name}^{{}}", env=_ENVIRONMENT,
                                  kill_after_timeout=GIT_TIMEOUT_SECONDS)
        commits = {}
        for line in listing.splitlines():
            commit, _, refname = line.partition("\t")
            commits[refname] = commit
        tags = (f"refs/tags/{name}^{{}}", f"refs/tags/{name}")
        heads = (f"refs/heads/{name}",)
        order = (*tags, *heads) if ref.version else (*heads, *tags)
        return next((commits[refname] for refname in (*order, name) if refname in commits), None)

    def _fetch(self, repo, ref: GitRef, commit: str | None, label: str) -> None:
        git, command_error = repo.git, gitpython().GitCommandError
        options = {"env": _ENVIRONMENT, "kill_after_timeout": GIT_TIMEOUT_SECONDS}
        if commit:
            try:
                git.fetch("--depth", "1", "--no-tags", ref.url, commit, **options)
                git.checkout("--detach", "FETCH_HEAD", **options)
                return
            except command_error:
                if not ref.version:
                    raise
        if not ref.version:
            raise GenerationError(f"{label}: {ref.branch or 'HEAD'!r} not found in {strip_credentials(ref.url)}")
        # An abbreviated commit, or a server that refuses fetches by commit: fetch everything, then check out.
        git.fetch(ref.url, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*", **options)
        try:
            git.checkout("--detach", ref.version, **options)
        except command_error:
            raise GenerationError(f"{label}: version {ref.version!r} not found in "
                                  f"{strip_credentials(ref.url)}") from None
