"""Storage queue clients for the host: raw message text on the wire, encoded and decoded per `messageEncoding`.

The host reads raw text and decodes each message itself, so one message that is not valid base64 fails like a
binding error (retried, then poisoned) instead of breaking the whole batch.
"""
from __future__ import annotations

import base64
import binascii
import threading
from typing import Mapping

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from core.adapters.storage import normalize_connection_string

_CLIENT_OPTIONS = {"retry_total": 2, "retry_backoff_factor": 0.2, "connection_timeout": 3, "read_timeout": 10}


class ConnectionSettingMissing(KeyError):
    """A binding names a connection setting that is not set."""

    def __str__(self) -> str:
        return str(self.args[0])


class MessageDecodeError(ValueError):
    """A queue message is not valid for the configured messageEncoding."""


def connection_string(environ: Mapping[str, str], setting: str) -> str:
    value = (environ.get(setting) or "").strip()
    if not value:
        raise ConnectionSettingMissing(f"connection setting {setting} is not set (use UseDevelopmentStorage=true)")
    return normalize_connection_string(value)


def open_queue(conn: str, name: str) -> QueueClient:
    """A client for queue `name`, created if missing."""
    client = QueueClient.from_connection_string(conn, name, **_CLIENT_OPTIONS)
    try:
        client.create_queue()
    except ResourceExistsError:
        pass
    return client


def encode_body(body: bytes, encoding: str) -> str:
    return base64.b64encode(body).decode("ascii") if encoding == "base64" else body.decode("utf-8")


def decode_body(text: str, encoding: str) -> bytes:
    if encoding != "base64":
        return text.encode("utf-8")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MessageDecodeError(f"message is not valid base64 ({exc})") from exc


class QueueClients:
    """One client per (connection string, queue), created on first use and shared between threads."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], QueueClient] = {}
        self._lock = threading.Lock()

    def get(self, conn: str, name: str) -> QueueClient:
        with self._lock:
            client = self._clients.get((conn, name))
            if client is None:
                client = self._clients[(conn, name)] = open_queue(conn, name)
            return client
