"""The provider kit: helpers for a provider that reads an upstream over HTTP — SSE framing,
a JSON-frame stream loop, Retry-After, mapping transport failures, and keeping keys out of
messages (``docs/providers.md``). The built-in OpenAI and Gemini providers are written with
these and nothing private; ``server`` re-exports them (``from server import SSEFrames``).

This is machinery offered to providers, not part of the contract (:mod:`server.contract`
holds types and protocols only): it depends on the contract and nothing else of sluice.

Frames are read as bytes and split on newlines without decoding: a newline byte never occurs
inside a multi-byte UTF-8 character, so a character split across two network reads is whole
again by the time its line is complete, and ``jiter`` parses the UTF-8 bytes directly.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Protocol

import httpx2
import jiter

from server.contract import FailureKind, ProviderError, ReasoningPart, ToolCall, Usage

__all__ = [
    "BodyReader",
    "JSONFrameStream",
    "SSEFrames",
    "body_reader",
    "error_from_status",
    "parse_arguments",
    "redact",
    "retry_after_from_headers",
    "transport_error",
    "unreachable_error",
]

# After an end marker, how long to wait for the body's own end before closing it.
DRAIN_SECONDS = 0.5

BODY = "sluice.body"
"""The key of the response extension where the server's transport (``server/llm/transport.py``)
puts the body reader: its side of :func:`body_reader`, so not among the names for providers."""

_KEY_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-*]{6,}|AIza[0-9A-Za-z_\-]{20,}|Bearer\s+\S+)", re.IGNORECASE
)


def redact(text: str, secrets: Iterable[str | None] = (), limit: int = 300) -> str:
    """Remove anything key-like from ``text`` (upstream error bodies quote keys, even masked
    ones) and cut it to ``limit`` characters, for logs."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[key]")
    text = _KEY_PATTERNS.sub("[key]", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def transport_error(name: str, error: Exception, *, status: int | None) -> ProviderError:
    """Map an httpx2 failure while reading a response to a ProviderError.

    ``status`` is the response's status when the body was being read (the stream was cut after
    the headers), None when no response came at all."""
    if isinstance(error, httpx2.TimeoutException):
        return ProviderError(
            FailureKind.TIMEOUT,
            f"{name} did not answer in time.",
            status=status,
            detail=type(error).__name__,
        )
    what = "cut the answer short" if status is not None else "could not be reached"
    return ProviderError(
        FailureKind.UNAVAILABLE,
        f"{name} {what}.",
        status=status,
        detail=type(error).__name__,
    )


def unreachable_error(
    name: str, base_url: str, error: BaseException, *, timed_out: bool
) -> ProviderError:
    """The ProviderError for an SDK's error raised before any status came back: ``timeout``
    when ``timed_out``, else ``unavailable``, with the URL and the transport's own exception
    (the SDK error's ``__cause__``) as the detail, for the logs."""
    if timed_out:
        return ProviderError(
            FailureKind.TIMEOUT, f"{name} did not answer in time.", detail=type(error).__name__
        )
    cause = error.__cause__
    return ProviderError(
        FailureKind.UNAVAILABLE,
        f"{name} could not be reached.",
        detail=f"{base_url}: " + type(cause or error).__name__,
    )


def error_from_status(
    name: str,
    status: int,
    *,
    detail: str,
    key_label: str,
    model: str,
    model_hint: str,
    retry_after: float | None = None,
    stream_refused: bool = False,
) -> ProviderError:
    """The ProviderError for an upstream's HTTP error ``status``, in one line the server's
    operator can act on; no key, no upstream body (``detail``, already redacted, goes to the
    logs alone).

    401 and 403 are ``auth`` and name the key's setting (``key_label``); 404 is the model
    (``model``) not found, followed by ``model_hint``, what the operator must set and check;
    429 is ``rate_limited`` and 5xx ``unavailable``, both with ``retry_after``; 405 and 501
    (a proxy in front that does not pass streamed requests on) are ``stream_unsupported``, and
    so are 400 and 422 when ``stream_refused`` (the request streamed and the upstream's error
    names streaming): the chain then tries a plain call. Any other 4xx is ``bad_request``.
    """
    known = status or None  # a status of 0: the SDK was given none
    if status == 401:
        return ProviderError(
            FailureKind.AUTH,
            f"{name} refused the API key (401): the server's operator must set a valid "
            f"{key_label}.",
            status=known,
            detail=detail,
        )
    if status == 403:
        return ProviderError(
            FailureKind.AUTH,
            f"{name} denied access to model {model!r} (403): the server's operator "
            f"must check {key_label} and the model's access.",
            status=known,
            detail=detail,
        )
    if status == 404:
        return ProviderError(
            FailureKind.BAD_REQUEST,
            f"{name}: model {model!r} was not found (404): the server's operator must "
            + model_hint,
            status=known,
            detail=detail,
        )
    if status == 429:
        return ProviderError(
            FailureKind.RATE_LIMITED,
            f"{name} is rate limiting requests.",
            retry_after=retry_after,
            status=known,
            detail=detail,
        )
    if status in (405, 501) or (stream_refused and status in (400, 422)):
        return ProviderError(
            FailureKind.STREAM_UNSUPPORTED,
            f"{name} refused to stream.",
            status=known,
            detail=detail,
        )
    if 400 <= status < 500:
        return ProviderError(
            FailureKind.BAD_REQUEST,
            f"{name} refused the request ({status}).",
            status=known,
            detail=detail,
        )
    # 529 is Anthropic's overloaded_error: a 5xx like the others for the chain.
    what = "overloaded" if status == 529 else "unavailable"
    return ProviderError(
        FailureKind.UNAVAILABLE,
        f"{name} is {what} ({status}).",
        retry_after=retry_after,
        status=known,
        detail=detail,
    )


def parse_arguments(call_id: str, name: str, raw: str | bytes | None) -> ToolCall:
    """A :class:`ToolCall` from arguments the model sent as JSON text (OpenAI sends them so,
    in pieces): an empty text is no arguments; text that is not a JSON object gives a call
    with ``arguments_error`` set, which the model is told about instead of a crash."""
    if raw is None or not raw.strip():
        return ToolCall(call_id, name, {})
    try:
        value = jiter.from_json(raw.encode() if isinstance(raw, str) else raw)
    except ValueError as problem:
        return ToolCall(call_id, name, {}, f"the arguments are not valid JSON ({problem})")
    if not isinstance(value, dict):
        return ToolCall(call_id, name, {}, "the arguments must be a JSON object")
    return ToolCall(call_id, name, value)


class BodyReader(Protocol):
    """What a stream keeps of a streamed response: ``read()`` returns what has arrived
    (``b""`` at the end); ``aclose()`` ends the response (the upstream sees it close)."""

    async def read(self) -> bytes: ...

    async def aclose(self) -> None: ...


class _DecodedBody:
    """The slow path, through httpx2's decoders: a body the upstream compressed although it
    was asked not to, or one from another transport."""

    __slots__ = ("_chunks", "_response")

    def __init__(self, response: httpx2.Response) -> None:
        self._response = response
        self._chunks: AsyncIterator[bytes] = response.aiter_bytes()

    async def read(self) -> bytes:
        return await anext(self._chunks, b"")

    async def aclose(self) -> None:
        await self._response.aclose()


def body_reader(response: httpx2.Response) -> BodyReader:
    """What a stream keeps of a streamed response: ``read()`` and ``aclose()``.

    Through the server's transport (``ProviderContext.http_client()``), with no content
    encoding, that is the transport's own body reader, and ``response`` (with the request it
    references) can be let go of while the answer streams. Ask for
    ``Accept-Encoding: identity`` on streaming calls so that this is the usual case.
    """
    body = response.extensions.get(BODY)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if body is not None and encoding == "identity":
        return body  # type: ignore[no-any-return]
    return _DecodedBody(response)


class SSEFrames:
    """Incremental Server-Sent Events parser over bytes: ``feed`` returns complete ``data``
    payloads (several ``data:`` lines of one event joined with ``\\n``).

    Comments, ``event:``, ``id:`` and ``retry:`` lines are ignored: neither upstream needs them.
    """

    __slots__ = ("_buffer", "_data")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
        return events

    def flush(self) -> list[bytes]:
        """At the end of the body: an event whose blank line never came."""
        tail = self.feed(b"\n\n") if self._buffer or self._data else []
        return tail


class JSONFrameStream:
    """Text deltas from a streamed response of JSON ``data:`` frames: the loop both built-in
    providers share (a :class:`server.ProviderStream`).

    A provider's stream says how to open the response (``_open``, returning what is kept of
    it while it streams: a :data:`BodyReader`), what text a frame carries (``_text``) and, if
    its protocol has one, an end marker (``_marker``). A tool call whose arguments are
    complete, or a :class:`ReasoningPart` piece, is handed on by appending it to ``_calls``
    (from ``_text``, or ``_marker``): it is yielded after the frame's text, in order. Text
    that must follow such a part of the same frame is appended to ``_calls`` too. Frames
    are parsed with jiter and no typed object is built per chunk. A body that ends before the
    provider's own end (``_finished``) was cut short.
    """

    def __init__(self, name: str, key: str | None) -> None:
        self._name = name
        self._key = key
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._body: BodyReader | None = None
        self._frames = SSEFrames()
        self._pending: list[bytes] = []
        self._index = 0
        self._done = False  # the end marker came; read on to the end of the body
        self._ended = False
        self._closed = False
        self._calls: list[str | ToolCall | ReasoningPart] = []

    async def _open(self) -> BodyReader:
        raise NotImplementedError

    def _text(self, frame: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def _marker(self, data: bytes) -> bool:
        """Whether ``data`` is the protocol's end marker (OpenAI's ``[DONE]``)."""
        return False

    def _finished(self) -> bool:
        return self._done or self.finish_reason is not None

    def _mark_whole(self) -> None:
        """For ``_text``: the frame just read says the answer is whole (Anthropic's
        ``message_stop``), as an end marker would; the rest of the body is drained briefly
        rather than waited for."""
        self._done = True

    def __aiter__(self) -> JSONFrameStream:
        return self

    async def __anext__(self) -> str | ToolCall | ReasoningPart:
        if self._body is None:
            if self._closed:
                raise StopAsyncIteration
            self._body = await self._open()
        while True:
            if self._calls:
                return self._calls.pop(0)
            if self._index < len(self._pending):
                data = self._pending[self._index]
                self._index += 1
                if self._marker(data):
                    self._done = True
                    continue
                frame = self._decode(data)
                try:
                    text = self._text(frame)
                except (AttributeError, TypeError, KeyError, IndexError, ValueError):
                    # A frame of the right syntax but the wrong shape (``choices`` a string,
                    # a number where an object belongs) is as malformed as one that is not
                    # JSON: the chain's fallback rules apply, not an internal error.
                    raise ProviderError(
                        FailureKind.MALFORMED,
                        f"{self._name} sent a frame of an unexpected shape.",
                        status=200,
                        detail=redact(repr(data[:120]), [self._key]),
                    ) from None
                if text:
                    return text
                continue
            if self._ended:
                raise StopAsyncIteration
            if self._done:
                # The end marker came: the answer is whole, whatever the body does next.
                await self._drain()
                raise StopAsyncIteration
            try:
                chunk = await self._body.read()
            except httpx2.TransportError as error:
                raise transport_error(self._name, error, status=200) from None
            if not chunk:
                self._ended = True
                self._pending = [] if self._done else self._frames.flush()
                self._index = 0
                if not self._pending and not self._finished():
                    raise ProviderError(
                        FailureKind.UNAVAILABLE,
                        f"{self._name} cut the answer short.",
                        status=200,
                        detail="the body ended before the answer did",
                    )
                continue
            self._pending = self._frames.feed(chunk)
            self._index = 0

    async def _drain(self) -> None:
        """Read on briefly to the end of the body after the end marker, so that the
        connection goes back to the pool instead of being closed. An upstream that keeps the
        body open after its marker gets ``DRAIN_SECONDS``, not the idle timeout: the answer
        is complete, and the connection is closed instead (``aclose``)."""
        body = self._body
        assert body is not None
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while await body.read():
                    pass
        except (TimeoutError, httpx2.TransportError):
            pass
        self._ended = True

    def _decode(self, data: bytes) -> dict[str, Any]:
        try:
            frame = jiter.from_json(data)
        except ValueError:
            raise ProviderError(
                FailureKind.MALFORMED,
                f"{self._name} sent a frame that is not JSON.",
                status=200,
                detail=redact(repr(data[:120]), [self._key]),
            ) from None
        if not isinstance(frame, dict):
            raise ProviderError(
                FailureKind.MALFORMED, f"{self._name} sent an unexpected frame.", status=200
            )
        error = frame.get("error")
        if error is not None:
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            raise ProviderError(
                FailureKind.UNAVAILABLE,
                f"{self._name} reported an error mid-answer.",
                status=200,
                detail=redact(str(message), [self._key]),
            )
        return frame

    async def aclose(self) -> None:
        """Close the upstream response now: the server sees its connection close."""
        self._closed = True
        body, self._body = self._body, None
        if body is not None:
            await body.aclose()
