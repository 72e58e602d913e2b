"""An OpenAI Chat Completions request body, checked and turned into what a turn needs.

The last ``user`` message is the turn's message; the ``user`` and ``assistant`` messages
before it are the conversation the client holds; ``system`` and ``developer`` messages are
the client's instructions, which the context stage places after the server's own system
prompt. A parameter sluice cannot honour is refused with 400 naming it, rather than ignored:
a client asking for several choices or audio would otherwise get an answer that silently
is not what it asked for.

The client's ``tools`` are tools it runs itself (:meth:`Tool.for_client`); ``assistant``
messages with ``tool_calls`` and the ``tool`` messages answering them are history, and a
conversation whose last messages are ``tool`` results is a turn with no new user message
(``message`` empty). ``image_url`` parts are base64 data URLs (:mod:`server.http.images`).

Parameters at their neutral value (``n: 1``, ``presence_penalty: 0``, ``logprobs:
false``...) are accepted, since many clients send them whatever the user set.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from server.contract import (
    GenerationParams,
    ImagePart,
    Message,
    Part,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
)
from server.http.errors import ApiCode, ApiError
from server.http.images import ImageReader

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
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    }
)
# Accepted at these values only (each is what OpenAI does when the parameter is absent).
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "logprobs": (False,),
    "modalities": (["text"],),
    "response_format": ({"type": "text"},),
    "service_tier": ("auto", "default"),
}
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
# OpenAI's rule for function names.
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class ChatRequest:
    model: str
    # Empty when the conversation ends with the client's tools' results.
    message: str
    history: list[Message]
    instructions: list[str]
    stream: bool
    include_usage: bool
    params: GenerationParams = field(default_factory=GenerationParams)
    # The client's own tools, which sluice offers the model and never runs.
    tools: list[Tool] = field(default_factory=list)
    # The images of the turn's message.
    images: list[ImagePart] = field(default_factory=list)
    # The base64 characters of every image in the body (held apart from the text limit).
    image_chars: int = 0


def _bad(message: str, param: str | None, code: ApiCode = ApiCode.BAD_REQUEST) -> ApiError:
    return ApiError(400, code, message, extra={"param": param})


def _unsupported(param: str, why: str = "") -> ApiError:
    return _bad(f"sluice does not support '{param}'{why}.", param, ApiCode.UNSUPPORTED_PARAMETER)


def _content_of(
    content: Any, where: str, images: ImageReader | None
) -> tuple[str, list[ImagePart]]:
    """A message's text (a string, or ``text`` parts joined) and its ``image_url`` parts;
    ``images`` None: a role that carries none."""
    if isinstance(content, str):
        return content, []
    if content is None:
        return "", []
    if not isinstance(content, list):
        raise _bad(f"'{where}' must be a string or a list of content parts.", where)
    texts: list[str] = []
    found: list[ImagePart] = []
    for index, part in enumerate(content):
        part_at = f"{where}[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _bad(f"'{part_at}' must be an object with a 'type'.", part_at)
        kind = part["type"]
        if kind == "image_url" and images is not None:
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise _bad(f"'{part_at}.image_url.url' must be a string.", f"{part_at}.image_url")
            found.append(images.read_url(url, f"{part_at}.image_url"))
            continue
        if kind != "text":
            # input_audio, file; images anywhere but a user message.
            raise _unsupported(f"{part_at}.{kind}", ": only text and images are accepted")
        text = part.get("text")
        if not isinstance(text, str):
            raise _bad(f"'{part_at}.text' must be a string.", f"{part_at}.text")
        texts.append(text)
    return "".join(texts), found


def _checked_text(text: str, where: str) -> str:
    if "\x00" in text:
        raise _bad(f"'{where}' contains a NUL character.", where)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # JSON's "\ud800" escapes decode to lone surrogates, which no store can keep.
        raise _bad(f"'{where}' is not valid Unicode.", where) from None
    return text


def _tools(value: Any) -> list[Tool]:
    """The client's ``tools``: function tools, each a :meth:`Tool.for_client`."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad("'tools' must be a list.", "tools")
    tools: list[Tool] = []
    names: set[str] = set()
    for index, item in enumerate(value):
        where = f"tools[{index}]"
        if not isinstance(item, dict) or item.get("type") != "function":
            raise _unsupported(f"{where}.type", ": only function tools are accepted")
        function = item.get("function")
        if not isinstance(function, dict):
            raise _bad(f"'{where}.function' must be an object.", f"{where}.function")
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise _bad(
                f"'{where}.function.name' must be 1-64 letters, digits, '_' or '-'.",
                f"{where}.function.name",
            )
        if name in names:
            raise _bad(f"Two tools are called '{name}'.", f"{where}.function.name")
        names.add(name)
        description = function.get("description") or ""
        if not isinstance(description, str):
            raise _bad(
                f"'{where}.function.description' must be a string.",
                f"{where}.function.description",
            )
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise _bad(
                f"'{where}.function.parameters' must be a JSON Schema object.",
                f"{where}.function.parameters",
            )
        tools.append(Tool.for_client(name, description, parameters))
    return tools


