"""The fleet as its git repository defines it (FLEET_REPO_URL / FLEET_BRANCH, read with the deployment's own
credentials through the one git workspace), loaded on first use, reloaded when asked (the fleet repo's push hook)
and kept in step with the repository by a head check.

The LAST GOOD fleet stays in use when a new commit's fleet.yaml is refused; the refusal is kept (`status()`, for
health) and returned by `reload()` (for the hook's answer). A process that starts while the head is malformed
walks back up to `HISTORY_DEPTH` commits for the newest good one, so every instance serves the same last good
fleet whether it was running when the bad commit landed or started after.

Scaled-out instances converge through the repository itself: each checks the branch head at most every
`check_seconds` (default 60), a `git fetch --depth=1` that transfers nothing when the head has not moved, and
loads only a new head. The push hook reaches one instance, which reloads at once; the others follow within a
minute. A broadcast needs no extra machinery this way (a storage queue message reaches one instance only, and a
shared "current commit" row would still have to be polled, and would be a second truth beside the repository).
The check runs on a background thread: after the first load, `current()` never waits for git.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace as _replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from core.adapters.git_workspace import checkout_head, clean_url
from core.errors import AutopilotError, Permanent, Retryable
from core.model.fleet import Fleet
from core.rules.fleet_file import FLEET_FILE, MAX_FLEET_BYTES, FleetFileError, parse_fleet
from core.rules.repo_yaml import RepoYamlError, read_repo_text

log = logging.getLogger("autopilot.fleet")

FLEET_CHECK_SECONDS = 60.0
FIRST_LOAD_RETRY_SECONDS = 5.0   # until a first fleet is loaded nothing can be served: try again sooner
HISTORY_DEPTH = 20


class FleetUnavailable(Retryable):
    """No fleet could be loaded yet (the fleet repository cannot be read, or no recent commit holds a valid
    fleet.yaml): the work waits and is retried."""


class FleetWorkspace(Protocol):
    def head(self) -> str: ...
    def read(self) -> AbstractContextManager[Path]: ...
    def log_trailers(self, ref: str, max_count: int = 50) -> list[tuple[str, dict[str, str]]]: ...
    def file_at(self, ref: str, path: str) -> bytes | None: ...


@dataclass(frozen=True)
class FleetStatus:
    url: str
    branch: str
    commit: str = ""          # the commit the fleet in use was loaded from ("" before the first load)
    loaded_at: str = ""       # when it was loaded (UTC, ISO 8601)
    tenants: tuple[str, ...] = ()
    error: str = ""           # why the head is not in use ("" when it is)
    error_commit: str = ""    # the head that was refused ("" when the repository could not be read)
    checked_at: str = ""


@dataclass(frozen=True)
class ReloadResult:
    status: FleetStatus
    retryable: bool = False   # the repository could not be read: asking again later may help

    @property
    def loaded(self) -> bool:
        return not self.status.error

    def body(self) -> dict[str, Any]:
        """The answer to the fleet repo's push hook: what was loaded, or why not and what stays in use."""
        s = self.status
        if not s.error:
            return {"fleet": {"loaded": s.commit, "tenants": list(s.tenants)}}
        body: dict[str, Any] = {"refused": s.error_commit or None, "error": s.error}
        body["inUse"] = s.commit or None
        if s.commit:
            body["tenants"] = list(s.tenants)
        return {"fleet": body}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _in_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="fleet-check", daemon=True).start()


