"""Git-sourced components: shallow fetches into a cache shared by every generation.

A checkout is cached under `<cache_dir>/git/<url digest>-<commit>`, so a cached directory never changes once
written and concurrent generations can read it without locks. A pinned full commit needs no network at all once
cached; a branch or tag is resolved with `git ls-remote` on every generation, so a moved branch is picked up
(Fabrikate re-cloned on every run). Git runs through core.adapters.git_runner: it never prompts, a source URL's
user-info travels as a header (never argv), and an unreachable source is `GitUnavailable` (retried), a refused one
`GitAuthError`; anything else it reports is a `GenerationError` naming the component.

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
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.adapters.git_runner import GitAuthError, GitError, GitMissing, GitRunner, GitUnavailable, credentials_from_url
from core.rules.source_hosts import source_allowed

from .errors import GenerationError

GIT_TIMEOUT_SECONDS = 300
_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
_SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~/-]")
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*@")


def strip_credentials(url: str) -> str:
    """`https://user:token@host/x` → `https://host/x`, also for every URL inside a line of text."""
    return _USERINFO.sub(r"\1", url)


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


def _intact(git: GitRunner, checkout: Path, commit: str) -> bool:
    """Whether a cached checkout still holds exactly `commit` (HEAD, index, objects and files all usable)."""
    if checkout.is_symlink() or not checkout.is_dir():
        return False
    run = git.run("diff-index", "--quiet", commit, "--", repo=checkout, timeout=GIT_TIMEOUT_SECONDS)
    return run.ok and (checkout / ".git" / "HEAD").is_file()


def _discard(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


class GitCheckouts:
    """Checkouts of git sources under a cache directory, memoised for the lifetime of one object."""

    def __init__(self, cache_dir: Path, allowed: Iterable[str] = ()) -> None:
        self._root = cache_dir / "git"
        self._allowed = tuple(allowed)
        self._memo: dict[GitRef, Path] = {}

    def checkout(self, ref: GitRef, label: str) -> Path:
        if ref not in self._memo:
            check_url(ref.url, label, self._allowed)
            url, auth_header = credentials_from_url(ref.url)
            source = _Source(GitRunner(auth_header=auth_header, timeout=GIT_TIMEOUT_SECONDS), url, ref, label)
            try:
                self._memo[ref] = self._checkout(source)
            except GitMissing:
                raise
            except (GitUnavailable, GitAuthError) as error:  # retried, or refused until the credentials change
                raise type(error)(f"{label}: cannot fetch {ref.describe()}: {error}") from None
            except GitError as error:
                raise GenerationError(f"{label}: cannot fetch {ref.describe()}: {error}") from None
        return self._memo[ref]

    def _target(self, ref: GitRef, commit: str) -> Path:
        digest = hashlib.sha256(strip_credentials(ref.url).encode()).hexdigest()[:16]
        return self._root / f"{digest}-{commit}"

    def _checkout(self, source: _Source) -> Path:
        ref = source.ref
        commit = ref.version if is_full_sha(ref.version) else source.remote_commit()
        if commit:
            cached = self._target(ref, commit)
            if _intact(source.git, cached, commit):
                return cached
            _discard(cached)
        self._root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=self._root))
        try:
            source.git.run("init", "--quiet", cwd=work).checked("git init")
            source.fetch(work, commit)
            actual = source.git.run("rev-parse", "HEAD", repo=work).checked("git rev-parse").out.strip()
            target = self._target(ref, actual)
            if not _intact(source.git, target, actual):
                _discard(target)
            try:
                os.rename(work, target)
            except OSError:  # another generation cached the same commit first
                if not target.is_dir():
                    raise
            return target
        finally:
            shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class _Source:
    """One git source being fetched: its runner (with the URL's credentials), the URL without them, the ref."""
    git: GitRunner
    url: str
    ref: GitRef
    label: str

    def remote_commit(self) -> str | None:
        name = self.ref.version or self.ref.branch or "HEAD"
        listing = self.git.run("ls-remote", "--", self.url, name, f"{name}^{{}}", network=True)
        commits = {}
        for line in listing.checked("git ls-remote").out.splitlines():
            commit, _, refname = line.partition("\t")
            commits[refname] = commit
        tags = (f"refs/tags/{name}^{{}}", f"refs/tags/{name}")
        heads = (f"refs/heads/{name}",)
        order = (*tags, *heads) if self.ref.version else (*heads, *tags)
        return next((commits[refname] for refname in (*order, name) if refname in commits), None)

    def fetch(self, work: Path, commit: str | None) -> None:
        ref, git = self.ref, self.git
        if commit:
            fetched = git.run("fetch", "--depth", "1", "--no-tags", "--", self.url, commit, repo=work, network=True)
            if fetched.ok:
                git.run("checkout", "--quiet", "--detach", "FETCH_HEAD", repo=work).checked("git checkout")
                return
            if not ref.version:
                raise fetched.error("git fetch")
        if not ref.version:
            raise GenerationError(f"{self.label}: {ref.branch or 'HEAD'!r} not found in {strip_credentials(ref.url)}")
        # An abbreviated commit, or a server that refuses fetches by commit: fetch everything, then check out.
        git.run("fetch", "--", self.url, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*",
                repo=work, network=True).checked("git fetch")
        if not git.run("checkout", "--quiet", "--detach", ref.version, repo=work).ok:
            raise GenerationError(f"{self.label}: version {ref.version!r} not found in "
                                  f"{strip_credentials(ref.url)}")
