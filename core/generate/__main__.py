"""`python -m core.generate --hld DIR [--env prod ...] (--out DIR | --check)`.

Environments and the helm mode default to `environments:` and `helmMode:` in `<hld>/autopilot.yaml`
(then [prod] and rendered). Exit status 0 on success, 1 with a one-line reason on stderr on failure.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from core.rules.helm_modes import HELM_MODES
from core.rules.policy import MAX_POLICY_BYTES
from core.rules.repo_yaml import RepoYamlError, read_repo_text
from core.rules.source_hosts import parse_allowed_sources
from core.settings import setting

from .documents import load_yaml
from .errors import GenerationError
from .output import write_generation
from .walk import generate

SETTINGS_FILE = "autopilot.yaml"
SETTINGS_LIMIT = MAX_POLICY_BYTES


@dataclass(frozen=True)
class Defaults:
    environments: tuple[str, ...] = ("prod",)
    helm_mode: str = "rendered"


def read_defaults(hld: Path) -> Defaults:
    """`environments` and `helmMode` from autopilot.yaml; any other key is someone else's and ignored."""
    try:  # the same refusals as the service's policy reader: no symlink, at most SETTINGS_LIMIT bytes
        text = read_repo_text(hld.resolve(), SETTINGS_FILE, limit=SETTINGS_LIMIT)
    except RepoYamlError as error:
        raise GenerationError(str(error)) from None
    if text is None:
        return Defaults()
    document = load_yaml(text, SETTINGS_FILE)
    if not isinstance(document, dict):
        return Defaults()
    environments = document.get("environments")
    if isinstance(environments, str):
        environments = [environments]
    if environments is None:
        environments = list(Defaults.environments)
    if not isinstance(environments, list) or not environments or not all(isinstance(name, str)
                                                                         for name in environments):
        raise GenerationError(f"{SETTINGS_FILE}: `environments` must be a non-empty list of names")
    helm_mode = document.get("helmMode") or Defaults.helm_mode
    if helm_mode not in HELM_MODES:
        raise GenerationError(f"{SETTINGS_FILE}: `helmMode` must be one of {', '.join(HELM_MODES)}")
    return Defaults(tuple(environments), helm_mode)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.generate",
                                     description="Generate Kubernetes manifests from a Fabrikate HLD.")
    parser.add_argument("--hld", required=True, type=Path, help="HLD repository checkout")
    parser.add_argument("--env", action="append", dest="environments", metavar="ENV",
                        help="environment (repeatable; one output folder each; 'a b' layers a over b)")
    parser.add_argument("--out", type=Path, help="manifest repository working tree to write into")
    parser.add_argument("--check", action="store_true", help="render and validate only; write nothing")
    parser.add_argument("--helm-mode", choices=HELM_MODES)
    parser.add_argument("--hld-repo-url", help="URL of the HLD repository (helmrelease mode, local charts)")
    parser.add_argument("--helm-bin", default=setting("HELM_BIN") or None,
                        help="helm binary (default: $HELM_BIN, then helm on PATH)")
    parser.add_argument("--cache-dir", type=Path, help="cache for git-sourced components")
    parser.add_argument("--allowed-source-hosts", metavar="LIST",
                        default=setting("ALLOWED_SOURCE_HOSTS"),
                        help="comma list of hosts git sources may come from: host (https), ssh://host, file:// "
                             "(default: $ALLOWED_SOURCE_HOSTS, else the host of --hld-repo-url)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    if not arguments.check and arguments.out is None:
        parser.error("--out is required unless --check is given")
    try:
        allowed = parse_allowed_sources(arguments.allowed_source_hosts) if arguments.allowed_source_hosts else None
    except ValueError as error:
        parser.error(f"--allowed-source-hosts: {error}")
    try:
        defaults = read_defaults(arguments.hld)
        generation = generate(
            arguments.hld, arguments.environments or defaults.environments,
            helm_mode=arguments.helm_mode or defaults.helm_mode, helm_bin=arguments.helm_bin,
            cache_dir=arguments.cache_dir, hld_repo_url=arguments.hld_repo_url, allowed_sources=allowed)
        if arguments.check:
            print(f"ok: {len(generation.files)} files for {', '.join(generation.environments)}")
            return 0
        changed = write_generation(generation, arguments.out)
    except GenerationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: {error.filename or ''}: {error.strerror}", file=sys.stderr)
        return 1
    print(f"{len(changed)} paths changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
