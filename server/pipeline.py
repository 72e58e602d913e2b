"""The run loop: stages in the configured order, each announced by ``status`` events.

Plain stages run one after another in a loop; a wrapper stage gets ``rest``, which announces
the wrapper as done and runs every later stage. Progress is the share of stages started or
done, so it never decreases.

A stage that raises, or a turn that is cancelled (stop, timeout, client gone, shutdown) while
a stage is running, becomes an ``error`` event *at that stage's level*: wrappers around it
see an ordinary terminal event and can save the partial answer. Internals never reach the
client: the traceback goes to the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import structlog

from server.plugin_api import (
    TERMINAL_TYPES,
    AnyStage,
    Event,
    Rest,
    Turn,
    WrapperStage,
    error,
    status,
)
from server.telemetry import Telemetry

__all__ = ["CANCEL_REASONS", "Pipeline", "cancellation_event"]

log = structlog.get_logger("sluice.pipeline")

# Why a turn was cancelled -> the error event the client gets.
CANCEL_REASONS: dict[str, tuple[str, str, bool]] = {
    "cancelled": ("cancelled", "Stopped.", False),
    "disconnect": ("cancelled", "The client went away.", False),
    "timeout": ("timeout", "The answer took too long and was stopped.", True),
    "shutdown": ("internal", "The server is restarting. Please try again.", True),
}


def cancellation_event(reason: str | None) -> Event:
    code, message, retryable = CANCEL_REASONS.get(
        reason or "cancelled", CANCEL_REASONS["cancelled"]
    )
    return error(code, message, retryable=retryable)


class Pipeline:
    def __init__(self, stages: Sequence[AnyStage], *, telemetry: Telemetry | None = None) -> None:
        self.stages = list(stages)
        self.names = [stage.name for stage in self.stages]
        count = len(self.stages)
        self._progress = [(100 * i) // count for i in range(count + 1)]
        self._telemetry = telemetry or Telemetry()

    def run(self, turn: Turn) -> AsyncIterator[Event]:
        return self._run_from(turn, 0)

    def _stage_done(self, index: int, started: float) -> Event:
        self._telemetry.stage_done(self.names[index], time.perf_counter() - started)
        return status(self.names[index], "done", self._progress[index + 1])

    async def _run_from(
        self, turn: Turn, index: int, handover: Event | None = None
    ) -> AsyncIterator[Event]:
        """Stages ``index`` onwards. A wrapper runs the stages after it through ``rest``, a
        second ``_run_from`` that first yields ``handover`` (the wrapper's "done").

        Plain stages and wrappers share this one loop, and ``rest`` is a plain function:
        every level of generators here is kept suspended for the whole of an open stream.
        """
        if handover is not None:
            yield handover
        for position in range(index, len(self.stages)):
            stage = self.stages[position]
            yield status(stage.name, "start", self._progress[position])
            started = time.perf_counter()
            events: AsyncIterator[Event]
            if isinstance(stage, WrapperStage):
                is_wrapper = True
                events = stage.wrap(turn, self._rest(position, started))
            else:
                is_wrapper = False
                events = stage.run(turn)
            try:
                async for event in events:
                    if event["type"] in TERMINAL_TYPES:
                        if not is_wrapper:
                            yield self._stage_done(position, started)
                        yield event
                        return
                    yield event
            except asyncio.CancelledError:
                yield _after_cancel(turn)
                return
            except Exception:
                log.exception("stage_failed", stage=stage.name, stream_id=turn.stream_id)
                yield _internal_error()
                return
            finally:
                await events.aclose()  # type: ignore[attr-defined]
            if is_wrapper:
                return  # the stages after it ran inside it, through rest
            # Not kept (closed, but with its frame) while the later stages run: for the
            # life of the stream.
            del events
            yield self._stage_done(position, started)

    def _rest(self, position: int, started: float) -> Rest:
        def rest(inner_turn: Turn) -> AsyncIterator[Event]:
            return self._run_from(inner_turn, position + 1, self._stage_done(position, started))

        return rest


def _internal_error() -> Event:
    return error("internal", "Something went wrong on our side. Please try again.", retryable=True)


def _after_cancel(turn: Turn) -> Event:
    # The cancellation has been delivered and is handled here: let the producer task go on
    # to record the terminal event (asyncio.timeout and TaskGroup count cancellations).
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        task.uncancel()
    return cancellation_event(turn.state.get("sluice.cancel_reason"))
