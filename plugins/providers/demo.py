"""``demo``: a local responder, clearly labelled, so the page works with no key at all.

It streams word by word at ``words_per_second`` and answers from what the prompt holds — the
user's message and the "Known context" block the context stage wrote — so what the pipeline
understood is visible. It never pretends to be a model.

Asked the time ("what time is it?", "the time in Tokyo") with the built-in ``current_time``
tool offered, it calls that tool first and answers from its result in the next round, so a
newcomer sees a tool step with no key.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import ClassVar

from pydantic import Field

from server import (
    Completion,
    GenerationParams,
    Message,
    ProviderContext,
    ProviderOptions,
    Tool,
    ToolCall,
    Usage,
)

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


TIME_TOOL = "current_time"
_ASKS_TIME = re.compile(r"\b(what time|the time|time is it|current time|time in)\b", re.I)
_PLACE = re.compile(r"\btime (?:is it )?in ([A-Za-z][A-Za-z .'-]*?)\s*[?.!]*$", re.I)
# A few places a newcomer may try; anything else is shown in UTC.
_ZONES = {
    "tokyo": "Asia/Tokyo",
    "japan": "Asia/Tokyo",
    "paris": "Europe/Paris",
    "london": "Europe/London",
    "berlin": "Europe/Berlin",
    "madrid": "Europe/Madrid",
    "new york": "America/New_York",
    "los angeles": "America/Los_Angeles",
    "san francisco": "America/Los_Angeles",
    "sydney": "Australia/Sydney",
    "delhi": "Asia/Kolkata",
    "india": "Asia/Kolkata",
    "beijing": "Asia/Shanghai",
    "singapore": "Asia/Singapore",
    "sao paulo": "America/Sao_Paulo",
}


def time_call(messages: list[Message], tools: Sequence[Tool]) -> ToolCall | None:
    """The ``current_time`` call the demo makes, when the user asked the time, the tool is
    offered, and this turn has not called it yet."""
    if not any(item.name == TIME_TOOL for item in tools) or not messages:
        return None
    last = messages[-1]
    if last.role != "user" or not _ASKS_TIME.search(last.content):
        return None
    place = _PLACE.search(last.content.strip())
    zone = _ZONES.get(place.group(1).strip().lower(), "UTC") if place else "UTC"
    return ToolCall("call_" + secrets.token_hex(6), TIME_TOOL, {"timezone": zone})


def time_answer(messages: list[Message]) -> str | None:
    """The answer from a ``current_time`` result the turn got, if it got one."""
    if not messages or messages[-1].role != "tool":
        return None
    result = next((r for r in messages[-1].tool_results if r.name == TIME_TOOL), None)
    if result is None:
        return None
    call = next((c for m in messages for c in m.tool_calls if c.call_id == result.call_id), None)
    zone = str(call.arguments.get("timezone", "UTC")) if call is not None else "UTC"
    lead = "*Demo mode: the demo responder called the `current_time` tool.*\n\n"
    if not result.ok:
        return lead + f"The `current_time` tool failed: {result.content}"
    try:
        when = datetime.fromisoformat(result.content)
    except ValueError:
        return lead + f"The `current_time` tool answered: {result.content}"
    return lead + f"It is {when:%H:%M} on {when:%A %d %B %Y} in {zone}."


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
    def __init__(
        self, words: list[str], delay: float, finish_reason: str, call: ToolCall | None = None
    ) -> None:
        self._words_left = words
        self._delay = delay
        self._finish = finish_reason
        self._call = call
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def __aiter__(self) -> AsyncIterator[str | ToolCall]:
        return self._words()

    async def _words(self) -> AsyncIterator[str | ToolCall]:
        words = self._words_left
        for word in words:
            if self._delay:
                await asyncio.sleep(self._delay)
            yield word
        if self._call is not None:
            if self._delay:
                await asyncio.sleep(self._delay)
            yield self._call
        self.usage = Usage(output_tokens=len(words) + (self._call is not None))
        self.finish_reason = self._finish

    async def aclose(self) -> None:
        return None


class DemoProvider:
    name: str = "demo"
    Options: ClassVar[type[ProviderOptions]] = DemoOptions
    # It reads text only: a message with pictures goes to a provider that can see them, or
    # is refused plainly when none can, rather than answered as if they were not there.
    sees_images = False

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
        tools: Sequence[Tool] = (),
    ) -> _DemoStream:
        rate = self.options.words_per_second
        delay = 1.0 / rate if rate else 0.0
        call = time_call(messages, tools)
        if call is not None:
            return _DemoStream([], delay, "tool_calls", call)
        words = _shaped(self._answer(messages), max_output_tokens, params)
        return _DemoStream(words, delay, _finish(words, max_output_tokens))

    @staticmethod
    def _answer(messages: list[Message]) -> str:
        return time_answer(messages) or demo_answer(messages)

    async def complete(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
        tools: Sequence[Tool] = (),
    ) -> Completion:
        call = time_call(messages, tools)
        if call is not None:
            return Completion("", Usage(output_tokens=1), "tool_calls", self.model, (call,))
        words = _shaped(self._answer(messages), max_output_tokens, params)
        usage = Usage(output_tokens=len(words))
        return Completion("".join(words), usage, _finish(words, max_output_tokens), self.model)

    async def aclose(self) -> None:
        return None
