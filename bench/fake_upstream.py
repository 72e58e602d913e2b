"""A fake OpenAI-compatible upstream that streams stamped tokens, fast enough not to matter.

``POST /v1/chat/completions`` answers, for ``"stream": true``, the OpenAI streaming wire format:
``data: {chat.completion.chunk}\\n\\n`` frames (first a role delta, then one frame per token,
then a ``finish_reason: "stop"`` frame) and ``data: [DONE]\\n\\n``, over chunked HTTP/1.1 with
keep-alive. Without ``stream`` it answers one ``chat.completion`` JSON with the whole text.

Every token's text is `` ⟨seq:ns⟩``: its sequence number (1-based) and ``time.time_ns()`` when it
was written, so a client can compute per-token lag and spot lost, duplicated or reordered tokens
even if a server re-chunks the text. The mark holds non-ASCII characters on purpose: it
exercises UTF-8 split across reads.

``POST /chat`` streams the tokens directly as the relays' SSE ``chunk`` events, so the load
client can be measured against the upstream alone (the harness's own ceiling).

Token count and pace come from the command line (the runner starts one upstream per run); the
request body may override them with ``bench:tokens=N,interval_ms=X`` anywhere in it, and
``bench:tokens=N,interval_ms=X,pad=K`` makes every token K characters longer (long answers in
few frames: ``python -m bench.long_answer``).

With ``--tool-round`` (the ``tools`` workload) a streamed request that carries no tool result
is answered with a tool call instead of text, in OpenAI's wire format (``delta.tool_calls``:
the id and name, then the arguments over two frames; ``finish_reason: "tool_calls"``): the
relay runs the tool and asks again with a ``role: "tool"`` message, which gets the text (as
does a request carrying ``bench:tool_result``: a client handing the result back through
sluice's own endpoint, whose only way in is a message). The
time from the end of the tool-call response to the arrival of the request carrying its result
(paired by the call's id, whichever connection it comes on) is recorded per call;
``GET /bench/tool-gaps`` returns those recorded so far, in microseconds, and forgets them.

Run: ``python -m bench.fake_upstream --port 9000 --tokens 500 --interval-ms 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import time
from typing import Any

OPEN, CLOSE = "⟨", "⟩"
MARK_RE = re.compile(r"⟨(\d+):(\d+)⟩")
_OVERRIDE_RE = re.compile(rb"bench:tokens=(\d+),interval_ms=(\d+(?:\.\d+)?)(?:,pad=(\d+))?")

_CHUNK_HEAD = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"bench-model","choices":[{"index":0,"delta":{'
)
_ROLE_FRAME = _CHUNK_HEAD + b'"role":"assistant","content":""},"finish_reason":null}]}\n\n'
_TOKEN_HEAD = _CHUNK_HEAD + b'"content":"'
_TOKEN_TAIL = b'"},"finish_reason":null}]}\n\n'
_STOP_FRAME = _CHUNK_HEAD + b'},"finish_reason":"stop"}]}\n\n'
_DONE_FRAME = b"data: [DONE]\n\n"

# Tool mode: the one tool the bench's sluice has enabled by default, asked for with arguments
# split over two frames as OpenAI does.
TOOL_NAME = "current_time"
_TOOL_RESULT_RE = re.compile(rb'"role"\s*:\s*"tool"|bench:tool_result')
_TOOL_CALL_ID_RE = re.compile(rb'"tool_call_id"\s*:\s*"(call_bench_\d+)"')
_TOOL_TAIL = b'"finish_reason":null}]}\n\n'
_TOOL_STOP_FRAME = _CHUNK_HEAD + b'},"finish_reason":"tool_calls"}]}\n\n'


def _tool_call_frames(call_id: str) -> bytes:
    """One tool call of ``TOOL_NAME``, streamed: the id and name, then the arguments in two
    pieces, then the finish frame and ``[DONE]``."""
    named = {"name": TOOL_NAME, "arguments": ""}
    pieces: list[list[dict[str, Any]]] = [
        [{"index": 0, "id": call_id, "type": "function", "function": named}],
        [{"index": 0, "function": {"arguments": '{"timezone": '}}],
        [{"index": 0, "function": {"arguments": '"UTC"}'}}],
    ]
    frames = [_ROLE_FRAME] + [
        _CHUNK_HEAD + b'"tool_calls":' + json.dumps(p).encode() + b"}," + _TOOL_TAIL for p in pieces
    ]
    return b"".join(_chunked(f) for f in [*frames, _TOOL_STOP_FRAME, _DONE_FRAME])


# Direct mode (POST /chat): the relays' own SSE format, to measure the harness without a relay.
_SSE_HEAD = b'event: chunk\ndata: {"type":"chunk","content":"'
_SSE_TAIL = b'"}\n\n'
_SSE_END = b'event: complete\ndata: {"type":"complete","message":""}\n\n'

_STREAM_HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
)
# Burst mode (interval 0) writes this many tokens per write, then yields to other streams.
BATCH = 32


def token_bytes(seq: int, ns: int, pad: int = 0) -> bytes:
    return f" {OPEN}{seq}:{ns}{CLOSE}".encode() + b"x" * pad


def _chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class Stats:
    streams_started = 0
    streams_finished = 0
    streams_aborted = 0
    plain_requests = 0
    tool_calls = 0
    # Tool mode: call id -> perf_counter_ns when its tool-call response ended; then the gaps.
    tool_call_sent: dict[str, int] = {}
    tool_gaps_us: list[float] = []


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self, tokens: int, interval_s: float, tool_round: bool = False) -> None:
        self.tokens = tokens
        self.interval_s = interval_s
        self.tool_round = tool_round
        self.received_ns = 0  # when the bytes that completed the pending request arrived
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.busy = False  # a response is being written; further requests wait in buf
        self.can_write = asyncio.Event()
        self.can_write.set()

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.can_write.set()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        self.received_ns = time.perf_counter_ns()
        self.buf += data
        if not self.busy:
            self._try_request()

    # -- HTTP ----------------------------------------------------------------------------
    def _try_request(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if len(self.buf) < end + 4 + length:
            return
        body = self.buf[end + 4 : end + 4 + length]
        self.buf = self.buf[end + 4 + length :]
        method, path = ([*head.split(" ", 2), "", ""])[:2]
        route = path.split("?")[0]
        if method == "GET" and route == "/bench/tool-gaps":
            gaps, Stats.tool_gaps_us = Stats.tool_gaps_us, []
            self._write_plain(200, json.dumps(gaps).encode())
            return self._after_response()
        direct = route == "/chat"
        if method != "POST" or not (direct or route.endswith("/chat/completions")):
            self._write_plain(404, b'{"error":{"message":"not found"}}')
            return self._after_response()
        tokens, interval_s, pad = self.tokens, self.interval_s, 0
        m = _OVERRIDE_RE.search(body)
        if m:
            tokens, interval_s = int(m.group(1)), float(m.group(2)) / 1000
            pad = int(m.group(3) or 0)
        streamed = direct or re.search(rb'"stream"\s*:\s*true', body) is not None
        if self.tool_round and streamed and not direct:
            if _TOOL_RESULT_RE.search(body) is None:
                return self._tool_call()
            ids = [found.group(1).decode() for found in _TOOL_CALL_ID_RE.finditer(body)]
            if not ids and Stats.tool_call_sent:
                # A result handed back as a message names no call: the oldest one waiting
                # (the tools workload runs one turn at a time).
                ids = [next(iter(Stats.tool_call_sent))]
            for call_id in ids:
                sent = Stats.tool_call_sent.pop(call_id, None)
                if sent is not None:
                    Stats.tool_gaps_us.append((self.received_ns - sent) / 1000)
        if streamed:
            self.busy = True
            asyncio.get_running_loop().create_task(self._stream(tokens, interval_s, direct, pad))
        else:
            Stats.plain_requests += 1
            text = "".join(token_bytes(i, time.time_ns()).decode() for i in range(1, tokens + 1))
            answer = (
                '{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,'
                '"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant",'
                f'"content":"{text}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":1,'
                f'"completion_tokens":{tokens},"total_tokens":{tokens + 1}}}}}'
            )
            self._write_plain(200, answer.encode())
            self._after_response()

    def _write_plain(self, status: int, body: bytes) -> None:
        assert self.transport is not None
        reason = b"OK" if status == 200 else b"Not Found"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, reason, len(body), body)
        )

    def _tool_call(self) -> None:
        assert self.transport is not None
        Stats.tool_calls += 1
        call_id = f"call_bench_{Stats.tool_calls}"
        self.transport.write(_STREAM_HEADERS + _tool_call_frames(call_id) + b"0\r\n\r\n")
        Stats.tool_call_sent[call_id] = time.perf_counter_ns()
        self._after_response()

    def _after_response(self) -> None:
        self.busy = False
        if self.buf and not self.closed:
            self._try_request()

    async def _stream(
        self, tokens: int, interval_s: float, direct: bool = False, pad: int = 0
    ) -> None:
        transport = self.transport
        assert transport is not None
        Stats.streams_started += 1
        head, tail = (_SSE_HEAD, _SSE_TAIL) if direct else (_TOKEN_HEAD, _TOKEN_TAIL)
        transport.write(_STREAM_HEADERS + (b"" if direct else _chunked(_ROLE_FRAME)))
        loop = asyncio.get_running_loop()
        start = loop.time()
        seq = 1
        while seq <= tokens:
            if self.closed:
                Stats.streams_aborted += 1
                return
            if interval_s > 0:
                # Absolute schedule: the pace does not drift with write or loop delays.
                delay = start + seq * interval_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                    if self.closed:
                        Stats.streams_aborted += 1
                        return
                count = 1
            else:
                count = min(BATCH, tokens - seq + 1)
            if not self.can_write.is_set():
                await self.can_write.wait()
                if self.closed:
                    Stats.streams_aborted += 1
                    return
            ns = time.time_ns()
            frames = b"".join(
                _chunked(head + token_bytes(s, ns, pad) + tail) for s in range(seq, seq + count)
            )
            transport.write(frames)
            seq += count
            if interval_s <= 0:
                await asyncio.sleep(0)  # let other streams have their turn
        end = _chunked(_SSE_END) if direct else _chunked(_STOP_FRAME) + _chunked(_DONE_FRAME)
        transport.write(end + b"0\r\n\r\n")
        Stats.streams_finished += 1
        self._after_response()


async def serve(
    host: str, port: int, tokens: int, interval_ms: float, tool_round: bool = False
) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: UpstreamProtocol(tokens, interval_ms / 1000, tool_round), host, port, backlog=4096
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake upstream on http://{host}:{port}/v1 tokens={tokens} interval_ms={interval_ms}")
    async with server:
        await stop.wait()
    print(
        f"fake upstream: streams started={Stats.streams_started} "
        f"finished={Stats.streams_finished} aborted={Stats.streams_aborted} "
        f"plain={Stats.plain_requests} tool_calls={Stats.tool_calls}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--interval-ms", type=float, default=0.0)
    parser.add_argument(
        "--tool-round",
        action="store_true",
        help="answer each turn's first request with a tool call, the one with its result with text",
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(ImportError):
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(args.host, args.port, args.tokens, args.interval_ms, args.tool_round))


if __name__ == "__main__":
    main()
