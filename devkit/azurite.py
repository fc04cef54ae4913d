"""Start and stop a private Azurite (queues + tables) for tests and benchmarks, on free loopback ports."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core.adapters.storage import dev_connection_string

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"Azurite did not listen on 127.0.0.1:{port}")


@contextmanager
def running_azurite() -> Iterator[str]:
    """Yield a connection string for a fresh in-memory Azurite; stop it afterwards."""
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"{AZURITE_BIN} missing: run `npm ci` (make test does)")
    ports = [free_port(), free_port(), free_port()]
    workdir = tempfile.mkdtemp(prefix="azurite-")  # Azurite writes its debug/extent files under the cwd
    cmd = [str(AZURITE_BIN), "--silent", "--disableTelemetry", "--skipApiVersionCheck", "--inMemoryPersistence",
           "--blobHost", "127.0.0.1", "--blobPort", str(ports[0]),
           "--queueHost", "127.0.0.1", "--queuePort", str(ports[1]),
           "--tableHost", "127.0.0.1", "--tablePort", str(ports[2])]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        for port in ports[1:]:
            if proc.poll() is not None:
                raise RuntimeError(f"Azurite exited with code {proc.returncode}")
            _wait_listening(port, deadline)
        yield dev_connection_string(blob_port=ports[0], queue_port=ports[1], table_port=ports[2])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def clear_account(connection_string: str) -> None:
    """Delete every queue and table so the next test starts empty."""
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueServiceClient

    queues = QueueServiceClient.from_connection_string(connection_string)
    for q in queues.list_queues():
        queues.delete_queue(q.name)
    tables = TableServiceClient.from_connection_string(connection_string)
    for t in tables.list_tables():
        tables.delete_table(t.name)


if __name__ == "__main__":  # pragma: no cover - manual helper
    with running_azurite() as conn:
        print(conn, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    os._exit(0)
