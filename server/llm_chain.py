"""The fallback chain: one answer from whichever provider can give it.

The chain is the only retry loop (SDK retries are off). It walks ``llm.providers`` in order;
a failure before any text left moves on — to the same provider without streaming, then to the
next provider — within the turn's deadline. A failure after text was sent is final
(``upstream_interrupted``): repeating text the user already read is worse than stopping.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from server.providers import Message, Provider, ProviderError, Usage

__all__ = ["AnswerResult", "ChainError", "LLMChain"]


@dataclass(slots=True)
class AnswerResult:
    provider: str
    model: str
    mode: str  # "stream" | "non-stream"
    fallback: bool
    usage: Usage | None
    finish_reason: str | None = None


class ChainError(Exception):
    """The chain could not deliver; ``code`` is an event-stream error code."""

    def __init__(
        self, code: str, message: str, *, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


class AnswerStream:
    """Async iterator of text deltas; ``result`` is set once iteration ends normally."""

    def __init__(self, chain: LLMChain, messages: list[Message], deadline: float) -> None:
        self._chain = chain
        self._messages = messages
        self._deadline = deadline
        self.result: AnswerResult | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self._run()

    async def _run(self) -> AsyncIterator[str]:
        chain = self._chain
        fallback = False
        last_error: ProviderError | None = None
        for provider in chain.providers:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise ChainError("timeout", "The answer took too long.", retryable=True)
            sent = False
            stream = provider.stream(
                self._messages,
                max_output_tokens=chain.max_output_tokens,
                timeout=min(remaining, chain.first_token_timeout),
            )
            try:
                async for delta in stream:
                    if delta:
                        sent = True
                        yield delta
            except ProviderError as error:
                if sent:
                    raise ChainError(
                        "upstream_interrupted",
                        "The answer was interrupted. Please try again.",
                        retryable=True,
                    ) from error
                last_error = error
                fallback = True
                continue
            finally:
                await stream.aclose()
            self.result = AnswerResult(
                provider=provider.name,
                model=provider.model,
                mode="stream",
                fallback=fallback,
                usage=stream.usage,
                finish_reason=stream.finish_reason,
            )
            return
        message = "No language model could answer right now. Please try again shortly."
        retry_after = last_error.retry_after if last_error else None
        raise ChainError(
            "upstream_unavailable", message, retryable=True, retry_after=retry_after
        )


class LLMChain:
    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        max_output_tokens: int,
        first_token_timeout: float,
        idle_timeout: float,
        circuit_failures: int,
        circuit_cooldown: float,
    ) -> None:
        self.providers = list(providers)
        self.max_output_tokens = max_output_tokens
        self.first_token_timeout = first_token_timeout
        self.idle_timeout = idle_timeout
        self.circuit_failures = circuit_failures
        self.circuit_cooldown = circuit_cooldown

    def answer(self, messages: list[Message], *, deadline: float) -> AnswerStream:
        """Stream one answer; ``deadline`` is a ``time.monotonic()`` instant."""
        return AnswerStream(self, messages, deadline)

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()
