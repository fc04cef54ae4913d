"""A corrupted cached working copy recovers (issue #16, item 3).

With `.git/HEAD` of the cached manifest checkout deleted (or the folder replaced by a file) every later generation
failed while bumps kept landing, so manifests went stale silently. Every git read and write path of the
workspace, and the generator's cache of git-sourced components, must detect a broken cache, discard it, clone
once more and proceed.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.generate import generate
from core.adapters.git_workspace import GitWorkspace, checkout_head, files_mentioning
from devkit import gitrepos
from tests.test_bump import FRONTEND_DEV, REGISTRY, make_service, push
from tests.test_generate_helpers import GitRepository, component, files_of, write
from tests.test_generation import changed, make_generation
from tests.fakes.records import records  # noqa: F401  (the fixture)


def delete_head(workdir: Path) -> None:
    (workdir / ".git" / "HEAD").unlink()


def folder_becomes_a_file(workdir: Path) -> None:
    shutil.rmtree(workdir)
    workdir.write_text("not a working copy")


def git_dir_becomes_a_file(workdir: Path) -> None:
    shutil.rmtree(workdir / ".git")
    (workdir / ".git").write_text("gitdir: /nonexistent\n")


def corrupt_index(workdir: Path) -> None:
    (workdir / ".git" / "index").write_bytes(b"\x00" * 64)  # git: "bad signature"


def delete_objects(workdir: Path) -> None:
    shutil.rmtree(workdir / ".git" / "objects")
    (workdir / ".git" / "objects").mkdir()


CORRUPTIONS = [delete_head, folder_becomes_a_file, git_dir_becomes_a_file, corrupt_index, delete_objects]


@pytest.fixture
def remote(tmp_path: Path) -> str:
    return gitrepos.bare_repo(tmp_path, {"apps/web.yaml": "image: web:1.0.0\n", "README.md": "hld\n"})


def warm(remote: str, tmp_path: Path, *, landed: bool) -> GitWorkspace:
    """A warm cache; with `landed` the last use was our own push (the soft-reset path of the next sync)."""
    ws = GitWorkspace(remote, "main", base_dir=tmp_path / "work")
    if landed:
        ws.land(bump_file("seen.txt", "1"))
    else:
        ws.head()
    return ws


def bump_file(name: str, text: str):
    def edit(tree: Path) -> str:
        (tree / name).write_text(text)
        return f"Write {name}"
    return edit


@pytest.mark.parametrize("landed", [False, True], ids=["synced", "after-own-push"])
@pytest.mark.parametrize("corrupt", CORRUPTIONS)
def test_every_workspace_operation_recovers_from_a_broken_cache(remote, tmp_path, corrupt, landed):
    ws = warm(remote, tmp_path, landed=landed)
    head = gitrepos.branches(remote)["main"]

    corrupt(ws.workdir)
    assert ws.head() == head

    corrupt(ws.workdir)
    with ws.read() as tree:
        assert checkout_head(tree).sha == head
        assert files_mentioning(tree, ["web:1.0.0"]) == ["apps/web.yaml"]

    corrupt(ws.workdir)
    assert ws.file_at("main", "README.md") == b"hld\n"

    corrupt(ws.workdir)
    [(sha, _)] = ws.log_trailers("main", max_count=1)
    assert sha == head

    corrupt(ws.workdir)
    result = ws.land(bump_file("a.txt", "a"))
    assert result.commit == gitrepos.branches(remote)["main"] != head
    assert gitrepos.file_at(remote, "main", "a.txt") == b"a"

    corrupt(ws.workdir)
    bot = ws.land_on_branch("autopilot/x", bump_file("b.txt", "b"))
    assert gitrepos.file_at(remote, "autopilot/x", "b.txt") == b"b" and bot.commit


@pytest.mark.parametrize("corrupt", [delete_head, folder_becomes_a_file, corrupt_index])
def test_generation_recovers_when_the_manifest_cache_is_broken(tmp_path, records, corrupt):
    from tests.test_generation import EXAMPLE_HLD, EXAMPLES

    repos = (gitrepos.bare_repo(tmp_path, EXAMPLE_HLD, name="hld"),
             gitrepos.bare_repo(tmp_path, EXAMPLES / "manifests", name="manifests"))
    service = make_generation(repos, records, tmp_path)
    assert service.process([changed()]).action == "committed"
    corrupt(service.manifests.workdir)
    corrupt(service.hld.workdir)
    config = gitrepos.file_at(repos[0], "main", FRONTEND_DEV).decode()
    gitrepos.push_files(repos[0], "main", {FRONTEND_DEV: config.replace('"1.4.0"', '"1.4.9"')}, "Bump by hand")
    result = service.process([changed("second")])
    assert result.action == "committed"
    assert result.hld_commit == gitrepos.branches(repos[0])["main"]
    assert b"1.4.9" in gitrepos.file_at(repos[1], "main", "prod/fabrikam-project/frontend/dev/chart.yaml")
    corrupt(service.manifests.workdir)
    assert service.process([changed("third")]).action == "up-to-date"


@pytest.mark.parametrize("corrupt", [delete_head, folder_becomes_a_file, corrupt_index])
def test_bump_recovers_when_the_hld_cache_is_broken(tmp_path, records, corrupt):
    url = gitrepos.bare_repo(tmp_path, {
        "prod/web.yaml": f"kind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - image: {REGISTRY}/web:1.0.0\n",
    }, name="m")
    service = make_service(url, records, tmp_path, is_hld=False)
    assert service.process([push("web", "1.0.1")]).commit
    corrupt(service.workspace.workdir)
    result = service.process([push("web", "1.0.2")])
    assert result.commit == gitrepos.branches(url)["main"]
    assert f"{REGISTRY}/web:1.0.2".encode() in gitrepos.file_at(url, "main", "prod/web.yaml")


def corrupt_source_checkout(cache: Path, corruption) -> None:
    [checkout] = [p for p in (cache / "git").iterdir() if not p.name.startswith(".")]
    corruption(checkout)


@pytest.mark.parametrize("corrupt", [delete_head, folder_becomes_a_file, git_dir_becomes_a_file, corrupt_index,
                                     lambda checkout: (checkout / "m" / "cm.yaml").unlink()],
                         ids=["delete_head", "folder_becomes_a_file", "git_dir_becomes_a_file", "corrupt_index",
                              "file_deleted"])
@pytest.mark.parametrize("pinned", [False, True], ids=["branch", "pinned-commit"])
def test_generator_source_cache_recovers(tmp_path, corrupt, pinned):
    repository = GitRepository(tmp_path)
    sha = repository.commit({"component.yaml": component("remote", {"name": "m", "type": "static", "path": "m"}),
                             "m/cm.yaml": {"kind": "ConfigMap", "metadata": {"name": "from-git"}}})
    version = {"version": sha} if pinned else {"branch": "main"}
    root = write(tmp_path / "hld", {"component.yaml": component(
        "root", {"name": "dep", "method": "git", "source": repository.url, **version})})
    cache = tmp_path / "cache"
    first = files_of(generate(root, ["prod"], cache_dir=cache, allowed_sources=("file://",)))
    corrupt_source_checkout(cache, corrupt)
    again = files_of(generate(root, ["prod"], cache_dir=cache, allowed_sources=("file://",)))
    assert again == first and b"from-git" in again["prod/dep/m.yaml"]
