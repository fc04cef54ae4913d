"""The one git command runner: what git is given (argv, environment), what comes back (scrubbed, classified)."""
from __future__ import annotations

import base64
import logging
import os
import stat
import time
import traceback
from pathlib import Path

import pytest

from core.adapters.git_runner import (
    gitpython,
    GitAuthError,
    GitError,
    GitMissing,
    GitRefNotFound,
    GitRunner,
    GitUnavailable,
    classify,
    clean_url,
    credentials_from_url,
    pat_auth_header,
    scrub,
)
from core.errors import Permanent, Retryable, is_permanent
from core.settings import child_environment
from devkit import gitrepos
from tests.test_git_workspace import PAT, PAT_B64, unauthorized_server  # noqa: F401 (a fixture)
from tests.test_git_workspace import _assert_no_secret as assert_no_secret


@pytest.fixture(autouse=True)
def _gitpython_loaded():
    """GitPython runs `git version` when first imported: let it find the real git before a test puts a fake
    one first on PATH (the runner then starts the fake, resolved when it is built)."""
    gitpython()


def fake_git(tmp_path: Path, stderr: str = "", status: int = 0, sleep: float = 0) -> Path:
    """A `git` first on PATH that records its argv and environment and answers with `stderr` and `status`."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    script = bin_dir / "git"
    script.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$@\" > '{tmp_path}/argv'\n"
        f"env > '{tmp_path}/env'\n"
        + (f"sleep {sleep} &\nwait\n" if sleep else "")
        + f"printf '%s\\n' \"{stderr}\" >&2\n"
        f"exit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def recorded_env(tmp_path: Path) -> dict[str, str]:
    lines = (tmp_path / "env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_the_environment_is_built_not_inherited(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_git(tmp_path)}:{os.environ['PATH']}")
    for name, value in {"GIT_DIR": "/elsewhere/.git", "GIT_CONFIG_PARAMETERS": "'core.hookspath'='/tmp/x'",
                        "GIT_SSH_COMMAND": "ssh -i /stolen", "GIT_EXEC_PATH": "/tmp/evil", "AZDO_PAT": PAT,
                        "AzureWebJobsStorage": "AccountKey=secret", "HTTPS_PROXY": "http://proxy:3128"}.items():
        monkeypatch.setenv(name, value)

    GitRunner(author=("bot", "bot@example.invalid")).run("status")
    env = recorded_env(tmp_path)

    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_ASKPASS"] == "" and env["GCM_INTERACTIVE"] == "never"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == os.devnull
    assert env["GIT_SSH_COMMAND"] == "ssh -o BatchMode=yes" and env["LC_ALL"] == "C"
    assert env["GIT_AUTHOR_NAME"] == env["GIT_COMMITTER_NAME"] == "bot"
    # GitPython cannot unset an inherited variable (it starts from os.environ): the runner passes it empty
    assert all(env.get(name, "") == "" for name in ("GIT_DIR", "GIT_CONFIG_PARAMETERS", "GIT_EXEC_PATH"))
    assert env.get("AZDO_PAT", "") == "" and env.get("AzureWebJobsStorage", "") == ""  # no app setting reaches git
    assert env["HTTPS_PROXY"] == "http://proxy:3128" and env["PATH"] == os.environ["PATH"]
    configured = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))}
    assert configured["credential.helper"] == "" and "http.extraHeader" not in configured  # local: no header


def test_child_environment_keeps_only_what_a_child_needs():
    env = {"PATH": "/bin", "HOME": "/home/app", "GIT_DIR": "/x", "AZDO_PAT": PAT, "no_proxy": "localhost"}
    assert child_environment(env) == {"PATH": "/bin", "HOME": "/home/app", "no_proxy": "localhost"}


def test_system_and_global_config_are_ignored_and_an_inherited_repository_never_redirects_git(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = from-global-config\n")
    elsewhere = tmp_path / "elsewhere"
    gitrepos.git("init", "--quiet", str(elsewhere))
    monkeypatch.setenv("HOME", str(home))
    repo = tmp_path / "repo"
    repo.mkdir()
    git = GitRunner()

    git.run("init", "--quiet", cwd=repo).checked("git init")

    assert git.run("rev-parse", "--absolute-git-dir", cwd=repo).out.strip() == str(repo / ".git")
    assert git.run("config", "user.name", cwd=repo).status == 1  # ~/.gitconfig was not read

    # A GIT_DIR in the process environment reaches git empty (GitPython cannot unset it): git refuses to run
    # rather than work on the other repository.
    monkeypatch.setenv("GIT_DIR", str(elsewhere / ".git"))
    before = gitrepos.git("-C", str(elsewhere), "config", "--list", "--local")
    stray = GitRunner().run("config", "user.name", "stray", cwd=repo)
    assert stray.status != 0
    monkeypatch.delenv("GIT_DIR")
    assert gitrepos.git("-C", str(elsewhere), "config", "--list", "--local") == before


def test_the_credential_goes_to_the_server_as_a_header_and_never_into_argv_or_a_log(unauthorized_server, caplog):
    caplog.set_level(logging.DEBUG)
    url, seen = unauthorized_server

    run = GitRunner(auth_header=pat_auth_header(PAT), timeout=30).run("ls-remote", "--", url, network=True)

    assert seen and seen[0] == f"Basic {PAT_B64}"
    with pytest.raises(GitAuthError) as raised:
        run.checked(f"git ls-remote {url}")
    assert is_permanent(raised.value) and "\n" not in str(raised.value)
    assert_no_secret("".join(traceback.format_exception(raised.value)))
    assert_no_secret(run.detail())
    assert_no_secret(caplog.text)


def test_argv_never_holds_the_credential_and_echoed_secrets_are_scrubbed(tmp_path, monkeypatch):
    echoed = f"fatal: Authentication failed: header Basic {PAT_B64} password {PAT}"
    monkeypatch.setenv("PATH", f"{fake_git(tmp_path, stderr=echoed, status=128)}:{os.environ['PATH']}")

    run = GitRunner(auth_header=pat_auth_header(PAT)).run("fetch", "origin", network=True)

    assert_no_secret((tmp_path / "argv").read_text())
    env = recorded_env(tmp_path)
    headers = [env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))
               if env[f"GIT_CONFIG_KEY_{i}"] == "http.extraHeader"]
    assert headers == [f"Authorization: Basic {PAT_B64}"]  # only in git's environment config
    error = run.error("git fetch")
    assert isinstance(error, GitAuthError)
    assert str(error) == "git fetch failed: fatal: Authentication failed: header *** password ***"


def test_a_header_with_a_line_break_is_refused_before_git_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_git(tmp_path)}:{os.environ['PATH']}")
    with pytest.raises(GitAuthError, match="line break"):
        GitRunner(auth_header=lambda: "Basic x\r\nX-Evil: 1").run("fetch", network=True)
    assert not (tmp_path / "argv").exists()


@pytest.mark.parametrize(("stderr", "kind", "retryable"), [
    ("fatal: Authentication failed for 'https://dev.azure.com/o/p/_git/hld/'", GitAuthError, False),
    ("fatal: unable to access 'https://x/': The requested URL returned error: 403", GitAuthError, False),
    ("fatal: could not read Username for 'https://x': terminal prompts disabled", GitAuthError, False),
    ("fatal: unable to access 'https://x/': Could not resolve host: x", GitUnavailable, True),
    ("fatal: unable to access 'https://x/': Failed to connect to x port 443: Connection refused", GitUnavailable, True),
    ("error: RPC failed; HTTP 503 curl 22 The requested URL returned error: 503", GitUnavailable, True),
    ("fatal: the remote end hung up unexpectedly", GitUnavailable, True),
    ("fatal: repository 'https://x/nope/' not found", GitError, False),
])
def test_failures_map_onto_the_error_classes(stderr, kind, retryable):
    error = classify("git fetch", stderr)
    assert type(error) is kind
    assert isinstance(error, Retryable) is retryable
    assert isinstance(error, Permanent) is (kind is GitAuthError)


def test_a_timeout_kills_git_and_its_helpers_and_is_retryable(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_git(tmp_path, sleep=30)}:{os.environ['PATH']}")
    started = time.monotonic()
    run = GitRunner(timeout=0.5).run("fetch", "origin", network=True)
    assert time.monotonic() - started < 20  # the sleeping child was killed with git, not waited for
    error = run.error("git fetch")
    assert isinstance(error, GitUnavailable) and "did not complete in 0.5 s" in str(error)


def test_no_git_on_the_host_is_git_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(GitMissing) as raised:
        GitRunner()
    assert is_permanent(raised.value) and "container image" in str(raised.value)


def test_missing_ref_is_permanent():
    assert is_permanent(GitRefNotFound("branch 'x' not found"))


def test_urls_lose_their_user_info_and_never_carry_a_password():
    assert clean_url("https://fabrikam@dev.azure.com/f/p/_git/hld") == "https://dev.azure.com/f/p/_git/hld"
    assert clean_url("ssh://git@ssh.dev.azure.com/v3/f/p/hld") == "ssh://git@ssh.dev.azure.com/v3/f/p/hld"
    with pytest.raises(GitError) as raised:
        clean_url(f"https://user:{PAT}@dev.azure.com/f/p/_git/hld")
    assert PAT not in str(raised.value)


def test_a_source_url_s_credentials_become_a_header():
    url, header = credentials_from_url("https://bot:t%40ken@git.example/org/charts.git")
    assert url == "https://git.example/org/charts.git"
    assert header is not None and header() == "Basic " + base64.b64encode(b"bot:t@ken").decode()
    assert credentials_from_url("https://bot@git.example/c.git") == ("https://git.example/c.git", None)
    assert credentials_from_url("git@ssh.example:org/c.git") == ("git@ssh.example:org/c.git", None)


def test_scrub_removes_secrets_and_user_info_and_folds_lines():
    text = f"fatal: https://bot:{PAT}@host/x failed\n  Authorization: Basic {PAT_B64}"
    assert scrub(text, (f"Basic {PAT_B64}", PAT_B64)) == "fatal: https://***@host/x failed Authorization: ***"
