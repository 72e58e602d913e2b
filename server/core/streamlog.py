"""The per-turn stream log: events numbered 1, 2, 3… that HTTP readers follow.

The producer appends; any number of readers read from a position and wait for more. Each
event is encoded to its SSE frame once, at append, so a reader only joins bytes. The log is
bounded (one answer: ``stream.max_log_events``) and dropped ``stream.log_ttl_seconds`` after
its terminal event, after which a resume gets 404.

A :class:`StreamLog` is always this process's copy. Embedded (no ``REDIS_URL``) it is the
log itself; with Redis it is either the producer's copy (whose appends are also sent to the
turn's Redis Stream) or a mirror that this process fills from Redis once, for all of its
readers (``server/stores/redis/streamlog.py``). Readers see the same shape either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol

from server.contract import TERMINAL_TYPES, Chunk, Event, Turn
from server.contract.events import event_from_dict
from server.core.shared_frames import MAX_SHARED, shared_frame
from server.core.sse import decode_frame, encode_chunk, encode_event
from server.internals.lean_condition import LeanCondition

__all__ = [
    "LogEntry",
    "LogFull",
    "MemoryStreamLogStore",
    "StreamLog",
    "StreamLogStore",
]


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


# Called with the log and the new frame after every append (the Redis writer's queue).
Sink = Callable[["StreamLog", bytes, bool], None]


class StreamLog:
    """One turn's log in this process.

    It keeps each event's frame (bytes) and nothing else but the terminal event:
    :class:`LogEntry` objects are decoded from the frames only when asked (:meth:`read`,
    not on any hot path). The reader's hot path takes frames only (:meth:`frames_after`).
    Frames are objects the garbage collector does not track; a tuple-subclass entry per event
    is, and thousands of them kept for ``log_ttl_seconds`` made every full collection walk
    them all (78 ms pauses at 250 streams).

    Readers wait on one condition (tornado's, see :mod:`server.internals.lean_condition`), made
    when the first reader waits:
    every append wakes them all, and so does :meth:`wake` (a reader's heartbeat or its client
    leaving; the others find nothing new and wait again).
    """

    __slots__ = (
        "_condition",
        "_frames",
        "_max_events",
        "_sink",
        "_terminal",
        "finished",
        "readers",
        "stream_id",
        "user_id",
    )

    def __init__(
        self, stream_id: str, user_id: str, max_events: int, sink: Sink | None = None
    ) -> None:
        self.stream_id = stream_id
        self.user_id = user_id
        self.finished = False  # the terminal event is in
        self.readers = 0  # readers of a mirror in this process (the Redis store counts them)
        self._frames: list[bytes] = []
        self._terminal: Event | None = None
        self._max_events = max_events
        self._condition: LeanCondition | None = None
        self._sink = sink

    @property
    def last_id(self) -> int:
        return len(self._frames)

    def terminal_event(self) -> Event | None:
        if self._terminal is None and self.finished:
            self._terminal = event_from_dict(decode_frame(self._frames[-1]))
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
        if type(event) is Chunk:  # nearly every event: no object built and encoded
            frame = encode_chunk(event_id, event.content)
        elif kind == "status":
            frame = _status_frame(event_id, event)
        else:
            frame = encode_event(event_id, kind, event.as_dict())
        self._frames.append(frame)
        if terminal:
            self._terminal = event
            self.finished = True
        if self._sink is not None:
            self._sink(self, frame, terminal)
        if self._condition is not None:
            self._condition.notify_all()
            if terminal:  # nobody waits on an ended log: not kept for log_ttl_seconds
                self._condition = None
        return event_id

    def add_frames(self, frames: list[bytes], terminal: bool) -> None:
        """Add frames read from elsewhere (a mirror's tail): numbered already, in order."""
        if self.finished or not frames:
            return
        self._frames.extend(frames)
        self.finished = terminal
        if self._condition is not None:
            self._condition.notify_all()
            if terminal:
                self._condition = None

    def end_here(self, event: Event) -> None:
        """End a mirror whose source is gone with ``event``, in this process only."""
        if self.finished:
            return
        self.add_frames([encode_event(len(self._frames) + 1, event.type, event.as_dict())], True)
        self._terminal = event

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
            data = decode_frame(frame)
            entries.append(
                LogEntry(index + 1, data["type"], data, frame, self.finished and index + 1 == last)
            )
        return entries

    def wait(self) -> Awaitable[bool]:
        """Resolves at the next append or :meth:`wake` (the reader owns any timeout)."""
        condition = self._condition
        if condition is None:
            condition = self._condition = LeanCondition()
        return condition.wait()

    def wake(self) -> None:
        if self._condition is not None:
            self._condition.notify_all()


# A pipeline's status events are the same objects at the same ids in every turn: each is
# encoded once, not at every turn (ten of them come before the first chunk).
_STATUS_FRAMES: dict[tuple[int, Event], bytes] = {}


def _status_frame(event_id: int, event: Event) -> bytes:
    """The frame of a status event, shared by every log that has it at ``event_id``. One
    that names its stream (a turn's first) is its own, and not kept here."""
    key = (event_id, event)
    frame = _STATUS_FRAMES.get(key)
    if frame is None:
        frame = shared_frame(encode_event(event_id, "status", event.as_dict()))
        if getattr(event, "stream_id", None) is None and len(_STATUS_FRAMES) < MAX_SHARED:
            _STATUS_FRAMES[key] = frame
    return frame


class StreamLogStore(Protocol):
    """Where logs live. Readers :meth:`open` a log and :meth:`release` it when done."""

    def create(self, turn: Turn) -> StreamLog:
        """A new log for ``turn``, written by this process's producer."""
        ...

    async def open(self, stream_id: str) -> StreamLog | None:
        """The log to read, or None when it is unknown or expired."""
        ...

    def release(self, log: StreamLog) -> None:
        """A reader of ``log`` is done with it."""
        ...

    def finished(self, log: StreamLog) -> None:
        """The turn ended (its terminal is appended): start the expiry clock."""
        ...

    async def ping(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class MemoryStreamLogStore:
    """The embedded store: every log lives in this process."""

    kind = "memory"

    def __init__(self, *, ttl_seconds: float, max_events: int) -> None:
        self._logs: dict[str, StreamLog] = {}
        self._ttl = ttl_seconds
        self._max_events = max_events

    def create(self, turn: Turn) -> StreamLog:
        log = StreamLog(turn.stream_id, turn.user_id, self._max_events)
        self._logs[turn.stream_id] = log
        return log

    async def open(self, stream_id: str) -> StreamLog | None:
        return self._logs.get(stream_id)

    def release(self, log: StreamLog) -> None:
        return None

    def finished(self, log: StreamLog) -> None:
        asyncio.get_running_loop().call_later(self._ttl, self._logs.pop, log.stream_id, None)

    async def ping(self) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {"logs": len(self._logs)}

    async def close(self) -> None:
        return None


async def wait_for_terminal(log: StreamLog) -> Event:
    """The terminal event of ``log``, once it is in."""
    while (terminal := log.terminal_event()) is None:
        await log.wait()
    return terminal
