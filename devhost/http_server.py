"""The HTTP front: HTTP-triggered functions at `/<routePrefix>/<route>` and the admin API, on a threaded server.

As the Functions host does:
- Routing answers 404 when no route matches, and also when a route matches but not the method: the host's
  route constraint includes the method, so a wrong method or a HEAD on a GET-only function is a plain 404
  (azure-functions-host#10098, #11625). Routing comes before auth.
- Keys (`HostKeys`): function-level routes take the function key or the master key (`?code=` or
  `x-functions-key`); admin-level routes and `POST /admin/functions/<name>` take the master key only
  ("Work with access keys in Azure Functions", learn.microsoft.com). 401 otherwise.
- A function that raises (or times out) answers 500 with a one-line body.
- A request body must arrive at Kestrel's minimum data rate, 240 bytes/s after a 5 s grace period
  (`KestrelServerLimits.MinRequestBodyDataRate`); a body that stalls (a Content-Length larger than what is
  sent) is answered 408 and the connection closed, instead of holding a thread until the idle timeout.
Each response is written in one send with TCP_NODELAY, on HTTP/1.1 keep-alive connections, so small requests
are not held back by Nagle/delayed-ACK stalls.
"""
from __future__ import annotations

import hmac
import json
import logging
import socket
import socketserver
import threading
import time
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from devhost.admin_invocations import AdminInvocations
from devhost.function_index import FunctionIndex, HttpFunction
from devhost.invocation import Invoker, failure_summary, log_invocation

log = logging.getLogger("devhost")

ADMIN_PREFIX = "/admin/functions/"
MAX_BODY = 100 * 1024 * 1024  # the Functions host's request size limit
BODY_GRACE_SECONDS = 5.0  # Kestrel MinRequestBodyDataRate: grace period ...
BODY_MIN_RATE = 240.0  # ... and bytes per second
_READ_CHUNK = 64 * 1024
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass(frozen=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def _text(status: int, text: str, *headers: tuple[str, str]) -> Reply:
    return Reply(status, (("Content-Type", "text/plain; charset=utf-8"), *headers), (text + "\n").encode())


def _reply_from_result(result: Any) -> Reply:
    if isinstance(result, func.HttpResponse):
        headers = [(k, v) for k, v in result.headers.items() if k.lower() not in _HOP_BY_HOP]
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", f"{result.mimetype}; charset={result.charset}"))
        return Reply(result.status_code, tuple(headers), result.get_body())
    if isinstance(result, (str, bytes)):
        return Reply(200, (("Content-Type", "text/plain; charset=utf-8"),),
                     result.encode("utf-8") if isinstance(result, str) else result)
    raise TypeError(f"returned {type(result).__name__}, not an HttpResponse")


@dataclass(frozen=True)
class HostKeys:
    """`FUNCTIONS_KEY` (function-level) and `FUNCTIONS_MASTER_KEY` (the host's master key).

    In Azure both always exist. Locally, with neither set, no key is checked (as under Core Tools); once either
    is set, function-level routes need one of them and admin-level ones the master key.
    """

    function_key: str = ""
    master_key: str = ""

    @property
    def enforced(self) -> bool:
        return bool(self.function_key or self.master_key)

    def accepts(self, given: str, level: str) -> bool:
        if not self.enforced:
            return True
        valid = [self.master_key] if level == "admin" else [self.function_key, self.master_key]
        # Every candidate is compared (no short-circuit), in constant time per comparison.
        matches = [hmac.compare_digest(given.encode("utf-8"), key.encode("utf-8")) for key in valid if key]
        return any(matches)


def _given_key(params: Mapping[str, str], headers: Mapping[str, str]) -> str:
    return params.get("code") or next((v for k, v in headers.items() if k.lower() == "x-functions-key"), "")


class Dispatcher:
    """Maps one request to a Reply; no socket I/O here."""

    def __init__(self, index: FunctionIndex, invoker: Invoker, keys: HostKeys, admin: AdminInvocations):
        self._index = index
        self._invoker = invoker
        self._keys = keys
        self._admin = admin

    def dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes, base_url: str) -> Reply:
        parts = urlsplit(target)
        params: dict[str, str] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            params[name] = f"{params[name]},{value}" if name in params else value
        path = parts.path or "/"
        if path.lower().startswith(ADMIN_PREFIX):
            return self._admin_call(method, path[len(ADMIN_PREFIX):], params, headers, body)
        for function in self._index.http:
            route_params = function.route.match(path)
            if route_params is None or (function.methods is not None and method not in function.methods):
                continue
            if function.auth_level != "anonymous" and not self._keys.accepts(_given_key(params, headers),
                                                                             function.auth_level):
                needed = "the master key" if function.auth_level == "admin" else "a function key"
                log_invocation(function.name, f"{method} {path}", f"status=401 rejected (needs {needed})", 0.0)
                return _text(401, f"Unauthorized: {needed} is required (?code= or x-functions-key)")
            request = func.HttpRequest(method, base_url + target, headers=headers, params=params,
                                       route_params=route_params, body=body)
            return self._invoke(function, request, f"{method} {path}")
        return _text(404, "Not Found")

    def _invoke(self, function: HttpFunction, request: func.HttpRequest, subject: str) -> Reply:
        started = time.perf_counter()
        try:
            reply = _reply_from_result(self._invoker.call(function, request))
        except Exception as exc:  # noqa: BLE001 - the host answers 500 like Azure; the function should not raise
            log.debug("%s %s traceback:\n%s", function.name, subject, traceback.format_exc())
            log_invocation(function.name, subject, f"status=500 failed ({failure_summary(exc)})",
                           (time.perf_counter() - started) * 1000)
            return _text(500, f"function {function.name} failed")
        log_invocation(function.name, subject, f"status={reply.status}", (time.perf_counter() - started) * 1000)
        return reply

    def _admin_call(self, method: str, name: str, params: Mapping[str, str], headers: Mapping[str, str],
                    body: bytes) -> Reply:
        if method != "POST":
            return _text(404, "Not Found")
        if not self._keys.accepts(_given_key(params, headers), "admin"):
            return _text(401, "Unauthorized: the admin API requires the master key (FUNCTIONS_MASTER_KEY)")
        function = self._index.non_http_function(name)
        if function is None:
            if any(fn.name.lower() == name.lower() for fn in self._index.http):
                return _text(400, f"function {name} is HTTP-triggered; call its route instead")
            return _text(404, f"no function named {name}")
        try:
            payload = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _text(400, 'body must be JSON: {"input": "<message text>"}')
        text = payload.get("input") if isinstance(payload, dict) else None
        if not isinstance(text, str):
            return _text(400, 'body must be JSON: {"input": "<message text>"} with a string input')
        invocation_id = self._admin.submit(function, text)
        return Reply(202, (("x-devhost-invocation-id", invocation_id),))


