"""Tornado's internals that server/internals/tornado_internals.py relies on: these fail when a
Tornado release changes any of them under us."""

from __future__ import annotations

import asyncio
import inspect
import re
import socket
import sys
from typing import Any

import pytest
from tornado import httputil, iostream, web
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.iostream import IOStream, UnsatisfiableReadError

from server.internals.tornado_internals import (
    CountingStream,
    GZipExceptEventStream,
    connection_socket,
    drop_request_headers,
    drop_template_namespace,
    request_stream,
)


class _Connection:
    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def set_close_callback(self, callback: Any) -> None:
        pass


def _handler(connection: Any = None, **headers: str) -> web.RequestHandler:
    request = httputil.HTTPServerRequest(
        start_line=httputil.RequestStartLine("GET", "/", "HTTP/1.1"),
        headers=httputil.HTTPHeaders({"Host": "x", **headers}),
        connection=connection or _Connection(),
    )
    return web.RequestHandler(web.Application(), request)


def test_response_header_table_and_template_namespace() -> None:
    handler = _handler()
    assert isinstance(handler._headers, httputil.HTTPHeaders)
    drop_request_headers(handler)
    handler.set_header("X-After", "1")
    assert handler._headers["X-After"] == "1"
    assert handler.ui is not None
    drop_template_namespace(handler)
    assert handler.ui is None


def test_gzip_transform_skips_event_streams_only() -> None:
    request = _handler(**{"Accept-Encoding": "gzip"}).request
    for ctype, compressed in (("text/event-stream", False), ("application/json", True)):
        headers = httputil.HTTPHeaders({"Content-Type": ctype})
        transform = GZipExceptEventStream(request)
        _, headers, _ = transform.transform_first_chunk(200, headers, b"x" * 4096, True)
        assert ("Content-Encoding" in headers) is compressed, ctype


@pytest.mark.anyio
async def test_counting_stream_counts_buffers_and_hands_its_socket_over() -> None:
    ours, theirs = socket.socketpair()
    handed: list[socket.socket] = []
    stream = CountingStream(ours, lambda sock, _: handed.append(sock))
    theirs.sendall(b"GET / HTTP/1.1\r\n\r\nGET /next")
    head = await stream.read_until(b"\r\n\r\n")
    assert head == b"GET / HTTP/1.1\r\n\r\n"
    assert stream.received == 27 and stream.buffered() == 9
    # The stream of an HTTP/1 connection, and the socket of a request on it.
    connection = HTTP1Connection(stream, False, HTTP1ConnectionParameters())
    assert request_stream(connection) is stream
    assert connection_socket(_handler(_Connection(stream)).request) is ours
    stream.close()
    assert handed == [ours] and ours.fileno() != -1  # handed over, not closed
    ours.close()
    theirs.close()


@pytest.mark.anyio
async def test_a_read_over_its_limit_closes_the_stream_with_unsatisfiable_read() -> None:
    ours, theirs = socket.socketpair()
    closed: list[socket.socket] = []
    stream = CountingStream(ours, lambda sock, _: closed.append(sock))
    theirs.sendall(b"x" * 4096)
    with pytest.raises(Exception):  # noqa: B017 - StreamClosedError, whatever its cause
        await asyncio.wait_for(stream.read_until_regex(b"\r\n\r\n", max_bytes=1024), 5)
    assert isinstance(stream.error, UnsatisfiableReadError)
    assert closed == [ours]
    ours.close()
    theirs.close()


@pytest.mark.anyio
async def test_a_counting_stream_keeps_the_compact_instance_dict_of_a_plain_iostream() -> None:
    """Every open connection holds one: four attributes more in its dict took it past the
    30 keys an instance dict can share, from 296 bytes to 1,584."""
    plain_socket, counted_socket, *others = (*socket.socketpair(), *socket.socketpair())
    try:
        plain = IOStream(plain_socket)
        counted = CountingStream(counted_socket, lambda sock, stream: None)
        # ~300 bytes each while the keys are shared; 1,584 once they are not.
        assert sys.getsizeof(counted.__dict__) < 2 * sys.getsizeof(plain.__dict__)
        assert not {"address", "received", "served", "refusal", "_on_close"} & set(counted.__dict__)
        counted.received += 3
        assert counted.received == 3
    finally:
        for sock in (plain_socket, counted_socket, *others):
            sock.close()


def test_tornado_keeps_its_write_queues_in_deques_used_only_as_short_queues() -> None:
    """CountingStream swaps two of IOStream's deques for lists with ``popleft``: tornado
    must still create them where we replace them and use no deque method a list lacks."""
    source = inspect.getsource(iostream)
    for name in ("self._buffers", "self._write_futures"):
        used = set(re.findall(re.escape(name) + r"\.(\w+)", source))
        assert used <= {"append", "popleft", "clear"}, (name, used)
    assert "self._buffers: collections.deque" in source
    assert "self._write_futures: collections.deque" in source
    assert "self._write_buffer = _StreamBuffer()" in source


@pytest.mark.anyio
async def test_a_counting_stream_writes_many_and_large_writes_in_order() -> None:
    """Small writes are joined, large ones queued as views; a reader that drains slowly
    gets every byte in order, and every flush resolves."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    stream = CountingStream(ours, lambda sock, s: sock.close())
    assert sys.getsizeof(stream._write_futures) < 100  # not a 0.74 KiB deque
    sent = bytearray()
    flushes = []
    for number in range(300):
        piece = (b"%05d" % number) * (1 if number % 3 else 2000)  # 5 bytes or 10 KB
        sent += piece
        flushes.append(stream.write(piece))
    loop = asyncio.get_running_loop()
    received = bytearray()
    while len(received) < len(sent):
        received += await loop.sock_recv(theirs, 65536)
    await asyncio.gather(*flushes)
    assert received == sent
    stream.close()
    theirs.close()