def _tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return ToolChoice(value)
    if isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name:
            return ToolChoice("function", name)
    raise _bad(
        "'tool_choice' must be 'auto', 'none', 'required' or"
        ' {"type": "function", "function": {"name": ...}}.',
        "tool_choice",
    )


def _tool_calls(value: Any, where: str) -> list[ToolCall]:
    """An assistant message's ``tool_calls``, arguments decoded from their JSON text."""
    if not isinstance(value, list):
        raise _bad(f"'{where}' must be a list.", where)
    calls: list[ToolCall] = []
    for index, item in enumerate(value):
        at = f"{where}[{index}]"
        function = item.get("function") if isinstance(item, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(item.get("id"), str)
            or not item["id"]
            or not isinstance(function.get("name"), str)
        ):
            raise _bad(f"'{at}' must have an 'id' and a 'function' with a 'name'.", at)
        raw = function.get("arguments") or "{}"
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise _bad(
                f"'{at}.function.arguments' must be a JSON object, as text.",
                f"{at}.function.arguments",
            )
        calls.append(ToolCall(item["id"], function["name"], arguments))
    return calls


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


def parse_chat_request(
    data: dict[str, Any],
    *,
    max_message_chars: int,
    max_image_bytes: int = 0,
    max_images: int = 0,
) -> ChatRequest:
    """Check ``data`` (a decoded JSON object); raises :class:`ApiError` (400, 413, 415)."""
    _check_parameters(data)
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required: 'sluice', or a name GET /v1/models lists.", "model")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list.", "messages")
    reader = ImageReader(max_image_bytes, max_images)
    turns: list[Message] = []
    instructions: list[str] = []
    # The calls of the last assistant message, by id: what a tool message may answer.
    open_calls: dict[str, str] = {}
    for index, item in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            raise _bad(f"'{where}' must be an object.", where)
        role = item.get("role")
        if role == "function" or item.get("function_call"):
            raise _unsupported(
                f"{where}.role" if role == "function" else f"{where}.function_call",
                ": use tools and tool_calls",
            )
        if role not in _ROLES:
            raise _bad(
                f"'{where}.role' must be system, developer, user, assistant or tool.",
                f"{where}.role",
            )
        if item.get("audio") is not None:
            raise _unsupported(f"{where}.audio")
        text, images = _content_of(
            item.get("content"), f"{where}.content", reader if role == "user" else None
        )
        text = _checked_text(text, f"{where}.content")
        if role in ("system", "developer"):
            if text.strip():
                instructions.append(text)
        elif role == "tool":
            call_id = item.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in open_calls:
                raise _bad(
                    f"'{where}.tool_call_id' must name a call of the assistant message before it.",
                    f"{where}.tool_call_id",
                )
            result = ToolResult(call_id, open_calls.pop(call_id), True, text)
            if turns and turns[-1].role == "tool":
                last = turns[-1]
                turns[-1] = Message("tool", "", (*last.parts, result))
            else:
                turns.append(Message("tool", "", (result,)))
        elif role == "assistant":
            calls = (
                _tool_calls(item["tool_calls"], f"{where}.tool_calls")
                if item.get("tool_calls")
                else []
            )
            open_calls = {call.call_id: call.name for call in calls}
            parts: tuple[Part, ...] = tuple(calls)
            turns.append(Message("assistant", text, parts))
        else:
            open_calls = {}
            turns.append(Message("user", text, tuple(images)))
    if not turns or turns[-1].role not in ("user", "tool"):
        raise _bad(
            "The last message (after any system ones) must be the user's, or the results of"
            " the tools the assistant called.",
            "messages",
        )
    last = turns[-1]
    if last.role == "tool":
        # The client's tools answered: the model goes on from their results.
        message, images, history = "", [], turns
    else:
        message, images, history = last.content, last.images, turns[:-1]
        if not message.strip() and not images:
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
    parallel = data.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise _bad("'parallel_tool_calls' must be true or false.", "parallel_tool_calls")
    tools = _tools(data.get("tools"))
    params = GenerationParams(
        temperature=_number(data, "temperature", 0, 2),
        top_p=_number(data, "top_p", 0, 1),
        stop=_stop(data.get("stop")),
        max_output_tokens=_max_tokens(data),
        tool_choice=_tool_choice(data.get("tool_choice")),
        # Only about the client's own tools: sluice runs its own one after another anyway,
        # and a client that sends it without tools (as some always do) asks nothing of them.
        parallel_tool_calls=parallel if tools else None,
    )
    return ChatRequest(
        model=model,
        message=message,
        history=history,
        instructions=instructions,
        stream=bool(stream),
        include_usage=include_usage,
        params=params,
        tools=tools,
        images=list(images),
        image_chars=reader.base64_chars,
    )
