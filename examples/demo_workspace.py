"""Prepare the local demo: bare HLD and manifest repos under .local/demo/, seeded from examples/.

`python -m examples.demo_workspace --shell` prints `export` lines for scripts/run-local.sh (make run) and a
ready-to-paste curl of an ACR push on stderr. Existing demo repos are kept, so state survives restarts;
`--reset` starts them afresh.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
_GIT_ENV = {"GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@example.invalid",
            "GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@example.invalid", "GIT_TERMINAL_PROMPT": "0"}


def _git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **_GIT_ENV})


def seed_bare_repo(path: Path, source: Path, branch: str = "main", message: str = "Seed from examples/") -> str:
    """Create a bare repo at `path` holding `source` as one commit on `branch`; return its file:// URL."""
    _git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(path))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "seed"
        shutil.copytree(source, work)
        _git("init", "--quiet", f"--initial-branch={branch}", cwd=work)
        _git("add", "--all", cwd=work)
        _git("commit", "--quiet", "-m", message, cwd=work)
        _git("push", "--quiet", str(path), f"HEAD:refs/heads/{branch}", cwd=work)
    return path.resolve().as_uri()


def prepare(demo_dir: Path, reset: bool = False) -> dict[str, str]:
    if reset and demo_dir.exists():
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True, exist_ok=True)
    urls = {}
    for name, source in (("hld", EXAMPLES / "hld"), ("manifests", EXAMPLES / "manifests")):
        path = demo_dir / f"{name}.git"
        urls[name] = path.resolve().as_uri() if path.exists() else seed_bare_repo(path, source)
    return {"HLD_REPO_URL": urls["hld"], "MANIFEST_REPO_URL": urls["manifests"],
            "WORK_DIR": str((demo_dir / "work").resolve()), "WRITE_MODE": "direct", "HELM_MODE": "helmrelease"}


CURL = """curl -sS -X POST http://127.0.0.1:{port}/api/hooks/acr \\
  -H 'Authorization: Bearer {secret}' -H 'Content-Type: application/json' \\
  -d '{{"id":"demo-{n}","timestamp":"2026-01-01T00:00:00Z","action":"push",
       "target":{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
                 "digest":"sha256:{digest}","repository":"fabrikam/frontend","tag":"1.4.1"}},
       "request":{{"host":"fabrikam.azurecr.io"}}}}'"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / ".local" / "demo")
    parser.add_argument("--shell", action="store_true", help="print export lines for a shell")
    parser.add_argument("--reset", action="store_true", help="recreate the demo repos")
    parser.add_argument("--port", default=os.environ.get("PORT", "7071"))
    args = parser.parse_args(argv)
    values = prepare(args.dir, args.reset)
    if args.shell:
        for key, value in values.items():
            print(f"export {key}='{value}'")
    else:
        for key, value in values.items():
            print(f"{key}={value}")
    print(f"\nDemo repos: {values['HLD_REPO_URL']} (HLD) and {values['MANIFEST_REPO_URL']} (manifests).\n"
          f"Push an image (ACR webhook):\n\n{CURL.format(port=args.port, secret='demo-acr-secret', n=os.getpid(), digest='0' * 64)}\n\n"
          f"Then look: git --git-dir {args.dir}/hld.git log -p -1 main ; "
          f"git --git-dir {args.dir}/manifests.git log --stat -1 main ;\n"
          f"{sys.executable} -m core.ops.cli trace\n", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
