"""Encoding of the event stream (docs/api.md), and decoding of sluice's own frames read
back. Pure: nothing here touches a socket.

Every frame is ``id:``, ``event:`` and one ``data:`` line of compact JSON, then a blank line.
JSON keeps the data on one line: ``json.dumps`` escapes ``\\n`` and ``\\r`` inside strings,
and we escape U+0085 (NEL), U+2028 and U+2029 too, which line splitters built on Python's
``str.splitlines`` (the ``sseclient`` package among them) treat as line ends. ``id`` and
``event`` values are checked, not trusted: a newline there would let a value smuggle in a
field of its own (sse-starlette strips them for the same reason).

The decoders read only frames made here (a log's frames, whichever process or Redis Stream
they come from), so they rely on this layout rather than parse SSE in general: a chunk's
content is found by its head (:data:`CHUNK_HEAD`), and a frame's data is everything after
its ``data:`` field name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from server.internals.json_internals import dumps, string_literal

__all__ = [
    "CHUNK_HEAD",
    "CHUNK_TAIL",
    "answer_text",
    "chunk_content",
    "comment",
    "decode_frame",
    "encode_chunk",
    "encode_data",
    "encode_event",
    "frame_kind",
    "padding",
    "retry_field",
]

_LINE_BREAKS = ("\r", "\n")


def encode_data(data: dict[str, Any]) -> str:
    """Compact one-line JSON; non-ASCII text kept as UTF-8, line separators escaped."""
    return _escape_splitters(dumps(data))


def _escape_splitters(text: str) -> str:
    """Escape the characters some line splitters end a line at (U+0085, U+2028, U+2029).

    Three ``str.replace`` calls, not ``str.translate``, which looks every character up in a
    dict: on a 440-character answer holding eight U+2028 (the ``complete`` frame of
    ``bench/json_frames.py``), ``python -m timeit`` gave 119 µs for ``t.translate(m)`` and
    5.1 µs for the three replaces (best of 5, while other jobs ran)."""
    if "\x85" in text or "\u2028" in text or "\u2029" in text:
        return (
            text.replace("\x85", "\\u0085")
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
        )
    return text


def _field_value(name: str, value: str) -> str:
    if any(ch in value for ch in _LINE_BREAKS) or "\0" in value:
        raise ValueError(f"SSE {name} must not contain a line break or NUL: {value!r}")
    return value


_checked_event_names: set[str] = set()


def encode_event(event_id: int, event: str, data: dict[str, Any]) -> bytes:
    """One complete frame. ``data`` is the event's JSON object, ``event`` its type."""
    if event not in _checked_event_names:  # a handful of names: check each once
        _field_value("event", event)
        _checked_event_names.add(event)
    return f"id: {event_id}\nevent: {event}\ndata: {encode_data(data)}\n\n".encode()


CHUNK_HEAD = '\nevent: chunk\ndata: {"type":"chunk","content":'
"""What comes between a chunk frame's id and its content's JSON string literal."""
CHUNK_TAIL = "}\n\n"
"""What follows the literal: a chunk frame is ``id: <n>`` + head + literal + tail."""


def encode_chunk(event_id: int, content: str) -> bytes:
    """``encode_event(event_id, "chunk", {"type": "chunk", "content": content})``, made
    without building and encoding an object: nearly every frame is a chunk, and only its
    content varies."""
    literal = _escape_splitters(string_literal(content))
    return f"id: {event_id}{CHUNK_HEAD}{literal}{CHUNK_TAIL}".encode()


def retry_field(milliseconds: int) -> bytes:
    """The reconnection delay a browser ``EventSource`` should use."""
    return f"retry: {int(milliseconds)}\n\n".encode()


def comment(text: str = "") -> bytes:
    """A comment line (``: ping``): keeps the connection alive, carries no id."""
    return f": {_field_value('comment', text)}\n\n".encode()


def padding(size: int) -> bytes:
    """A comment of ``size`` bytes for proxies that buffer the first kilobytes."""
    if size <= 0:
        return b""
    # ": " + filler + "\n\n" adds up to exactly ``size`` bytes when size >= 4.
    filler = max(size - 4, 0)
    return b": " + b" " * filler + b"\n\n"


# Decoding: the frames above, read back.

_CHUNK_MARK = CHUNK_HEAD.encode()
_CHUNK_END = len(CHUNK_TAIL)
# "id: " and up to 20 digits come before the mark.
_CHUNK_SEARCH = 24 + len(_CHUNK_MARK)
_EVENT = b"\nevent: "
_DATA = b"\ndata: "


def chunk_content(frame: bytes) -> bytes | None:
    """The JSON string literal (quotes included) of a ``chunk`` frame's content, or None when
    ``frame`` is another event. Nothing is decoded: the OpenAI reader splices the literal
    into its own frame as it is, once per chunk."""
    at = frame.find(_CHUNK_MARK, 0, _CHUNK_SEARCH)
    if at < 0:
        return None
    return frame[at + len(_CHUNK_MARK) : -_CHUNK_END]


def frame_kind(frame: bytes) -> bytes:
    """The event type (``b"status"``, ``b"complete"``...) of a frame."""
    start = frame.index(_EVENT) + len(_EVENT)
    return frame[start : frame.index(b"\n", start)]


def decode_frame(frame: bytes) -> dict[str, Any]:
    """The JSON object a frame carries (its ``data:`` line)."""
    data: dict[str, Any] = json.loads(frame[frame.index(_DATA) + len(_DATA) :])
    return data


def answer_text(frames: Iterable[bytes]) -> str:
    """The text a client of these frames was sent: every ``chunk`` frame's content, joined."""
    parts: list[str] = []
    for frame in frames:
        literal = chunk_content(frame)
        if literal is not None:
            parts.append(json.loads(literal))
    return "".join(parts)
