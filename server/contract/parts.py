"""The parts a chat message is made of: text, image, tool call, tool result, reasoning.

A message is a list of parts. Providers translate parts to their own wire format (OpenAI
``tool_calls`` / ``role: "tool"``, Gemini ``functionCall`` / ``functionResponse``, Anthropic
``tool_use`` / ``tool_result``), so a conversation can move from one provider to another
between tool rounds. Parts are frozen values, like events: make a new one to change one.

:func:`part_to_dict` and :func:`part_from_dict` give each part a JSON shape (an image's bytes
as base64), for history and stream logs.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ImagePart",
    "Part",
    "ReasoningPart",
    "TextPart",
    "ToolCall",
    "ToolErrorKind",
    "ToolResult",
    "part_from_dict",
    "part_to_dict",
]


class ToolErrorKind(enum.StrEnum):
    """Why a tool call has no good result: the ``error`` of a ``tool_result`` event."""

    DENIED = "denied"
    """Its owner refused the call, or did not decide within ``tools.approval_timeout_seconds``."""
    TIMEOUT = "timeout"
    """The call ran past ``tools.timeout_seconds``."""
    INVALID_ARGUMENTS = "invalid_arguments"
    """The arguments did not match the tool's JSON schema; the tool never ran."""
    FAILED = "failed"
    """The tool raised (or the MCP server answered with an error)."""
    CANCELLED = "cancelled"
    """The turn was stopped while the call waited or ran."""


@dataclass(frozen=True, slots=True)
class TextPart:
    """Text: what the user wrote, or what the model answered."""

    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image the user sent: its bytes and media type (``image/png``, ``image/jpeg``...)."""

    data: bytes
    media_type: str

    def __repr__(self) -> str:  # the bytes would flood logs and test output
        return f"ImagePart(<{len(self.data)} bytes>, media_type={self.media_type!r})"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks to run the tool ``name`` with ``arguments`` (a JSON object).

    ``call_id`` is unique in the turn: it pairs the call with its :class:`ToolResult`.
    ``arguments_error`` is set by a provider when the model's arguments were not a JSON
    object (``arguments`` is then empty): the call is answered ``invalid_arguments`` without
    running, so the model can try again.
    """

    call_id: str
    name: str
    arguments: Mapping[str, Any]
    arguments_error: str | None = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call came to, as the model is given it.

    ``content`` is text the model reads: the tool's answer when ``ok``, else a short
    explanation (never a traceback). ``error`` says why it is not ``ok``.
    """

    call_id: str
    name: str
    ok: bool
    content: str
    error: ToolErrorKind | None = None


@dataclass(frozen=True, slots=True)
class ReasoningPart:
    """The model's visible reasoning (Anthropic thinking, Gemini thought summaries, the
    ``reasoning_content`` of OpenAI-compatible servers), kept apart from its answer text.

    A provider's stream yields one per piece as it arrives (``text`` the next piece); a
    provider whose API signs its reasoning yields the block's ``signature`` at the block's end
    on a part whose ``text`` is empty. ``source`` names the provider *type* that made the
    signature (``"anthropic"``): a signature means nothing to another API, so a provider
    sends a reasoning part back within a tool round only when the source is its own, and
    drops it otherwise. ``redacted`` holds an encrypted block the API gave instead of text
    (Anthropic's ``redacted_thinking``), to be sent back as it came. ``duration_ms`` is
    set on a block kept in history: how long the model was seen reasoning, from the block's
    first piece to what came after it (its answer text, a tool call, or the end of the turn),
    so that a page reloaded later can still say "Thought for 4 s".
    """

    text: str
    signature: str | None = None
    source: str | None = None
    redacted: str | None = None
    duration_ms: float | None = None


Part = TextPart | ImagePart | ToolCall | ToolResult | ReasoningPart
"""Any of the five parts."""


def part_to_dict(part: Part) -> dict[str, Any]:
    """The part as JSON: ``{"type": "text" | "image" | "tool_call" | "tool_result" |
    "reasoning", ...}``; a reasoning part's optional fields only when set."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ReasoningPart):
        reasoning: dict[str, Any] = {"type": "reasoning", "text": part.text}
        for name in ("signature", "source", "redacted", "duration_ms"):
            value = getattr(part, name)
            if value is not None:
                reasoning[name] = value
        return reasoning
    if isinstance(part, ImagePart):
        return {
            "type": "image",
            "data": base64.b64encode(part.data).decode("ascii"),
            "media_type": part.media_type,
        }
    if isinstance(part, ToolCall):
        return {
            "type": "tool_call",
            "call_id": part.call_id,
            "name": part.name,
            "arguments": dict(part.arguments),
        }
    data: dict[str, Any] = {
        "type": "tool_result",
        "call_id": part.call_id,
        "name": part.name,
        "ok": part.ok,
        "content": part.content,
    }
    if part.error is not None:
        data["error"] = str(part.error)
    return data


def part_from_dict(data: Mapping[str, Any]) -> Part:
    """The part whose JSON is ``data`` (the inverse of :func:`part_to_dict`)."""
    kind = data.get("type")
    if kind == "text":
        return TextPart(data["text"])
    if kind == "image":
        return ImagePart(base64.b64decode(data["data"], validate=True), data["media_type"])
    if kind == "tool_call":
        return ToolCall(data["call_id"], data["name"], dict(data["arguments"]))
    if kind == "reasoning":
        return ReasoningPart(
            data["text"],
            data.get("signature"),
            data.get("source"),
            data.get("redacted"),
            data.get("duration_ms"),
        )
    if kind == "tool_result":
        error = data.get("error")
        return ToolResult(
            data["call_id"],
            data["name"],
            bool(data["ok"]),
            data["content"],
            None if error is None else ToolErrorKind(error),
        )
    raise ValueError(f"not a message part type: {kind!r}")
