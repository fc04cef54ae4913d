"""Git-sourced components: shallow fetches into a cache shared by every generation.

A checkout is cached under `<cache_dir>/git/<url digest>-<commit>`, so a cached directory never changes once
written and concurrent generations can read it without locks. A pinned full commit needs no network at all once
cached; a branch or tag is resolved with `git ls-remote` on every generation, so a moved branch is picked up
(Fabrikate re-cloned on every run). Git never prompts (GIT_TERMINAL_PROMPT=0, ssh BatchMode).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.git_workspace import gitpython

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


def check_url(url: str, label: str) -> None:
    """Only ordinary transports: no `ext::` commands, no option-looking or local-path sources."""
    if not (url.startswith(_SCHEMES) or _SCP_LIKE.match(url)) or any(char.isspace() for char in url):
        raise GenerationError(f"{label}: unsupported git source {strip_credentials(url)!r}")
    if url.startswith(_SCHEMES) and not urlsplit(url).netloc and not url.startswith("file://"):
        raise GenerationError(f"{label}: git source {strip_credentials(url)!r} has no host")


def _last_line(error) -> str:  # a git.GitCommandError
    lines = [line.strip() for line in str(error.stderr or "").splitlines() if line.strip()]
    return redact(lines[-1]) if lines else f"git exited with status {error.status}"


class GitCheckouts:
    """Checkouts of git sources under a cache directory, memoised for the lifetime of one object."""

    def __init__(self, cache_dir: Path) -> None:
        self._root = cache_dir / "git"
        self._memo: dict[GitRef, Path] = {}

    def checkout(self, ref: GitRef, label: str) -> Path:
        if ref not in self._memo:
            check_url(ref.url, label)
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
        if commit and self._target(ref, commit).is_dir():
            return self._target(ref, commit)
        self._root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=self._root))
        try:
            repo = gitpython().Repo.init(work)
            self._fetch(repo, ref, commit, label)
            actual = repo.git.rev_parse("HEAD")
            target = self._target(ref, actual)
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
