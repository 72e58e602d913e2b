"""Running one tool call: validate, run with a deadline, stop on cancel, and say what happened.

Whatever the tool does, the caller gets a :class:`ToolRun` back — never the tool's exception:
a failure is a result the model is given, and the turn goes on. The one exception that does
leave is the caller's own cancellation (its task was cancelled); the tool's task is cancelled
and awaited first, so nothing is left running.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import pydantic
import structlog

from server.contract.events import ToolResultEvent, tool_result
from server.contract.parts import ToolCall, ToolErrorKind, ToolResult
from server.contract.tools import Tool, ToolArgumentsError, ToolContext, ToolError

__all__ = ["ToolRun", "cut", "run_tool_call", "to_text"]

log = structlog.get_logger("sluice.tools")

_ANY: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)

# Characters of an exception's own message given to the model; the rest is internals.
_ERROR_MESSAGE_CHARS = 300


@dataclass(frozen=True, slots=True)
class ToolRun:
    """A finished call: its result and how long it took."""

    result: ToolResult
    duration_ms: int

    def event(self) -> ToolResultEvent:
        """The ``tool_result`` event that reports it."""
        result = self.result
        return tool_result(
            result.call_id,
            result.name,
            ok=result.ok,
            content=result.content,
            error=result.error,
            duration_ms=self.duration_ms,
        )


def to_text(value: Any) -> str:
    """What a tool returned, as text for the model: ``str`` as it is, ``None`` as nothing,
    anything else as JSON (pydantic's serializer: models, dataclasses, dates and all)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    return _ANY.dump_json(value, fallback=repr).decode()


def cut(text: str, max_chars: int) -> str:
    """``text`` in at most ``max_chars`` characters, saying so at the end when it was cut, so
    the model knows it did not see everything."""
    if len(text) <= max_chars:
        return text
    note = f"\n[cut: {len(text)} characters, {max_chars} shown]"
    if len(note) * 2 > max_chars:
        return text[:max_chars]
    return text[: max_chars - len(note)] + note


async def run_tool_call(
    tool: Tool | None,
    call: ToolCall,
    context: ToolContext,
    *,
    timeout: float,
    max_result_chars: int,
) -> ToolRun:
    """Run ``call`` on ``tool`` (None: the model named a tool that does not exist).

    ``timeout`` bounds the tool's run (``tools.timeout_seconds``); ``context.cancelled``
    being set ends it at once with ``cancelled``. The result's content is cut to
    ``max_result_chars``.
    """
    started = time.monotonic()

    def done(ok: bool, content: str, error: ToolErrorKind | None = None) -> ToolRun:
        result = ToolResult(call.call_id, call.name, ok, cut(content, max_result_chars), error)
        return ToolRun(result, round((time.monotonic() - started) * 1000))

    if tool is None:
        return done(False, f"There is no tool called {call.name!r}.", ToolErrorKind.FAILED)
    if context.cancelled.is_set():
        return done(False, "The call was cancelled.", ToolErrorKind.CANCELLED)
    if call.arguments_error is not None:
        return done(
            False, f"Invalid arguments: {call.arguments_error}", ToolErrorKind.INVALID_ARGUMENTS
        )
    try:
        validated = tool.validate(call.arguments)
    except ToolArgumentsError as problem:
        return done(False, f"Invalid arguments: {problem.message}", ToolErrorKind.INVALID_ARGUMENTS)
    running = asyncio.ensure_future(tool.invoke(validated, context))
    stopping = asyncio.ensure_future(context.cancelled.wait())
    try:
        finished, _ = await asyncio.wait(
            (running, stopping), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        # Reached with the caller cancelled too: the tool must not outlive its turn.
        stopping.cancel()
        if not running.done():
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    if running not in finished:
        if stopping in finished:
            return done(False, "The call was cancelled.", ToolErrorKind.CANCELLED)
        return done(
            False, f"The tool did not answer within {timeout:g} seconds.", ToolErrorKind.TIMEOUT
        )
    try:
        value = running.result()
    except ToolError as failure:
        return done(False, failure.message, ToolErrorKind.FAILED)
    except asyncio.CancelledError:  # the tool cancelled itself
        return done(False, "The call was cancelled.", ToolErrorKind.CANCELLED)
    except Exception as failure:
        log.warning(
            "tool_failed", tool=tool.name, source=tool.source, call_id=call.call_id, exc_info=True
        )
        return done(False, _for_the_model(failure), ToolErrorKind.FAILED)
    try:
        text = to_text(value)
    except Exception as failure:  # a return value even pydantic cannot serialize
        return done(False, _for_the_model(failure), ToolErrorKind.FAILED)
    return done(True, text)


def _for_the_model(failure: BaseException) -> str:
    """The exception's type and the first line of its message: enough for the model to try
    otherwise, with no traceback."""
    message = str(failure).strip().splitlines()[0] if str(failure).strip() else ""
    if len(message) > _ERROR_MESSAGE_CHARS:
        message = message[:_ERROR_MESSAGE_CHARS] + "…"
    kind = type(failure).__name__
    return f"The tool failed: {kind}: {message}" if message else f"The tool failed: {kind}"
