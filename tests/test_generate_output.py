"""write_generation: replace only the environment folders a generation owns, report exactly what changed."""
from __future__ import annotations

import os

import pytest

from core.generate import GeneratedFile, Generation, write_generation


def generation(files: dict[str, bytes], environments=("prod",)) -> Generation:
    return Generation(files=tuple(GeneratedFile(path, content) for path, content in sorted(files.items())),
                      environments=tuple(environments))


def tree(root) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file() and ".git" not in path.parts}


def test_writes_files_and_keeps_other_top_level_entries(tmp_path):
    (tmp_path / "README.md").write_text("keep me")
    (tmp_path / "other-env").mkdir()
    (tmp_path / "other-env/x.yaml").write_text("keep")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git/HEAD").write_text("ref: refs/heads/main")
    changed = write_generation(generation({"prod/root.yaml": b"", "prod/a/b.yaml": b"---\nkind: A\n"}), tmp_path)
    assert changed == ["prod/a/b.yaml", "prod/root.yaml"]
    assert tree(tmp_path) == {"README.md": b"keep me", "other-env/x.yaml": b"keep", "prod/a/b.yaml": b"---\nkind: A\n",
                              "prod/root.yaml": b""}
    assert (tmp_path / ".git/HEAD").read_text() == "ref: refs/heads/main"


def test_second_identical_write_changes_nothing(tmp_path):
    wanted = generation({"prod/root.yaml": b"", "prod/a/b.yaml": b"x"})
    write_generation(wanted, tmp_path)
    before = {path: os.stat(tmp_path / path).st_mtime_ns for path in tree(tmp_path)}
    assert write_generation(wanted, tmp_path) == []
    assert {path: os.stat(tmp_path / path).st_mtime_ns for path in tree(tmp_path)} == before


def test_stale_files_and_empty_directories_inside_owned_folders_are_removed(tmp_path):
    write_generation(generation({"prod/root.yaml": b"", "prod/old/deep/gone.yaml": b"x", "prod/keep.yaml": b"1"}),
                     tmp_path)
    changed = write_generation(generation({"prod/root.yaml": b"", "prod/keep.yaml": b"2"}), tmp_path)
    assert changed == ["prod/keep.yaml", "prod/old/deep/gone.yaml"]
    assert tree(tmp_path) == {"prod/root.yaml": b"", "prod/keep.yaml": b"2"}
    assert not (tmp_path / "prod/old").exists()


def test_every_environment_of_the_generation_is_replaced(tmp_path):
    write_generation(generation({"prod/a.yaml": b"p", "dev/a.yaml": b"d", "qa/a.yaml": b"q"},
                                ("prod", "dev", "qa")), tmp_path)
    changed = write_generation(generation({"prod/a.yaml": b"p", "dev/b.yaml": b"d"}, ("prod", "dev")), tmp_path)
    assert changed == ["dev/a.yaml", "dev/b.yaml"]
    assert tree(tmp_path) == {"prod/a.yaml": b"p", "dev/b.yaml": b"d", "qa/a.yaml": b"q"}


def test_symlinks_in_the_output_are_replaced_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "root.yaml").write_text("untouched")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(elsewhere, out / "prod")
    assert write_generation(generation({"prod/root.yaml": b"new"}), out) == ["prod", "prod/root.yaml"]
    assert (elsewhere / "root.yaml").read_text() == "untouched"
    assert not (out / "prod").is_symlink() and (out / "prod/root.yaml").read_bytes() == b"new"

    os.symlink(elsewhere / "root.yaml", out / "prod/linked.yaml")
    os.symlink(elsewhere, out / "prod/sub")
    assert write_generation(generation({"prod/root.yaml": b"new", "prod/sub/x.yaml": b"x"}), out) == [
        "prod/linked.yaml", "prod/sub", "prod/sub/x.yaml"]
    assert (elsewhere / "root.yaml").read_text() == "untouched" and not (elsewhere / "x.yaml").exists()


def test_paths_outside_the_generation_environments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="outside the generation's environment folders"):
        write_generation(generation({"README.md": b"x"}), tmp_path)
    with pytest.raises(ValueError):
        write_generation(generation({"prod/../escape.yaml": b"x"}), tmp_path)
