"""The per-turn stream log: events numbered 1, 2, 3… that HTTP readers follow.

The producer appends; any number of readers read from a position and wait for more. Each
event is encoded to its SSE frame once, at append, so a reader only joins bytes. The log is
bounded (one answer: ``stream.max_log_events``) and dropped ``stream.log_ttl_seconds`` after
its terminal event, after which a resume gets 404.

:class:`StreamLogStore` is the seam for a shared backend: a Redis implementation would keep
the same ``append`` / ``read`` / subscribe shape on a Redis stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, NamedTuple, Protocol

from server.contract import TERMINAL_TYPES, Event
from server.core.sse import encode_event

__all__ = ["LogEntry", "LogFull", "MemoryStreamLog", "MemoryStreamLogStore", "StreamLogStore"]


# The runner's status frames are the same bytes in every turn of a pipeline (same id, stage,
# state and progress): each distinct one is kept once and shared by every log, rather than
# ~1.2 KiB of copies in every open stream.
_SHARED_STATUS_FRAMES: dict[bytes, bytes] = {}
_SHARED_STATUS_FRAMES_MAX = 4096


def _status_frame(frame: bytes) -> bytes:
    shared = _SHARED_STATUS_FRAMES.get(frame)
    if shared is not None:
        return shared
    if len(_SHARED_STATUS_FRAMES) < _SHARED_STATUS_FRAMES_MAX:
        _SHARED_STATUS_FRAMES[frame] = frame
    return frame


class LogEntry(NamedTuple):
    """One event in a log: its id, type, data, and the SSE frame it is sent as.

    A named tuple, not a frozen dataclass: one is made per event, and a frozen dataclass's
    ``__init__`` costs several times a tuple's.
    """

    id: int
    type: str
    data: dict[str, Any]
    frame: bytes
    terminal: bool


class LogFull(Exception):
    """The turn produced more events than ``stream.max_log_events`` allows."""


class MemoryStreamLog:
    """One turn's log in this process.

    It keeps each event's frame (bytes) and nothing else but the terminal event's dict:
    :class:`LogEntry` objects are decoded from the frames only when asked (:meth:`read`,
    not on any hot path). The reader's hot path takes frames only (:meth:`frames_after`).
    Frames are objects the garbage collector does not track; a tuple-subclass entry per event
    is, and thousands of them kept for ``log_ttl_seconds`` made every full collection walk
    them all (78 ms pauses at 250 streams). Each event's dict, kept as well, was ~2 KiB of
    every open stream (docs/performance.md).
    """

    __slots__ = (
        "_frames",
        "_max_events",
        "_terminal",
        "_waiters",
        "created_at",
        "finished",
        "stream_id",
        "user_id",
    )

    def __init__(self, stream_id: str, user_id: str, max_events: int) -> None:
        self.stream_id = stream_id
        self.user_id = user_id
        self.created_at = time.time()
        self.finished = False  # the terminal event is in
        self._frames: list[bytes] = []
        self._terminal: Event | None = None
        self._max_events = max_events
        self._waiters: list[asyncio.Future[bool]] = []

    @property
    def last_id(self) -> int:
        return len(self._frames)

    def terminal_event(self) -> Event | None:
        return self._terminal

    async def append(self, event: Event) -> int:
        """Add ``event``; returns its id."""
        if self.finished:
            raise RuntimeError(f"stream {self.stream_id} already ended")
        kind = event.type
        terminal = kind in TERMINAL_TYPES
        if len(self._frames) >= self._max_events - 1 and not terminal:
            # Keep the last slot for the terminal event, so every stream can still end.
            raise LogFull(self.stream_id)
        event_id = len(self._frames) + 1
        frame = encode_event(event_id, kind, event.as_dict())
        self._frames.append(_status_frame(frame) if kind == "status" else frame)
        if terminal:
            self._terminal = event
            self.finished = True
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(True)
        return event_id

    def frames_after(self, after_id: int) -> list[bytes]:
        """The frames of the events with ids greater than ``after_id`` (ids start at 1)."""
        return self._frames[max(after_id, 0) :]

    async def read(self, after_id: int) -> list[LogEntry]:
        """Entries with id greater than ``after_id``, decoded from their frames."""
        start = max(after_id, 0)
        last = len(self._frames)
        entries = []
        for index in range(start, last):
            frame = self._frames[index]
            data: dict[str, Any] = json.loads(frame[frame.index(b"\ndata: ") + 7 :])
            entries.append(
                LogEntry(index + 1, data["type"], data, frame, self.finished and index + 1 == last)
            )
        return entries

    def subscribe(self, waiter: asyncio.Future[bool]) -> None:
        """Resolve ``waiter`` with True at the next append (the reader owns the timeout)."""
        self._waiters.append(waiter)

    def unsubscribe(self, waiter: asyncio.Future[bool]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)


class StreamLogStore(Protocol):
    async def create(self, stream_id: str, user_id: str) -> MemoryStreamLog: ...

    async def get(self, stream_id: str) -> MemoryStreamLog | None: ...

    def finished(self, stream_id: str) -> None:
        """The turn ended: start the expiry clock."""
        ...

    def stats(self) -> dict[str, Any]: ...


class MemoryStreamLogStore:
    def __init__(self, *, ttl_seconds: float, max_events: int) -> None:
        self._logs: dict[str, MemoryStreamLog] = {}
        self._ttl = ttl_seconds
        self._max_events = max_events

    async def create(self, stream_id: str, user_id: str) -> MemoryStreamLog:
        log = MemoryStreamLog(stream_id, user_id, self._max_events)
        self._logs[stream_id] = log
        return log

    async def get(self, stream_id: str) -> MemoryStreamLog | None:
        return self._logs.get(stream_id)

    def finished(self, stream_id: str) -> None:
        asyncio.get_running_loop().call_later(self._ttl, self._logs.pop, stream_id, None)

    def stats(self) -> dict[str, Any]:
        return {"logs": len(self._logs)}