@dataclass
class FleetSource:
    url: str
    branch: str
    workspace: FleetWorkspace
    check_seconds: float = FLEET_CHECK_SECONDS
    clock: Callable[[], float] = time.monotonic
    background: Callable[[Callable[[], None]], None] = _in_thread   # how a due check is run without waiting
    _fleet: Fleet | None = field(default=None, init=False)
    _status: FleetStatus | None = field(default=None, init=False)
    _next_check: float = field(default=float("-inf"), init=False)
    _checking: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)       # held through a check
    _flag_lock: threading.Lock = field(default_factory=threading.Lock, init=False)  # only around `_checking`

    def __post_init__(self) -> None:
        self.url = clean_url(self.url)
        self._status = FleetStatus(self.url, self.branch)

    # ---- what callers use ----------------------------------------------------------------------------------

    def current(self) -> Fleet:
        """The fleet in use. The first call loads it (and raises FleetUnavailable when it cannot); later calls
        return at once and, when a head check is due, start one in the background."""
        fleet = self._fleet
        if fleet is None:
            with self._lock:
                if self._fleet is None and self.clock() >= self._next_check:
                    self._check(force=False)
                if self._fleet is None:
                    raise FleetUnavailable(f"no fleet loaded from {self.url}@{self.branch}: "
                                           f"{self._status.error or 'not loaded yet'}")
                return self._fleet
        if self.clock() >= self._next_check:
            with self._flag_lock:
                start, self._checking = not self._checking, True
            if start:
                self.background(self._check_in_background)
        return fleet

    def reload(self) -> ReloadResult:
        """Check the head now (the push hook, an operator): load it when it moved; say what is in use and why."""
        with self._lock:
            retryable = self._check(force=True)
            return ReloadResult(self._status, retryable)

    def status(self) -> FleetStatus:
        return self._status

    # ---- checking and loading ------------------------------------------------------------------------------

    def _check_in_background(self) -> None:
        try:
            with self._lock:
                if self.clock() >= self._next_check:
                    self._check(force=False)
        finally:
            with self._flag_lock:
                self._checking = False

    def _check(self, *, force: bool) -> bool:
        """Look at the head and load it when it is new; True when the repository could not be read (retryable).
        Called with the lock held."""
        retry = FIRST_LOAD_RETRY_SECONDS if self._fleet is None else self.check_seconds
        self._next_check = self.clock() + min(retry, self.check_seconds)
        status = self._status
        try:
            head = self.workspace.head()
            if head == status.commit:
                self._status = _replace(status, error="", error_commit="", checked_at=_now())
                return False
            if head == status.error_commit and not force:
                self._status = _replace(status, checked_at=_now())
                return False
            self._load()
            return False
        except AutopilotError as exc:
            self._status = _replace(self._status, error=f"cannot read the fleet repository: {exc}", error_commit="",
                                    checked_at=_now())
            log.warning("fleet: %s", self._status.error)
            return not isinstance(exc, Permanent)
        except Exception as exc:  # a bug must not stop the checks; the last good fleet stays in use
            log.exception("fleet: loading %s failed", self.url)
            self._status = _replace(self._status, error=f"loading failed: {type(exc).__name__}", error_commit="",
                                    checked_at=_now())
            return True

    def _load(self) -> None:
        with self.workspace.read() as root:
            commit = checkout_head(root).sha
            try:
                fleet, error = self._parse(_read_fleet(root), commit), ""
            except FleetFileError as exc:
                fleet, error = None, str(exc)
        if fleet is None:  # outside read(): the history walk uses the workspace, whose lock is not re-entrant
            self._refused(commit, error)
            return
        self._use(fleet, commit)
        self._status = _replace(self._status, error="", error_commit="")
        log.info("fleet: loaded %s@%s (%d tenants)", self.url, commit[:12], len(fleet.tenants))

    def _parse(self, text: bytes, commit: str) -> Fleet:
        return parse_fleet(text, f"{self.url}@{commit}", fleet_repo_url=self.url)

    def _refused(self, commit: str, error: str) -> None:
        log.warning("fleet: %s@%s refused: %s", self.url, commit[:12], error)
        if self._fleet is None:
            try:
                self._last_good_in_history(commit)
            except AutopilotError as exc:   # the refusal is still the news; the history walk is a bonus
                log.warning("fleet: could not look for an earlier good commit: %s", exc)
        self._status = _replace(self._status, error=error, error_commit=commit, checked_at=_now())

    def _last_good_in_history(self, refused: str) -> None:
        """A fresh process and a malformed head: the newest good fleet of the last HISTORY_DEPTH commits."""
        for commit, _ in self.workspace.log_trailers(self.branch, HISTORY_DEPTH):
            if commit == refused:
                continue
            text = self.workspace.file_at(commit, FLEET_FILE)
            if text is None:
                continue
            try:
                fleet = self._parse(text, commit)
            except FleetFileError:
                continue
            self._use(fleet, commit)
            log.info("fleet: using %s@%s, the newest good commit before %s", self.url, commit[:12], refused[:12])
            return

    def _use(self, fleet: Fleet, commit: str) -> None:
        self._fleet = fleet
        self._status = _replace(self._status, commit=commit, loaded_at=_now(), checked_at=_now(),
                                tenants=fleet.names)


def _read_fleet(root: Path) -> bytes:
    try:
        text = read_repo_text(root, FLEET_FILE, limit=MAX_FLEET_BYTES)
    except RepoYamlError as exc:
        raise FleetFileError(exc.line, exc.problem) from None
    if text is None:
        raise FleetFileError(None, "not found at the root of the fleet repository")
    return text.encode("utf-8")

