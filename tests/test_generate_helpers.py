"""Builders shared by the test_generate_* files: HLD trees on disk, git repositories, a fake helm binary.

JSON is written for YAML files where the layout does not matter (JSON is YAML); Bedrock-shaped fixtures use
block YAML as Bedrock writes it. Generated output is read back with ruamel directly, not with the code under test.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def write(root: Path, files: dict[str, Any]) -> Path:
    """Write files under root: str values verbatim (dedented), other values as JSON."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = textwrap.dedent(content).lstrip("\n") if isinstance(content, str) else json.dumps(content, indent=1)
        path.write_text(text, encoding="utf-8")
    return root


def component(name: str, *subcomponents: dict, **fields: Any) -> dict:
    document = {"name": name, **fields}
    if subcomponents:
        document["subcomponents"] = list(subcomponents)
    return document


def documents(content: bytes) -> list[Any]:
    return [document for document in YAML(typ="safe").load_all(content.decode()) if document is not None]


def files_of(generation) -> dict[str, bytes]:
    return {generated.path: generated.content for generated in generation.files}


def git(*arguments: str, cwd: Path) -> str:
    result = subprocess.run(["git", *arguments], cwd=cwd, check=True, capture_output=True, text=True,
                            env={**os.environ, **GIT_IDENTITY})
    return result.stdout.strip()


class GitRepository:
    """A work tree plus the bare repository it pushes to; `url` is the bare repository's file:// URL."""

    def __init__(self, base: Path, name: str = "repo") -> None:
        self.work = base / f"{name}-work"
        self.bare = base / f"{name}.git"
        self.work.mkdir(parents=True)
        git("init", "-q", "-b", "main", str(self.work), cwd=base)
        git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=base)
        self.url = self.bare.as_uri()

    def commit(self, files: dict[str, Any], message: str = "change", branch: str = "main") -> str:
        write(self.work, files)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", self.url, f"HEAD:refs/heads/{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def tag(self, name: str, annotated: bool = True) -> None:
        git("tag", *(["-a", "-m", name] if annotated else []), name, cwd=self.work)
        git("push", "-q", self.url, f"refs/tags/{name}", cwd=self.work)


class FakeHelm:
    """An executable standing in for helm: records argv and the values file, then prints `stdout` (or fails)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "helm"
        self._behaviour = directory / "behaviour.json"
        self._calls = directory / "calls.jsonl"
        self.path.write_text(textwrap.dedent(f"""\
            #!{sys.executable}
            import json, sys
            arguments = sys.argv[1:]
            values = next(a.split("=", 1)[1] for a in arguments if a.startswith("--values="))
            with open({str(self._calls)!r}, "a") as log:
                log.write(json.dumps({{"argv": arguments, "values": open(values).read()}}) + "\\n")
            behaviour = json.load(open({str(self._behaviour)!r}))
            sys.stdout.write(behaviour["stdout"])
            sys.stderr.write(behaviour["stderr"])
            sys.exit(behaviour["exit"])
            """))
        self.path.chmod(0o755)
        self.behave()

    def behave(self, stdout: str = "", *, exit: int = 0, stderr: str = "") -> None:
        self._behaviour.write_text(json.dumps({"stdout": stdout, "exit": exit, "stderr": stderr}))

    @property
    def calls(self) -> list[dict]:
        if not self._calls.exists():
            return []
        return [json.loads(line) for line in self._calls.read_text().splitlines()]


def bedrock_hld(root: Path, *, chart: dict | None = None, image_tag: str = "dev-20200405.3") -> Path:
    """An HLD as bedrock-cli lays it out: <project>/<service>/<ring> with chart and static subcomponents."""
    chart = chart or {"source": "https://user:s3cret@dev.azure.com/fabrikam/frontend/_git/charts",
                      "method": "git", "path": "frontend", "branch": "master"}
    chart_lines = "\n".join(f"  {key}: {value}" for key, value in chart.items())
    return write(root, {
        "component.yaml": """
            name: default-component
            subcomponents:
            - name: fabrikam-project
              type: component
              method: local
              path: ./fabrikam-project
            """,
        "fabrikam-project/component.yaml": """
            name: fabrikam-project
            subcomponents:
            - name: fabrikam
              type: component
              method: local
              path: ./fabrikam
            """,
        "fabrikam-project/fabrikam/component.yaml": """
            name: fabrikam
            subcomponents:
            - name: dev
              type: component
              method: local
              path: ./dev
            """,
        "fabrikam-project/fabrikam/dev/component.yaml": f"""
name: dev
type: component
subcomponents:
- name: chart
  type: helm
{chart_lines}
- name: static
  type: static
  method: local
  path: ./static
""",
        "fabrikam-project/fabrikam/dev/config/common.yaml": f"""
            subcomponents:
              chart:
                config:
                  image:
                    repository: myacr.azurecr.io/app-repo-fabrikam
                    tag: {image_tag}
                  serviceName: fabrikam-k8s-svc-dev
            """,
        "fabrikam-project/fabrikam/dev/static/ingress-route.yaml": """
            apiVersion: traefik.containo.us/v1alpha1
            kind: IngressRoute
            metadata:
              name: fabrikam-k8s-svc-dev
            spec:
              routes:
              - match: PathPrefix(`/dev/fabrikam`)
                kind: Rule
                services:
                - name: fabrikam-k8s-svc-dev
                  port: 80
            """,
    })
