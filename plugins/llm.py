"""``llm``: the answer, streamed as ``chunk`` events from the fallback chain.

The chain (``server.llm_chain``) picks the provider and handles fallback; this stage turns
its text deltas into events and ends with ``complete`` — or with the chain's ``error``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from server import Event, Stage, Turn, chunk, complete, error
from server.llm_chain import ChainError

__all__ = ["LLMStage"]


class LLMStage(Stage):
    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        answer = self.services.llm.answer(turn.prompt, deadline=turn.deadline)
        parts: list[str] = []
        try:
            async for delta in answer:
                parts.append(delta)
                yield chunk(delta)
        except ChainError as failure:
            yield error(
                failure.code,
                failure.message,
                retryable=failure.retryable,
                retry_after=failure.retry_after,
            )
            return
        finally:
            # Closed at a yield (turn ended by a wrapper, generator closed): release the
            # upstream request now, not when the garbage collector gets to it.
            await answer.aclose()
        result = answer.result
        assert result is not None
        yield complete(
            "".join(parts),
            session_id=turn.session_id,
            suggestions=turn.suggestions,
            provider=result.provider,
            model=result.model,
            mode=result.mode,
            fallback=result.fallback,
            usage=result.usage.as_dict() if result.usage else None,
        )
