"""GitWorkspace against real git: local bare repos over file://, a local HTTP endpoint for the auth paths."""
from __future__ import annotations

import base64
import hashlib
import logging
import multiprocessing
import tempfile
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.adapters.git_workspace import (
    GitAuthError,
    GitError,
    GitRefNotFound,
    GitUnavailable,
    GitWorkspace,
    LandResult,
    bearer_auth_header,
    classify,
    pat_auth_header,
)
from devkit import gitrepos

PAT = "pat-s3cret-0123456789"
PAT_B64 = base64.b64encode(f":{PAT}".encode()).decode()


def write(path: Path, text: str, message: str | None):
    """An edit that writes ``text`` to ``path`` (relative to the worktree) and returns ``message``."""
    def edit(worktree: Path) -> str | None:
        target = worktree / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return message
    return edit


@pytest.fixture
def remote(tmp_path: Path) -> str:
    return gitrepos.bare_repo(tmp_path, {"apps/web.yaml": "image: web:1.0.0\n", "README.md": "hld\n"})


def workspace(url: str, tmp_path: Path, branch: str = "main", **kwargs) -> GitWorkspace:
    return GitWorkspace(url, branch, base_dir=tmp_path / "work", **kwargs)


def test_cold_clone_then_land_pushes_one_commit_by_the_configured_author(remote, tmp_path):
    seed = gitrepos.branches(remote)["main"]
    ws = workspace(remote, tmp_path, author_name="bot", author_email="bot@example.invalid")
    assert not ws.workdir.exists()

    result = ws.land(write(Path("apps/web.yaml"), "image: web:1.1.0\n", "Bump web to 1.1.0"))

    assert (ws.workdir / ".git").is_dir()
    assert result.commit == gitrepos.branches(remote)["main"]
    assert (result.branch, result.attempts, result.changed_paths) == ("main", 1, ("apps/web.yaml",))
    assert gitrepos.file_at(remote, "main", "apps/web.yaml") == b"image: web:1.1.0\n"
    [landed, first] = gitrepos.commits(remote, "main")
    assert (landed.parents, landed.message) == ((seed,), "Bump web to 1.1.0")
    assert landed.author == "bot <bot@example.invalid>"
    assert first.sha == seed
    assert ws.head() == result.commit


def test_warm_land_reuses_the_working_copy_and_fetches_the_new_remote_head(remote, tmp_path):
    ws = workspace(remote, tmp_path)
    ws.land(write(Path("a.txt"), "a\n", "add a"))
    marker = ws.workdir / ".git" / "reuse-marker"
    marker.write_text("still here")
    inode = (ws.workdir / ".git").stat().st_ino
    other = gitrepos.push_files(remote, "main", {"from-other.txt": "other\n"}, "other writer")
    seen = []

    def edit(worktree: Path) -> str:
        seen.append((worktree / "from-other.txt").read_text())
        (worktree / "b.txt").write_text("b\n")
        return "add b"

    result = workspace(remote, tmp_path).land(edit)

    assert marker.read_text() == "still here" and (ws.workdir / ".git").stat().st_ino == inode
    assert seen == ["other\n"]
    assert result.attempts == 1 and gitrepos.commits(remote, "main")[0].parents == (other,)
    assert ws.head() == result.commit


def test_edit_without_file_change_makes_no_commit(remote, tmp_path):
    before = gitrepos.branches(remote)
    ws = workspace(remote, tmp_path)

    nothing = ws.land(lambda worktree: None)
    same_content = ws.land(write(Path("apps/web.yaml"), "image: web:1.0.0\n", "rewrite identical"))

    assert nothing == same_content == LandResult(None, "main", 1, ())
    assert gitrepos.branches(remote) == before


def test_working_copy_is_reset_and_cleaned_between_uses(remote, tmp_path):
    ws = workspace(remote, tmp_path)
    with ws.read() as tree:
        (tree / "stray.txt").write_text("left behind")
        (tree / "README.md").write_text("scribbled")
    with ws.read() as tree:
        assert not (tree / "stray.txt").exists()
        assert (tree / "README.md").read_text() == "hld\n"


