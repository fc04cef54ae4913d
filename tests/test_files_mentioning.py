"""files_mentioning reads blobs by object id once per process and answers as `git grep -l -F -I` did."""
from __future__ import annotations

import os
import subprocess

from core.adapters.git_workspace import files_mentioning


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_matches_git_grep_and_follows_new_commits(tmp_path):
    tree = tmp_path / "tree"
    (tree / "apps").mkdir(parents=True)
    (tree / "apps/web.yaml").write_text("image: r.io/web:1\n")
    (tree / "apps/api.yaml").write_text("image: r.io/api:1\n")
    (tree / "apps/both.yaml").write_text("r.io/web r.io/api\n")
    (tree / "bin.dat").write_bytes(b"\0r.io/web")  # binary: git grep -I skips it
    (tree / "big.yaml").write_text("r.io/web\n" + "x" * (1 << 20))  # over what discovery reads
    os.symlink("apps/web.yaml", tree / "link.yaml")  # links are never followed
    (tree / "odd\tname 100644 x.yaml").write_text("r.io/api\n")
    git(tree, "init", "-q")
    git(tree, "add", "-A")
    git(tree, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "seed")
    assert files_mentioning(tree, ["r.io/web"]) == ["apps/both.yaml", "apps/web.yaml"]
    assert files_mentioning(tree, ["r.io/api", "r.io/web"]) == [
        "apps/api.yaml", "apps/both.yaml", "apps/web.yaml", "odd\tname 100644 x.yaml"]
    assert files_mentioning(tree, ["nothing"]) == [] and files_mentioning(tree, []) == []
    (tree / "apps/api.yaml").write_text("image: r.io/web:2\n")  # a new blob: read once, by its id
    git(tree, "add", "-A")
    assert files_mentioning(tree, ["r.io/web"]) == ["apps/api.yaml", "apps/both.yaml", "apps/web.yaml"]
