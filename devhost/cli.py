"""`python -m devhost`: run a function app locally like `func start` (Core Tools), on Azurite or a real account."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from azure.core.exceptions import AzureError

from core.settings import SettingsError
from core.telemetry import configure_json_logging
from devhost.function_index import UnsupportedFunction
from devhost.host import DEFAULT_GRACE_SECONDS, DEFAULT_LEASE_SECONDS, DevHost
from devhost.host_config import HostConfigError, load_host_json
from devhost.local_settings import load_local_settings
from devhost.queue_storage import ConnectionSettingMissing
from devhost.routes import RouteError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (0: any free port); default 7071")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; default 127.0.0.1")
    parser.add_argument("--app", default="function_app", help="module defining `app`; default function_app")
    parser.add_argument("--settings", type=Path, help="settings file instead of local.settings(.sample).json")
    parser.add_argument("--script-root", type=Path, default=Path.cwd(),
                        help="folder with host.json and local.settings.json; default the current folder")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE_SECONDS,
                        help=f"seconds running work may take to finish on SIGINT/SIGTERM; default {DEFAULT_GRACE_SECONDS:g}")
    parser.add_argument("--lease", type=int, default=DEFAULT_LEASE_SECONDS,
                        help=f"seconds a fetched message stays leased between renewals; default {DEFAULT_LEASE_SECONDS}")
    parser.add_argument("--verbose", action="store_true", help="also log tracebacks of failed invocations")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The app's own JSON log format (one object per line, with trace ids), so host and app lines look alike.
    configure_json_logging(logging.DEBUG if args.verbose else logging.INFO, sys.stderr)
    script_root = args.script_root.resolve()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        used = load_local_settings(script_root, args.settings)
        print(f"devhost: settings from {used}" if used else
              f"devhost: no local.settings.json or local.settings.sample.json in {script_root}; environment only",
              flush=True)
        host_json = load_host_json(script_root / "host.json")
        if str(script_root) not in sys.path:
            sys.path.insert(0, str(script_root))
        app = importlib.import_module(args.app).app
        host = DevHost(app, host_json, os.environ, host=args.host, port=args.port, lease_seconds=args.lease,
                       grace_seconds=args.grace)
    except (SettingsError, HostConfigError, UnsupportedFunction, RouteError) as exc:
        print(f"devhost: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        host.start()
    except ConnectionSettingMissing as exc:
        print(f"devhost: {exc}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:
        print(f"devhost: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})", file=sys.stderr, flush=True)
        return 1
    except AzureError as exc:
        print(f"devhost: storage unreachable ({type(exc).__name__}); is Azurite running?", file=sys.stderr, flush=True)
        return 1

    print(f"devhost listening on {host.url}", flush=True)
    while not stop.wait(0.5):
        pass
    print("devhost: stopping", file=sys.stderr, flush=True)
    host.stop()
    print("devhost: stopped", file=sys.stderr, flush=True)
    return 0
