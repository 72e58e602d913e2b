"""The ``text/event-stream`` response: one module owns everything about sending a log.

Headers, the opening ``retry:`` and padding, the heartbeat, the slow-reader timeout, a client
that leaves, and following the log to its terminal event — as sse-starlette's
``EventSourceResponse`` owns them for Starlette. Handlers only start turns and hand
:meth:`EventStream.send` a log to read (the wire format: docs/api.md).

:meth:`EventStream.send` writes everything the log holds in one write, flushes, and waits
for more. It needs no ``sleep(0)`` of its own: nothing can be appended while it runs without
suspending, so each pass either waits on the log or on a full socket. The producer is the
one that could run through a burst without yielding, and yields every few events
(``server/core/runner.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable

import structlog
from tornado import web
from tornado.iostream import StreamClosedError

from server.config import StreamSettings
from server.core.sse import comment, padding, retry_field
from server.core.streamlog import StreamLog
from server.internals.tornado_internals import connection_socket, drop_request_headers
from server.observability.telemetry import Telemetry

__all__ = ["EventStream", "Transform"]

log = structlog.get_logger("sluice.stream")

_PING = comment("ping")
_CHUNK = b"\nevent: chunk\n"  # in a chunk's frame, after its id

# Rewrites a batch of sluice's frames into another wire format (the /v1 API's OpenAI chunks).
Transform = Callable[[list[bytes]], bytes]


class EventStream:
    """What one event-stream response keeps while it follows a log: the log it waits on,
    its heartbeat timer, and why it ended.

    One slotted object made in the handler's ``initialize()`` (not eight attributes of the
    handler) keeps the handler's attribute table small, which every open stream pays. It
    holds no reference to the handler, so the two make no reference cycle.
    """

    __slots__ = (
        "client_gone",
        "drop_cause",
        "heartbeat",
        "heartbeat_every",
        "last_write",
        "log",
        "loop",
        "ping_due",
        "transform",
    )

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.log: StreamLog | None = None
        self.client_gone = False
        self.ping_due = False
        self.heartbeat: asyncio.TimerHandle | None = None
        self.heartbeat_every = 0.0
        self.last_write = 0.0
        self.drop_cause: str | None = None
        self.transform: Transform | None = None

    # -- what the handler calls ------------------------------------------------------------

    def connection_closed(self) -> None:
        """From the handler's ``on_connection_close``: stop at the next wake-up."""
        self.client_gone = True
        if self.log is not None:
            self.log.wake()

    def open(self, handler: web.RequestHandler, stream_id: str, settings: StreamSettings) -> None:
        """Set the headers and queue the opening ``retry:`` (and padding); nothing is sent
        until :meth:`send` flushes."""
        handler.set_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.set_header("Cache-Control", "no-cache, no-transform")
        handler.set_header("X-Accel-Buffering", "no")
        handler.set_header("X-Stream-Id", stream_id)
        # How often a quiet stream sends ": ping": a client that hears nothing for twice
        # this long knows the connection has stalled and reconnects.
        handler.set_header("X-Heartbeat-Seconds", f"{settings.heartbeat_seconds:g}")
        handler.write(retry_field(settings.retry_ms) + padding(settings.padding_bytes))

    async def send(
        self,
        handler: web.RequestHandler,
        stream_log: StreamLog,
        after_id: int,
        kind: str,
        settings: StreamSettings,
        telemetry: Telemetry,
        transform: Transform | None = None,
    ) -> None:
        """Send the events after ``after_id`` and follow the log to its terminal event;
        ``transform`` writes them in another wire format.

        A reader whose position is past the log's end (a Last-Event-ID from another answer,
        or made up) ends with the terminal event once the answer ends, like any reader: it
        never waits for ids that will not come."""
        telemetry.reader_opened(kind)
        self.log = stream_log
        self.transform = transform
        self.heartbeat_every = settings.heartbeat_seconds
        self.last_write = self.loop.time()
        self.heartbeat = self.loop.call_at(self.last_write + self.heartbeat_every, self._beat)
        position = after_id
        timeout = settings.send_timeout_seconds
        # A new turn's producer appends its first status in its first step: the headers and
        # retry: leave with it, in one send, and the producer gets the loop before that send
        # rather than after. Anything else (a resume of a quiet log) sends them at once.
        headers_sent = kind != "new"
        # Once per response, the first batch after the headers, when it holds no text (the
        # stages' statuses before the model is asked), lets the loop go round before it is
        # written. By then the producer has started its upstream request, whose bytes an
        # HTTP client may write from a task of its own (aiohttp does), queued behind this
        # reader: sent first, the upstream answers while these frames are written, instead
        # of after. The frames wait one pass of the loop; text and the end never wait.
        may_wait = True
        try:
            if headers_sent:
                await self._flush(handler, timeout)
                # The headers are on the wire and Tornado reads them no more: let their
                # table go rather than keep ~2 KiB of it for the life of the stream.
                drop_request_headers(handler)
            while not self.client_gone:
                frames = stream_log.frames_after(position)
                if frames:
                    if may_wait and headers_sent:
                        may_wait = False
                        if not stream_log.finished and not _has_text(frames):
                            await asyncio.sleep(0)
                            continue
                    position += len(frames)
                    self._write_frames(handler, frames, telemetry)
                    await self._flush(handler, timeout)
                    if not headers_sent:
                        headers_sent = True
                        drop_request_headers(handler)
                    if stream_log.finished and position == stream_log.last_id:
                        break
                    continue
                if stream_log.finished:  # past the end: close with the terminal event
                    self._write_frames(
                        handler, stream_log.frames_after(stream_log.last_id - 1), telemetry
                    )
                    await self._flush(handler, timeout)
                    break
                if self.ping_due:
                    self.ping_due = False
                    handler.write(_PING)
                    self.last_write = self.loop.time()
                    await self._flush(handler, timeout)
                    continue
                await stream_log.wait()
        except StreamClosedError:
            self.client_gone = True  # the client left: an ordinary end, not an error
        finally:
            if self.heartbeat is not None:
                self.heartbeat.cancel()
                self.heartbeat = None
            self.log = None
            cause = self.drop_cause or ("client_gone" if self.client_gone else "complete")
            telemetry.reader_closed(kind, cause)
        if not self.client_gone:
            handler.finish()

    async def wait(self, stream_log: StreamLog, until: float | None = None) -> bool:
        """Wait for ``stream_log``'s next append, or until ``until`` (loop time), before the
        response starts; False when the client has left. Never on a finished log."""
        if self.client_gone:
            return False
        self.log = stream_log  # so that the client leaving wakes this wait
        timer = None if until is None else self.loop.call_at(until, stream_log.wake)
        try:
            await stream_log.wait()
        finally:
            self.log = None
            if timer is not None:
                timer.cancel()
        return not self.client_gone

    # -- inside ------------------------------------------------------------------------------

    def _beat(self) -> None:
        """The reader's one heartbeat timer. Writes push the next ping back by only storing
        a time; the timer re-arms itself, instead of a new timer for every wait."""
        due = self.last_write + self.heartbeat_every
        now = self.loop.time()
        if now < due:
            self.heartbeat = self.loop.call_at(due, self._beat)
            return
        self.ping_due = True
        if self.log is not None:
            self.log.wake()
        self.heartbeat = self.loop.call_at(now + self.heartbeat_every, self._beat)

    def _write_frames(
        self, handler: web.RequestHandler, frames: list[bytes], telemetry: Telemetry
    ) -> None:
        # A method of its own, so that no payload stays referenced from send()'s frame
        # while it waits for the next event.
        payload = b"".join(frames) if self.transform is None else self.transform(frames)
        handler.write(payload)
        self.last_write = self.loop.time()
        telemetry.events_sent(len(frames), len(payload))

    async def _flush(self, handler: web.RequestHandler, timeout: float) -> None:
        """Flush, dropping a reader that takes over ``stream.send_timeout_seconds``."""
        pending = handler.flush()
        if pending.done():
            pending.result()
            return
        try:
            await asyncio.wait_for(pending, timeout)
        except TimeoutError:
            self.drop_cause = "slow_reader"
            log.info("slow_reader_dropped", path=handler.request.path)
            _abort_connection(handler)
            raise StreamClosedError() from None


def _has_text(frames: list[bytes]) -> bool:
    return any(_CHUNK in frame for frame in frames)


def _abort_connection(handler: web.RequestHandler) -> None:
    """Reset, not close: a graceful close would still hand the kernel's buffered megabytes to
    a reader that is not reading; a reset frees them at once."""
    connection = handler.request.connection
    sock = connection_socket(handler.request)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if connection is not None:
        connection.close()  # type: ignore[attr-defined]
