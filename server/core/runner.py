"""Producers: each turn runs as its own task that appends the pipeline's events to its log.

HTTP responses only read logs, so a client that leaves does not stop the turn (unless
``stream.on_disconnect = "cancel"``), a stop request is a task cancellation with a reason,
and shutdown is "wait a grace period, then cancel what is left with a retryable error".
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from server.config import Settings
from server.contract import TERMINAL_TYPES, ErrorCode, Event, Status, ToolSet, Turn, error
from server.core.cancellation import Cancellation, cancellation_event
from server.core.coordination import (
    ActiveTurn,
    Admission,
    MemoryTurnRegistry,
    TurnInProgress,
    TurnRegistry,
)
from server.core.open_calls import TOOL_EVENT_TYPES, OpenToolCalls
from server.core.pipeline import Pipeline
from server.core.streamlog import LogFull, StreamLog, StreamLogStore
from server.observability.telemetry import Telemetry
from server.observability.tracing import Tracer, TurnScope

__all__ = ["ActiveTurn", "TurnInProgress", "TurnRunner", "new_session_id", "new_stream_id"]

log = structlog.get_logger("sluice.turns")

# Events a producer may append in a row before it lets other tasks run.
_YIELD_EVERY = 32


def new_stream_id() -> str:
    return "st_" + secrets.token_urlsafe(16)


def new_session_id() -> str:
    return "s_" + secrets.token_urlsafe(9)


@dataclass(eq=False, slots=True)
class _Running:
    turn: Turn
    task: asyncio.Task[None]
    log: StreamLog
    cancellation: Cancellation
    started: bool = False  # the task has taken its first step


class TurnRunner:
    """Runs this process's turns. What instances share (a session's active turn, a user's
    slots, cancel signals) goes through ``registry``; the embedded one keeps it here."""

    def __init__(
        self,
        pipeline: Pipeline,
        logs: StreamLogStore,
        settings: Settings,
        *,
        telemetry: Telemetry | None = None,
        registry: TurnRegistry | None = None,
        tools: Callable[[], ToolSet] | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.pipeline = pipeline
        # The producer task is made while the request's span is current: its turn span,
        # and all below it, join the request's trace even after the request has ended.
        self.tracer = tracer
        # Makes each admitted turn's own set of tools (None: turns get none).
        self.tools = tools
        self.logs = logs
        self.settings = settings
        self.registry: TurnRegistry = registry or MemoryTurnRegistry()
        self.registry.on_cancel(self.cancel_local)
        self._running: dict[str, _Running] = {}
        self.telemetry = telemetry or Telemetry()
        self.accepting = True

    @property
    def running_count(self) -> int:
        return len(self._running)

    async def active_turn(self, user_id: str, session_id: str) -> ActiveTurn | None:
        return await self.registry.active_turn(user_id, session_id)

    async def start(self, turn: Turn) -> StreamLog:
        """Create the turn's log and start its producer; the log is returned at once.

        A turn without a session gets a new session id here, so that the session is known
        (and shows its ``active_turn``) from the first event. Raises :class:`TurnInProgress`
        when the session already has an answer being written, and
        :class:`~server.core.coordination.StoreUnavailable` when a shared store is down."""
        if turn.session_id is None:
            turn.session_id = new_session_id()
        limit = self.settings.limits.max_streams_per_user
        admission = await self.registry.admit(turn, limit=limit, take_slot=self.accepting)
        stream_log = self.logs.create(turn)
        if admission is Admission.REFUSED:
            await self._refuse(stream_log, turn, cancellation_event("shutdown"))
            return stream_log
        if admission is Admission.TOO_MANY:
            message = f"You already have {limit} answers in progress. Wait for one to finish."
            refusal = error(ErrorCode.TOO_MANY_STREAMS, message, retryable=True)
            await self._refuse(stream_log, turn, refusal)
            return stream_log
        turn.deadline = time.monotonic() + self.settings.stream.max_duration_seconds
        if self.tools is not None:
            # The server's tools, and the client's own that the API put on the turn. The API
            # refused names the server's take; one that appeared since (an MCP server that
            # just connected) yields to the client's, which is what the client was told of.
            client_tools = [item for item in turn.tools if item.runs_on_client]
            turn.tools = self.tools()
            for item in client_tools:
                turn.tools.add(item, replace=True)
        cancellation = Cancellation()
        task = asyncio.create_task(
            self._produce(turn, stream_log, cancellation), name=turn.stream_id
        )
        self._running[turn.stream_id] = _Running(turn, task, stream_log, cancellation)
        return stream_log

    async def _refuse(self, stream_log: StreamLog, turn: Turn, event: Event) -> None:
        await stream_log.append(event)
        self.logs.finished(stream_log)
        self.telemetry.turn_ended(turn, event, 0.0, None)

    def cancel_local(self, stream_id: str, reason: str) -> bool:
        """Cancel a turn running in this process; False when it is not running here."""
        running = self._running.get(stream_id)
        if running is None or running.task.done():
            return False
        running.cancellation.request(reason)
        if running.started:
            running.task.cancel()
        # A task cancelled before its first step would never run _produce, so nothing would
        # end the stream or free the user's slot: it sees the reason as it starts instead.
        return True

    async def cancel(self, stream_id: str, reason: str) -> bool:
        """Cancel a running turn, here or on the instance running it; False when it is not
        running (already ended)."""
        if self.cancel_local(stream_id, reason):
            return True
        return await self.registry.signal_cancel(stream_id, reason)

    async def cancel_session(self, user_id: str, session_id: str, reason: str) -> bool:
        """Cancel the turn writing ``session_id``'s answer, if any, without waiting."""
        active = await self.registry.active_turn(user_id, session_id)
        return active is not None and await self.cancel(active.stream_id, reason)

    async def stop_session(
        self, user_id: str, session_id: str, reason: str, *, within: float = 10.0
    ) -> None:
        """Cancel the turn writing ``session_id``'s answer, if any, here or on another
        instance, and wait until it has ended: after this returns, that turn writes nothing
        more to the session's history."""
        active = await self.registry.active_turn(user_id, session_id)
        if active is None:
            return
        running = self._running.get(active.stream_id)
        if running is not None:
            self.cancel_local(active.stream_id, reason)
            _, pending = await asyncio.wait({running.task}, timeout=within)
            if pending:
                log.warning("turn_did_not_stop", stream_id=active.stream_id, reason=reason)
            return
        if not await self.registry.signal_cancel(active.stream_id, reason):
            return
        # The producing instance saves the answer, then its terminal event frees the
        # session: wait for that.
        for _ in range(int(within / 0.05)):
            current = await self.registry.active_turn(user_id, session_id)
            if current is None or current.stream_id != active.stream_id:
                return
            await asyncio.sleep(0.05)
        log.warning("turn_did_not_stop", stream_id=active.stream_id, reason=reason)

    async def _produce(self, turn: Turn, stream_log: StreamLog, cancellation: Cancellation) -> None:
        # First, in the turn's own task: context variables bound by the hook (the stream id
        # and hashed user on every log line) stay with the turn and nothing else.
        self._running[turn.stream_id].started = True
        cancellation.make_current()
        span: TurnScope | None = None
        if self.tracer is not None:
            span = self.tracer.turn(turn)
        self.telemetry.turn_started(turn)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(
            self.settings.stream.max_duration_seconds, self.cancel_local, turn.stream_id, "timeout"
        )
        terminal: Event | None = None
        events = self.pipeline.run(turn)
        first_status = True
        started = time.monotonic()
        first_chunk: float | None = None
        text_waiting = False  # chunks appended since the readers last had the loop
        produced = 0
        # Calls announced and not answered: closed before whatever terminal event ends the
        # turn, however it ends (see server.core.open_calls).
        open_calls = OpenToolCalls()
        try:
            if cancellation.reason is not None:  # stopped before it began
                terminal = cancellation_event(cancellation.reason)
                await stream_log.append(terminal)
            else:
                async for event in events:
                    kind = event.type
                    hand_over = False
                    if first_status and isinstance(event, Status):
                        event = dataclasses.replace(event, stream_id=turn.stream_id)
                        first_status = False
                        # Let the readers send it before the stages' first work (opening the
                        # session, building the upstream request), which runs without
                        # suspending: the client learns at once that its turn has started.
                        hand_over = True
                    elif kind == "chunk":
                        if first_chunk is None:
                            first_chunk = time.monotonic() - started
                            # And the first text: an answer whose first frames arrived
                            # together would otherwise reach the client only once the burst
                            # was read, its stages done and the answer saved.
                            hand_over = True
                        else:
                            text_waiting = True
                    else:
                        if kind in TOOL_EVENT_TYPES:
                            open_calls.see(event)
                        if text_waiting:
                            # The first event after text (a tool call, the llm stage's done):
                            # the text leaves before what follows, the answer's save among them.
                            text_waiting = False
                            hand_over = True
                    if kind in TERMINAL_TYPES:
                        terminal = event
                        await _close_calls(stream_log, open_calls)
                    try:
                        await stream_log.append(event)
                    except LogFull:
                        log.warning("stream_log_full", stream_id=turn.stream_id)
                        terminal = error(
                            ErrorCode.INTERNAL, "The answer grew too long.", retryable=False
                        )
                        await _close_calls(stream_log, open_calls)
                        await stream_log.append(terminal)
                    if terminal is not None:
                        break
                    produced += 1
                    if hand_over or not produced % _YIELD_EVERY:
                        # Besides, a burst already buffered upstream is read without
                        # suspending: give other streams' readers the loop.
                        await asyncio.sleep(0)
        except asyncio.CancelledError:
            # Landed outside any stage (between events): still end the stream properly.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if terminal is None:
                terminal = cancellation_event(cancellation.reason)
                await _close_calls(stream_log, open_calls)
                await stream_log.append(terminal)
        except Exception:
            log.exception("producer_failed", stream_id=turn.stream_id)
        finally:
            timer.cancel()
            await events.aclose()  # type: ignore[attr-defined]
            if terminal is None:
                terminal = error(
                    ErrorCode.INTERNAL, "The answer ended unexpectedly.", retryable=True
                )
                await _close_calls(stream_log, open_calls)
                await stream_log.append(terminal)
            self._running.pop(turn.stream_id, None)
            self.logs.finished(stream_log)
            try:
                await self.registry.finish(turn)
            except Exception:  # a shared store down: its leases lapse on their own
                log.warning("turn_release_failed", stream_id=turn.stream_id, exc_info=True)
            self.telemetry.turn_ended(turn, terminal, time.monotonic() - started, first_chunk)
            if span is not None:  # after the turn's last log line, which carries its trace id
                span.ended(terminal)
                span.end()

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop taking turns, let running ones finish within the grace period, then end the
        rest with a retryable error (their wrappers save every partial answer)."""
        self.accepting = False
        tasks = [running.task for running in self._running.values()]
        if tasks:
            log.info("draining_turns", running=len(tasks), grace_seconds=grace_seconds)
            await asyncio.wait(tasks, timeout=grace_seconds)
        left = list(self._running)
        for stream_id in left:
            self.cancel_local(stream_id, "shutdown")
        remaining = [running.task for running in self._running.values()]
        if remaining:
            await asyncio.wait(remaining, timeout=5)


async def _close_calls(stream_log: StreamLog, open_calls: OpenToolCalls) -> None:
    """Append a ``cancelled`` result for each call still open, before the terminal event.
    A log that is full keeps its last slot for the terminal event: the results that do not
    fit are left out, since the stream must end either way."""
    if not open_calls:
        return
    for result in open_calls.close_all():
        try:
            await stream_log.append(result)
        except LogFull:
            return