def test_push_race_refetches_and_reapplies_the_edit_on_the_new_head(remote, tmp_path):
    ws = workspace(remote, tmp_path)
    calls = []

    def edit(worktree: Path) -> str:
        calls.append((worktree / "other.txt").exists())
        if len(calls) == 1:
            gitrepos.push_files(remote, "main", {"other.txt": "other\n"}, "another writer got in first")
        (worktree / "apps/web.yaml").write_text("image: web:2.0.0\n")
        return "Bump web to 2.0.0"

    result = ws.land(edit)

    assert result.attempts == 2
    assert calls == [False, True]  # the second call ran on the new head, which has the other writer's commit
    assert gitrepos.file_at(remote, "main", "other.txt") == b"other\n"
    assert gitrepos.file_at(remote, "main", "apps/web.yaml") == b"image: web:2.0.0\n"
    [mine, theirs, _seed] = gitrepos.commits(remote, "main")
    assert mine.sha == result.commit and mine.parents == (theirs.sha,)


def test_gives_up_with_unavailable_after_max_attempts(remote, tmp_path):
    counter = iter(range(100))

    def always_raced(worktree: Path) -> str:
        gitrepos.push_files(remote, "main", {"race.txt": str(next(counter))}, "racer")
        (worktree / "mine.txt").write_text("mine")
        return "mine"

    with pytest.raises(GitUnavailable, match="rejected 2 times"):
        workspace(remote, tmp_path).land(always_raced, max_attempts=2)
    assert gitrepos.file_at(remote, "main", "mine.txt") is None


def _land_edits(url: str, base_dir: str, worker: int, count: int) -> int:
    ws = GitWorkspace(url, "main", base_dir=Path(base_dir))
    attempts = 0
    for n in range(count):
        result = ws.land(write(Path(f"w{worker}/e{n}.txt"), f"{worker}-{n}\n", f"worker {worker} edit {n}"),
                         max_attempts=40)
        assert result.commit is not None
        attempts += result.attempts
    return attempts


