"""Fake OpenAI, Gemini and Anthropic servers on loopback, speaking the real wire formats,
with faults.

The real SDKs talk to them: OpenAI's ``POST /v1/chat/completions`` (``chat.completion.chunk``
SSE frames ending in ``data: [DONE]`` when ``stream`` is true, a ``chat.completion`` object
otherwise), Gemini's ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` and
``:generateContent``, and Anthropic's ``POST /v1/messages`` (named SSE events from
``message_start`` to ``message_stop`` when ``stream`` is true, a ``message`` otherwise).

Each request takes the next :class:`Reply` from ``fake.replies`` (or ``fake.default``), so a
test scripts a sequence: "500, then a good answer". Every request is recorded, and so is a
client closing its connection while the fake was still answering (``fake.closed`` counts them,
``await fake.wait_closed(n)`` waits for the n-th), which is how the cancel tests see the
upstream request end.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

__all__ = [
    "ARABIC_EMOJI",
    "FakeAnthropic",
    "FakeGemini",
    "FakeOpenAI",
    "Recorded",
    "Reply",
    "ThinkingReply",
    "refused_url",
]

# Two-byte Arabic letters, four-byte emoji and a skin-tone modifier: every split is a trap.
ARABIC_EMOJI = ["مرحبا ", "بالعالم ", "👋🏽", " 🌍 ", "سلام"]


@dataclass
class Reply:
    """What the fake does with one request."""

    text: list[str] = field(default_factory=lambda: ["Hello", ", wor", "ld!"])
    status: int = 200
    message: str = "upstream error"  # error message for a non-200 status
    error_code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Streaming faults (frame indexes count text frames from 0):
    hang_before_headers: bool = False  # send nothing at all, until the client leaves
    hang_at: int | None = None  # after headers (and role frame), hang before text frame i
    # Wait before text frame i until the test sets ``resume`` (from its own thread:
    # ``fakes.loop.call_soon_threadsafe(reply.resume.set)``): an answer that is still being
    # written for as long as the test needs, however slow the machine.
    pause_at: int | None = None
    resume: asyncio.Event = field(default_factory=asyncio.Event)
    cut_at: int | None = None  # close the TCP connection before text frame i
    malformed_at: int | None = None  # text frame i is replaced by a frame that is not JSON
    raw_at: dict[int, bytes] = field(default_factory=dict)  # text frame i replaced by these bytes
    hold_after_done: bool = False  # after "data: [DONE]", keep the body open (no last chunk)
    split_utf8: bool = False  # write every frame in pieces cut inside UTF-8 characters
    refuse_stream: bool = False  # 400 to a streaming request; plain requests answer
    usage: bool = True
    # OpenAI: the prompt tokens its usage says were read from the cache (None: no details).
    cached_tokens: int | None = None
    finish_reason: str = "stop"
    interval: float = 0.0  # pause between text frames
    gzip: bool = False  # gzip the stream, although the client asked for identity
    error_event_at: int | None = None  # Anthropic: an ``error`` event instead of text frame i
    # Tool calls after the text: (id, name, arguments as JSON text). OpenAI streams them as
    # delta.tool_calls, each call's arguments cut in pieces of ``argument_piece`` characters
    # and the calls' pieces interleaved by index; Gemini sends functionCall parts (the
    # arguments parsed: Gemini has no text form of them).
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)
    argument_piece: int = 4


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    stream: bool


def refused_url() -> str:
    """A loopback URL where nothing listens: connecting is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def _split_inside_characters(data: bytes) -> list[bytes]:
    """Cut ``data`` right after the first byte of every multi-byte character."""
    pieces: list[bytes] = []
    start = 0
    for i, byte in enumerate(data):
        if byte >= 0xC0 and i + 1 > start:  # a lead byte: cut after it
            pieces.append(data[start : i + 1])
            start = i + 1
    pieces.append(data[start:])
    return [p for p in pieces if p]


