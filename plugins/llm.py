"""``llm``: the answer, streamed as ``chunk`` events, with the model's tool rounds.

The answer service (``services.llm``, the provider fallback chain) picks the provider for
each round and handles fallback; this stage turns its text deltas into events and runs the
tools the model calls (``services.tools``):

round → reasoning as ``reasoning`` events, text as ``chunk`` events → the round's calls,
each announced by ``tool_call`` → for each call, the owner's approval when its tool requires
one, then the run → its ``tool_result`` → the next round, given the assistant's reasoning,
text and calls and the results.

* After ``tools.max_rounds`` rounds with calls, the model is asked once more with no tools,
  so the turn still ends with an answer rather than a cut.
* Every ``tool_call`` gets exactly one ``tool_result`` before the turn's terminal event: a
  stop while a call waits or runs gives it (and each call not yet run) a ``cancelled``
  result, then the stop ends the turn as usual. (A turn that ends elsewhere while a call is
  open — stopped in another stage, its producer dead — has the open calls closed the same
  way by whoever writes its terminal event.)
* Calls of one round run one after another, in the model's order: approvals are asked one
  at a time, and a turn's tools cannot race each other over shared state.
* Tools the API client runs itself (``Tool.runs_on_client``: an OpenAI client's ``tools``)
  are offered like the others, but never run: a round that calls any of them ends the turn
  with ``finish_reason`` ``"tool_calls"`` and those calls in ``complete.client_tool_calls``.
  The server tools called in that same round are not run either (nor announced): the client
  keeps the conversation, and could not give the model back a result it never saw, so the
  model is left to call them again in the next round, once it has its client tools'
  results, where they run as usual.
* ``tool_choice`` ``"required"`` or a named tool holds for the turn's first round only;
  after a round of calls the model chooses freely (``"auto"``), or it could never stop.

All chunks joined are ``complete.message`` (reasoning never is); ``complete.tool_calls``
counts the calls run. A round's reasoning goes back to the model with its calls, as one part
per block (pieces joined until a piece carries the block's signature): Anthropic requires its
signed thinking blocks back within a tool round.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import AsyncIterator

import structlog

from server import (
    AnswerError,
    AnswerResult,
    ErrorCode,
    Event,
    GenerationParams,
    Message,
    ReasoningPart,
    Stage,
    StoreUnavailable,
    ToolCall,
    ToolChoice,
    ToolContext,
    ToolResult,
    ToolResultEvent,
    Turn,
    Usage,
    chunk,
    complete,
    error,
    reasoning,
    tool_call,
    tool_result,
)

__all__ = ["LLMStage"]

log = structlog.get_logger("sluice.llm")


class LLMStage(Stage):
    ends_turn = True

    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        service = self.services.tools
        # Without the tool service only the client's own tools are offered: sluice runs none.
        offered = [t for t in turn.tools if service is not None or t.runs_on_client]
        messages = list(turn.prompt)
        parts: list[str] = []
        rounds = 0
        calls_run = 0
        used_ids: set[str] = set()
        last: AnswerResult | None = None
        while True:
            tools = offered if service is None or rounds < service.max_rounds else []
            answer = self.services.llm.answer(
                messages,
                deadline=turn.deadline,
                params=_round_params(turn.params, rounds),
                provider=turn.provider,
                tools=tools,
            )
            said: list[str] = []
            calls: list[ToolCall] = []
            thoughts = _Thoughts()
            reasoned = 0  # characters of reasoning, for turn.output_chars
            try:
                async for delta in answer:
                    if delta.__class__ is str:
                        said.append(delta)
                        yield chunk(delta)
                    elif isinstance(delta, ReasoningPart):
                        thoughts.add(delta)
                        if delta.text:
                            reasoned += len(delta.text)
                            yield reasoning(delta.text)
                    elif tools:
                        calls.append(delta)  # type: ignore[arg-type]
            except AnswerError as failure:
                # Before the error leaves: the stage that records the answer acts on it at once.
                turn.answered_by = answer.writer or last
                yield failure.event()
                return
            finally:
                # Kept for whoever records the answer, stopped ones included.
                turn.answered_by = answer.writer or last
                turn.output_chars += _sent_chars(said, reasoned, calls)
                # Closed at a yield (turn ended by a wrapper, generator closed): release the
                # upstream request now, not when the garbage collector gets to it.
                await answer.aclose()
            parts.extend(said)
            result = answer.result
            assert result is not None, "an answer read to its end has a result"
            last = result
            turn.usage = _added(turn.usage if rounds else None, result.usage)
            if not calls:
                break
            calls = [_unique(call, used_ids) for call in calls]
            for_client = [call for call in calls if _runs_on_client(turn, call)]
            if for_client:
                if len(for_client) < len(calls):
                    log.info("server_calls_left_for_next_round", calls=len(calls) - len(for_client))
                turn.finish_reason = "tool_calls"
                yield _complete(turn, parts, last, calls_run, for_client)
                return
            if service is None:
                break
            rounds += 1
            # Every approval of the round is asked for before any call is announced: a
            # decision may follow its event at once, and a store that fails here ends the
            # turn before it has announced a call it could not settle.
            try:
                for call in calls:
                    if _needs_approval(turn, call):
                        await service.ask(turn.stream_id, call)
            except StoreUnavailable as failure:
                log.warning("tool_approvals_unavailable", reason=failure.reason)
                yield error(
                    ErrorCode.INTERNAL,
                    "Tool approvals are unavailable right now. Please try again shortly.",
                    retryable=True,
                    retry_after=failure.retry_after,
                )
                return
            for call in calls:
                if _needs_approval(turn, call):
                    yield tool_call(call.call_id, call.name, call.arguments, approval="required")
                else:
                    yield tool_call(call.call_id, call.name, call.arguments, approval="none")
            results: list[ToolResult] = []
            stop = asyncio.Event()
            try:
                for call in calls:
                    event = await self._settle(turn, call, stop)
                    results.append(_as_result(event))
                    calls_run += 1
                    yield event
            except asyncio.CancelledError:
                stop.set()
                for call in calls[len(results) :]:
                    yield tool_result(
                        call.call_id,
                        call.name,
                        ok=False,
                        content="The call was cancelled.",
                        error="cancelled",
                        duration_ms=0,
                    )
                raise
            messages.append(Message("assistant", "".join(said), (*thoughts.blocks(), *calls)))
            messages.append(Message("tool", "", tuple(results)))
        turn.finish_reason = last.finish_reason
        yield _complete(turn, parts, last, calls_run, [])

    async def _settle(self, turn: Turn, call: ToolCall, stop: asyncio.Event) -> ToolResultEvent:
        """The call's result: denied, or run."""
        service = self.services.tools
        assert service is not None
        found = turn.tools.get(call.name)
        if _needs_approval(turn, call) and not await service.approve(turn.stream_id, call):
            return tool_result(
                call.call_id,
                call.name,
                ok=False,
                content="The user did not allow this call.",
                error="denied",
                duration_ms=0,
            )
        context = ToolContext(
            user_id=turn.user_id, session_id=turn.session_id, call_id=call.call_id, cancelled=stop
        )
        return await service.run(found, call, context, deadline=turn.deadline)


