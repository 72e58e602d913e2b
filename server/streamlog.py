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
import time
from dataclasses import dataclass
from typing import Any, Protocol

from server.plugin_api import TERMINAL_TYPES, Event
from server.sse import encode_event

__all__ = ["LogEntry", "LogFull", "MemoryStreamLog", "MemoryStreamLogStore", "StreamLogStore"]


@dataclass(slots=True, frozen=True)
class LogEntry:
    id: int
    type: str
    data: Event
    frame: bytes

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES


class LogFull(Exception):
    """The turn produced more events than ``stream.max_log_events`` allows."""


class MemoryStreamLog:
    """One turn's log in this process."""

    __slots__ = ("_entries", "_max_events", "_waiters", "created_at", "stream_id", "user_id")

    def __init__(self, stream_id: str, user_id: str, max_events: int) -> None:
        self.stream_id = stream_id
        self.user_id = user_id
        self.created_at = time.time()
        self._entries: list[LogEntry] = []
        self._max_events = max_events
        self._waiters: list[asyncio.Future[bool]] = []

    @property
    def finished(self) -> bool:
        return bool(self._entries) and self._entries[-1].terminal

    @property
    def last_id(self) -> int:
        return len(self._entries)

    def terminal_event(self) -> Event | None:
        return self._entries[-1].data if self.finished else None

    async def append(self, event: Event) -> LogEntry:
        if self.finished:
            raise RuntimeError(f"stream {self.stream_id} already ended")
        if len(self._entries) >= self._max_events - 1 and event["type"] not in TERMINAL_TYPES:
            # Keep the last slot for the terminal event, so every stream can still end.
            raise LogFull(self.stream_id)
        event_id = len(self._entries) + 1
        kind = event["type"]
        entry = LogEntry(event_id, kind, event, encode_event(event_id, kind, event))
        self._entries.append(entry)
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(True)
        return entry

    async def read(self, after_id: int) -> list[LogEntry]:
        """Entries with id greater than ``after_id`` (ids start at 1)."""
        return self._entries[max(after_id, 0) :]

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