class _BodyError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _BodyClock:
    """Kestrel's minimum body data rate: after the grace period, the bytes received so far must average at least
    BODY_MIN_RATE per second since the body started; each socket read waits only as long as that can still hold."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._start = time.monotonic()
        self.received = 0

    def arm(self) -> None:
        remaining = self._start + max(BODY_GRACE_SECONDS, self.received / BODY_MIN_RATE) - time.monotonic()
        if remaining <= 0:
            raise _BodyError(408, "Request Timeout: the request body arrived too slowly")
        self._sock.settimeout(remaining)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    server: "DevHttpServer"

    def _read_body(self) -> bytes:
        clock = _BodyClock(self.connection)
        try:
            return self._read_body_timed(clock)
        except (TimeoutError, socket.timeout):
            raise _BodyError(408, "Request Timeout: the request body arrived too slowly") from None
        finally:
            self.connection.settimeout(self.timeout)

    def _read(self, clock: _BodyClock, size: int) -> bytes:
        parts: list[bytes] = []
        while size > 0:
            clock.arm()
            part = self.rfile.read1(min(size, _READ_CHUNK))
            if not part:
                raise _BodyError(400, "request body ended before Content-Length")
            clock.received += len(part)
            size -= len(part)
            parts.append(part)
        return b"".join(parts)

    def _readline(self, clock: _BodyClock, limit: int) -> bytes:
        clock.arm()
        line = self.rfile.readline(limit)
        clock.received += len(line)
        return line

    def _read_body_timed(self, clock: _BodyClock) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self._readline(clock, 65537)
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BodyError(400, "bad chunked encoding") from None
                if size == 0:
                    while self._readline(clock, 65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise _BodyError(413, "request body too large")
                chunks.append(self._read(clock, size))
                self._readline(clock, 3)
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise _BodyError(400, "bad Content-Length") from None
        if length < 0:
            raise _BodyError(400, "bad Content-Length")
        if length > MAX_BODY:
            raise _BodyError(413, "request body too large")
        return self._read(clock, length)

    def _handle(self) -> None:
        if self.server.draining.is_set():
            self.close_connection = True
            self._send(_text(503, "Service Unavailable: host is stopping"))
            return
        with self.server.in_flight:
            self._dispatch()

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except _BodyError as exc:
            self.close_connection = True
            self._send(_text(exc.status, str(exc)))
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        base_url = f"http://{self.headers.get('Host') or self.server.authority}"
        self._send(self.server.dispatcher.dispatch(self.command, self.path, headers, body, base_url))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_TRACE = _handle

    def _send(self, reply: Reply) -> None:
        try:
            phrase = HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = ""
        lines = [f"HTTP/1.1 {reply.status} {phrase}"]
        lines += [f"{name}: {value}" for name, value in reply.headers]
        lines.append(f"Content-Length: {len(reply.body)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")
        self.wfile.write(head if self.command == "HEAD" else head + reply.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silenced: invocations are logged by the dispatcher, without query strings."""


class _InFlight:
    """Counts requests being handled, so stopping can wait for them."""

    def __init__(self) -> None:
        self._count = 0
        self._cond = threading.Condition()

    def __enter__(self) -> None:
        with self._cond:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def wait_idle(self, deadline: float) -> None:
        with self._cond:
            while self._count and time.monotonic() < deadline:
                self._cond.wait(timeout=deadline - time.monotonic())


class DevHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, dispatcher: Dispatcher):
        super().__init__((host, port), _Handler)
        self.dispatcher = dispatcher
        self.draining = threading.Event()
        self.in_flight = _InFlight()

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the FQDN of the address (a DNS lookup) for nothing.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def authority(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"
