"""OpenAI's Chat Completions wire format, made from sluice's events. Pure: no sockets.

A turn's stream log holds sluice's own frames (:mod:`server.core.sse`); the OpenAI-compatible
endpoint reads the same log and sends each event as OpenAI would:

* ``status`` and ``context`` events have no OpenAI form: they are dropped;
* a ``chunk`` becomes ``data: {"object": "chat.completion.chunk", ... "delta": {"content"}}``;
* a ``reasoning`` event becomes a chunk with ``delta.reasoning_content`` (the field DeepSeek
  and vLLM stream reasoning in, and their clients read), never ``content``;
* ``complete`` becomes the chunk with ``finish_reason``, the usage chunk when the client asked
  (``stream_options.include_usage``), then ``data: [DONE]``. The calls of a turn that ended
  on the client's own tools (``complete.client_tool_calls``) come first, as OpenAI streams
  them: per call, a ``delta.tool_calls`` chunk with its ``index``, ``id``, ``type`` and
  name (arguments ``""``), then one with its arguments' JSON text; the finish reason is then
  ``"tool_calls"``. Tool calls sluice ran itself (``tool_call`` / ``tool_result`` events)
  have no OpenAI form, like ``status``: the client sees only their outcome in the text;
* ``error`` becomes ``data: {"error": {...}}`` and nothing after it, as OpenAI ends a stream
  that failed (its SDKs raise ``APIError`` on it).

Chunk frames are made by splicing bytes, not by building and encoding an object per chunk: the
answer's text is taken from sluice's frame already JSON-encoded
(:func:`server.core.sse.chunk_content`), and placed between a prefix and a suffix made once
per response. Nothing is decoded per chunk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from server.core.sse import encode_data


def _dumps(value: Any) -> str:
    """Compact JSON of any value, escaped like every other frame (:func:`encode_data`)."""
    return encode_data(value)


__all__ = [
    "DONE",
    "ChunkEncoder",
    "completion_object",
    "error_frame",
    "error_object",
    "error_type",
    "openai_usage",
]

DONE = b"data: [DONE]\n\n"


def openai_usage(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """sluice's usage (the upstream's own figures) in OpenAI's names; None when unknown."""
    if not usage:
        return None
    figures: dict[str, Any] = {
        "prompt_tokens": usage.get("input_tokens"),
        "completion_tokens": usage.get("output_tokens"),
        "total_tokens": usage.get("total_tokens"),
    }
    cached = usage.get("cached_tokens")
    if cached is not None:
        # OpenAI's own place for the prompt tokens read from its cache.
        figures["prompt_tokens_details"] = {"cached_tokens": cached}
    reasoning = usage.get("reasoning_tokens")
    if reasoning is not None:
        # OpenAI's own place for the completion tokens its reasoning models spent thinking.
        figures["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return figures


# OpenAI's error ``type`` for each status its API answers with.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_object(
    message: str, *, type: str, code: str | None, param: str | None = None, **extra: Any
) -> dict[str, Any]:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``.

    ``extra`` members (sluice's ``stream_id`` of a turn in progress, ``retry_after``) follow
    OpenAI's four; clients that do not know them ignore them."""
    return {"error": {"message": message, "type": type, "param": param, "code": code, **extra}}


class ChunkEncoder:
    """The ``chat.completion.chunk`` frames of one response."""

    __slots__ = ("_content_prefix", "_head", "_tail", "include_usage", "stream_head")

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self.include_usage = include_usage
        # The object's members before "choices", shared by every chunk of the response.
        self.stream_head = (
            f'{{"id":{_dumps(completion_id)},"object":"chat.completion.chunk",'
            f'"created":{int(created)},"model":{_dumps(model)}'
        )
        head = f'data: {self.stream_head},"choices":[{{"index":0,"delta":'
        self._head = head.encode()
        # With include_usage, OpenAI sends "usage": null in every chunk but the usage one.
        usage = ',"usage":null' if include_usage else ""
        self._tail = f',"logprobs":null,"finish_reason":null}}]{usage}}}\n\n'.encode()
        self._content_prefix = self._head + b'{"content":'

    def role(self) -> bytes:
        """The first frame: the assistant's role, and no text yet (as OpenAI sends it)."""
        return self._head + b'{"role":"assistant","content":""}' + self._tail

    def content(self, literal: bytes) -> bytes:
        """A frame with ``literal`` (a JSON string, from :func:`server.core.sse.chunk_content`)
        as content."""
        return self._content_prefix + literal + b"}" + self._tail

    def text(self, text: str) -> bytes:
        return self.content(_dumps(text).encode())

    def reasoning(self, text: str) -> bytes:
        """A frame with the next piece of the model's reasoning."""
        return self._head + b'{"reasoning_content":' + _dumps(text).encode() + b"}" + self._tail

    def tool_calls(self, calls: Sequence[Mapping[str, Any]]) -> bytes:
        """The client's tool calls as OpenAI streams them: per call, its head, then its
        arguments."""
        frames: list[bytes] = []
        for index, call in enumerate(calls):
            head = {
                "index": index,
                "id": call["call_id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            arguments = {"index": index, "function": {"arguments": _arguments(call)}}
            for piece in (head, arguments):
                frames.append(self._head + b'{"tool_calls":[' + _dumps(piece).encode() + b"]}")
                frames.append(self._tail)
        return b"".join(frames)

    def finish(self, finish_reason: str | None) -> bytes:
        reason = _dumps(finish_reason or "stop")
        usage = ',"usage":null' if self.include_usage else ""
        tail = f',"logprobs":null,"finish_reason":{reason}}}]{usage}}}\n\n'
        return self._head + b"{}" + tail.encode()

    def usage(self, usage: Mapping[str, Any] | None) -> bytes:
        """The usage chunk: no choices, the upstream's token counts."""
        body = _dumps(openai_usage(usage))
        return f'data: {self.stream_head},"choices":[],"usage":{body}}}\n\n'.encode()

    def end(self, complete: Mapping[str, Any], finish_reason: str | None) -> bytes:
        """Everything after the last text: the client's tool calls, the finish chunk, usage
        if asked, ``[DONE]``."""
        calls = complete.get("client_tool_calls") or ()
        if calls:
            frames = self.tool_calls(calls) + self.finish("tool_calls")
        else:
            frames = self.finish(finish_reason)
        if self.include_usage:
            frames += self.usage(complete.get("usage"))
        return frames + DONE


def error_frame(error: Mapping[str, Any]) -> bytes:
    """The frame that ends a stream which failed after it started."""
    return b"data: " + encode_data(dict(error)).encode() + b"\n\n"


def _arguments(call: Mapping[str, Any]) -> str:
    """A call's arguments as OpenAI gives them: JSON text."""
    return json.dumps(call.get("arguments") or {}, ensure_ascii=False)


def completion_object(
    completion_id: str,
    created: int,
    model: str,
    complete: Mapping[str, Any],
    finish_reason: str | None,
    reasoning: str = "",
) -> dict[str, Any]:
    """A non-streaming answer: OpenAI's ``chat.completion`` object. The client's tool calls
    (``complete.client_tool_calls``) are ``message.tool_calls``, with ``content`` null when
    the model said nothing besides, as OpenAI answers; ``reasoning`` (the turn's
    ``reasoning`` events joined) is ``message.reasoning_content`` when there is some."""
    text = complete.get("message", "")
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    calls = complete.get("client_tool_calls") or ()
    if calls:
        finish_reason = "tool_calls"
        message["content"] = text or None
        message["tool_calls"] = [
            {
                "id": call["call_id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": _arguments(call)},
            }
            for call in calls
        ]
    if reasoning:
        message["reasoning_content"] = reasoning
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason or "stop",
            }
        ],
        "usage": openai_usage(complete.get("usage")),
    }
