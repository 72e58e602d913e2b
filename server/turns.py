"""Producers: each turn runs as its own task that appends the pipeline's events to its log.

HTTP responses only read logs, so a client that leaves does not stop the turn (unless
``stream.on_disconnect = "cancel"``), a stop request is a task cancellation with a reason,
and shutdown is "wait a grace period, then cancel what is left with a retryable error".
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass

import structlog

from server.config import Settings
from server.pipeline import Pipeline, cancellation_event
from server.plugin_api import Event, Turn, error
from server.streamlog import LogFull, MemoryStreamLog, StreamLogStore
from server.telemetry import Telemetry

__all__ = ["TurnRunner", "new_stream_id"]

log = structlog.get_logger("sluice.turns")

# Events a producer may append in a row before it lets other tasks run.
_YIELD_EVERY = 32


def new_stream_id() -> str:
    return "st_" + secrets.token_urlsafe(16)


@dataclass(eq=False, slots=True)
class _Running:
    turn: Turn
    task: asyncio.Task[None]
    log: MemoryStreamLog
    started: bool = False  # the task has taken its first step


class TurnRunner:
    def __init__(
        self,
        pipeline: Pipeline,
        logs: StreamLogStore,
        settings: Settings,
        *,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.logs = logs
        self.settings = settings
        self._running: dict[str, _Running] = {}
        self._per_user: Counter[str] = Counter()
        self.telemetry = telemetry or Telemetry()
        self.accepting = True

    @property
    def running_count(self) -> int:
        return len(self._running)

    async def start(self, turn: Turn) -> MemoryStreamLog:
        """Create the turn's log and start its producer; the log is returned at once."""
        stream_log = await self.logs.create(turn.stream_id, turn.user_id)
        limit = self.settings.limits.max_streams_per_user
        if not self.accepting:
            await self._refuse(turn, stream_log, cancellation_event("shutdown"))
            return stream_log
        if self._per_user[turn.user_id] >= limit:
            message = f"You already have {limit} answers in progress. Wait for one to finish."
            await self._refuse(turn, stream_log, error("too_many_streams", message, retryable=True))
            return stream_log
        turn.deadline = time.monotonic() + self.settings.stream.max_duration_seconds
        self._per_user[turn.user_id] += 1
        task = asyncio.create_task(self._produce(turn, stream_log), name=turn.stream_id)
        self._running[turn.stream_id] = _Running(turn, task, stream_log)
        return stream_log

    async def _refuse(self, turn: Turn, stream_log: MemoryStreamLog, event: Event) -> None:
        await stream_log.append(event)
        self.logs.finished(turn.stream_id)
        self.telemetry.turn_ended(turn, event, 0.0, None)

    def cancel(self, stream_id: str, reason: str) -> bool:
        """Cancel a running turn; False when it is not running (already ended)."""
        running = self._running.get(stream_id)
        if running is None or running.task.done():
            return False
        running.turn.state.setdefault("sluice.cancel_reason", reason)
        if running.started:
            running.task.cancel()
        # A task cancelled before its first step would never run _produce, so nothing would
        # end the stream or free the user's slot: it sees the reason as it starts instead.
        return True

    async def _produce(self, turn: Turn, stream_log: MemoryStreamLog) -> None:
        # First, in the turn's own task: context variables bound by the hook (the stream id
        # and hashed user on every log line) stay with the turn and nothing else.
        self._running[turn.stream_id].started = True
        self.telemetry.turn_started(turn)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(
            self.settings.stream.max_duration_seconds, self.cancel, turn.stream_id, "timeout"
        )
        terminal: Event | None = None
        events = self.pipeline.run(turn)
        first_status = True
        started = time.monotonic()
        first_chunk: float | None = None
        produced = 0
        try:
            if "sluice.cancel_reason" in turn.state:  # stopped before it began
                terminal = cancellation_event(turn.state["sluice.cancel_reason"])
                await stream_log.append(terminal)
            else:
                async for event in events:
                    if first_status and event["type"] == "status":
                        event["stream_id"] = turn.stream_id
                        first_status = False
                    elif first_chunk is None and event["type"] == "chunk":
                        first_chunk = time.monotonic() - started
                    if event["type"] in ("complete", "error"):
                        terminal = event
                    try:
                        await stream_log.append(event)
                    except LogFull:
                        log.warning("stream_log_full", stream_id=turn.stream_id)
                        terminal = error("internal", "The answer grew too long.", retryable=False)
                        await stream_log.append(terminal)
                    if terminal is not None:
                        break
                    produced += 1
                    if not produced % _YIELD_EVERY:
                        # A burst already buffered upstream is read without suspending:
                        # give other streams' readers the loop (DESIGN.md section 8).
                        await asyncio.sleep(0)
        except asyncio.CancelledError:
            # Landed outside any stage (between events): still end the stream properly.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if terminal is None:
                terminal = cancellation_event(turn.state.get("sluice.cancel_reason"))
                await stream_log.append(terminal)
        except Exception:
            log.exception("producer_failed", stream_id=turn.stream_id)
        finally:
            timer.cancel()
            await events.aclose()  # type: ignore[attr-defined]
            if terminal is None:
                terminal = error("internal", "The answer ended unexpectedly.", retryable=True)
                await stream_log.append(terminal)
            self._running.pop(turn.stream_id, None)
            self._per_user[turn.user_id] -= 1
            if self._per_user[turn.user_id] <= 0:
                del self._per_user[turn.user_id]
            self.logs.finished(turn.stream_id)
            self.telemetry.turn_ended(turn, terminal, time.monotonic() - started, first_chunk)

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
            self.cancel(stream_id, "shutdown")
        remaining = [running.task for running in self._running.values()]
        if remaining:
            await asyncio.wait(remaining, timeout=5)
