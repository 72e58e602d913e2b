"""The run loop: stages in the configured order, each announced by ``status`` events.

Plain stages run one after another in a loop; a wrapper stage gets ``rest``, which runs every
later stage. The pipeline, not each stage, keeps the event rules:

* Each stage is announced ``start`` before its first event and ``done`` after its last (but
  a stage whose class sets ``quiet = True``, bookkeeping a client need not watch): a
  plain stage when its ``run`` ends, a wrapper just before the terminal event leaves it. A
  stage that ends the turn with ``error`` is not reported ``done`` (it failed), and neither
  are the wrappers around it.
* ``progress`` is the share of the pipeline's status events sent so far, so it never
  decreases and reaches 100 with the last ``done``. The status events are made once per
  pipeline and shared by every turn: events are immutable.
* A wrapper's ``complete`` carries as ``message`` exactly the text of the chunks that the
  wrapper let through, so a wrapper that rewrites, drops or adds chunks needs no bookkeeping
  of its own. (A wrapper that let no chunk through but completes with a message has that
  message sent as one chunk first, so that the client sees the answer.)

A stage that raises, or a turn that is cancelled (stop, timeout, client gone, shutdown) while
a stage is running, becomes an ``error`` event *at that stage's level*: wrappers around it
see an ordinary terminal event and can save the partial answer. Internals never reach the
client: the traceback goes to the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence

import structlog

from server.contract import (
    TERMINAL_TYPES,
    AnyStage,
    Chunk,
    Complete,
    Error,
    ErrorCode,
    Event,
    Rest,
    Stage,
    Status,
    Turn,
    WrapperStage,
    error,
)
from server.core.cancellation import cancellation_event, current_reason
from server.observability.telemetry import Telemetry
from server.observability.tracing import SpanScope, Tracer

__all__ = ["Pipeline"]

log = structlog.get_logger("sluice.pipeline")


class Pipeline:
    def __init__(
        self,
        stages: Sequence[AnyStage],
        *,
        telemetry: Telemetry | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.stages = list(stages)
        self.names = [stage.name for stage in self.stages]
        self._wrapper = [isinstance(stage, WrapperStage) for stage in self.stages]
        # Stages that keep their work to themselves (``quiet = True``) are not announced.
        self._quiet = [bool(getattr(stage, "quiet", False)) for stage in self.stages]
        self._starts, self._dones = _status_events(self.names, self._wrapper, self._quiet)
        self._telemetry = telemetry or Telemetry()
        self._tracer = tracer
        # Stages that override ``turn_ended``, found once: a pipeline without any keeps no
        # list of begun stages at all.
        self._hooked = [
            getattr(type(stage), "turn_ended", Stage.turn_ended) is not Stage.turn_ended
            for stage in self.stages
        ]
        self._any_hooked = any(self._hooked)

    def run(self, turn: Turn) -> AsyncIterator[Event]:
        return self._run_from(turn, 0, [] if self._any_hooked else None)

    def _stage_done(self, index: int, started: float) -> Status | None:
        self._telemetry.stage_done(self.names[index], time.perf_counter() - started)
        return self._dones[index]

    async def _run_from(
        self, turn: Turn, index: int, begun: list[AnyStage] | None
    ) -> AsyncIterator[Event]:
        """Stages ``index`` onwards. A wrapper runs the stages after it through ``rest``, a
        second ``_run_from``.

        Plain stages and wrappers share this one loop, and ``rest`` is a plain function:
        every level of generators here is kept suspended for the whole of an open stream.
        ``begun`` (None when no stage has a ``turn_ended``) collects, at every level, the
        stages with a ``turn_ended`` that began; the outermost level calls them once the
        turn is over, with the terminal event it yielded (None: closed before one).
        """
        end: Event | None = None
        try:
            for position in range(index, len(self.stages)):
                stage = self.stages[position]
                start = self._starts[position]
                if start is not None:
                    yield start
                started = time.perf_counter()
                if begun is not None and self._hooked[position]:
                    begun.append(stage)
                # The stage's span is current while it runs: a wrapper's holds the later stages'.
                span: SpanScope | None = None
                if self._tracer is not None and start is not None:
                    span = self._tracer.stage(stage.name)
                events: AsyncIterator[Event]
                is_wrapper = self._wrapper[position]
                # The text a wrapper let through, for its complete's message.
                sent: list[str] | None = None
                if is_wrapper:
                    sent = []
                    events = stage.wrap(turn, self._rest(position, begun))  # type: ignore[union-attr]
                else:
                    events = stage.run(turn)  # type: ignore[union-attr]
                try:
                    async for event in events:
                        if event.type in TERMINAL_TYPES:
                            if isinstance(event, Complete):
                                if sent is not None:
                                    text = "".join(sent)
                                    if not sent and event.message:
                                        yield Chunk(event.message)
                                    elif text != event.message:
                                        event = dataclasses.replace(event, message=text)
                                done = self._stage_done(position, started)
                                if done is not None:
                                    yield done
                            else:  # failed: timed, but not reported done
                                self._telemetry.stage_done(
                                    stage.name, time.perf_counter() - started
                                )
                                if span is not None and isinstance(event, Error):
                                    span.failed(event.code.value, event.message)
                            end = event
                            yield event
                            return
                        if sent is not None and isinstance(event, Chunk):
                            sent.append(event.content)
                        yield event
                except asyncio.CancelledError:
                    if span is not None:
                        span.failed("cancelled")
                    end = _after_cancel()
                    yield end
                    return
                except Exception as failure:
                    log.exception("stage_failed", stage=stage.name, stream_id=turn.stream_id)
                    if span is not None:
                        span.failed(type(failure).__qualname__)
                    end = _internal_error()
                    yield end
                    return
                finally:
                    await events.aclose()  # type: ignore[union-attr]
                    if span is not None:
                        span.end()
                # Not kept (closed, but with its frame) while the later stages run: for the
                # life of the stream.
                del events
                done = self._stage_done(position, started)
                if done is not None:
                    yield done
                if is_wrapper:
                    return  # the stages after it ran inside it, through rest
        finally:
            if index == 0 and begun:
                await self._turn_ended(turn, end, begun)

    async def _turn_ended(self, turn: Turn, end: Event | None, begun: list[AnyStage]) -> None:
        for stage in reversed(begun):
            try:
                await stage.turn_ended(turn, end)
            except Exception:
                log.exception("turn_ended_failed", stage=stage.name, stream_id=turn.stream_id)

    def _rest(self, position: int, begun: list[AnyStage] | None) -> Rest:
        def rest(inner_turn: Turn) -> AsyncIterator[Event]:
            return self._run_from(inner_turn, position + 1, begun)

        return rest


def _status_events(
    names: list[str], wrapper: list[bool], quiet: list[bool]
) -> tuple[list[Status | None], list[Status | None]]:
    """Each stage's ``start`` and ``done`` status, with progress by its place in the order
    the events are sent: starts and plain stages' dones in pipeline order, then the
    wrappers' dones, innermost first. A quiet stage has none (None)."""
    count = len(names)
    start_at = [0] * count
    done_at = [0] * count
    position = 0
    for index in range(count):
        if quiet[index]:
            continue
        start_at[index] = position
        position += 1
        if not wrapper[index]:
            done_at[index] = position
            position += 1
    for index in reversed(range(count)):
        if wrapper[index] and not quiet[index]:
            done_at[index] = position
            position += 1
    last = max(position - 1, 1)
    starts: list[Status | None] = [
        None if quiet[i] else Status(n, "start", 100 * start_at[i] // last)
        for i, n in enumerate(names)
    ]
    dones: list[Status | None] = [
        None if quiet[i] else Status(n, "done", 100 * done_at[i] // last)
        for i, n in enumerate(names)
    ]
    return starts, dones


def _internal_error() -> Event:
    return error(
        ErrorCode.INTERNAL, "Something went wrong on our side. Please try again.", retryable=True
    )


def _after_cancel() -> Event:
    # The cancellation has been delivered and is handled here: let the producer task go on
    # to record the terminal event (asyncio.timeout and TaskGroup count cancellations).
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        task.uncancel()
    return cancellation_event(current_reason())
