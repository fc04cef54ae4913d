"""A stand-in Flux notification-controller Receiver (type generic-hmac) on 127.0.0.1, for tests and benchmarks.

It answers like `ReceiverServer.handlePayload` (fluxcd/notification-controller, internal/server/receiver_handlers.go):
404 when the request URI is not the Receiver's webhook path, 400 when the signature does not validate, 200 when it
does. The signature check is go-github's `ValidateSignature` (google/go-github, github/messages.go), which the
controller calls with the `X-Signature` header, the raw body bytes and the Secret's `token`:
- an empty header fails ("missing signature");
- the header is split once on "=" (`strings.SplitN(signature, "=", 2)`); without a "=" it fails;
- the prefix picks the hash: `sha1`, `sha256` or `sha512` (exactly, lowercase); any other prefix fails;
- the rest is hex-decoded with `hex.DecodeString` (even length, 0-9a-fA-F, nothing else) or it fails;
- `hmac.Equal(decoded, HMAC(token, body))`.

Test knobs: `fail_next(n, status)` answers the next n requests with `status` (before any check, like a controller
that is not ready: 503), `delay` holds every answer that many seconds (a slow or hung receiver). Every request is
recorded (arrival time, path, headers, body, the answer) in `calls`.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

_HASHES: dict[str, Callable] = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def validate_signature(signature: str, body: bytes, token: bytes) -> str:
    """'' when `signature` validates `body` as go-github's ValidateSignature does, else its error text."""
    if signature == "":
        return "missing signature"
    parts = signature.split("=", 1)
    if len(parts) != 2:
        return f"error parsing signature {signature!r}"
    hash_func = _HASHES.get(parts[0])
    if hash_func is None:
        return f"unknown hash type prefix: {parts[0]!r}"
    if not _HEX.fullmatch(parts[1]):
        return f"error decoding signature {signature!r}"
    if not hmac.compare_digest(bytes.fromhex(parts[1]), hmac.new(token, body, hash_func).digest()):
        return "payload signature check failed"
    return ""


@dataclass(frozen=True)
class Call:
    at: float            # time.time() when the request arrived (before any delay)
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    error: str = ""      # why the signature did not validate


class StandInReceiver:
    """One Receiver: `url` is what FLUX_RECEIVERS names, `token` the Secret's token."""

    def __init__(self, token: str, webhook_path: str = "/hook/0123456789abcdef", *, delay: float = 0.0):
        self.token = token.encode("utf-8")
        self.webhook_path = webhook_path
        self.delay = delay
        self.calls: list[Call] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                arrived = time.time()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, error = receiver._answer(self.path, self.headers.get("X-Signature") or "", body)
                with receiver._lock:
                    receiver.calls.append(Call(arrived, self.path, dict(self.headers.items()), body, status, error))
                    receiver._arrived.notify_all()
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the client gave up waiting
                    pass

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="flux-receiver", daemon=True)

    def _answer(self, path: str, signature: str, body: bytes) -> tuple[int, str]:
        with self._lock:
            if self._failures:
                return self._failures.pop(0), "told to fail"
        if path != self.webhook_path:
            return 404, "no receiver has this webhook path"
        error = validate_signature(signature, body, self.token)
        return (400, error) if error else (200, "")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.webhook_path}"

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._failures += [status] * count

    def accepted(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.status == 200]

    def wait_accepted(self, count: int = 1, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while sum(c.status == 200 for c in self.calls) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._arrived.wait(left)
            return True

    def __enter__(self) -> "StandInReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
