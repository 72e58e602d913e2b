"""``context``: what the session remembers, and the prompt the model is given.

Entities found by the intent stage are merged into the session's memory (a location given
two turns ago is still known), then the prompt is built: the system prompt, a "Known
context" block, the client's own instructions (``turn.instructions``, each a system message
after the server's), as much history as fits ``history_chars`` (newest first), and the
message. Tool calls and results count towards ``history_chars`` with the text, and the
history never begins with a ``tool`` message whose calls were cut off: providers refuse
results without their calls.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from pydantic import Field

from server import Event, Message, Stage, StageOptions, Turn, context

__all__ = ["KNOWN_CONTEXT_HEADER", "ContextStage"]

KNOWN_CONTEXT_HEADER = "Known context:"


class ContextOptions(StageOptions):
    system_prompt: str = "You are a helpful assistant. Answer in the language the user writes in."
    history_chars: int = Field(12000, ge=0)
    remember_intent: bool = True


class ContextStage(Stage):
    Options = ContextOptions
    options: ContextOptions

    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        intent = turn.intent or {"name": "chat", "confidence": 0.0, "entities": {}}
        turn.memory.update(intent.get("entities", {}))
        if self.options.remember_intent and intent["name"] != "chat":
            turn.memory["last_intent"] = intent["name"]
        turn.prompt = self.build_prompt(turn)
        yield context(turn.session_id or "", intent, dict(turn.memory))

    def build_prompt(self, turn: Turn) -> list[Message]:
        system = self.options.system_prompt
        if turn.memory:
            facts = "\n".join(f"- {key}: {value}" for key, value in turn.memory.items())
            system = f"{system}\n\n{KNOWN_CONTEXT_HEADER}\n{facts}"
        budget = self.options.history_chars
        kept: list[Message] = []
        for message in reversed(turn.history):
            budget -= _size(message)
            if budget < 0:
                break
            kept.append(message)
        while kept and kept[-1].role == "tool":  # its calls did not fit
            kept.pop()
        kept.reverse()
        instructions = [Message("system", text) for text in turn.instructions]
        prompt = [Message("system", system), *instructions, *kept]
        if turn.message or turn.images:
            # Empty: the client's tools' results, last in the history, are what the model
            # answers next.
            prompt.append(Message("user", turn.message, tuple(turn.images)))
        return prompt


def _size(message: Message) -> int:
    """The characters a message puts in the prompt: its text, calls and results."""
    return (
        len(message.content)
        + sum(len(call.name) + len(json.dumps(call.arguments)) for call in message.tool_calls)
        + sum(len(result.content) for result in message.tool_results)
    )
