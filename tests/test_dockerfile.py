"""Lint the Dockerfile (parsed with dockerfile-parse) and check it ships exactly what .funcignore lets through.

No container engine runs here: these rules are checked on the text, the image is not built by the suite.
"""
from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parent.parent
BASE_REPOSITORY = "mcr.microsoft.com/azure-functions/python"
WWWROOT = "/home/site/wwwroot"


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    parser = DockerfileParser(str(ROOT / "Dockerfile"))
    return [(item["instruction"], item["value"]) for item in parser.structure]


def of(instructions, kind: str) -> list[str]:
    return [value for instruction, value in instructions if instruction == kind]


def funcignore_patterns() -> list[str]:
    lines = (ROOT / ".funcignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """gitignore matching for patterns without an inner slash (the only kind .funcignore uses, see below): a name
    pattern matches any component of the path; with a trailing slash, only a directory component."""
    parts = PurePosixPath(path).parts
    for pattern in patterns:
        if pattern.endswith("/"):
            if any(fnmatch.fnmatchcase(part, pattern[:-1]) for part in parts[:-1]):
                return True
        elif any(fnmatch.fnmatchcase(part, pattern) for part in parts):
            return True
    return False


def project_files() -> set[str]:
    """Every file of the working tree that git knows or would add (tracked, plus untracked not gitignored)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                         capture_output=True, check=True).stdout.decode()
    return {path for path in out.split("\0") if path and (ROOT / path).is_file()}


def copied_files(instructions) -> set[str]:
    files = project_files()
    copied: set[str] = set()
    for value in of(instructions, "COPY"):
        *sources, destination = shlex.split(value)
        assert not any(s.startswith("--from") for s in sources), "no multi-stage copies expected"
        assert destination.startswith(WWWROOT), f"COPY {value!r} does not go to {WWWROOT}"
        for source in sources:
            assert source not in (".", "./", "*"), "COPY of the whole build context ships what .funcignore excludes"
            copied |= {f for f in files if f == source or f.startswith(source.rstrip("/") + "/")}
    return copied


def test_base_image_is_the_official_functions_python_311_image_pinned_by_tag(instructions):
    [base] = of(instructions, "FROM")
    repository, _, tag = base.partition(":")
    assert repository == BASE_REPOSITORY
    assert tag and tag != "latest" and "latest" not in base.lower()
    assert tag.startswith("4-python3.11")


def test_apt_installs_without_recommends_and_cleans_its_lists(instructions):
    apt_runs = [run for run in of(instructions, "RUN") if "apt-get install" in run]
    assert apt_runs, "git must be installed with apt"
    for run in apt_runs:
        assert "apt-get update" in run  # in the same layer, so the lists are never stale
        assert all("--no-install-recommends" in part for part in run.split("apt-get install")[1:])
        assert "rm -rf /var/lib/apt/lists/*" in run
    assert any(re.search(r"apt-get install[^&;]*\bgit\b", run) for run in apt_runs)


def test_helm_is_optional_pinned_and_checked_by_checksum(instructions):
    args = dict(value.split("=", 1) for value in of(instructions, "ARG"))
    assert args["INSTALL_HELM"] == "false"
    assert re.fullmatch(r"3\.\d+\.\d+", args["HELM_VERSION"])
    assert re.fullmatch(r"[0-9a-f]{64}", args["HELM_SHA256"])
    [helm_run] = [run for run in of(instructions, "RUN") if "get.helm.sh" in run]
    assert "${HELM_VERSION}" in helm_run and "latest" not in helm_run
    assert 'echo "${HELM_SHA256}  /tmp/helm.tar.gz" | sha256sum -c -' in helm_run
    assert helm_run.index("sha256sum -c") < helm_run.index("tar -xzf")  # verified before it is unpacked


def test_runs_as_non_root_or_says_why_not(instructions):
    users = of(instructions, "USER")
    if users:
        assert users[-1].split(":")[0] not in ("root", "0")
    else:
        comments = " ".join(of(instructions, "COMMENT"))
        assert "No USER:" in comments and "root" in comments


def test_keeps_the_base_images_entrypoint(instructions):
    assert not of(instructions, "ENTRYPOINT") and not of(instructions, "CMD")
    assert any(value.startswith(f"AzureWebJobsScriptRoot={WWWROOT}") for value in of(instructions, "ENV"))


def test_the_image_ships_exactly_what_funcignore_lets_through(instructions):
    patterns = funcignore_patterns()
    assert not [p for p in patterns if "/" in p.rstrip("/") or p.startswith("!")], \
        "keep .funcignore to name patterns so this check reads it exactly as func does"
    published = {f for f in project_files() if not ignored(f, patterns)}
    copied = copied_files(instructions)

    assert copied == published, (sorted(copied - published), sorted(published - copied))
    assert {"function_app.py", "host.json", "requirements.txt"} <= copied
    assert any(f.startswith("core/") for f in copied) and any(f.startswith("handlers/") for f in copied)
    for heavy in ("node_modules/x", "tests/test_x.py", "bench/x.py", "devhost/host.py", ".venv/bin/python",
                  "core/__pycache__/x.pyc", "local.settings.json"):
        assert ignored(heavy, patterns), heavy


def test_the_image_installs_the_pinned_requirements(instructions):
    assert any("pip install" in run and "requirements.txt" in run for run in of(instructions, "RUN"))
    pins = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line and not line.startswith((" ", "#"))]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9._-]+==[^\s=]+", line) for line in pins), pins
