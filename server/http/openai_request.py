"""An OpenAI Chat Completions request body, checked and turned into what a turn needs.

The last ``user`` message is the turn's message; the ``user`` and ``assistant`` messages
before it are the conversation the client holds; ``system`` and ``developer`` messages are
the client's instructions, which the context stage places after the server's own system
prompt. A parameter sluice cannot honour is refused with 400 naming it, rather than ignored:
a client asking for tools, several choices or audio would otherwise get an answer that
silently is not what it asked for. Parameters at their neutral value (``n: 1``,
``presence_penalty: 0``, ``logprobs: false``...) are accepted, since many clients send them
whatever the user set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from server.contract import GenerationParams, Message
from server.http.errors import ApiCode, ApiError

__all__ = ["ChatRequest", "parse_chat_request"]

# Accepted, and either used or meaningless to sluice (``user`` is the caller's own label:
# sluice knows the caller from its credentials; ``metadata`` and ``store`` are OpenAI's
# dashboard features).
_USED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "user",
        "metadata",
        "store",
    }
)
# Accepted at these values only (each is what OpenAI does when the parameter is absent).
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "logprobs": (False,),
    "parallel_tool_calls": (True, False),  # meaningless without tools, which are refused
    "modalities": (["text"],),
    "response_format": ({"type": "text"},),
    "service_tier": ("auto", "default"),
    "tool_choice": ("none",),
}
_ROLES = frozenset({"system", "developer", "user", "assistant"})


@dataclass(frozen=True)
class ChatRequest:
    model: str
    message: str
    history: list[Message]
    instructions: list[str]
    stream: bool
    include_usage: bool
    params: GenerationParams = field(default_factory=GenerationParams)


def _bad(message: str, param: str | None, code: ApiCode = ApiCode.BAD_REQUEST) -> ApiError:
    return ApiError(400, code, message, extra={"param": param})


def _unsupported(param: str, why: str = "") -> ApiError:
    return _bad(f"sluice does not support '{param}'{why}.", param, ApiCode.UNSUPPORTED_PARAMETER)


def _text_of(content: Any, where: str) -> str:
    """A message's text: a string, or a list of ``text`` parts (joined)."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise _bad(f"'{where}' must be a string or a list of content parts.", where)
    texts: list[str] = []
    for index, part in enumerate(content):
        part_at = f"{where}[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _bad(f"'{part_at}' must be an object with a 'type'.", part_at)
        kind = part["type"]
        if kind != "text":
            # image_url, input_audio, file: sluice's providers are given text only.
            raise _unsupported(f"{part_at}.{kind}", ": only text content is accepted")
        text = part.get("text")
        if not isinstance(text, str):
            raise _bad(f"'{part_at}.text' must be a string.", f"{part_at}.text")
        texts.append(text)
    return "".join(texts)


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"'{name}' must be a number.", name)
    if not low <= value <= high:
        raise _bad(f"'{name}' must be between {low:g} and {high:g}.", name)
    return float(value)


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or len(stops) > 4
        or not all(isinstance(s, str) and s for s in stops)
    ):
        raise _bad("'stop' must be a non-empty string or a list of up to 4 of them.", "stop")
    return tuple(stops)


def _max_tokens(data: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(f"'{name}' must be a whole number of at least 1.", name)
        return value
    return None


def _neutral(value: Any, allowed: tuple[Any, ...]) -> bool:
    # By type too: JSON's true must not pass for n = 1.
    return any(type(value) is type(choice) and value == choice for choice in allowed)


def _check_parameters(data: dict[str, Any]) -> None:
    for name, value in data.items():
        if value is None or name in _USED:
            continue
        if _neutral(value, _NEUTRAL.get(name, ())):
            continue
        if name == "n":
            raise _unsupported("n", ": sluice answers with one choice (n = 1)")
        raise _unsupported(name)


def parse_chat_request(data: dict[str, Any], *, max_message_chars: int) -> ChatRequest:
    """Check ``data`` (a decoded JSON object); raises :class:`ApiError` (400 or 413)."""
    _check_parameters(data)
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required: 'sluice', or a name GET /v1/models lists.", "model")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list.", "messages")
    turns: list[Message] = []
    instructions: list[str] = []
    for index, item in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            raise _bad(f"'{where}' must be an object.", where)
        role = item.get("role")
        if role in ("tool", "function") or item.get("tool_calls") or item.get("function_call"):
            raise _unsupported(
                f"{where}.role" if role in ("tool", "function") else where,
                ": tool and function calls are not supported",
            )
        if role not in _ROLES:
            raise _bad(
                f"'{where}.role' must be system, developer, user or assistant.", f"{where}.role"
            )
        if item.get("audio") is not None:
            raise _unsupported(f"{where}.audio")
        text = _text_of(item.get("content"), f"{where}.content")
        if "\x00" in text:
            raise _bad(f"'{where}.content' contains a NUL character.", f"{where}.content")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # JSON's "\ud800" escapes decode to lone surrogates, which no store can keep.
            raise _bad(f"'{where}.content' is not valid Unicode.", f"{where}.content") from None
        if role in ("system", "developer"):
            if text.strip():
                instructions.append(text)
        else:
            turns.append(Message("user" if role == "user" else "assistant", text))
    if not turns or turns[-1].role != "user":
        raise _bad("The last message (after any system ones) must be the user's.", "messages")
    message = turns[-1].content
    if not message.strip():
        raise _bad("The last user message is empty.", "messages")
    if len(message) > max_message_chars:
        raise ApiError(
            413,
            ApiCode.TOO_LARGE,
            f"The message is over {max_message_chars} characters.",
            extra={"param": "messages"},
        )
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be true or false.", "stream")
    options = data.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise _bad("'stream_options' must be an object.", "stream_options")
        include_usage = options.get("include_usage") is True
    params = GenerationParams(
        temperature=_number(data, "temperature", 0, 2),
        top_p=_number(data, "top_p", 0, 1),
        stop=_stop(data.get("stop")),
        max_output_tokens=_max_tokens(data),
    )
    return ChatRequest(
        model=model,
        message=message,
        history=turns[:-1],
        instructions=instructions,
        stream=bool(stream),
        include_usage=include_usage,
        params=params,
    )
