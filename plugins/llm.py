"""``llm``: the answer, streamed as ``chunk`` events from the answer service.

The service (``services.llm``, the provider fallback chain) picks the provider and handles
fallback; this stage turns its text deltas into events and ends the turn with ``complete`` —
or with the service's ``error``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from server import AnswerError, Event, Stage, Turn, chunk, complete

__all__ = ["LLMStage"]


class LLMStage(Stage):
    ends_turn = True

    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        answer = self.services.llm.answer(
            turn.prompt, deadline=turn.deadline, params=turn.params, provider=turn.provider
        )
        parts: list[str] = []
        try:
            async for delta in answer:
                parts.append(delta)
                yield chunk(delta)
        except AnswerError as failure:
            # Before the error leaves: the stage that records the answer acts on it at once.
            turn.answered_by = answer.writer
            yield failure.event()
            return
        finally:
            # Kept for whoever records the answer, stopped ones included.
            turn.answered_by = answer.writer
            # Closed at a yield (turn ended by a wrapper, generator closed): release the
            # upstream request now, not when the garbage collector gets to it.
            await answer.aclose()
        result = answer.result
        assert result is not None, "an answer read to its end has a result"
        turn.finish_reason = result.finish_reason
        yield complete(
            "".join(parts),
            session_id=turn.session_id,
            suggestions=turn.suggestions,
            provider=result.provider,
            model=result.model,
            mode=result.mode,
            fallback=result.fallback,
            usage=result.usage.as_dict() if result.usage else None,
            finish_reason=result.finish_reason,
        )
