"""Stream endpoints: start a turn, resume it, stop it, or wait for it as JSON.

Every response here is a *reader* of a turn's log. :meth:`relay`
writes everything the log holds in one write, flushes, and waits for more. It needs no
``sleep(0)`` of its own: nothing can be appended while it runs without suspending, so each
pass either waits on the log or on a full socket. The producer is the one that could run
through a burst without yielding, and yields every few events (``server/core/runner.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import structlog
from tornado.iostream import StreamClosedError

from server.contract import ErrorCode, Event, Turn
from server.core.runner import TurnInProgress, new_stream_id
from server.core.sse import comment, padding, retry_field
from server.core.streamlog import MemoryStreamLog
from server.http.base import ApiCode, ApiError, BaseHandler, JsonBodyHandler
from server.http.errors import EVENT_STATUS
from server.http.identity import Identity
from server.http.tornado_internals import (
    connection_socket,
    drop_request_headers,
    drop_template_namespace,
)

__all__ = [
    "ConversationHandler",
    "ConversationStreamHandler",
    "StreamCancelHandler",
    "StreamResumeHandler",
]

log = structlog.get_logger("sluice.stream")

_PING = comment("ping")

# Seconds a 429 without a known wait tells the client to wait (too_many_streams).
_BUSY_RETRY_AFTER = 5


class _Reader:
    """What an event-stream response keeps while it follows a log: the wait it is in, its
    heartbeat timer, and why it ended. One slotted object rather than eight attributes of
    the handler keeps the handler's attribute table small, which every open stream pays."""

    __slots__ = (
        "client_gone",
        "drop_cause",
        "heartbeat",
        "heartbeat_every",
        "last_write",
        "loop",
        "ping_due",
        "waiter",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiter: asyncio.Future[bool] | None = None
        self.client_gone = False
        self.ping_due = False
        self.heartbeat: asyncio.TimerHandle | None = None
        self.heartbeat_every = 0.0
        self.last_write = 0.0
        self.drop_cause: str | None = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(False)

    def start_heartbeat(self, every: float) -> None:
        self.heartbeat_every = every
        self.last_write = self.loop.time()
        self.heartbeat = self.loop.call_at(self.last_write + every, self._beat)

    def stop_heartbeat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            self.heartbeat = None

    def _beat(self) -> None:
        """The reader's one heartbeat timer. Writes push the next ping back by only storing
        a time; the timer re-arms itself, instead of a new timer for every wait."""
        due = self.last_write + self.heartbeat_every
        now = self.loop.time()
        if now < due:
            self.heartbeat = self.loop.call_at(due, self._beat)
            return
        self.ping_due = True
        self.wake()
        self.heartbeat = self.loop.call_at(now + self.heartbeat_every, self._beat)


class EventStreamMixin(BaseHandler):
    """Writes a stream log to the client as ``text/event-stream``."""

    def initialize(self) -> None:
        super().initialize()
        self._reader = _Reader(asyncio.get_running_loop())
        # No templates are rendered here: drop Tornado's template namespace (and the
        # reference cycle it makes with the handler) now rather than when the stream ends.
        drop_template_namespace(self)

    def on_connection_close(self) -> None:
        self._reader.client_gone = True
        self._reader.wake()

    def start_event_stream(self, stream_id: str) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache, no-transform")
        self.set_header("X-Accel-Buffering", "no")
        self.set_header("X-Stream-Id", stream_id)
        stream = self.state.settings.stream
        # How often a quiet stream sends ": ping": a client that hears nothing for twice
        # this long knows the connection has stalled and reconnects.
        self.set_header("X-Heartbeat-Seconds", f"{stream.heartbeat_seconds:g}")
        self.write(retry_field(stream.retry_ms) + padding(stream.padding_bytes))

    async def relay(self, stream_log: MemoryStreamLog, after_id: int, kind: str) -> None:
        """Send events after ``after_id`` and follow the log to its terminal event."""
        telemetry = self.state.telemetry
        telemetry.reader_opened(kind)
        reader = self._reader
        reader.start_heartbeat(self.state.settings.stream.heartbeat_seconds)
        position = after_id
        try:
            await self._flush()  # headers and retry: leave at once
            # The headers are on the wire and Tornado reads them no more: let their table go
            # rather than keep ~2 KiB of it for the life of the stream.
            drop_request_headers(self)
            while not reader.client_gone:
                frames = stream_log.frames_after(position)
                if frames:
                    position += len(frames)
                    self._write_frames(frames)
                    await self._flush()
                    if stream_log.finished and position == stream_log.last_id:
                        break
                    continue
                if reader.ping_due:
                    reader.ping_due = False
                    self.write(_PING)
                    reader.last_write = reader.loop.time()
                    await self._flush()
                    continue
                waiter: asyncio.Future[bool] = reader.loop.create_future()
                reader.waiter = waiter
                stream_log.subscribe(waiter)
                try:
                    woken_by_log = await waiter
                finally:
                    reader.waiter = None
                if not woken_by_log:  # an append removes its waiters itself
                    stream_log.unsubscribe(waiter)
        except StreamClosedError:
            reader.client_gone = True  # the client left: an ordinary end, not an error
        finally:
            reader.stop_heartbeat()
            cause = reader.drop_cause or ("client_gone" if reader.client_gone else "complete")
            telemetry.reader_closed(kind, cause)
        if not reader.client_gone:
            self.finish()

    def _write_frames(self, frames: list[bytes]) -> None:
        # A method of its own, so that no payload stays referenced from the relay's frame
        # while it waits for the next event.
        payload = b"".join(frames)
        self.write(payload)
        self._reader.last_write = self._reader.loop.time()
        self.state.telemetry.events_sent(len(frames), len(payload))

    async def _flush(self) -> None:
        """Flush, dropping a reader that takes over ``stream.send_timeout_seconds``."""
        pending = self.flush()
        if pending.done():
            pending.result()
            return
        try:
            await asyncio.wait_for(pending, self.state.settings.stream.send_timeout_seconds)
        except TimeoutError:
            self._reader.drop_cause = "slow_reader"
            log.info("slow_reader_dropped", path=self.request.path)
            self._abort_connection()
            raise StreamClosedError() from None

    def _abort_connection(self) -> None:
        """Reset, not close: a graceful close would still hand the kernel's buffered
        megabytes to a reader that is not reading; a reset frees them at once."""
        connection = self.request.connection
        sock = connection_socket(self.request)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if connection is not None:
            connection.close()  # type: ignore[attr-defined]


class _TurnStarter(JsonBodyHandler):
    def prepare(self) -> None:
        super().prepare()
        # Who is calling is known from the headers: a caller without identity (or someone
        # else's) is refused before a byte of the body is read.
        if self.request.method == "POST":
            self.require_user(self.path_args[0])

    async def start_turn(self, user_id: str) -> tuple[Turn, MemoryStreamLog]:
        identity: Identity = self.require_user(user_id)
        message, session_id = self.chat_request()
        # History must be reachable before the stream starts: the session stage saves the
        # user's message before any model is called, and a turn that could not would only
        # end in an error event. Down, it is a 503 with Retry-After instead; the check is
        # bounded by the store's timeout.
        await self.state.sessions.ping()
        turn = Turn(
            stream_id=new_stream_id(),
            user_id=identity.user_id,
            message=message,
            client_ip=self.request.remote_ip or "",
            session_id=session_id,
        )
        try:
            stream_log = await self.state.runner.start(turn)
        except TurnInProgress as busy:
            stream_id = busy.active.stream_id
            raise ApiError(
                409,
                ApiCode.TURN_IN_PROGRESS,
                "An answer is being written in this conversation. Follow it, or wait for it"
                " to finish before sending the next message.",
                extra={"stream_id": stream_id},
                headers={"X-Stream-Id": stream_id},
            ) from None
        return turn, stream_log


class ConversationStreamHandler(_TurnStarter, EventStreamMixin):
    """``POST /api/conversation-stream/{user_id}``: start a turn and stream it."""

    def initialize(self) -> None:
        super().initialize()
        self._stream_id: str | None = None

    async def post(self, user_id: str) -> None:
        turn, stream_log = await self.start_turn(user_id)
        self._stream_id = turn.stream_id
        self.start_event_stream(turn.stream_id)
        await self.relay(stream_log, 0, "new")

    def on_connection_close(self) -> None:
        super().on_connection_close()
        settings = self.state.settings.stream
        if self._stream_id is not None and settings.on_disconnect == "cancel":
            self.state.runner.cancel(self._stream_id, "disconnect")


async def _owned_stream(handler: BaseHandler, stream_id: str) -> tuple[Identity, MemoryStreamLog]:
    """The caller and the log of their stream: 401 without identity; 404 when the stream is
    unknown, expired, or someone else's (indistinguishable on purpose)."""
    identity = handler.identity()
    if identity is None:
        raise ApiError(401, ApiCode.UNAUTHORIZED, "Sign in first.")
    stream_log = await handler.state.logs.get(stream_id)
    if stream_log is None or stream_log.user_id != identity.user_id:
        raise ApiError(404, ApiCode.NOT_FOUND, "No such stream (it may have expired).")
    return identity, stream_log


class StreamResumeHandler(EventStreamMixin):
    """``GET /api/streams/{stream_id}``: replay after Last-Event-ID, then follow live."""

    async def get(self, stream_id: str) -> None:
        _, stream_log = await _owned_stream(self, stream_id)
        raw = self.request.headers.get("Last-Event-ID") or self.get_query_argument(
            "last_event_id", "0"
        )
        raw = raw.strip() or "0"
        if not raw.isdigit():
            raise ApiError(400, ApiCode.BAD_REQUEST, "Last-Event-ID must be a whole number.")
        after_id = int(raw)
        if stream_log.finished and after_id >= stream_log.last_id:
            # Nothing will ever follow: 204 is how a server tells EventSource to stop
            # reconnecting (WHATWG HTML, "server-sent events", processing model).
            self.set_status(204)
            self.finish()
            return
        self.start_event_stream(stream_id)
        await self.relay(stream_log, after_id, "resume")


class StreamCancelHandler(BaseHandler):
    """``POST /api/streams/{stream_id}/cancel``: stop generation, keep the partial answer."""

    async def post(self, stream_id: str) -> None:
        identity, _ = await _owned_stream(self, stream_id)
        self.check_cookie_origin(identity)
        cancelled = self.state.runner.cancel(stream_id, "cancelled")
        self.write_json({"stream_id": stream_id, "cancelled": cancelled})


class ConversationHandler(_TurnStarter):
    """``POST /api/conversation/{user_id}``: the same turn, answered as JSON at its end.

    A client that leaves while it waits is a reader gone like any other: with
    ``stream.on_disconnect = "cancel"`` its turn is stopped (and the upstream request closed).
    """

    def initialize(self) -> None:
        super().initialize()
        self._stream_id: str | None = None

    def on_connection_close(self) -> None:
        if self._stream_id is not None and self.state.settings.stream.on_disconnect == "cancel":
            self.state.runner.cancel(self._stream_id, "disconnect")

    async def post(self, user_id: str) -> None:
        turn, stream_log = await self.start_turn(user_id)
        self._stream_id = turn.stream_id
        self.set_header("X-Stream-Id", turn.stream_id)
        terminal = await _wait_for_terminal(stream_log)
        if terminal["type"] == "complete":
            self.write_json(
                {
                    key: terminal.get(key)
                    for key in ("message", "suggestions", "session_id", "provider", "model")
                }
                | {
                    "fallback": bool(terminal.get("fallback")),
                    "finish_reason": terminal.get("finish_reason"),
                }
            )
            return
        code = ErrorCode(terminal.get("code", ErrorCode.INTERNAL))
        status = EVENT_STATUS.get(code, 503 if terminal.get("retryable") else 500)
        retry_after = terminal.get("retry_after")
        if status == 429 and retry_after is None:
            # A 429 always says when to come back (a slot frees when an answer ends, which
            # nobody can know: a guess beats clients retrying in a tight loop).
            retry_after = _BUSY_RETRY_AFTER
        raise ApiError(status, code, terminal.get("message", ""), retry_after=retry_after)


async def _wait_for_terminal(stream_log: MemoryStreamLog) -> Event:
    loop = asyncio.get_running_loop()
    while (terminal := stream_log.terminal_event()) is None:
        waiter: asyncio.Future[bool] = loop.create_future()
        stream_log.subscribe(waiter)
        try:
            await waiter
        finally:
            stream_log.unsubscribe(waiter)
    return terminal
