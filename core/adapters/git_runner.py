"""The one way the app runs git: the workspace, the health probe and the generator's git sources all go through
`GitRunner`.

- Credentials travel only as an ``Authorization`` header given to each network command through git's environment
  form of ``-c`` (``GIT_CONFIG_COUNT`` / ``GIT_CONFIG_KEY_n`` / ``GIT_CONFIG_VALUE_n``): never in argv (``ps``), a
  URL, ``.git/config`` or a log line. A URL's own user-info is taken off (`credentials_from_url`).
- The environment git runs in is built, not inherited: the process variables a child needs
  (`core.settings.child_environment`: no GIT_* variable, no app setting or secret), no prompt of any kind, no
  system or global git config, English messages (the failure patterns below read them), ssh in batch mode.
- Every failure is one scrubbed line (no credential, no URL user-info) mapped onto core.errors: network trouble
  and timeouts → `GitUnavailable` (Retryable), contention → `GitContention` (Retryable), refused credentials →
  `GitAuthError` (Permanent), no git executable → `GitMissing` (Permanent), a missing ref → `GitRefNotFound`.

GitPython starts each git process (imported on first use, never at load time): the app loads on a host without
git and says so through /api/health.
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from core.errors import AutopilotError, Permanent, Retryable
from core.settings import child_environment, dropped_for_child

__all__ = [
    "GIT_MISSING", "GitAuthError", "GitContention", "GitError", "GitMissing", "GitRefNotFound", "GitResult",
    "GitRunner", "GitUnavailable", "basic_auth_header", "bearer_auth_header", "classify", "clean_url", "credentials_from_url",
    "git_executable", "pat_auth_header", "scrub", "secret_forms",
]

SSH_COMMAND = "ssh -o BatchMode=yes"

# Config every command runs with: no credential helper may answer (or store) for us, no background gc may
# outlive a lock, no signing prompt, and a stalled transfer aborts instead of holding a lock forever.
BASE_CONFIG = (
    ("credential.helper", ""),
    ("gc.autoDetach", "false"),
    ("commit.gpgSign", "false"),
    ("http.lowSpeedLimit", "1000"),
    ("http.lowSpeedTime", "60"),
)

_AUTH_FAILURE = re.compile(
    r"authentication failed|could not read (username|password)|terminal prompts disabled|"
    r"returned error: 40[13]|TF400813|access denied",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(
    r"does not appear to be a git repository|repository .* not found|returned error: 404", re.IGNORECASE
)
_UNAVAILABLE = re.compile(
    r"could not resolve|failed to connect|couldn't connect|connection (refused|reset)|timed out|"
    r"returned error: 5\d\d|rpc failed|early eof|remote end hung up|unable to access|ssl_connect|ssl_read|"
    r"gnutls_handshake|did not complete in|operation too slow",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class GitError(AutopilotError):
    """A git operation failed; the message is one line and carries no credential."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class GitAuthError(GitError, Permanent):
    """The remote refused our credentials: retrying will not help, fail the work item."""


class GitUnavailable(GitError, Retryable):
    """The remote could not be reached (or kept moving): raise so the queue retries later."""


class GitContention(GitUnavailable):
    """Every push attempt was rejected because other writers kept moving the branch."""


class GitRefNotFound(GitError, Permanent):
    """The branch or commit does not exist on the remote (including an empty remote)."""


class GitMissing(GitError, Permanent):
    """This host has no git executable: nothing that clones or pushes can work until the image provides one."""


GIT_MISSING = ("git executable not found on PATH: this host cannot clone or push; deploy the container image "
               "(Dockerfile, README 'Deploying to Azure'), which installs git")


def git_executable() -> str:
    """Path of the git executable every command runs; `GitMissing` when the host has none."""
    found = shutil.which("git")
    if found is None:
        raise GitMissing(GIT_MISSING)
    return found


def basic_auth_header(user: str, password: str) -> Callable[[], str]:
    """Authorization header value ``Basic base64(user:password)``."""
    value = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return lambda: value