class _Thoughts:
    """A round's reasoning as blocks: pieces joined until one carries a signature."""

    __slots__ = ("_done", "_pieces", "_source")

    def __init__(self) -> None:
        self._done: list[ReasoningPart] = []
        self._pieces: list[str] = []
        self._source: str | None = None

    def add(self, piece: ReasoningPart) -> None:
        self._pieces.append(piece.text)
        self._source = piece.source or self._source
        if piece.signature is not None or piece.redacted is not None:
            text = "".join(self._pieces)
            self._done.append(ReasoningPart(text, piece.signature, self._source, piece.redacted))
            self._pieces.clear()
            self._source = None

    def blocks(self) -> list[ReasoningPart]:
        if any(self._pieces):
            return [*self._done, ReasoningPart("".join(self._pieces), source=self._source)]
        return self._done


def _complete(
    turn: Turn, parts: list[str], last: AnswerResult, calls_run: int, for_client: list[ToolCall]
) -> Event:
    return complete(
        "".join(parts),
        session_id=turn.session_id,
        suggestions=turn.suggestions,
        provider=last.provider,
        model=last.model,
        mode=last.mode,
        fallback=last.fallback,
        usage=last.usage.as_dict() if last.usage else None,
        finish_reason="tool_calls" if for_client else last.finish_reason,
        tool_calls=calls_run,
        client_tool_calls=tuple(
            {"call_id": call.call_id, "name": call.name, "arguments": dict(call.arguments)}
            for call in for_client
        ),
    )


_AUTO = ToolChoice("auto")


def _round_params(params: GenerationParams, rounds: int) -> GenerationParams:
    """The turn's parameters for a round: a forced choice only before the first calls."""
    choice = params.tool_choice
    if rounds and choice is not None and choice.mode in ("required", "function"):
        return dataclasses.replace(params, tool_choice=_AUTO)
    return params


def _runs_on_client(turn: Turn, call: ToolCall) -> bool:
    found = turn.tools.get(call.name)
    return found is not None and found.runs_on_client


def _added(total: Usage | None, more: Usage | None) -> Usage:
    """The turn's usage so far with one more call's. Input and output stay None once any
    call did not count them (whoever records usage then estimates them); the cache's and
    reasoning's figures are parts of those, and a call that names none had none."""
    more = more or Usage()
    if total is None:
        return dataclasses.replace(more)

    def both(a: int | None, b: int | None) -> int | None:
        return None if a is None or b is None else a + b

    def either(a: int | None, b: int | None) -> int | None:
        return None if a is None and b is None else (a or 0) + (b or 0)

    return Usage(
        input_tokens=both(total.input_tokens, more.input_tokens),
        output_tokens=both(total.output_tokens, more.output_tokens),
        total_tokens=both(total.total_tokens, more.total_tokens),
        cached_tokens=either(total.cached_tokens, more.cached_tokens),
        cache_creation_tokens=either(total.cache_creation_tokens, more.cache_creation_tokens),
        reasoning_tokens=either(total.reasoning_tokens, more.reasoning_tokens),
    )


def _sent_chars(said: list[str], reasoned: int, calls: list[ToolCall]) -> int:
    """The characters a model call sent: its text, its reasoning, its calls' arguments."""
    return sum(map(len, said)) + reasoned + sum(len(json.dumps(call.arguments)) for call in calls)


def _needs_approval(turn: Turn, call: ToolCall) -> bool:
    found = turn.tools.get(call.name)
    return found is not None and found.requires_approval


def _unique(call: ToolCall, used: set[str]) -> ToolCall:
    """The call with an id unique in the turn (a provider's own when it is): ids pair calls
    with results and name a call waiting for approval."""
    call_id = call.call_id
    if not call_id or call_id in used:
        call_id = "call_" + secrets.token_hex(6)
        call = ToolCall(call_id, call.name, call.arguments, call.arguments_error)
    used.add(call_id)
    return call


def _as_result(event: ToolResultEvent) -> ToolResult:
    return ToolResult(event.call_id, event.name, event.ok, event.content, event.error)
