"""Pieces the OpenAI and Gemini providers share: SSE framing, pool sizing, Retry-After,
and keeping keys out of messages.

Frames are read as bytes and split on newlines without decoding: a newline byte never occurs
inside a multi-byte UTF-8 character, so a character split across two network reads is whole
again by the time its line is complete, and ``jiter`` parses the UTF-8 bytes directly.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Iterable, Mapping

import aiohttp
import httpx2
import openai

from server.providers import FailureKind, ProviderError

__all__ = [
    "SSEFrames",
    "limits_for",
    "redact",
    "retry_after_from_headers",
    "transport_error",
]

# DESIGN.md section 8: keep-alive around 100, a cap matched to what the server admits.
KEEPALIVE_CONNECTIONS = 100

_KEY_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-*]{6,}|AIza[0-9A-Za-z_\-]{20,}|Bearer\s+\S+)", re.IGNORECASE
)


def limits_for(max_connections: int) -> httpx2.Limits:
    return httpx2.Limits(
        max_connections=max_connections,
        max_keepalive_connections=min(KEEPALIVE_CONNECTIONS, max_connections),
        keepalive_expiry=30.0,
    )


def pooled_http_client(max_connections: int) -> httpx2.AsyncClient:
    """The HTTP client both providers hand their SDK: httpx2's API on aiohttp's transport.

    ``openai.DefaultAioHttpClient`` is the SDK's own supported aiohttp transport (the
    ``openai[aiohttp]`` extra). Measured here, it reads a streamed frame for about a third of
    the CPU httpx2's default transport needs (21 µs against 55 µs a chunk with 20 streams;
    ``bench/provider_cpu.py``), and reading frames is most of a paced stream's cost.
    Errors still surface as httpx2's classes, so nothing else changes.
    """
    client: httpx2.AsyncClient = openai.DefaultAioHttpClient(
        limits=limits_for(max_connections),
        timeout=httpx2.Timeout(60.0, connect=10.0),
        follow_redirects=True,
    )
    return client


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


def really_timed_out(error: BaseException) -> bool:
    """Whether a timeout-looking error is a timeout, judged by its root cause.

    The aiohttp transport maps any ``aiohttp.ClientConnectionError`` to httpx2's
    ``ConnectTimeout`` (and the SDK then to ``APITimeoutError``), so a refused connection
    arrives dressed as a timeout. The underlying OS error tells them apart.
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ConnectionError | aiohttp.ClientConnectorError) and not isinstance(
            seen, TimeoutError | aiohttp.ServerTimeoutError
        ):
            return False
        seen = seen.__cause__ or seen.__context__
    return True


def transport_error(name: str, error: Exception, *, status: int | None) -> ProviderError:
    """Map an httpx2 failure while reading a response to a ProviderError.

    ``status`` is the response's status when the body was being read (the stream was cut after
    the headers), None when no response came at all."""
    if isinstance(error, httpx2.TimeoutException) and really_timed_out(error):
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