def pat_auth_header(pat: str) -> Callable[[], str]:
    """Authorization header value for an Azure DevOps personal access token (``Basic base64(":" + PAT)``)."""
    return basic_auth_header("", pat)


def bearer_auth_header(get_token: Callable[[], str]) -> Callable[[], str]:
    """Authorization header value from a token source asked anew for each network command (refreshable)."""
    return lambda: "Bearer " + get_token()


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` on one line with every secret and any URL user-info (``user:pass@``) replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return " ".join(_USERINFO.sub("***@", text).split())


def secret_forms(header_value: str) -> tuple[str, ...]:
    """Every spelling of a credential that could leak from an ``Authorization`` header value."""
    forms = [header_value]
    scheme, _, credential = header_value.partition(" ")
    if credential:
        forms.append(credential)
        if scheme.lower() == "basic":
            try:
                user_pass = base64.b64decode(credential, validate=True).decode()
            except ValueError:
                user_pass = ""
            forms += [user_pass, user_pass.partition(":")[2]]
    return tuple(form for form in forms if len(form) >= 4)


def clean_url(url: str) -> str:
    """The URL git is given for one of our repositories: never a password in it; for http(s) no user-info at all
    (Azure Repos remote URLs carry ``org@``, and a PAT given as the user name would otherwise land in
    ``.git/config``)."""
    parts = urlsplit(url)
    if parts.password is not None:
        raise GitError(f"repository URL {scrub(url)} embeds a password; pass credentials via auth_header")
    return _without_userinfo(url)


def credentials_from_url(url: str) -> tuple[str, Callable[[], str] | None]:
    """(the URL without user-info, an Authorization header carrying that user-info) for an http(s) URL written
    with ``user:password@`` (a git source named in repository content): the password reaches the server as git
    would send it, and never argv or an error. Other URLs come back as they are, without a header."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.password is not None:
        return _without_userinfo(url), basic_auth_header(unquote(parts.username or ""), unquote(parts.password))
    return _without_userinfo(url), None


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.username is not None:
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return url


def _detail(stderr: str) -> str:
    """The informative part of git's stderr: its error lines, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("fatal:", "error:", "remote: error", "timeout:"))]
    return "; ".join(errors or lines[-1:]) or "no error output"


def classify(operation: str, stderr: str, secrets: tuple[str, ...] = ()) -> GitError:
    """The exception for a failed git command, by what its stderr says."""
    message = scrub(f"{operation} failed: {_detail(stderr)}", secrets)[:600]
    if _AUTH_FAILURE.search(stderr):
        return GitAuthError(message)
    if _NOT_FOUND.search(stderr):
        return GitError(message)
    if _UNAVAILABLE.search(stderr):
        return GitUnavailable(message)
    return GitError(message)


@dataclass(frozen=True)
class GitResult:
    """What one git command did. ``err`` is raw stderr (it may quote what the remote said); never log or raise it
    unscrubbed: `error` and `detail` give the safe forms."""
    status: int
    out: str | bytes
    err: str
    secrets: tuple[str, ...] = ()  # spellings of the credential the command was given, to scrub from errors

    @property
    def ok(self) -> bool:
        return self.status == 0

    def error(self, operation: str) -> GitError:
        """The classified, scrubbed exception for this (failed) command."""
        return classify(operation, self.err, self.secrets)

    def detail(self) -> str:
        """The scrubbed one-line reason git gave."""
        return scrub(_detail(self.err), self.secrets)[:600]

    def checked(self, operation: str) -> GitResult:
        """This result when the command succeeded; else raise `error(operation)`."""
        if self.status != 0:
            raise self.error(operation)
        return self


class GitRunner:
    """Runs git commands with one credential source, one identity and one network timeout.

    ``auth_header`` is asked afresh for each network command (tokens expire); ``author`` is (name, e-mail) for
    commits; ``timeout`` bounds network commands (local ones only when given one). Raises `GitMissing` when this
    host has no git.
    """

    def __init__(self, *, auth_header: Callable[[], str] | None = None, author: tuple[str, str] | None = None,
                 timeout: float | None = None) -> None:
        self.executable = git_executable()
        self._auth_header = auth_header
        self._timeout = timeout
        env = child_environment()  # an allow-list: no GIT_* variable, no app setting or secret
        env.update({
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",  # set but empty: git then neither runs an askpass program nor falls back to SSH_ASKPASS
            "SSH_ASKPASS": "",
            "GCM_INTERACTIVE": "never",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_SSH_COMMAND": SSH_COMMAND,
            "LC_ALL": "C",
            "LANGUAGE": "C",
        })
        if author is not None:
            name, email = author
            env.update(GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email, GIT_COMMITTER_NAME=name,
                       GIT_COMMITTER_EMAIL=email)
        self._env = env

    def run(self, *args: str, cwd: Path | None = None, repo: Path | None = None, network: bool = False,
            input: bytes | None = None, binary: bool = False, timeout: float | None = None) -> GitResult:
        """``git <args>``, never raising for git's own failure (see `GitResult.checked`).

        ``repo``: a working tree named outright (``GIT_DIR``/``GIT_WORK_TREE``), so a broken one fails instead of
        git discovering a repository above it; ``cwd``: where git starts and discovers one. ``network``: the
        command talks to a remote; it gets the Authorization header and the network timeout.
        """
        config = BASE_CONFIG
        secrets: tuple[str, ...] = ()
        if network:
            header = self._auth_header() if self._auth_header else None
            if header:
                if "\n" in header or "\r" in header:
                    raise GitAuthError("the Authorization header value contains a line break")
                config += (("http.extraHeader", f"Authorization: {header}"),)
                secrets = secret_forms(header)
            if timeout is None:
                timeout = self._timeout
        env = dict(self._env, GIT_CONFIG_COUNT=str(len(config)))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        where = repo if repo is not None else cwd
        if repo is not None:
            env.update(GIT_DIR=str(repo / ".git"), GIT_WORK_TREE=str(repo))
        argv = [self.executable, *(("-C", str(where)) if where is not None else ()), *args]
        status, out, err = _execute(argv, env, input, timeout, name=args[0] if args else "")
        return GitResult(status, out if binary else out.decode("utf-8", "surrogateescape"), err, secrets)


def gitpython() -> Any:
    """The GitPython package, imported on first use. Importing it runs `git version` and raises
    `ImportError: Bad git executable` when there is none (git/cmd.py `Git.refresh`), so no module imports it at
    load time: every function of the app must load on a host without git and say so through /api/health."""
    git_executable()
    try:
        import git
    except ImportError as exc:  # git is on PATH but does not run
        raise GitMissing(f"{GIT_MISSING} ({' '.join(str(exc).split())[:200]})") from None
    return git


def _execute(argv: list[str], env: dict[str, str], input: bytes | None, timeout: float | None,
             name: str) -> tuple[int, bytes, str]:
    """Start git through GitPython (`Git.execute(as_process=True)`) in a session of its own, so a timeout kills
    git's helpers too (remote-https, ssh), not only git.

    GitPython builds every child's environment from a copy of the process environment (git/cmd.py `Git.execute`) and cannot
    unset a variable, so each inherited variable the allow-list drops is passed as empty: an app secret arrives
    blank, and a stray GIT_DIR makes git fail loudly instead of redirecting it."""
    git = gitpython()
    full_env = dropped_for_child(env) | env
    try:
        handle = git.Git().execute(argv, env=full_env, as_process=True, start_new_session=True,
                                   istream=subprocess.PIPE if input is not None else None)
    except git.GitCommandNotFound:
        raise GitMissing(GIT_MISSING) from None
    process = handle.proc
    try:
        out, err = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_session(process)
        out, err = process.communicate()
        err += f"\nTimeout: git {name} did not complete in {timeout:g} s".encode()
        return -signal.SIGKILL, out, err.decode("utf-8", "replace")
    except BaseException:
        _kill_session(process)
        process.wait()
        raise
    return process.returncode, out, err.decode("utf-8", "replace")


def _kill_session(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # git and its helpers are already gone
        pass
