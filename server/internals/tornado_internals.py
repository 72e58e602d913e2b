"""Every use of Tornado's internals, in one place (``tests/test_tornado_internals.py`` fails
when Tornado changes under any of them).

Each one is here because Tornado has no public way to do it:

* :func:`drop_request_headers` — a streaming response no longer needs the table of headers
  it has sent (``RequestHandler._headers``); kept, it is ~2 KiB of every open stream.
* :func:`drop_template_namespace` — a handler that renders no template lets go of
  ``RequestHandler.ui`` (and the reference cycle it makes with the handler) at once.
* :func:`connection_socket` — the socket under a request (``request.connection.stream``),
  to reset a connection to a reader that reads nothing.
* :class:`GZipExceptEventStream` — ``GZipContentEncoding._compressible_type`` is the only way
  to keep gzip off one content type.
* :class:`CountingStream` — an ``IOStream`` that counts the bytes it reads
  (``read_from_fd``), tells what it holds unread (``_read_buffer_size``), and can hand its
  socket on instead of closing it (``close_fd``): how the
  server tells an idle connection from a slow request, and answers a request it refuses
  before Tornado has parsed one (``server/http/connections.py``). Its two write queues
  (``_write_buffer._buffers``, ``_write_futures``) are short lists, not deques: a deque
  allocates 0.74 KiB from the start, and every open stream has one connection.
* :func:`request_stream` — the stream under an ``HTTP1Connection`` (``.stream``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from tornado import httputil, web
from tornado.iostream import IOStream
from tornado.web import GZipContentEncoding

from server.internals.short_queue import ShortQueue

__all__ = [
    "CountingStream",
    "GZipExceptEventStream",
    "connection_socket",
    "drop_request_headers",
    "drop_template_namespace",
    "request_stream",
]


def drop_request_headers(handler: web.RequestHandler) -> None:
    """Let the handler's response-header table go once the headers are on the wire."""
    handler._headers = httputil.HTTPHeaders()


def drop_template_namespace(handler: web.RequestHandler) -> None:
    """Drop the handler's template namespace (``ui``): it renders no template."""
    handler.ui = None  # type: ignore[assignment]


def connection_socket(request: httputil.HTTPServerRequest) -> socket.socket | None:
    """The socket a request arrived on, while it is open."""
    stream: IOStream | None = getattr(request.connection, "stream", None)
    return None if stream is None else stream.socket


def request_stream(connection: object) -> CountingStream | None:
    """The stream under an ``HTTP1Connection``, when it is one of ours."""
    stream = getattr(connection, "stream", None)
    return stream if isinstance(stream, CountingStream) else None


class GZipExceptEventStream(GZipContentEncoding):
    """Compress what is worth it, never an event stream: gzip buffers, and a buffered event
    arrives late."""

    def _compressible_type(self, ctype: str) -> bool:
        return not ctype.startswith("text/event-stream") and super()._compressible_type(ctype)


class CountingStream(IOStream):
    """An ``IOStream`` that counts what it reads, and whose socket can be handed to
    ``on_close`` instead of being closed (to write a last answer and close gently).

    ``on_close(sock, stream)`` is called exactly once, when Tornado closes the stream; it
    owns the socket from then on.
    """

    # Slots, not instance attributes: IOStream sets 27 of its own, and past 30 the instance
    # dict stops sharing its keys with the other connections' and grows from 296 bytes to
    # 1,584, for every open connection.
    __slots__ = ("_on_close", "address", "received", "refusal", "served")

    def __init__(
        self,
        sock: socket.socket,
        on_close: Callable[[socket.socket, CountingStream], None],
        *,
        address: str = "",
        **kwargs: int | None,
    ) -> None:
        self.address = address  # the client's IP address
        self.received = 0
        self.served = 0  # requests started on this connection
        self.refusal: bytes | None = None  # a response to write as the socket closes
        self._on_close = on_close
        super().__init__(sock, **kwargs)
        # A response waits for each flush before it writes more, and small writes are
        # joined into one buffer: both queues hold an item or two.
        self._write_buffer._buffers = ShortQueue()  # type: ignore[assignment]
        self._write_futures = ShortQueue()  # type: ignore[assignment]

    def buffered(self) -> int:
        """Bytes read from the socket that no request has taken yet (``_read_buffer_size``):
        the start of a next request may already be here when the last one ends."""
        return self._read_buffer_size

    def read_from_fd(self, buf: bytearray | memoryview) -> int | None:
        count = super().read_from_fd(buf)
        if count:
            self.received += count
        return count

    def close_fd(self) -> None:
        sock = self.socket
        self.socket = None  # type: ignore[assignment]
        self._on_close(sock, self)
