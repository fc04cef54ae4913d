"""The one git writer: cached, file-locked working copies that land edits on a branch with retry.

Each (repository URL, branch) has one shallow working copy under a base directory, reused across calls and
processes: warm use is a ``fetch --depth=1`` + hard reset + clean, never a re-clone. An inter-process
``fcntl.flock`` on ``<workdir>.lock`` keeps two processes (or threads) out of the same working tree.

Every command runs through core.adapters.git_runner (credentials as a header in git's environment config, never
in the URL, ``.git/config`` or the remote; a scrubbed environment; failures mapped onto core.errors), whose
names are re-exported here for the callers that catch them.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import random
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from core.adapters.git_runner import (
    GIT_MISSING,
    GitAuthError,
    GitContention,
    GitError,
    GitMissing,
    GitRefNotFound,
    GitResult,
    GitRunner,
    GitUnavailable,
    bearer_auth_header,
    classify,
    clean_url,
    pat_auth_header,
    scrub,
)

__all__ = [
    "CheckoutHead", "Edited", "GIT_MISSING", "GitAuthError", "GitContention", "GitError", "GitMissing",
    "GitRefNotFound", "GitUnavailable", "GitWorkspace", "LandResult", "bearer_auth_header", "checkout_head",
    "classify", "files_mentioning", "pat_auth_header", "parse_trailer_record",
]

log = logging.getLogger(__name__)

DEFAULT_AUTHOR_NAME = "gitops-autopilot"
DEFAULT_AUTHOR_EMAIL = "gitops-autopilot@users.noreply.local"
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0

# A push refused because the branch moved under us (git's own reasons, a lost ref-lock race on the server,
# Azure Repos TF401028 "already been updated by another client"): fetch, re-apply, retry.
_RETRYABLE_PUSH = re.compile(
    r"fetch first|non-fast-forward|stale info|failed to update ref|cannot lock ref|failed to lock|"
    r"incorrect old value|TF401028",
    re.IGNORECASE,
)
_MISSING_REF = re.compile(
    r"couldn't find remote ref|remote branch .* not found|not our ref|no such remote ref", re.IGNORECASE
)
_MISSING_PATH = re.compile(r"does not exist in|exists on disk, but not in|invalid object name", re.IGNORECASE)
_FULL_SHA = re.compile(r"[0-9a-f]{40}")


DIRTY_MARKER = "autopilot-dirty"     # an edit or reader may have changed files since the last sync
LANDED_MARKER = "autopilot-landed"   # index and files hold the tree of this pushed commit


@dataclass(frozen=True)
class Edited:
    """What an edit may return instead of a bare message: the message and every path it created or changed.

    Only those paths are staged, and the working copy is not swept for other files after the push (that walk is
    what costs on large trees), so the list must be complete; an edit that raises is cleaned up as usual."""
    message: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class LandResult:
    commit: str | None  # sha of the pushed commit; None when the edit produced no change
    branch: str
    attempts: int  # 1 when the first push succeeded
    changed_paths: tuple[str, ...]


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (2, 3, ...): exponential from 50 ms, capped at 1 s,
    half of it jittered so competing writers spread out."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 2))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


_held = threading.local()
_T = TypeVar("_T")


class GitWorkspace:
    """A cached working copy of ``branch`` of the repository at ``url``, shared (under a file lock) by every
    process that uses the same ``base_dir``.

    Do not call the workspace's own methods from inside an ``edit`` callback: the lock is not re-entrant.
    """

    def __init__(
        self,
        url: str,
        branch: str,
        *,
        auth_header: Callable[[], str] | None = None,
        base_dir: Path | None = None,
        author_name: str = DEFAULT_AUTHOR_NAME,
        author_email: str = DEFAULT_AUTHOR_EMAIL,
        network_timeout_s: float = 300.0,
    ) -> None:
        if not branch or branch.startswith(("-", "refs/")):
            raise ValueError(f"branch must be a short branch name, got {branch!r}")
        self.url = clean_url(url)
        self.branch = branch
        self._git = GitRunner(auth_header=auth_header, author=(author_name, author_email),
                              timeout=network_timeout_s)
        base = Path(base_dir) if base_dir is not None else Path(tempfile.gettempdir()) / "gitops-autopilot" / "work"
        self.workdir = base / hashlib.sha1(self.url.encode()).hexdigest() / quote(branch, safe="")
        self._lock_path = self.workdir.with_name(self.workdir.name + ".lock")
        self._tracking = f"refs/remotes/origin/{branch}"

    # ---- public operations -------------------------------------------------------------------------------

    def head(self) -> str:
        """Sha of ``origin/<branch>`` right after a fetch (a clone when the cache is cold)."""
        with self._locked():
            return self._recovering(self._sync)

    @contextmanager
    def read(self) -> Iterator[Path]:
        """A clean checkout of the branch head, locked against other users until the block ends."""
        with self._locked():
            self._recovering(self._sync_for_reader)
            yield self.workdir

    def land(self, edit: Callable[[Path], "str | Edited | None"], *, max_attempts: int = 8) -> LandResult:
        """Apply ``edit`` to the branch head and push the result to the branch.

        ``edit(worktree)`` changes files and returns the commit message, or None when there is nothing to do;
        returning ``Edited(message, paths)`` instead limits staging to those paths (faster on large trees).
        When the push is rejected because the branch moved, the working copy is reset to the new head and
        ``edit`` runs again there (so it re-decides), up to ``max_attempts`` times with jittered backoff.
        """
        return self._land(edit, self.branch, force=False, max_attempts=max_attempts)

    def land_on_branch(
        self, bot_branch: str, edit: Callable[[Path], "str | Edited | None"], *, max_attempts: int = 8
    ) -> LandResult:
        """Build ``edit`` on top of the branch head and force-push it as the only commit of ``bot_branch``
        (superseding whatever was there). When ``bot_branch`` already holds the identical tree on top of the
        same base, nothing is pushed and that commit is returned, so retries are idempotent."""
        if not bot_branch or bot_branch == self.branch or bot_branch.startswith(("-", "refs/")):
            raise ValueError(f"bot branch must be a short branch name other than {self.branch!r}, got {bot_branch!r}")
        return self._land(edit, bot_branch, force=True, max_attempts=max_attempts)

    def file_at(self, ref: str, path: str) -> bytes | None:
        """Content of ``path`` at ``ref`` (a branch name or a commit sha) on the remote; None when absent."""
        def read_blob() -> GitResult:
            self._ensure_clone()
            sha = self._fetch_ref(ref, depth=1)
            blob = self._git.run("cat-file", "blob", f"{sha}:{path.lstrip('/')}", repo=self.workdir, binary=True)
            if not blob.ok and not _MISSING_PATH.search(blob.err):
                raise blob.error(f"git cat-file {ref}:{path} in {self.url}")
            return blob

        with self._locked():
            blob = self._recovering(read_blob)
        return blob.out if blob.ok else None  # read_blob raised for anything but a missing path

    def log_trailers(self, ref: str, max_count: int = 50) -> list[tuple[str, dict[str, str]]]:
        """(sha, trailers) of the last ``max_count`` commits reachable from ``ref``, newest first. Trailers are
        the ``Key: value`` lines of a message's last paragraph, as git parses them; a repeated key keeps its
        last value."""
        def read_log() -> str:
            self._ensure_clone()
            sha = self._fetch_ref(ref, depth=max_count)
            return self._run("log", f"--max-count={max_count}", "--format=%H%x1f%(trailers:only,unfold)%x1e", sha).out

        with self._locked():
            out = self._recovering(read_log)
        return [parse_trailer_record(record) for record in out.split("\x1e") if record.strip()]

    def included_in(self, commits: Sequence[str], revision: str, *, depth: int = 500) -> set[str]:
        """Which of ``commits`` (full shas) are ``revision`` itself or its ancestors (``git merge-base
        --is-ancestor``), with ``depth`` commits of the revision's history fetched (every parent, so a PR merge
        commit's second parent counts). A commit further back than ``depth``, or unknown, counts as not included."""
        with self._locked():
            self._ensure_clone()
            present = self._run("cat-file", "-e", f"{revision}^{{commit}}", check=False).status == 0
            if not commits:   # nothing to decide; the revision is still made local (author_email reads it)
                if not present and _FULL_SHA.fullmatch(revision):
                    try:
                        self._fetch_ref(revision, depth=1)
                    except GitRefNotFound:
                        pass
                return set()
            if not present or (self.workdir / ".git" / "shallow").exists():
                tip = self._fetch_ref(revision, depth=depth)
            else:
                tip = revision
            found = set()
            for commit in dict.fromkeys(commits):
                if not _FULL_SHA.fullmatch(commit):
                    continue
                if commit == tip:
                    found.add(commit)
                    continue
                if self._run("cat-file", "-e", f"{commit}^{{commit}}", check=False).status != 0:
                    continue   # not in the fetched history of the revision: not (recently) included
                status = self._run("merge-base", "--is-ancestor", commit, tip, check=False).status
                if status == 0:
                    found.add(commit)
                elif status != 1:
                    raise GitUnavailable(f"git merge-base --is-ancestor {commit[:12]} {tip[:12]} failed "
                                         f"in {self.url}")
        return found

    def author_email(self, commit: str) -> str:
        """The author e-mail of ``commit`` (fetched when not in the working copy); '' when the remote lacks it."""
        if not _FULL_SHA.fullmatch(commit):
            return ""
        with self._locked():
            self._ensure_clone()
            if self._run("cat-file", "-e", f"{commit}^{{commit}}", check=False).status != 0:
                try:
                    self._fetch_ref(commit, depth=1)
                except GitRefNotFound:
                    return ""
            run = self._run("log", "-1", "--format=%ae", commit, check=False)
        return run.out.strip() if run.status == 0 else ""

    def changed_top_folders(self, commit: str) -> tuple[str, ...] | None:
        """The top-level folders ``commit`` changed against its first parent (a PR merge commit: what the PR
        brought in), fetched when not local; None when that cannot be told (unknown commit, a root commit, or a
        file changed at the top level, which every environment may read)."""
        if not _FULL_SHA.fullmatch(commit):
            return None
        with self._locked():
            self._ensure_clone()
            try:
                self._fetch_ref(commit, depth=2)
            except GitRefNotFound:
                return None
            run = self._run("diff", "--name-only", "--no-renames", "-z", f"{commit}^1", commit, check=False)
        if run.status != 0:
            return None
        paths = [p for p in run.out.split("\0") if p]
        if any("/" not in p for p in paths):
            return None
        return tuple(sorted({p.split("/", 1)[0] for p in paths}))

    # ---- landing -----------------------------------------------------------------------------------------

    def _land(self, edit: Callable[[Path], "str | Edited | None"], target: str, *, force: bool, max_attempts: int) -> LandResult:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        # One bot branch per target is fetched with the base in the same round trip; a glob refspec (not an
        # exact one) so a bot branch that does not exist yet is no error. --prune drops a deleted one.
        extra = (f"+refs/heads/{target}*:refs/remotes/origin/{target}*",) if force else ()
        with self._locked():
            return self._recovering(lambda: self._attempts(edit, target, extra, force=force, max_attempts=max_attempts))

    def _attempts(self, edit: Callable[[Path], "str | Edited | None"], target: str, extra: tuple[str, ...], *,
                  force: bool, max_attempts: int) -> LandResult:
        for attempt in range(1, max_attempts + 1):
            if attempt > 1:
                time.sleep(backoff_delay(attempt))
            base = self._sync(*extra)
            staged = self._stage(edit)
            if staged is None:
                log.info("edit on %s@%s changed nothing; no commit", self.url, target)
                return LandResult(None, target, attempt, ())
            message, paths = staged
            tree = self._run("write-tree").out.strip()
            if force:
                existing = self._same_commit_on(target, tree, base)
                if existing:
                    log.info("%s@%s already holds this change as %s", self.url, target, existing)
                    return LandResult(existing, target, attempt, paths)
            commit = self._run("commit-tree", tree, "-p", base, "-m", _normalized(message)).out.strip()
            if self._push(commit, target, force=force):
                (self.workdir / ".git" / LANDED_MARKER).write_text(commit)
                (self.workdir / ".git" / DIRTY_MARKER).unlink(missing_ok=True)
                log.info("landed %s on %s@%s (attempt %d)", commit, self.url, target, attempt)
                return LandResult(commit, target, attempt, paths)
            log.info("push to %s@%s rejected, remote moved (attempt %d/%d)",
                     self.url, target, attempt, max_attempts)
        raise GitContention(
            scrub(f"push to {self.url} branch {target} rejected {max_attempts} times: other writers kept moving it")
        )

    def _stage(self, edit: Callable[[Path], "str | Edited | None"]) -> tuple[str, tuple[str, ...]] | None:
        (self.workdir / ".git" / DIRTY_MARKER).touch()
        result = edit(self.workdir)
        if result is None:
            return None
        message, scope = (result.message, ["--", *result.paths]) if isinstance(result, Edited) else (result, [])
        if not message.strip():
            raise ValueError("edit returned an empty commit message (return None when there is nothing to do)")
        if isinstance(result, Edited) and not result.paths:
            return None
        # A pathspec keeps git from examining every file of a large tree when the edit says what it touched.
        self._run("add", "--all", *scope)
        names = self._run("diff", "--cached", "--name-only", "--no-renames", "-z", *scope).out
        paths = tuple(name for name in names.split("\0") if name)
        return (message, paths) if paths else None

    def _same_commit_on(self, target: str, tree: str, base: str) -> str | None:
        existing = self._run("rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{target}", check=False)
        if existing.status != 0:
            return None
        sha = existing.out.strip()
        # The raw object keeps its parent line even where the shallow clone grafts history away.
        header = self._run("cat-file", "commit", sha).out.partition("\n\n")[0].splitlines()
        parents = [line.split()[1] for line in header if line.startswith("parent ")]
        return sha if f"tree {tree}" in header and parents == [base] else None

    def _push(self, commit: str, target: str, *, force: bool) -> bool:
        """True when pushed; False when rejected because the branch moved; raises on any other failure."""
        refspec = f"{'+' if force else ''}{commit}:refs/heads/{target}"
        run = self._network("push", "--porcelain", "origin", refspec, check=False)
        if run.status == 0:
            return True
        rejected = [line for line in run.out.splitlines() if line.startswith("!")]
        if not rejected:
            raise run.error(f"git push to {self.url} branch {target}")
        if all(_RETRYABLE_PUSH.search(line) for line in rejected):
            return False
        reason = rejected[0].split("\t")[-1]
        raise classify(f"git push to {self.url} branch {target}", f"error: rejected {reason}\n{run.err}", run.secrets)

    # ---- working copy ------------------------------------------------------------------------------------

    def _recovering(self, operation: Callable[[], _T]) -> _T:
        """Run ``operation`` (under the lock); when it fails and the cached working copy proves broken (a
        deleted ``.git/HEAD``, a corrupt index, lost objects, the folder replaced by a file), discard the copy
        and run the operation once more on a fresh clone. Network, auth and missing-ref failures are never
        blamed on the cache."""
        try:
            return operation()
        except (GitAuthError, GitUnavailable, GitRefNotFound):
            raise
        except (GitError, OSError) as exc:
            if not self._broken():
                raise
            log.warning("working copy %s is broken (%s); discarding it and cloning afresh",
                        self.workdir, scrub(str(exc))[:300])
            self._discard()
        return operation()

    def _broken(self) -> bool:
        """True when a working copy exists here but git cannot use it."""
        if not os.path.lexists(self.workdir):
            return False
        git_dir = self.workdir / ".git"
        if self.workdir.is_symlink() or not self.workdir.is_dir() or git_dir.is_symlink() or not git_dir.is_dir():
            return True
        if self._run("rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False).status != 0:
            return True
        # Reads the whole index (its checksum is verified) and the HEAD tree: 0 same, 1 differs, else broken.
        return self._run("diff-index", "--cached", "--quiet", "HEAD", "--", check=False).status not in (0, 1)

    def _discard(self) -> None:
        if self.workdir.is_symlink() or not self.workdir.is_dir():
            self.workdir.unlink(missing_ok=True)
        else:
            shutil.rmtree(self.workdir)

    def _sync_for_reader(self) -> str:
        head = self._sync()
        (self.workdir / ".git" / DIRTY_MARKER).touch()  # the reader may leave files behind
        return head

    def _sync(self, *extra_refspecs: str) -> str:
        """Make the working copy a clean checkout of the freshly fetched branch head; return its sha."""
        if not self._ensure_clone() or extra_refspecs:
            try:
                self._refresh(*extra_refspecs)
            except (GitAuthError, GitUnavailable, GitRefNotFound):
                raise
            except GitError as exc:
                log.warning("working copy %s is unusable (%s); cloning it afresh", self.workdir, exc)
                self._discard()
                self._ensure_clone()
                self._refresh(*extra_refspecs)
        return self._run("rev-parse", "HEAD").out.strip()

    def _refresh(self, *extra_refspecs: str) -> None:
        self._fetch(*extra_refspecs)
        git_dir = self.workdir / ".git"
        marker, landed = git_dir / DIRTY_MARKER, git_dir / LANDED_MARKER
        head = self._run("rev-parse", self._tracking).out.strip()
        if not marker.exists() and landed.exists() and landed.read_text().strip() == head:
            # Our own pushed commit is still the head: index and files already hold its tree, so only HEAD
            # moves (a hard reset would re-examine every file of a large tree).
            self._run("reset", "--quiet", "--soft", head)
            return
        landed.unlink(missing_ok=True)
        self._run("reset", "--quiet", "--hard", head)
        # Untracked files can only come from an edit that did not end in a pushed commit (everything a pushed
        # edit wrote was staged, and reset removes it); skipping the tree walk matters on large HLDs.
        if marker.exists():
            self._run("clean", "-q", "-fdx")
            marker.unlink()

    def _ensure_clone(self) -> bool:
        """Clone the branch shallowly unless a working copy is already there; True when it just cloned."""
        if (self.workdir / ".git").is_dir() and not self.workdir.is_symlink():
            self._clear_stale_git_locks()
            return False
        if os.path.lexists(self.workdir):
            self._discard()
        # Clone beside the final place and rename, so a working copy that exists is always a complete one.
        partial = self.workdir.with_name(self.workdir.name + ".cloning")
        shutil.rmtree(partial, ignore_errors=True)
        run = self._network(
            "clone", "--quiet", "--depth=1", "--no-tags", "--branch", self.branch, "--", self.url, str(partial),
            cwd=self.workdir.parent, check=False,
        )
        if run.status != 0:
            shutil.rmtree(partial, ignore_errors=True)
            if _MISSING_REF.search(run.err):
                raise self._missing_branch()
            raise run.error(f"git clone {self.url} branch {self.branch}")
        partial.rename(self.workdir)
        log.info("cloned %s@%s into %s", self.url, self.branch, self.workdir)
        return True

    def _clear_stale_git_locks(self) -> None:
        # Only called under our flock, when no other git process can own this working copy: any *.lock left
        # is from a process that was killed mid-command (e.g. a host timeout) and would block git forever.
        git_dir = self.workdir / ".git"
        for stale in [*git_dir.glob("*.lock"), *(git_dir / "refs").rglob("*.lock")]:
            log.warning("removing stale git lock %s", stale)
            stale.unlink(missing_ok=True)

    def _fetch(self, *extra_refspecs: str) -> None:
        run = self._network(
            "fetch", "--quiet", "--depth=1", "--no-tags", "--prune", "origin",
            f"+refs/heads/{self.branch}:{self._tracking}", *extra_refspecs, check=False,
        )
        if run.status == 0:
            return
        if _MISSING_REF.search(run.err):
            raise self._missing_branch()
        raise run.error(f"git fetch {self.url} branch {self.branch}")

    def _fetch_ref(self, ref: str, *, depth: int) -> str:
        """Make ``ref`` (branch or sha) and ``depth`` commits of its history local; return its sha."""
        if not ref or ref.startswith("-"):
            raise ValueError(f"ref must be a branch name or commit sha, got {ref!r}")
        if depth == 1 and _FULL_SHA.fullmatch(ref):
            if self._run("cat-file", "-e", f"{ref}^{{commit}}", check=False).status == 0:
                return ref
        run = self._network("fetch", "--quiet", f"--depth={depth}", "--no-tags", "origin", ref, check=False)
        if run.status != 0:
            if _MISSING_REF.search(run.err):
                raise GitRefNotFound(scrub(f"ref {ref!r} not found in {self.url}"))
            raise run.error(f"git fetch {self.url} ref {ref}")
        return self._run("rev-parse", "FETCH_HEAD").out.strip()

    def _missing_branch(self) -> GitRefNotFound:
        heads = self._network("ls-remote", "--heads", "--", self.url, cwd=self.workdir.parent).out
        branches = [line.split("refs/heads/", 1)[1] for line in heads.splitlines() if "refs/heads/" in line]
        found = f"it has only {', '.join(sorted(branches)[:10])}" if branches else "the remote repository is empty"
        return GitRefNotFound(scrub(f"branch {self.branch!r} not found in {self.url}: {found}"))

    # ---- running git -------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        held: set[Path] = _held.__dict__.setdefault("paths", set())
        if self._lock_path in held:
            raise GitError(f"{self.workdir} is already locked by this thread (workspace used from inside an edit?)")
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file is closed
            held.add(self._lock_path)
            try:
                yield
            finally:
                held.discard(self._lock_path)

    def _network(self, *args: str, cwd: Path | None = None, check: bool = True) -> GitResult:
        """Run a command that talks to the remote (in ``cwd``, else the working copy)."""
        run = self._git.run(*args, cwd=cwd, repo=None if cwd else self.workdir, network=True)
        return run.checked(f"git {args[0]} {self.url}") if check else run

    def _run(self, *args: str, check: bool = True) -> GitResult:
        """Run a local command in the working copy."""
        run = self._git.run(*args, repo=self.workdir)
        return run.checked(f"git {args[0]} in the working copy of {self.url}") if check else run


@dataclass(frozen=True)
class CheckoutHead:
    sha: str
    subject: str
    message: str


def checkout_head(worktree: Path) -> CheckoutHead:
    """The commit a checkout handed out by ``read()`` (or seen inside an edit) stands on."""
    out = GitRunner().run("log", "-1", "--format=%H%x1f%s%x1f%B", cwd=worktree).checked(f"git log in {worktree}").out
    sha, subject, message = out.split("\x1f", 2)
    return CheckoutHead(sha.strip(), subject, message.rstrip("\n"))


_BLOB_TEXT_LIMIT = 1 << 20  # as core.rules.repo_yaml.MAX_REPO_YAML_BYTES: discovery never reads a larger file
_BLOB_CACHE_BYTES = 256 << 20
_blob_texts: dict[bytes, bytes] = {}  # blob sha -> searchable text (b"" for binary or oversized blobs)
# One `git ls-files -s -z` record of a regular file, anchored at a record start (a path cannot hold a NUL).
_LS_FILES_ENTRY = re.compile(rb"(?:^|(?<=\0))(?:100644|100755) ([0-9a-f]+) [0-3]\t([^\0]*)\0")
_blob_cache_size = 0


def files_mentioning(worktree: Path, needles: Sequence[str]) -> list[str]:
    """Tracked regular files of a checkout whose committed text contains one of ``needles`` (fixed strings), in
    index order. Blobs are read once per process by object id (`git ls-files -s` reads only the index; `git
    cat-file --batch` reads the blobs not seen before), so a bump in an HLD of thousands of files reads the few
    files its fetch changed instead of every file (what `git grep` did). Binary blobs (a NUL in the first 8000
    bytes, git's own test) and blobs over 1 MiB are not searched: discovery never reads them."""
    if not needles:
        return []
    git = GitRunner()
    listing = git.run("ls-files", "-s", "-z", cwd=worktree, binary=True).checked(f"git ls-files in {worktree}")
    entries = _LS_FILES_ENTRY.findall(listing.out)  # (sha, path) of regular files: no symlinks, no submodules
    missing = sorted({sha for sha, _ in entries if sha not in _blob_texts})
    if missing:
        _read_blobs(git, worktree, [sha.decode("ascii") for sha in missing])
    texts = [(_blob_texts.get(sha, b""), path) for sha, path in entries]
    found: set[bytes] = set()
    for needle in needles:
        wanted = needle.encode("utf-8", "surrogateescape")
        found.update(path for text, path in texts if wanted in text)
    return [path.decode("utf-8", "surrogateescape") for _, path in entries if path in found]


def _read_blobs(git: GitRunner, worktree: Path, shas: list[str]) -> None:
    global _blob_cache_size
    run = git.run("cat-file", "--batch", cwd=worktree, binary=True,
                  input="".join(f"{sha}\n" for sha in shas).encode("ascii")).checked(f"git cat-file in {worktree}")
    out, pos = run.out, 0
    for sha in shas:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) != 3 or header[1] != b"blob":  # "<sha> missing" or not a blob: nothing to search
            continue
        size = int(header[2])
        data = out[pos:pos + size]
        pos += size + 1
        text = b"" if size > _BLOB_TEXT_LIMIT or b"\0" in data[:8000] else data
        if _blob_cache_size + len(text) > _BLOB_CACHE_BYTES:
            _blob_texts.clear()
            _blob_cache_size = 0
        _blob_texts[sha.encode("ascii")] = text
        _blob_cache_size += len(text)


def parse_trailer_record(record: str) -> tuple[str, dict[str, str]]:
    """One ``%H%x1f%(trailers:only,unfold)`` log record → (sha, {key: value})."""
    sha, _, block = record.strip("\n").partition("\x1f")
    trailers: dict[str, str] = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            trailers[key.strip()] = value.strip()
    return sha.strip(), trailers


def _normalized(message: str) -> str:
    """The message as ``git commit --cleanup=whitespace`` would store it (``#`` lines are kept)."""
    return "\n".join(line.rstrip() for line in message.strip().splitlines())
