"""A strict event-stream reader for tests, over plain ``http.client``.

``parse_frames`` follows the WHATWG parsing rules closely enough to catch framing mistakes:
it refuses unknown fields and data that is not one JSON line, so a test fails when the
server's framing drifts from the contract.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import http.client
import json
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Frame:
    id: int | None = None
    event: str | None = None
    data: dict[str, Any] | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def type(self) -> str | None:
        return self.data["type"] if self.data else None


def _parse_block(block: str) -> Frame:
    frame = Frame()
    data_lines: list[str] = []
    for line in block.split("\n"):
        if line.startswith(":"):
            frame.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            assert value.isdigit(), f"id is not a number: {value!r}"
            frame.id = int(value)
        elif name == "event":
            frame.event = value
        elif name == "data":
            data_lines.append(value)
        elif name == "retry":
            assert value.isdigit(), f"retry is not digits: {value!r}"
            frame.retry = int(value)
        else:
            raise AssertionError(f"unexpected field {name!r} in frame {block!r}")
    if data_lines:
        assert len(data_lines) == 1, f"data must be one line: {block!r}"
        frame.data = json.loads(data_lines[0])
    return frame


class FrameParser:
    """Incremental: feed bytes as they arrive, get complete frames back."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._buffer = ""

    def feed(self, raw: bytes) -> list[Frame]:
        self._buffer += self._decoder.decode(raw)
        assert "\r" not in self._buffer, "the server frames with LF only"
        frames = []
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            if block:
                frames.append(_parse_block(block))
        return frames

    @property
    def leftover(self) -> str:
        return self._buffer


def parse_frames(raw: bytes) -> list[Frame]:
    parser = FrameParser()
    frames = parser.feed(raw)
    assert parser.leftover == "", f"incomplete frame at the end: {parser.leftover!r}"
    return frames


def events(frames: list[Frame]) -> list[dict[str, Any]]:
    return [f.data for f in frames if f.data is not None]


OPEN_STREAMS: list[EventStream] = []


class EventStream:
    """An open streaming response; iterate to get frames as they arrive."""

    def __init__(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse):
        OPEN_STREAMS.append(self)
        self.connection = connection
        self.response = response
        self.status = response.status
        self.headers = response.headers
        self.frames: list[Frame] = []
        self._pending: collections.deque[Frame] = collections.deque()
        self._parser = FrameParser()

    def __iter__(self) -> Iterator[Frame]:
        # Frames parsed but not yet handed out wait in _pending, so that a loop left early
        # (``until``) and a later one (``read_all``) together see every frame once.
        while True:
            while self._pending:
                yield self._pending.popleft()
            raw = self.response.read1(65536)
            if not raw:
                self.close()
                assert self._parser.leftover == "", f"cut frame: {self._parser.leftover!r}"
                return
            parsed = self._parser.feed(raw)
            self.frames.extend(parsed)
            self._pending.extend(parsed)

    def read_all(self) -> list[Frame]:
        for _ in self:
            pass
        return self.frames

    def until(self, predicate: Any) -> Frame:
        for frame in self:
            if predicate(frame):
                return frame
        raise AssertionError("stream ended before the awaited frame")

    def body(self) -> bytes:
        try:
            return self.response.read()
        finally:
            self.close()

    def close(self) -> None:
        # Abrupt close, as a browser tab going away does.
        sock = self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.response.close()
        self.connection.close()


def request(
    base_url: str,
    method: str,
    path: str,
    *,
    body: bytes | str | dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> EventStream:
    """Send a request and return the open response (streaming or not)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    all_headers = dict(headers or {})
    payload: bytes | None
    if isinstance(body, dict):
        payload = json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        payload = body.encode()
    else:
        payload = body
    connection.request(method, path, body=payload, headers=all_headers)
    return EventStream(connection, connection.getresponse())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def json_request(
    base_url: str,
    method: str,
    path: str,
    *,
    body: bytes | str | dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any] | None, http.client.HTTPMessage]:
    response = request(base_url, method, path, body=body, headers=headers)
    raw = response.body()
    data = json.loads(raw) if raw else None
    return response.status, data, response.headers


def start_stream(
    base_url: str,
    message: str = "Hello",
    *,
    user: str = "alice",
    token: str = "tok-alice",
    **body: Any,
) -> EventStream:
    """``POST /api/conversation-stream/{user}`` with a bearer token; the open stream."""
    return request(
        base_url,
        "POST",
        f"/api/conversation-stream/{user}",
        body={"message": message, **body},
        headers=bearer(token),
    )
