"""``demo``: a local responder, clearly labelled, so the page works with no key at all.

It streams word by word at ``words_per_second`` and answers from what the prompt holds — the
user's message and the "Known context" block the context stage wrote — so what the pipeline
understood is visible. It never pretends to be a model.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import ClassVar

from pydantic import Field

from server import Completion, GenerationParams, Message, ProviderContext, ProviderOptions, Usage

__all__ = ["DemoProvider"]

_WORDS = re.compile(r"\S+\s*|\s+")


class DemoOptions(ProviderOptions):
    model: str = "sluice-demo"
    words_per_second: float = Field(25.0, ge=0)


def _in_words(fact: str) -> str:
    """``- last_intent: find_restaurant`` as a person reads it: ``- topic: find restaurant``.
    The prompt keeps the identifiers (a model reads them well); what is shown does not."""
    key, sep, value = fact.removeprefix("-").strip().partition(":")
    key = "topic" if key.strip() == "last_intent" else key.strip().replace("_", " ")
    value = value.strip().replace("_", " ") if key == "topic" else value.strip()
    return f"- {key}{sep} {value}" if sep else fact


def demo_answer(messages: list[Message]) -> str:
    system = next((m.content for m in messages if m.role == "system"), "")
    user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    _, _, known = system.partition("Known context:")
    facts = [
        _in_words(line.strip())
        for line in known.strip().splitlines()
        if line.strip().startswith("-")
    ]
    lines = [
        "*Demo mode: no model key is set, so sluice's built-in demo responder is answering.*",
        "",
        f"You said: {user}",
        "",
    ]
    if facts:
        lines += ["What the pipeline understood:", *facts, ""]
    lines.append(
        "Set `OPENAI_API_KEY` or `GEMINI_API_KEY` and restart sluice to talk to a real model."
    )
    return "\n".join(lines)


def _shaped(text: str, max_output_tokens: int, params: GenerationParams | None) -> list[str]:
    """The answer's words, cut at the first stop sequence and at ``max_output_tokens`` words
    (a word stands in for a token), as a model would."""
    if params is not None:
        cuts = [text.find(stop) for stop in params.stop if stop in text]
        if cuts:
            text = text[: min(cuts)]
    return _WORDS.findall(text)[:max_output_tokens]


def _finish(words: list[str], max_output_tokens: int) -> str:
    return "length" if len(words) >= max_output_tokens else "stop"


class _DemoStream:
    def __init__(self, words: list[str], delay: float, finish_reason: str) -> None:
        self._words_left = words
        self._delay = delay
        self._finish = finish_reason
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self._words()

    async def _words(self) -> AsyncIterator[str]:
        words = self._words_left
        for word in words:
            if self._delay:
                await asyncio.sleep(self._delay)
            yield word
        self.usage = Usage(output_tokens=len(words))
        self.finish_reason = self._finish

    async def aclose(self) -> None:
        return None


class DemoProvider:
    name: str = "demo"
    Options: ClassVar[type[ProviderOptions]] = DemoOptions

    def __init__(self, options: DemoOptions, context: ProviderContext) -> None:
        self.options = options
        self.model = options.model

    def missing_configuration(self) -> str | None:
        return None

    def stream(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
    ) -> _DemoStream:
        rate = self.options.words_per_second
        words = _shaped(demo_answer(messages), max_output_tokens, params)
        return _DemoStream(words, 1.0 / rate if rate else 0.0, _finish(words, max_output_tokens))

    async def complete(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
    ) -> Completion:
        words = _shaped(demo_answer(messages), max_output_tokens, params)
        usage = Usage(output_tokens=len(words))
        return Completion("".join(words), usage, _finish(words, max_output_tokens), self.model)

    async def aclose(self) -> None:
        return None
