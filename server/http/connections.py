"""The HTTP server's front door: what an anonymous client can make it hold, and for how long.

Tornado's ``HTTPServer`` accepts every connection it can and waits for ever on a slow
request; at descriptor exhaustion its accept handler raises on every turn of the loop. This
server, a subclass, adds:

* **Timeouts with an answer.** The headers of a request must arrive within
  ``server.header_timeout_seconds`` of its first byte (of the connection's opening, for its
  first request), the body within ``server.body_timeout_seconds`` of the headers: else
  ``408`` with the JSON error, and the connection closes. A kept-alive connection that sends
  nothing is closed quietly after ``KEEPALIVE_SECONDS``.
* **Sizes with an answer.** Headers (request line included) over ``limits.max_header_bytes``
  get ``431``, and a body declared or grown over :func:`body_ceiling` ``413``, with the JSON
  error, at once: the body is not read.
* **Connection caps.** ``server.max_connections`` in total and
  ``server.max_connections_per_address`` per client address (not applied behind a trusted
  proxy, whose address every client shares); the excess is answered ``503`` / ``429`` with
  the JSON error and ``Retry-After``, and closed.
* **Descriptor exhaustion.** When ``accept`` fails for want of descriptors (or memory), the
  server stops accepting for a moment (doubling up to a second), keeps serving the
  connections it has, logs once per ``_LOG_EVERY`` seconds, and starts accepting again by
  itself.

A refused request's answer is written as the socket closes, then the socket is shut for
writing and drained briefly ("lingering close"): closing with unread data in the socket
would reset the connection, and the client would never see the answer.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import structlog
from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.iostream import UnsatisfiableReadError

from server.http.errors import ApiCode
from server.internals.tornado_internals import CountingStream, request_stream

__all__ = ["ConnectionLimits", "GuardedHTTPServer", "body_ceiling", "error_response"]

log = structlog.get_logger("sluice.http")

# A kept-alive connection may sit idle this long between requests (above the 60 s that
# proxies such as nginx keep idle upstream connections, so they close first).
KEEPALIVE_SECONDS = 75.0
# Bodies between limits.max_body_bytes and this are read and dropped, so that the client
# sees its 413 on a healthy connection; above it they are refused unread.
_DRAIN_BODY_BYTES = 1024 * 1024
# accept() retries after descriptor exhaustion: from this, doubling, up to the maximum.
_BACKOFF_MIN = 0.05
_BACKOFF_MAX = 1.0
_LOG_EVERY = 10.0
# A lingering close gives the client this long (and this many bytes) to finish sending.
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 64 * 1024 * 1024
_LINGER_MAX = 256  # sockets lingering at once; beyond, refusals close at once
_RETRY_AFTER = 5
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def body_ceiling(max_body_bytes: int) -> int:
    """The largest body read at all (and dropped when over ``max_body_bytes``)."""
    return max(max_body_bytes, _DRAIN_BODY_BYTES)


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    retry_after: int | None = None,
    openai: bool = False,
) -> bytes:
    """A complete HTTP/1.1 response with the JSON error body, closing the connection;
    ``openai``: as OpenAI's error object, for the OpenAI-compatible API's paths."""
    error: dict[str, Any] = {"code": code, "message": message}
    if openai:
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    headers = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json; charset=utf-8",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        "Connection: close",
    ]
    if retry_after is not None:
        error["retry_after"] = retry_after
        headers.append(f"Retry-After: {retry_after}")
    body = json.dumps({"error": error}).encode()
    headers.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


_HEADERS_LATE = error_response(
    408, ApiCode.REQUEST_TIMEOUT, "The request's headers did not arrive in time."
)
_BODY_LATE = error_response(
    408, ApiCode.REQUEST_TIMEOUT, "The request's body did not arrive in time."
)
_HEADERS_TOO_LARGE = error_response(
    431, ApiCode.HEADERS_TOO_LARGE, "The request line or headers are too large."
)
_BODY_TOO_LARGE = error_response(413, ApiCode.TOO_LARGE, "The body is too large.")
# The same refusals on /v1/, whose clients' SDKs read OpenAI's error object.
_OPENAI_PREFIX = "/v1/"
_OPENAI_BODY_LATE = error_response(
    408, ApiCode.REQUEST_TIMEOUT, "The request's body did not arrive in time.", openai=True
)
_OPENAI_BODY_TOO_LARGE = error_response(
    413, ApiCode.TOO_LARGE, "The body is too large.", openai=True
)
_SERVER_FULL = error_response(
    503,
    ApiCode.UNAVAILABLE,
    "The server has too many connections open. Try again shortly.",
    retry_after=_RETRY_AFTER,
)
_ADDRESS_FULL = error_response(
    429,
    ApiCode.TOO_MANY_CONNECTIONS,
    "Too many connections from your address. Close some and try again.",
    retry_after=_RETRY_AFTER,
)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    max_body_bytes: int
    max_connections: int  # 0: no cap
    max_per_address: int  # 0: no cap


class _Every:
    """Log a repeated condition once per interval, with how often it happened since."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = -interval
        self.count = 0

    def due(self) -> int | None:
        """The count to report now, or None when this one is kept quiet."""
        self.count += 1
        now = time.monotonic()
        if now - self.last < self.interval:
            return None
        self.last, count, self.count = now, self.count, 0
        return count