class _FakeBase:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.requests: list[Recorded] = []
        self.closed = 0
        self._closed_changed = asyncio.Event()
        self._request_seen = asyncio.Event()
        self._server: HTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def next_reply(self) -> Reply:
        return self.replies.popleft() if self.replies else self.default

    def record(self, recorded: Recorded) -> None:
        self.requests.append(recorded)
        self._request_seen.set()

    def client_closed(self) -> None:
        self.closed += 1
        self._closed_changed.set()

    async def wait_closed(self, count: int = 1, within: float = 1.0) -> float:
        """Wait until ``count`` client connections were closed mid-answer; returns seconds."""
        started = time.monotonic()
        async with asyncio.timeout(within):
            while self.closed < count:
                self._closed_changed.clear()
                await self._closed_changed.wait()
        return time.monotonic() - started

    async def wait_requests(self, count: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while len(self.requests) < count:
                self._request_seen.clear()
                await self._request_seen.wait()

    def routes(self) -> list[Any]:
        raise NotImplementedError

    async def start(self) -> None:
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self._server = HTTPServer(Application(self.routes()))
        self._server.add_sockets(sockets)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None

    async def __aenter__(self) -> _FakeBase:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class _Handler(RequestHandler):
    fake: _FakeBase
    _gone: asyncio.Event
    _gzip: Any = None  # zlib compressor of a gzipped stream

    def initialize(self, fake: _FakeBase) -> None:
        self.fake = fake
        self._gone = asyncio.Event()

    def on_connection_close(self) -> None:
        if not getattr(self, "_cut", False):
            self.fake.client_closed()
        self._gone.set()

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def hang(self) -> None:
        """Say nothing until the client goes away (or the server stops)."""
        await self._gone.wait()

    def cut(self) -> None:
        """Drop the TCP connection in the middle of the body (no final chunk)."""
        self._cut = True
        self.request.connection.stream.close()  # type: ignore[union-attr]

    async def send(self, data: bytes, reply: Reply) -> bool:
        if reply.gzip:
            if self._gzip is None:
                self._gzip = zlib.compressobj(wbits=31)
            data = self._gzip.compress(data) + self._gzip.flush(zlib.Z_SYNC_FLUSH)
        pieces = _split_inside_characters(data) if reply.split_utf8 else [data]
        try:
            for i, piece in enumerate(pieces):
                self.write(piece)
                await self.flush()
                if reply.split_utf8 and i + 1 < len(pieces):
                    await asyncio.sleep(0.002)  # separate network reads, as far as TCP allows
        except StreamClosedError:
            return False
        return True

    def fail(self, reply: Reply, body: dict[str, Any]) -> None:
        self.set_status(reply.status)
        for name, value in reply.headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


@dataclass
class ThinkingReply(Reply):
    """A reasoning model's reply: ``reasoning`` pieces stream before the text, each in a
    frame of its own. OpenAI-compatible: as ``delta.<reasoning_field>`` (``content`` null, as
    DeepSeek sends it), and the plain message's ``<reasoning_field>``; Gemini: parts marked
    ``thought: true``. ``reasoning_tokens``, when set, is reported in the usage (OpenAI's
    ``completion_tokens_details``, Gemini's ``thoughtsTokenCount``). ``interval`` paces the
    reasoning frames as well. A ``<think>`` block in the content needs no reply of its own: it
    is ``text``."""

    reasoning: list[str] = field(default_factory=list)
    reasoning_field: str = "reasoning_content"
    reasoning_tokens: int | None = None


def _thinking(reply: Reply) -> ThinkingReply | None:
    return reply if isinstance(reply, ThinkingReply) else None


class _OpenAIHandler(_Handler):
    async def post(self) -> None:
        body = json.loads(self.request.body or b"{}")
        stream = bool(body.get("stream"))
        self.fake.record(Recorded(self.request.path, body, dict(self.request.headers), stream))
        reply = self.fake.next_reply()
        if reply.hang_before_headers:
            await self.hang()
            return
        if reply.refuse_stream and stream:
            reply = Reply(status=400, message="'stream' is not supported with this model")
            self.fail(reply, self._error(reply, param="stream"))
            return
        if reply.status != 200:
            self.fail(reply, self._error(reply))
            return
        model = body.get("model", "fake")
        if not stream:
            self.finish(self._completion(model, reply))
            return
        self.set_header("Content-Type", "text/event-stream")
        if reply.gzip:
            self.set_header("Content-Encoding", "gzip")
        head = self._chunk(model, {"role": "assistant", "content": ""}, None)
        if not await self.send(head, reply):
            return
        thinking = _thinking(reply)
        if thinking is not None:
            for i, piece in enumerate(thinking.reasoning):
                if reply.interval and i:
                    await asyncio.sleep(reply.interval)
                delta = {"content": None, thinking.reasoning_field: piece}
                if not await self.send(self._chunk(model, delta, None), reply):
                    return
        for i, piece in enumerate(reply.text):
            if reply.interval and i:
                await asyncio.sleep(reply.interval)
            if reply.pause_at == i:
                await reply.resume.wait()
            if reply.hang_at == i:
                await self.hang()
                return
            if reply.cut_at == i:
                self.cut()
                return
            if i in reply.raw_at:
                frame = reply.raw_at[i]
            elif reply.malformed_at == i:
                frame = b"data: {not json\n\n"
            else:
                frame = self._chunk(model, {"content": piece}, None)
            if not await self.send(frame, reply):
                return
        for frame in self._tool_call_frames(model, reply):
            if not await self.send(frame, reply):
                return
        finish = "tool_calls" if reply.tool_calls else reply.finish_reason
        tail = self._chunk(model, {}, finish)
        if reply.usage and body.get("stream_options", {}).get("include_usage"):
            usage: dict[str, Any] = {
                "prompt_tokens": 11,
                "completion_tokens": len(reply.text),
                "total_tokens": 11 + len(reply.text),
            }
            usage.update(self._reasoning_usage(reply))
            if reply.cached_tokens is not None:
                usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
            tail += self._frame(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        if await self.send(tail + b"data: [DONE]\n\n", reply):
            if reply.hold_after_done:
                await self.hang()
                return
            if self._gzip is not None:
                self.write(self._gzip.flush())
            self.finish()

    @staticmethod
    def _frame(obj: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"

    def _tool_call_frames(self, model: str, reply: Reply) -> list[bytes]:
        """Each call's head (id, name, no arguments yet), then its arguments in pieces,
        round robin across the calls: as OpenAI streams parallel calls."""
        frames = []
        for index, (call_id, name, _) in enumerate(reply.tool_calls):
            head = {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            frames.append(self._chunk(model, {"tool_calls": [head]}, None))
        size = reply.argument_piece
        pieces = [
            [arguments[i : i + size] for i in range(0, len(arguments), size)]
            for _, _, arguments in reply.tool_calls
        ]
        for step in range(max((len(p) for p in pieces), default=0)):
            for index, own in enumerate(pieces):
                if step < len(own):
                    piece = {"index": index, "function": {"arguments": own[step]}}
                    frames.append(self._chunk(model, {"tool_calls": [piece]}, None))
        return frames

    def _chunk(self, model: str, delta: dict[str, Any], finish: str | None) -> bytes:
        return self._frame(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
        )

    @staticmethod
    def _reasoning_usage(reply: Reply) -> dict[str, Any]:
        thinking = _thinking(reply)
        if thinking is None or thinking.reasoning_tokens is None:
            return {}
        return {"completion_tokens_details": {"reasoning_tokens": thinking.reasoning_tokens}}

    @classmethod
    def _completion(cls, model: str, reply: Reply) -> dict[str, Any]:
        text = "".join(reply.text)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        thinking = _thinking(reply)
        if thinking is not None and thinking.reasoning:
            message[thinking.reasoning_field] = "".join(thinking.reasoning)
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                for i, n, a in reply.tool_calls
            ]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if reply.tool_calls else reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": 11,
                "completion_tokens": 5,
                "total_tokens": 16,
                **cls._reasoning_usage(reply),
            },
        }

    @staticmethod
    def _error(reply: Reply, param: str | None = None) -> dict[str, Any]:
        return {
            "error": {
                "message": reply.message,
                "type": "invalid_request_error" if reply.status < 500 else "server_error",
                "param": param,
                "code": reply.error_code,
            }
        }


class FakeOpenAI(_FakeBase):
    """``base_url`` for the SDK is ``fake.url + "/v1"``."""

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def routes(self) -> list[Any]:
        return [(r"/v1/chat/completions", _OpenAIHandler, {"fake": self})]


_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class _GeminiHandler(_Handler):
    async def post(self, version: str, model: str, method: str) -> None:
        body = json.loads(self.request.body or b"{}")
        stream = method == "streamGenerateContent"
        self.fake.record(Recorded(self.request.path, body, dict(self.request.headers), stream))
        reply = self.fake.next_reply()
        if reply.hang_before_headers:
            await self.hang()
            return
        if reply.refuse_stream and stream:
            self.fail(Reply(status=400), self._error(400, "Streaming is not supported here."))
            return
        if reply.status != 200:
            self.fail(reply, self._error(reply.status, reply.message, reply.error_code))
            return
        thinking = _thinking(reply)
        if not stream:
            whole = self._response("".join(reply.text), reply, last=True, model=model)
            whole["candidates"][0]["content"]["parts"] += self._function_calls(reply)
            if thinking is not None and thinking.reasoning:
                thought = {"text": "".join(thinking.reasoning), "thought": True}
                whole["candidates"][0]["content"]["parts"].insert(0, thought)
            self.finish(whole)
            return
        if self.get_query_argument("alt", "") != "sse":
            self.fail(Reply(status=400), self._error(400, "fake speaks only alt=sse"))
            return
        self.set_header("Content-Type", "text/event-stream")
        self.set_status(200)
        for piece in thinking.reasoning if thinking else ():
            obj = self._response(piece, reply, last=False, model=model)
            obj["candidates"][0]["content"]["parts"][0]["thought"] = True
            frame = b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\r\n\r\n"
            if not await self.send(frame, reply):
                return
        for i, piece in enumerate(reply.text):
            if reply.interval and i:
                await asyncio.sleep(reply.interval)
            if reply.hang_at == i:
                await self.flush()
                await self.hang()
                return
            if reply.cut_at == i:
                self.cut()
                return
            last = i == len(reply.text) - 1
            if reply.malformed_at == i:
                frame = b'data: {"candidates": [oops\r\n\r\n'
            else:
                obj = self._response(piece, reply, last=last, model=model)
                if last:
                    obj["candidates"][0]["content"]["parts"] += self._function_calls(reply)
                frame = b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\r\n\r\n"
            if not await self.send(frame, reply):
                return
        self.finish()

    @staticmethod
    def _function_calls(reply: Reply) -> list[dict[str, Any]]:
        return [
            {"functionCall": {"name": name, "args": json.loads(arguments)}}
            for _, name, arguments in reply.tool_calls
        ]

    @staticmethod
    def _response(text: str, reply: Reply, *, last: bool, model: str) -> dict[str, Any]:
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": text}], "role": "model"},
            "index": 0,
        }
        obj: dict[str, Any] = {"candidates": [candidate], "modelVersion": model}
        if last:
            candidate["finishReason"] = reply.finish_reason.upper()
            if reply.usage:
                thinking = _thinking(reply)
                thoughts = thinking.reasoning_tokens if thinking else None
                obj["usageMetadata"] = {
                    "promptTokenCount": 9,
                    "candidatesTokenCount": len(reply.text),
                    "totalTokenCount": 9 + len(reply.text) + (thoughts or 0),
                }
                if thoughts is not None:
                    obj["usageMetadata"]["thoughtsTokenCount"] = thoughts
        return obj

    @staticmethod
    def _error(status: int, message: str, reason: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": _GEMINI_STATUS.get(status, "UNKNOWN"),
        }
        if reason:
            error["details"] = [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}
            ]
        return {"error": error}


