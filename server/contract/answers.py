"""The answer service: what a stage calls to get text from a language model.

``services.llm.answer(prompt, deadline=turn.deadline, params=turn.params,
provider=turn.provider)`` returns an :class:`Answer`: an async
iterator of text deltas from whichever configured provider can give them (the fallback
chain). When iteration ends normally, ``answer.result`` says who answered and how; when no
provider could, iteration raises :class:`AnswerError`, whose :meth:`AnswerError.event` is the
``error`` event to end the turn with. Close the answer (``await answer.aclose()``) when you
stop early: that closes the upstream request at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from server.contract.events import Error, ErrorCode, error
from server.contract.parts import ReasoningPart, ToolCall
from server.contract.providers import GenerationParams, Message, Usage
from server.contract.tools import Tool

__all__ = ["Answer", "AnswerError", "AnswerResult", "AnswerService"]


@dataclass(slots=True)
class AnswerResult:
    """Who answered and how, once an :class:`Answer` has been read to its end."""

    provider: str  # the configured name of the provider that answered
    model: str
    mode: str  # "stream" | "non-stream"
    fallback: bool  # another provider or mode was tried first
    usage: Usage | None
    finish_reason: str | None = None


class AnswerError(Exception):
    """No answer could be delivered. ``message`` is safe to show a person."""

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after

    def event(self) -> Error:
        """The ``error`` event that tells the client."""
        return error(
            self.code, self.message, retryable=self.retryable, retry_after=self.retry_after
        )


class Answer(Protocol):
    """Text deltas (``str``) of one answer, the :class:`ToolCall` s of the model when it was
    given tools, and its :class:`ReasoningPart` pieces when it reasons visibly; ``result`` is
    set when iteration ends normally.

    ``writer`` says who is writing it from the first text on (provider, model, mode and
    fallback; usage and finish reason only once it ends), and still does when the answer
    fails or is stopped half-way: an interrupted answer is kept with who wrote it.
    """

    result: AnswerResult | None
    writer: AnswerResult | None

    def __aiter__(self) -> AsyncIterator[str | ToolCall | ReasoningPart]: ...

    async def aclose(self) -> None: ...


class AnswerService(Protocol):
    """The fallback chain, as lent to stages in :class:`server.contract.Services`."""

    def answer(
        self,
        messages: list[Message],
        *,
        deadline: float,
        params: GenerationParams | None = None,
        provider: str | None = None,
        tools: Sequence[Tool] = (),
    ) -> Answer:
        """Start an answer to ``messages``; ``deadline`` is a ``time.monotonic()`` instant.

        ``params`` (sampling parameters a client asked for) reach the provider that answers.
        ``provider`` names one configured provider to answer alone, without fallback to the
        others (an API client asked for that model); None walks the whole chain. ``tools``
        are offered to the model: one call is one round of a turn with tools."""
        ...