class GuardedHTTPServer(HTTPServer):
    """``HTTPServer`` with timeouts, size limits, connection caps and accept backoff."""

    def initialize(  # type: ignore[override]
        self, request_callback: Any, *, limits: ConnectionLimits, **kwargs: Any
    ) -> None:
        ceiling = body_ceiling(limits.max_body_bytes)
        super().initialize(
            request_callback,
            # Tornado's own limits stay as backstops behind ours.
            max_header_size=limits.max_header_bytes,
            max_body_size=2 * ceiling,
            idle_connection_timeout=KEEPALIVE_SECONDS + limits.header_timeout,
            body_timeout=2 * limits.body_timeout + 1,
            **kwargs,
        )
        self.limits = limits
        self.ceiling = ceiling
        self.open_connections = 0
        self.lingering = 0
        self._per_address: Counter[str] = Counter()
        self._listening: list[socket.socket] = []
        self._paused: dict[int, asyncio.TimerHandle] = {}
        self._backoff = _BACKOFF_MIN
        self._paused_log = _Every(_LOG_EVERY)
        self._refused_log = _Every(_LOG_EVERY)
        self._loop = asyncio.get_running_loop()

    # -- accepting -------------------------------------------------------------------------

    def add_sockets(self, sockets: Any) -> None:
        self._loop = asyncio.get_running_loop()
        for sock in sockets:
            sock.setblocking(False)
            self._listening.append(sock)
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def stop(self) -> None:
        for sock in self._listening:
            timer = self._paused.pop(sock.fileno(), None)
            if timer is not None:
                timer.cancel()
            else:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._listening = []
        super().stop()

    def _accept(self, sock: socket.socket) -> None:
        # As Tornado's accept handler: a bounded batch per turn, so that a flood of
        # connections cannot starve the streams already open.
        for _ in range(128):
            try:
                connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                self._pause(sock, error)
                return
            self._backoff = _BACKOFF_MIN
            self._admit(connection, address)

    def _pause(self, sock: socket.socket, error: OSError) -> None:
        """Out of descriptors (or another accept failure): stop accepting for a moment
        instead of failing on every turn of the loop, and say so once in a while."""
        fd = sock.fileno()
        self._loop.remove_reader(fd)
        delay = self._backoff
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
        self._paused[fd] = self._loop.call_later(delay, self._resume, sock)
        count = self._paused_log.due()
        if count is not None:
            log.warning(
                "accept_paused",
                reason=error.strerror or type(error).__name__,
                out_of_descriptors=error.errno in _OUT_OF_DESCRIPTORS,
                retry_in_ms=round(delay * 1000),
                open_connections=self.open_connections,
                times=count,
            )

    def _resume(self, sock: socket.socket) -> None:
        if self._paused.pop(sock.fileno(), None) is not None:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _admit(self, connection: socket.socket, address: Any) -> None:
        ip = address[0] if isinstance(address, tuple) else ""
        limits = self.limits
        refusal: bytes | None = None
        if limits.max_connections and self.open_connections >= limits.max_connections:
            refusal = _SERVER_FULL
        elif limits.max_per_address and self._per_address[ip] >= limits.max_per_address:
            refusal = _ADDRESS_FULL
        if refusal is not None:
            count = self._refused_log.due()
            if count is not None:
                log.warning(
                    "connections_refused",
                    reason="per_address" if refusal is _ADDRESS_FULL else "total",
                    open_connections=self.open_connections,
                    times=count,
                )
            self.open_connections += 1  # until the lingering close ends
            self._per_address[ip] += 1
            self._linger(connection, refusal, ip, seconds=0.5)
            return
        self.open_connections += 1
        self._per_address[ip] += 1
        stream = CountingStream(
            connection,
            self._closed,
            address=ip,
            max_buffer_size=self.max_buffer_size,
            read_chunk_size=self.read_chunk_size,
        )
        self.handle_stream(stream, address)

    def _closed(self, sock: socket.socket, stream: CountingStream) -> None:
        ip = stream.address
        refusal = stream.refusal
        if refusal is None and isinstance(stream.error, UnsatisfiableReadError):
            refusal = _HEADERS_TOO_LARGE  # Tornado's max_header_size: the headers never ended
        if refusal is not None:
            self._linger(sock, refusal, ip, seconds=_LINGER_SECONDS)
            return
        sock.close()
        self._release(ip)

    def _release(self, ip: str) -> None:
        self.open_connections -= 1
        self._per_address[ip] -= 1
        if self._per_address[ip] <= 0:
            del self._per_address[ip]

    def _linger(self, sock: socket.socket, response: bytes, ip: str, *, seconds: float) -> None:
        """Send ``response``, shut the socket for writing, read and drop what the client
        still sends until it closes (or ``seconds`` pass), then close."""
        try:
            sock.setblocking(False)
            sock.send(response)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            self._release(ip)
            return
        if self.lingering >= _LINGER_MAX:
            sock.close()
            self._release(ip)
            return
        self.lingering += 1
        fd = sock.fileno()
        budget = [_LINGER_BYTES]

        def done() -> None:
            if sock.fileno() == -1:
                return
            self._loop.remove_reader(fd)
            timer.cancel()
            sock.close()
            self.lingering -= 1
            self._release(ip)

        def drain() -> None:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            budget[0] -= len(data)
            if not data or budget[0] <= 0:
                done()

        timer = self._loop.call_later(seconds, done)
        self._loop.add_reader(fd, drain)

    # -- requests --------------------------------------------------------------------------

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        stream = request_stream(request_conn)
        if stream is None:
            return delegate
        stream.served += 1
        return _TimedRequest(delegate, stream, self, first=stream.served == 1)