@pytest.mark.parametrize("shared_base_dir", [True, False], ids=["same-base-dir", "separate-base-dirs"])
def test_four_processes_landing_concurrently_lose_nothing(remote, tmp_path, shared_base_dir):
    bases = [tmp_path / ("work" if shared_base_dir else f"work{i}") for i in range(4)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        attempts = pool.starmap(_land_edits, [(remote, str(bases[i]), i, 10) for i in range(4)])

    if shared_base_dir:
        assert attempts == [10] * 4  # one working copy, taken in turn under its lock: every first push lands
    for worker in range(4):
        for n in range(10):
            assert gitrepos.file_at(remote, "main", f"w{worker}/e{n}.txt") == f"{worker}-{n}\n".encode()
    history = gitrepos.commits(remote, "main")
    assert len(history) == 41
    # linear: every push fast-forwarded its predecessor
    assert all(c.parents == (p.sha,) for c, p in zip(history[:-1], history[1:], strict=True))


def test_working_copy_lock_blocks_the_same_branch_but_not_another(remote, tmp_path):
    gitrepos.git("--git-dir", str(gitrepos.repo_path(remote)), "branch", "release", "main")
    holder = workspace(remote, tmp_path)
    landed = threading.Event()

    def land_same_branch():
        workspace(remote, tmp_path).land(write(Path("waited.txt"), "w\n", "waited"))
        landed.set()

    with holder.read():
        other = workspace(remote, tmp_path, branch="release")
        assert other.head() == gitrepos.branches(remote)["release"]  # a different working copy: not blocked
        thread = threading.Thread(target=land_same_branch)
        thread.start()
        assert not landed.wait(0.5)
    assert landed.wait(10)
    thread.join()
    assert gitrepos.file_at(remote, "main", "waited.txt") == b"w\n"


def test_using_the_workspace_from_inside_its_own_edit_fails_instead_of_deadlocking(remote, tmp_path):
    ws = workspace(remote, tmp_path)
    with pytest.raises(GitError, match="already locked by this thread"):
        ws.land(lambda worktree: ws.file_at("main", "README.md") and "never")


def test_land_on_branch_force_updates_one_bot_commit_and_retries_idempotently(remote, tmp_path):
    ws = workspace(remote, tmp_path)
    main = gitrepos.branches(remote)["main"]

    first = ws.land_on_branch("autopilot/web", write(Path("apps/web.yaml"), "image: web:1.1.0\n", "web 1.1.0"))
    second = ws.land_on_branch("autopilot/web", write(Path("apps/web.yaml"), "image: web:1.2.0\n", "web 1.2.0"))
    retry = ws.land_on_branch("autopilot/web", write(Path("apps/web.yaml"), "image: web:1.2.0\n", "web 1.2.0"))

    assert first.commit and second.commit and first.commit != second.commit
    assert retry == second
    branches = gitrepos.branches(remote)
    assert branches == {"main": main, "autopilot/web": second.commit}
    [bot, base] = gitrepos.commits(remote, "autopilot/web", max_count=2)
    assert (bot.sha, bot.parents, bot.message, base.sha) == (second.commit, (main,), "web 1.2.0", main)
    assert gitrepos.file_at(remote, "autopilot/web", "apps/web.yaml") == b"image: web:1.2.0\n"

    moved = gitrepos.push_files(remote, "main", {"README.md": "hld v2\n"}, "main moved")
    rebuilt = ws.land_on_branch("autopilot/web", write(Path("apps/web.yaml"), "image: web:1.2.0\n", "web 1.2.0"))
    assert rebuilt.commit not in (None, second.commit)
    assert gitrepos.commits(remote, "autopilot/web", max_count=1)[0].parents == (moved,)


def test_land_on_branch_without_change_creates_no_branch(remote, tmp_path):
    result = workspace(remote, tmp_path).land_on_branch("autopilot/web", lambda worktree: "nothing written")
    assert result.commit is None and set(gitrepos.branches(remote)) == {"main"}


def test_bot_branch_deleted_on_the_remote_is_recreated(remote, tmp_path):
    ws = workspace(remote, tmp_path)
    first = ws.land_on_branch("autopilot/web", write(Path("apps/web.yaml"), "image: web:1.1.0\n", "web 1.1.0"))
    gitrepos.git("--git-dir", str(gitrepos.repo_path(remote)), "branch", "-D", "autopilot/web")

    again = ws.land_on_branch("autopilot/web", write(Path("apps/web.yaml"), "image: web:1.1.0\n", "web 1.1.0"))

    assert first.commit and gitrepos.branches(remote).get("autopilot/web") == again.commit


def test_log_trailers_and_file_at_read_commits_on_the_remote(remote, tmp_path):
    ws = workspace(remote, tmp_path)
    one = ws.land(write(Path("a.txt"), "1", "Bump web\n\nService: web\nImage-Tag: 1.1.0\nCorrelation-Id: c-1"))
    two = ws.land(write(Path("a.txt"), "2", "No trailers here"))
    three = ws.land(write(Path("a.txt"), "3", "Bump api\n\nService: api\nImage-Tag: 2.0.0"))

    assert ws.log_trailers("main", max_count=3) == [
        (three.commit, {"Service": "api", "Image-Tag": "2.0.0"}),
        (two.commit, {}),
        (one.commit, {"Service": "web", "Image-Tag": "1.1.0", "Correlation-Id": "c-1"}),
    ]
    assert len(ws.log_trailers("main")) == 4  # all of the history when it is shorter than max_count
    assert ws.file_at(one.commit, "a.txt") == b"1"
    assert ws.file_at("main", "a.txt") == b"3"
    assert ws.file_at("main", "missing.txt") is None
    with pytest.raises(GitRefNotFound):
        ws.file_at("no-such-branch", "a.txt")


def test_stale_git_lock_and_broken_working_copy_are_recovered(remote, tmp_path):
    ws = workspace(remote, tmp_path)
    ws.head()
    (ws.workdir / ".git" / "index.lock").write_text("")  # as left by a process killed mid-command
    assert ws.land(write(Path("a.txt"), "a", "after stale lock")).commit

    (ws.workdir / ".git" / "HEAD").unlink()  # no longer a repository
    result = ws.land(write(Path("b.txt"), "b", "after rebuild"))
    assert result.commit == gitrepos.branches(remote)["main"]
    assert gitrepos.file_at(remote, "main", "a.txt") == b"a"


def test_missing_branch_and_empty_remote_are_reported_clearly(remote, tmp_path):
    with pytest.raises(GitRefNotFound, match="'develop' not found .*: it has only main"):
        workspace(remote, tmp_path, branch="develop").head()
    empty = gitrepos.bare_repo(tmp_path, None, name="empty")
    with pytest.raises(GitRefNotFound, match="remote repository is empty"):
        workspace(empty, tmp_path).land(write(Path("a"), "a", "a"))


# ---- credentials --------------------------------------------------------------------------------------------

class _Recorder(BaseHTTPRequestHandler):
    """Answers every request 401, as Azure Repos does for a bad token, recording the Authorization header."""

    seen: list[str | None]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.seen.append(self.headers.get("Authorization"))  # type: ignore[attr-defined]
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="test"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class _Echo(BaseHTTPRequestHandler):
    """A misbehaving endpoint that echoes the credential back in a git protocol error, which git prints."""

    def do_GET(self) -> None:  # noqa: N802
        line = f"ERR echo: {self.headers.get('Authorization')} {base64.b64decode(PAT_B64).decode()}\n".encode()
        body = b"%04x" % (len(line) + 4) + line
        self.send_response(200)
        self.send_header("Content-Type", "application/x-git-upload-pack-advertisement")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[tuple[str, list]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/org/project/_git/hld", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def unauthorized_server() -> Iterator[tuple[str, list]]:
    with _serve(_Recorder) as served:
        yield served


def _assert_no_secret(text: str) -> None:
    for secret in (PAT, PAT_B64, f"Basic {PAT_B64}"):
        assert secret not in text


def test_auth_header_is_sent_and_a_refusal_is_an_auth_error_without_the_secret(unauthorized_server, tmp_path, caplog):
    url, seen = unauthorized_server
    caplog.set_level(logging.DEBUG)
    ws = workspace(url, tmp_path, auth_header=pat_auth_header(PAT))

    with pytest.raises(GitAuthError) as excinfo:
        ws.land(write(Path("a"), "a", "a"))

    assert seen and seen[0] == f"Basic {PAT_B64}"
    text = "".join(traceback.format_exception(excinfo.value))
    _assert_no_secret(text)
    assert "\n" not in str(excinfo.value)
    _assert_no_secret(caplog.text)


def test_auth_header_is_asked_for_afresh_for_each_command(unauthorized_server, tmp_path):
    url, seen = unauthorized_server
    tokens = iter(["token-one", "token-two"])
    ws = workspace(url, tmp_path, auth_header=bearer_auth_header(lambda: next(tokens)))
    for _ in range(2):
        with pytest.raises(GitAuthError):
            ws.head()
    assert seen == ["Bearer token-one", "Bearer token-two"]


def test_credential_echoed_by_the_remote_is_scrubbed_from_the_error(tmp_path):
    with _serve(_Echo) as (url, _), pytest.raises(GitError) as excinfo:
        workspace(url, tmp_path, auth_header=pat_auth_header(PAT)).head()
    assert "echo: ***" in str(excinfo.value)  # git did print the echoed header; it was scrubbed
    _assert_no_secret(str(excinfo.value))


def test_unreachable_remote_is_unavailable_and_the_error_carries_no_credential(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    ws = workspace(f"http://{PAT}@127.0.0.1:9/x.git", tmp_path, auth_header=pat_auth_header(PAT))
    assert ws.url == "http://127.0.0.1:9/x.git"

    with pytest.raises(GitUnavailable) as excinfo:
        ws.head()

    assert "127.0.0.1:9" in str(excinfo.value) and "\n" not in str(excinfo.value)
    _assert_no_secret("".join(traceback.format_exception(excinfo.value)))
    _assert_no_secret(caplog.text)


def test_password_in_url_is_refused_without_echoing_it(tmp_path):
    with pytest.raises(GitError) as excinfo:
        workspace(f"https://user:{PAT}@dev.azure.com/org/p/_git/hld", tmp_path)
    _assert_no_secret(str(excinfo.value))


def test_credential_never_reaches_git_config_or_the_remote_url(remote, tmp_path):
    ws = workspace(remote, tmp_path, auth_header=pat_auth_header(PAT))
    ws.land(write(Path("a.txt"), "a", "a"))
    ws.land_on_branch("autopilot/a", write(Path("b.txt"), "b", "b"))

    config = (ws.workdir / ".git" / "config").read_text()
    _assert_no_secret(config)
    assert f"url = {remote}\n" in config
    for path in (ws.workdir / ".git").rglob("*"):
        if path.is_file() and path.suffix != ".pack":
            _assert_no_secret(path.read_bytes().decode(errors="replace"))


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        ("fatal: Authentication failed for 'https://dev.azure.com/org/p/_git/hld/'", GitAuthError),
        ("fatal: unable to access 'https://dev.azure.com/x/': The requested URL returned error: 403", GitAuthError),
        ("fatal: unable to access 'https://dev.azure.com/x/': Could not resolve host: dev.azure.com", GitUnavailable),
        ("fatal: unable to access 'https://dev.azure.com/x/': The requested URL returned error: 503", GitUnavailable),
        ("fatal: repository 'https://dev.azure.com/org/p/_git/nope/' not found", GitError),
    ],
)
def test_failures_are_classified_by_what_git_reports(stderr, kind):
    assert type(classify("git fetch", stderr)) is kind


def test_default_working_copy_lives_under_the_temp_dir_per_url_and_branch():
    url = "file:///srv/hld.git"
    repo_dir = Path(tempfile.gettempdir()) / "gitops-autopilot" / "work" / hashlib.sha1(url.encode()).hexdigest()
    assert GitWorkspace(url, "main").workdir == repo_dir / "main"
    assert GitWorkspace(url, "feature/x").workdir == repo_dir / "feature%2Fx"


def test_an_edit_naming_its_paths_stages_only_those(remote, tmp_path):
    from core.adapters.git_workspace import Edited

    ws = workspace(remote, tmp_path)

    def edit(tree: Path):
        (tree / "README.md").write_text("hld, edited\n")
        (tree / "stray.txt").write_text("not part of the change")
        return Edited("Edit the README only", ("README.md",))

    result = ws.land(edit)
    assert result.changed_paths == ("README.md",)
    assert gitrepos.file_at(remote, "main", "README.md") == b"hld, edited\n"
    assert gitrepos.file_at(remote, "main", "stray.txt") is None


def test_checkout_helpers_read_the_head_and_grep_tracked_files(remote, tmp_path):
    from core.adapters.git_workspace import checkout_head, files_mentioning

    sha = gitrepos.push_files(remote, "main", {"apps/api.yaml": "image: r.io/api:1.0.0\n"},
                              "Add api\n\nTrace-Id: abc")
    ws = workspace(remote, tmp_path)
    with ws.read() as tree:
        head = checkout_head(tree)
        assert (head.sha, head.subject) == (sha, "Add api")
        assert head.message.endswith("Trace-Id: abc")
        assert files_mentioning(tree, ["r.io/api"]) == ["apps/api.yaml"]
        assert files_mentioning(tree, ["nothing-mentions-this"]) == []
        assert files_mentioning(tree, []) == []