class FakeGemini(_FakeBase):
    """``base_url`` for the SDK is ``fake.url``."""

    def routes(self) -> list[Any]:
        return [
            (
                r"/(v1beta|v1)/models/([^/:]+):(streamGenerateContent|generateContent)",
                _GeminiHandler,
                {"fake": self},
            )
        ]


_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens"}


@dataclass
class AnthropicReply(Reply):
    """A :class:`Reply` that thinks first: ``thinking`` pieces streamed as one ``thinking``
    block's ``thinking_delta`` events, then its ``signature`` (``signature_delta``); a
    ``redacted`` block's data after it. ``tool_calls`` (from :class:`Reply`) become
    ``tool_use`` blocks after the text, their input JSON text streamed in
    ``argument_piece``-character ``input_json_delta`` pieces."""

    thinking: list[str] = field(default_factory=list)
    signature: str = "sig-fake-0"
    redacted: str | None = None


class _AnthropicHandler(_Handler):
    fake: FakeAnthropic

    async def post(self) -> None:
        body = json.loads(self.request.body or b"{}")
        stream = bool(body.get("stream"))
        self.fake.record(Recorded(self.request.path, body, dict(self.request.headers), stream))
        reply = self.fake.next_reply()
        if reply.hang_before_headers:
            await self.hang()
            return
        if reply.status != 200:
            self.fail(reply, self._error(reply.status, reply.message))
            return
        model = body.get("model", "fake")
        stop = "tool_use" if reply.tool_calls else reply.finish_reason
        stop = _ANTHROPIC_STOP.get(stop, stop)
        if not stream:
            message = self._message(model, self._whole_blocks(reply))
            message.update(stop_reason=stop, usage=self._usage(len(reply.text)))
            self.finish(message)
            return
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        head = self._event("message_start", {"message": self._message(model, [])})
        thinking = self._thinking_events(reply)
        head += b"".join(frame for _, frame in thinking)
        index = len({block for block, _ in thinking})
        text_index = index
        if reply.text:
            head += self._event(
                "content_block_start",
                {"index": text_index, "content_block": {"type": "text", "text": ""}},
            )
            index += 1
        head += self._event("ping", {})
        if not await self.send(head, reply):
            return
        for i, piece in enumerate(reply.text):
            if reply.interval and i:
                await asyncio.sleep(reply.interval)
            if reply.hang_at == i:
                await self.hang()
                return
            if reply.cut_at == i:
                self.cut()
                return
            if reply.error_event_at == i:
                error = self._error(529, "Overloaded")
                await self.send(self._event("error", error), reply)
                self.finish()
                return
            if i in reply.raw_at:
                frame = reply.raw_at[i]
            elif reply.malformed_at == i:
                frame = b"event: content_block_delta\ndata: {not json\n\n"
            else:
                delta = {"type": "text_delta", "text": piece}
                frame = self._event("content_block_delta", {"index": text_index, "delta": delta})
            if not await self.send(frame, reply):
                return
        tail = self._event("content_block_stop", {"index": text_index}) if reply.text else b""
        for frame in self._tool_use_events(reply, index):
            tail += frame
        usage = {"output_tokens": len(reply.text)} if reply.usage else None
        tail += self._event(
            "message_delta",
            {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage},
        )
        tail += self._event("message_stop", {})
        if await self.send(tail, reply):
            if reply.hold_after_done:
                await self.hang()
                return
            self.finish()

    def _thinking_events(self, reply: Reply) -> list[tuple[int, bytes]]:
        """(block index, event) of the thinking block and the redacted one, if any."""
        if not isinstance(reply, AnthropicReply):
            return []
        frames: list[tuple[int, bytes]] = []
        index = 0
        if reply.thinking:
            block = {"type": "thinking", "thinking": "", "signature": ""}
            frames.append(
                (0, self._event("content_block_start", {"index": 0, "content_block": block}))
            )
            for piece in reply.thinking:
                delta = {"type": "thinking_delta", "thinking": piece}
                frames.append((0, self._event("content_block_delta", {"index": 0, "delta": delta})))
            delta = {"type": "signature_delta", "signature": reply.signature}
            frames.append((0, self._event("content_block_delta", {"index": 0, "delta": delta})))
            frames.append((0, self._event("content_block_stop", {"index": 0})))
            index += 1
        if reply.redacted is not None:
            block = {"type": "redacted_thinking", "data": reply.redacted}
            start = {"index": index, "content_block": block}
            frames.append((index, self._event("content_block_start", start)))
            frames.append((index, self._event("content_block_stop", {"index": index})))
        return frames

    def _tool_use_events(self, reply: Reply, first_index: int) -> list[bytes]:
        """Each call a ``tool_use`` block: its start with an empty input, then its input
        JSON text in pieces, then its stop (Anthropic streams one block at a time)."""
        frames: list[bytes] = []
        size = reply.argument_piece
        for offset, (call_id, name, arguments) in enumerate(reply.tool_calls):
            index = first_index + offset
            block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            frames.append(
                self._event("content_block_start", {"index": index, "content_block": block})
            )
            for at in range(0, len(arguments), size):
                delta = {"type": "input_json_delta", "partial_json": arguments[at : at + size]}
                frames.append(self._event("content_block_delta", {"index": index, "delta": delta}))
            frames.append(self._event("content_block_stop", {"index": index}))
        return frames

    @staticmethod
    def _whole_blocks(reply: Reply) -> list[dict[str, Any]]:
        """A plain answer's content: thinking, redacted thinking, text, tool uses."""
        blocks: list[dict[str, Any]] = []
        if isinstance(reply, AnthropicReply):
            if reply.thinking:
                thinking = "".join(reply.thinking)
                blocks.append(
                    {"type": "thinking", "thinking": thinking, "signature": reply.signature}
                )
            if reply.redacted is not None:
                blocks.append({"type": "redacted_thinking", "data": reply.redacted})
        if reply.text:
            blocks.append({"type": "text", "text": "".join(reply.text)})
        for call_id, name, arguments in reply.tool_calls:
            blocks.append(
                {"type": "tool_use", "id": call_id, "name": name, "input": json.loads(arguments)}
            )
        return blocks

    @staticmethod
    def _event(kind: str, data: dict[str, Any]) -> bytes:
        payload = json.dumps({"type": kind, **data}, ensure_ascii=False)
        return f"event: {kind}\ndata: {payload}\n\n".encode()

    def _message(self, model: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._usage(1),
        }

    def _usage(self, output_tokens: int) -> dict[str, Any]:
        return {**self.fake.usage, "output_tokens": output_tokens}

    @staticmethod
    def _error(status: int, message: str) -> dict[str, Any]:
        kind = _ANTHROPIC_ERRORS.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return {"type": "error", "error": {"type": kind, "message": message}}


class FakeAnthropic(_FakeBase):
    """``base_url`` for the SDK is ``fake.url`` (the host root: the SDK adds ``/v1``).

    ``usage`` is what every answer reports for its prompt (Anthropic's names: the input
    tokens outside the cache, and those written to and read from it). Script an
    :class:`AnthropicReply` for an answer that thinks first."""

    def __init__(self) -> None:
        super().__init__()
        self.usage: dict[str, int] = {
            "input_tokens": 21,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }

    def routes(self) -> list[Any]:
        return [(r"/v1/messages", _AnthropicHandler, {"fake": self})]
