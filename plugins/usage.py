"""``usage``: the budget check before the model is asked, and the ledger entry after.

A quiet plain stage placed before ``session``: a turn whose user has spent the period's
budget ends at once with ``budget_exhausted`` (no history written, no model asked). An
admitted turn runs the rest of the pipeline and, however it ends — complete, failed,
stopped, timed out, or torn down — its answer is recorded once, in ``turn_ended``, through
``services.usage`` (the ledger, and the budget in place of the turn's reservation):

* from the providers' own figures (``turn.usage``, every model call of the turn summed)
  when the turn completed and every call counted its tokens;
* otherwise estimated and marked so: the prompt's characters and the characters the model
  sent (``turn.output_chars``: answer, reasoning, tool calls' arguments), four to a token,
  for each figure the providers did not give.

A turn that ended before any model was asked (a later stage refused it, history down)
records nothing. The stage never sees the answer's events: the ``llm`` stage counts the
characters as they pass, and the tool service counts tool calls for the metrics.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator

import structlog

from server import (
    Complete,
    Error,
    ErrorCode,
    Event,
    LostTurn,
    Part,
    ReasoningPart,
    Spent,
    Stage,
    StoreUnavailable,
    ToolCall,
    ToolResult,
    Turn,
    error,
)

__all__ = ["UsageStage"]

log = structlog.get_logger("sluice.usage")

# Characters per token for an estimate (OpenAI's rule of thumb for English text).
CHARS_PER_TOKEN = 4
# Ends that come before any model is asked: nothing was spent.
_NOTHING_SPENT = frozenset(
    {ErrorCode.RATE_LIMITED, ErrorCode.TOO_MANY_STREAMS, ErrorCode.BUDGET_EXHAUSTED}
)


def _tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


class UsageStage(Stage):
    # Bookkeeping: no status events (two a turn, a tenth of a short answer's cost).
    quiet = True

    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        book = self.services.usage
        if book is None:  # the server lends none: nothing to check
            return
        try:
            refusal = await book.admit(turn)
        except StoreUnavailable as failure:
            log.warning("budget_unavailable", reason=failure.reason)
            yield error(
                ErrorCode.INTERNAL,
                "Usage budgets are unavailable right now. Please try again shortly.",
                retryable=True,
                retry_after=failure.retry_after,
            )
            return
        if refusal is not None:
            yield refusal

    async def turn_ended(self, turn: Turn, end: Event | None) -> None:
        book = self.services.usage
        if book is None:
            return
        spent = _spent(turn, end)
        if spent is not None:
            await book.settle(turn, spent)

    async def turn_lost(self, lost: LostTurn) -> None:
        book = self.services.usage
        if book is None:
            return
        # The process died: its figures died with it. What its client was sent is known.
        spent = Spent(
            None, None, _tokens(len(lost.message)), _tokens(len(lost.partial)), estimated=True
        )
        await book.settle_lost(lost, spent)


def _part_chars(part: Part) -> int:
    """The text of a prompt part (an image's tokens are the provider's to count)."""
    if isinstance(part, ToolResult):
        return len(part.content)
    if isinstance(part, ToolCall):
        return len(json.dumps(part.arguments))
    if isinstance(part, ReasoningPart):
        return len(part.text)
    return 0


def _spent(turn: Turn, terminal: Event | None) -> Spent | None:
    if isinstance(terminal, Error) and terminal.code in _NOTHING_SPENT:
        return None
    if not turn.prompt and turn.answered_by is None:
        return None  # ended before the prompt was built: no model was asked
    writer = terminal if isinstance(terminal, Complete) else turn.answered_by
    provider = writer.provider if writer is not None else None
    model = writer.model if writer is not None else None
    usage = turn.usage if isinstance(terminal, Complete) else None
    counted_in = usage.input_tokens if usage is not None else None
    counted_out = usage.output_tokens if usage is not None else None
    prompt_chars = sum(
        len(message.content) + sum(_part_chars(part) for part in message.parts)
        for message in turn.prompt
    )
    return Spent(
        provider,
        model,
        counted_in if counted_in is not None else _tokens(prompt_chars),
        counted_out if counted_out is not None else _tokens(turn.output_chars),
        cached_tokens=(usage.cached_tokens or 0) if usage is not None else 0,
        reasoning_tokens=(usage.reasoning_tokens or 0) if usage is not None else 0,
        estimated=counted_in is None or counted_out is None,
    )