class _TimedRequest(httputil.HTTPMessageDelegate):
    """One request's clock and size checks, in front of the application's delegate."""

    __slots__ = (
        "_forwarded",
        "_inner",
        "_mark",
        "_openai",
        "_received",
        "_refused",
        "_server",
        "_started",
        "_stream",
        "_timer",
        "_waiting_since",
    )

    def __init__(
        self,
        inner: httputil.HTTPMessageDelegate,
        stream: CountingStream,
        server: GuardedHTTPServer,
        *,
        first: bool,
    ) -> None:
        self._inner = inner
        self._stream = stream
        self._server = server
        self._forwarded = False
        self._openai = False
        self._refused = False
        self._received = 0
        loop = server._loop
        self._started = loop.time()
        # What the connection had received when no request had yet taken any of it.
        self._mark = stream.received - stream.buffered()
        # The first request's clock starts with the connection. A kept-alive connection
        # may idle until its next request; that request's clock starts with its first
        # byte, as seen by the next check (so it has one to two intervals).
        self._waiting_since: float | None = self._started if first else None
        self._timer: asyncio.TimerHandle | None = loop.call_later(
            server.limits.header_timeout, self._check_headers
        )

    def _check_headers(self) -> None:
        self._timer = None
        stream, loop, timeout = self._stream, self._server._loop, self._server.limits.header_timeout
        if stream.closed():
            return
        now = loop.time()
        if self._waiting_since is None:
            if stream.received == self._mark:  # idle between requests
                if now - self._started >= KEEPALIVE_SECONDS:
                    stream.close()
                    return
            else:
                self._waiting_since = now
            self._timer = loop.call_later(timeout, self._check_headers)
            return
        waited = now - self._waiting_since
        if waited < timeout:
            self._timer = loop.call_later(timeout - waited, self._check_headers)
            return
        # A connection that sent nothing at all (a browser's preconnect) is closed quietly.
        self._refuse(_HEADERS_LATE if stream.received > self._mark else None)

    def _check_body(self) -> None:
        self._timer = None
        self._refuse(_OPENAI_BODY_LATE if self._openai else _BODY_LATE)

    def _refuse(self, response: bytes | None) -> None:
        """End the request: ``response`` is written as the connection closes (nothing when
        a response is already being written, or for a connection that sent nothing)."""
        self._refused = True
        stream = self._stream
        if stream.closed():
            return
        if response is not None and not stream.writing():
            stream.refusal = response
        stream.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        self._cancel_timer()
        path = getattr(start_line, "path", "")
        self._openai = path.startswith(_OPENAI_PREFIX)
        length = headers.get("Content-Length", "")
        declared = int(length) if length.isdigit() else None
        if declared is not None and declared > self._server.ceiling:
            self._refuse(_OPENAI_BODY_TOO_LARGE if self._openai else _BODY_TOO_LARGE)
            return None
        expects_body = bool(declared) or "Transfer-Encoding" in headers
        # A body read with its headers (most JSON requests come in one packet) needs no
        # clock: a cancelled timer would stay in the loop's queue for body_timeout.
        arrived = declared is not None and self._stream.buffered() >= declared
        if expects_body and not arrived:
            self._timer = self._server._loop.call_later(
                self._server.limits.body_timeout, self._check_body
            )
        self._forwarded = True
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self._refused:
            return None
        self._received += len(chunk)
        if self._received > self._server.ceiling:
            self._cancel_timer()
            self._refuse(_OPENAI_BODY_TOO_LARGE if self._openai else _BODY_TOO_LARGE)
            return None
        return self._inner.data_received(chunk)

    def finish(self) -> None:
        self._cancel_timer()
        if not self._refused:
            self._inner.finish()

    def on_connection_close(self) -> None:
        self._cancel_timer()
        if self._forwarded:
            self._inner.on_connection_close()
