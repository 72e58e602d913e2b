"""Load client: N concurrent SSE streams from one process, with per-token lag and loss accounting.

Each stream is one ``POST`` on its own connection (asyncio Protocol, no HTTP library in the
way), its response parsed incrementally: chunked or close-delimited bodies, UTF-8 split across
reads (incremental decoder), lines split across reads and ended by ``\\n``, ``\\r\\n`` or ``\\r``,
multi-line ``data``, comments (heartbeats), ``id`` gaps. Token marks `` ⟨seq:ns⟩`` (see
``fake_upstream``) are pulled out of the concatenated chunk contents, so servers that re-chunk
the text are measured correctly.

With ``--openai-model`` the request is an OpenAI Chat Completions body (``stream: true``) and
the response is read as OpenAI's wire format: ``chat.completion.chunk`` frames (the first one,
the role delta, counts as the "first status"), ``data: [DONE]`` as the terminal event, and a
``data: {"error": ...}`` frame as a failed end.

With ``--ai-sdk`` the request is the body the Vercel AI SDK's ``DefaultChatTransport`` sends
(a chat id of its own for every stream) and the response is read as its UI message stream
protocol: ``start`` counts as the "first status", ``text-delta`` chunks carry the text,
``finish`` is the terminal event and ``error`` / ``abort`` a failed end.
With ``--client-tool NAME`` as well, the client declares that tool (OpenAI ``tools``) and runs
it itself, as an agent framework does: a stream that ends in ``delta.tool_calls`` and
``finish_reason: "tool_calls"`` is one tool round, answered by a second request carrying the
assistant's calls and a ``role: "tool"`` result for each; the turn's tokens come on that one.
The turn's first status and first chunk are timed from its first request.
With ``--client-tool NAME`` on sluice's own stream endpoint (neither of the above), the turn is
the same two requests there: the first ends in ``complete`` without text (the server offers the
model no tool, so its call ends the answer), the second, in that ``session_id``, carries the
result as its message with the mark ``bench:tool_result``, which the fake upstream answers with
the text as it answers a ``role: "tool"`` message.

Run: ``python -m bench.load_client --url http://127.0.0.1:8000/chat --concurrency 50 --total 100
--tokens 500`` prints a JSON summary (see ``summarize``).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import json
import math
import re
import resource
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

try:
    import orjson

    _loads: Any = orjson.loads
except ImportError:  # pragma: no cover - orjson is in the bench extra
    _loads = json.loads

MARK_RE = re.compile(r"⟨(\d+):(\d+)⟩")
TERMINAL = ("complete", "error")
# How a client tool's result reaches the model through sluice's own endpoint, which takes
# only a message: the fake upstream answers a request carrying it as one with a tool result.
TOOL_RESULT_MARK = "bench:tool_result"
# Chat ids of this client process: every AI SDK stream is a chat of its own (two turns at
# once in one chat would be refused), and none is a chat of an earlier run.
_CHATS = "bench-" + secrets.token_hex(4)


@dataclass
class Target:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "Tell me a story."
    openai_model: str | None = None  # speak OpenAI's Chat Completions, asking for this model
    ai_sdk: bool = False  # speak the Vercel AI SDK's chat transport and stream protocol
    # Run this tool's calls here: declared as OpenAI ``tools`` with openai_model; on sluice's
    # own endpoint, the call that ends a first answer without text.
    client_tool: str | None = None

    def request_bytes(
        self, index: int, calls: list[list[str]] | None = None, session_id: str = ""
    ) -> bytes:
        """The turn's request; with ``calls`` (``[id, name, arguments]`` each, from the first
        answer), the one that gives the model the client tool's results (on sluice's own
        endpoint, as the message of the next turn in ``session_id``)."""
        parts = urlsplit(self.url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        text = f"{self.message} #{index}"
        if self.openai_model is not None:
            messages: list[dict[str, Any]] = [{"role": "user", "content": text}]
            request: dict[str, Any] = {"model": self.openai_model, "stream": True}
            if self.client_tool is not None:
                request["tools"] = [
                    {
                        "type": "function",
                        "function": {
                            "name": self.client_tool,
                            "description": "The current time in a time zone.",
                            "parameters": {
                                "type": "object",
                                "properties": {"timezone": {"type": "string"}},
                            },
                        },
                    }
                ]
            if calls:
                messages.append(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                            for i, n, a in calls
                        ],
                    }
                )
                messages += [
                    {"role": "tool", "tool_call_id": i, "content": "12:00 UTC"} for i, _, _ in calls
                ]
            request["messages"] = messages
            body = json.dumps(request).encode()
        elif self.ai_sdk:
            said = {"id": "m1", "role": "user", "parts": [{"type": "text", "text": text}]}
            chat = {"id": f"{_CHATS}-{index}", "messages": [said], "trigger": "submit-message"}
            body = json.dumps(chat).encode()
        elif calls:
            said = f"{TOOL_RESULT_MARK} {calls[0][1]}: 12:00 UTC"
            body = json.dumps({"message": said, "session_id": session_id}).encode()
        else:
            body = json.dumps({"message": text}).encode()
        head = [
            f"POST {path} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Accept: text/event-stream",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Totals:
    """What all streams of one run add up to."""

    def __init__(self, tokens: int, concurrency: int = 0) -> None:
        self.tokens = tokens
        self.concurrency = concurrency
        self.lags_us: list[int] = []
        self.sent_ns: list[int] = []  # send time of each token, beside its lag
        self.all_open_ns = 0  # when all ``concurrency`` streams were first open at once
        self.ttfs_ms: list[float] = []
        self.ttfc_ms: list[float] = []
        self.gaps_s: list[float] = []  # per stream: longest silence after the headers
        self.events = 0
        self.chunk_events = 0
        self.comments = 0
        self.marks = 0
        self.lost = 0
        self.duplicated = 0
        self.out_of_order = 0
        self.id_gaps = 0
        self.errors: Counter[str] = Counter()
        self.tool_results = 0
        self.tool_failures = 0
        self.tool_ms: list[int] = []  # each tool_result's duration_ms: the tool's own time
        self.ok = 0
        self.open_now = 0
        self.max_open = 0


class SSEStream(asyncio.Protocol):
    """One request and its event stream; ``done`` resolves when it has ended, however."""

    def __init__(
        self,
        totals: Totals,
        request: bytes,
        timeout_s: float,
        openai: bool = False,
        ai_sdk: bool = False,
        turn_t0: int | None = None,
        client_tool: str | None = None,
    ) -> None:
        self.totals = totals
        self.request = request
        self.openai = openai
        self.ai_sdk = ai_sdk
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        # A turn's second request (after a client tool round) is timed from its first.
        self.t0 = time.time_ns() if turn_t0 is None else turn_t0
        # The client tool calls the answer ended with (index -> [id, name, arguments]).
        self.calls: dict[int, list[str]] = {}
        self.tool_round = False
        # On sluice's own endpoint: the tool whose round a first answer without text ends,
        # and the session the second request continues.
        self.client_tool = client_tool if turn_t0 is None else None
        self.session_id = ""
        self.timer = asyncio.get_running_loop().call_later(timeout_s, self._timeout)
        self.raw = bytearray()
        self.head_done = False
        self.chunked = False
        self.remaining = 0  # bytes left in the current HTTP chunk
        self.chunk_state = 0  # 0: size line, 1: data, 2: CRLF after data
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.ev_type = ""
        self.data: list[str] = []
        self.last_id: int | None = None
        self.carry = ""
        self.seen = bytearray(totals.tokens + 1)
        self.unique = 0
        self.max_seq = 0
        self.terminal = ""
        self.error = ""
        self.first_status = turn_t0 is not None
        self.first_chunk = False
        self.last_rx = 0
        self.max_gap = 0

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        if self.last_rx:
            self.max_gap = max(self.max_gap, now - self.last_rx)
        self.last_rx = now
        if not self.head_done:
            self.raw += data
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self._head(bytes(self.raw[:end]).decode("latin-1")):
                return
            data = bytes(self.raw[end + 4 :])
            self.raw.clear()
        if self.chunked:
            self._dechunk(data, now)
        else:
            self._feed(data, now)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.head_done and not self.chunked:
            self._feed(b"", time.time_ns(), final=True)
        self._finish("" if self.terminal else "disconnected before terminal event")

    # -- HTTP ----------------------------------------------------------------------------
    def _head(self, head: str) -> bool:
        lines = head.split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "200":
            self._finish(f"http {status[1] if len(status) > 1 else '?'}")
            return False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                self.chunked = True
        self.head_done = True
        self.totals.open_now += 1
        self.totals.max_open = max(self.totals.max_open, self.totals.open_now)
        if self.totals.open_now == self.totals.concurrency and not self.totals.all_open_ns:
            self.totals.all_open_ns = time.time_ns()
        return True

    def _dechunk(self, data: bytes, now: int) -> None:
        buf = self.raw
        buf += data
        pos = 0
        n = len(buf)
        while pos < n:
            if self.chunk_state == 0:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
                pos = eol + 2
                if size == 0:
                    self._feed(b"", now, final=True)
                    self._finish("" if self.terminal else "body ended before terminal event")
                    return
                self.remaining = size
                self.chunk_state = 1
            elif self.chunk_state == 1:
                take = min(self.remaining, n - pos)
                self._feed(bytes(buf[pos : pos + take]), now)
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    self.chunk_state = 2
            else:
                if n - pos < 2:
                    break
                pos += 2
                self.chunk_state = 0
        del buf[:pos]

    # -- SSE -----------------------------------------------------------------------------
    def _feed(self, data: bytes, now: int, final: bool = False) -> None:
        text = self.text + self.decoder.decode(data, final)
        if not text:
            return
        hold = ""
        if text.endswith("\r") and not final:  # may be the first half of \r\n
            text, hold = text[:-1], "\r"
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        self.text = lines.pop() + hold
        for line in lines:
            self._line(line, now)

    def _line(self, line: str, now: int) -> None:
        if not line:
            if self.data:
                self._dispatch(now)
            self.ev_type = ""
            return
        if line[0] == ":":
            self.totals.comments += 1
            return
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self.data.append(value)
        elif name == "event":
            self.ev_type = value
        elif name == "id" and value.isdigit():
            num = int(value)
            if self.last_id is not None and num != self.last_id + 1:
                self.totals.id_gaps += 1
            self.last_id = num

    def _dispatch(self, now: int) -> None:
        data = self.data[0] if len(self.data) == 1 else "\n".join(self.data)
        self.data = []
        kind = self.ev_type
        totals = self.totals
        totals.events += 1
        if self.openai and not kind:
            self._openai(data, now)
            return
        if self.ai_sdk and not kind:
            self._ai_sdk(data, now)
            return
        payload: Any = None
        if not kind or kind == "message" or kind in TERMINAL or kind in ("chunk", "tool_result"):
            try:
                payload = _loads(data)
            except ValueError:
                payload = None
            if not kind or kind == "message":
                kind = payload.get("type", "message") if isinstance(payload, dict) else "message"
        if kind == "chunk":
            totals.chunk_events += 1
            if not self.first_chunk:
                self.first_chunk = True
                totals.ttfc_ms.append((now - self.t0) / 1e6)
            content = payload.get("content", "") if isinstance(payload, dict) else ""
            if content:
                self._marks(content, now)
        elif kind == "status":
            if not self.first_status:
                self.first_status = True
                totals.ttfs_ms.append((now - self.t0) / 1e6)
        elif kind == "tool_result":
            totals.tool_results += 1
            if isinstance(payload, dict):
                totals.tool_failures += payload.get("ok") is not True
                totals.tool_ms.append(int(payload.get("duration_ms", 0)))
        elif kind in TERMINAL:
            if self.terminal:
                totals.errors["second terminal event"] += 1
            self.terminal = kind
            # No text: the model called the client's tool, and the answer ended there.
            ended = payload if isinstance(payload, dict) else {}
            if kind == "complete" and self.client_tool and not ended.get("message"):
                self.tool_round = True
                self.calls = {0: ["", self.client_tool, ""]}
                self.session_id = str(ended.get("session_id", ""))
            if kind == "error":
                code = payload.get("code", "?") if isinstance(payload, dict) else "?"
                self.error = f"error event {code}"

    def _openai(self, data: str, now: int) -> None:
        """One ``data:`` frame of OpenAI's streaming format."""
        totals = self.totals
        if data == "[DONE]":
            if self.terminal:
                totals.errors["second terminal event"] += 1
            self.terminal = "complete"
            return
        payload = self._json_object(data)
        if payload is None:
            return
        if "error" in payload:
            self.terminal = "error"
            error = payload["error"] if isinstance(payload["error"], dict) else {}
            self.error = f"error frame {error.get('code') or error.get('type') or '?'}"
            return
        if not self.first_status:
            self.first_status = True
            totals.ttfs_ms.append((now - self.t0) / 1e6)
        choices = payload.get("choices")
        if not choices:
            return
        delta = choices[0].get("delta") or {}
        for piece in delta.get("tool_calls") or ():
            call = self.calls.setdefault(piece.get("index", 0), ["", "", ""])
            call[0] = piece.get("id") or call[0]
            function = piece.get("function") or {}
            call[1] += function.get("name") or ""
            call[2] += function.get("arguments") or ""
        if choices[0].get("finish_reason") == "tool_calls":
            self.tool_round = True
        content = delta.get("content")
        if content:
            self._text(content, now)

    def _json_object(self, data: str) -> dict[str, Any] | None:
        """A frame's JSON object; None, counted as an error, when it is not one."""
        try:
            payload = _loads(data)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self.totals.errors["frame is not a JSON object"] += 1
            return None
        return payload

    def _ai_sdk(self, data: str, now: int) -> None:
        """One ``data:`` frame of the AI SDK's UI message stream protocol."""
        totals = self.totals
        if data == "[DONE]":
            if not self.terminal:
                self.terminal = "error"
                self.error = "[DONE] before finish"
            return
        payload = self._json_object(data)
        if payload is None:
            return
        kind = payload.get("type")
        if kind == "text-delta":
            if payload.get("delta"):
                self._text(payload["delta"], now)
        elif kind == "start":
            self.first_status = True
            totals.ttfs_ms.append((now - self.t0) / 1e6)
        elif kind in ("tool-output-available", "tool-output-error"):
            totals.tool_results += 1
            totals.tool_failures += kind == "tool-output-error"
        elif kind in ("finish", "error", "abort"):
            if self.terminal:
                totals.errors["second terminal event"] += 1
            self.terminal = "complete" if kind == "finish" else "error"
            if kind != "finish":
                self.error = f"{kind} chunk"

    def _text(self, content: str, now: int) -> None:
        totals = self.totals
        totals.chunk_events += 1
        if not self.first_chunk:
            self.first_chunk = True
            totals.ttfc_ms.append((now - self.t0) / 1e6)
        self._marks(content, now)

    def _marks(self, content: str, now: int) -> None:
        text = self.carry + content if self.carry else content
        end = 0
        seen = self.seen
        lags = self.totals.lags_us
        sent = self.totals.sent_ns
        for m in MARK_RE.finditer(text):
            end = m.end()
            seq = int(m.group(1))
            ns = int(m.group(2))
            lags.append((now - ns) // 1000)
            sent.append(ns)
            self.totals.marks += 1
            if seq <= 0 or seq >= len(seen) or seen[seq]:
                self.totals.duplicated += 1
                continue
            seen[seq] = 1
            self.unique += 1
            if seq < self.max_seq:
                self.totals.out_of_order += 1
            else:
                self.max_seq = seq
        tail = text[end:]
        cut = tail.rfind("⟨")
        self.carry = tail[cut:] if cut >= 0 else ""

    # -- end -----------------------------------------------------------------------------
    def _timeout(self) -> None:
        self._finish("timeout")

    def _finish(self, error: str) -> None:
        if self.done.done():
            return
        self.timer.cancel()
        totals = self.totals
        if self.head_done:
            totals.open_now -= 1
            totals.gaps_s.append(self.max_gap / 1e9)
        if self.transport is not None:
            self.transport.close()
        error = error or self.error
        if not error and self.tool_round and self.calls and not self.unique:
            # A client tool round: the turn's tokens come with the next request.
            totals.tool_results += len(self.calls)
            totals.tool_ms.append(0)
            self.done.set_result(None)
            return
        self.tool_round = False
        if self.head_done:
            totals.lost += totals.tokens - self.unique
        else:
            totals.lost += totals.tokens
        if error:
            totals.errors[error] += 1
        else:
            totals.ok += 1
        self.done.set_result(None)


async def one_stream(
    totals: Totals,
    host: str,
    port: int,
    request: bytes,
    timeout_s: float,
    openai: bool = False,
    ai_sdk: bool = False,
    turn_t0: int | None = None,
    client_tool: str | None = None,
) -> SSEStream:
    loop = asyncio.get_running_loop()
    proto = SSEStream(totals, request, timeout_s, openai, ai_sdk, turn_t0, client_tool)
    try:
        await asyncio.wait_for(loop.create_connection(lambda: proto, host, port), timeout_s)
    except (OSError, TimeoutError) as exc:
        proto._finish(f"connect: {type(exc).__name__}")
        return proto
    await proto.done
    return proto


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


async def run_load(
    target: Target,
    concurrency: int,
    total: int,
    tokens: int,
    ramp_s: float = 0.0,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Open ``concurrency`` streams at once (their starts spread over ``ramp_s``), each worker
    starting its next stream as soon as the last ends, until ``total`` streams have run."""
    raise_nofile()
    totals = Totals(tokens, min(concurrency, total))
    parts = urlsplit(target.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    counter = iter(range(total))
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def worker(slot: int) -> None:
        if ramp_s > 0:
            await asyncio.sleep(max(0.0, start + ramp_s * slot / concurrency - loop.time()))
        for index in counter:
            request = target.request_bytes(index)
            openai = target.openai_model is not None
            ai_sdk = target.ai_sdk
            # On sluice's own endpoint the client tool's round is read from its events here.
            own = None if openai or ai_sdk else target.client_tool
            first = await one_stream(
                totals, host, port, request, timeout_s, openai, ai_sdk, client_tool=own
            )
            if first.tool_round:  # the client ran its tool: the model answers from the result
                calls = [first.calls[i] for i in sorted(first.calls)]
                request = target.request_bytes(index, calls, first.session_id)
                await one_stream(totals, host, port, request, timeout_s, openai, ai_sdk, first.t0)

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(min(concurrency, total))))
    wall = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return summarize(totals, total, wall, cpu)


def summarize(totals: Totals, streams: int, wall: float, cpu: float) -> dict[str, Any]:
    lags_ms = [x / 1000 for x in totals.lags_us]
    # "Held" lag: tokens sent once every stream was open, i.e. without the connection ramp.
    held = totals.all_open_ns
    held_ms = [x / 1000 for x, t in zip(totals.lags_us, totals.sent_ns, strict=True) if t >= held]

    def pct(values: list[float], q: float) -> float | None:
        v = percentile(values, q)
        return None if v is None else round(v, 3)

    return {
        "streams": streams,
        "ok": totals.ok,
        "errors": sum(totals.errors.values()),
        "error_kinds": dict(totals.errors.most_common(5)),
        "wall_s": round(wall, 3),
        "events": totals.events,
        "events_per_s": round(totals.events / wall, 1) if wall else 0.0,
        "chunk_events": totals.chunk_events,
        "tokens": totals.marks,
        "tokens_per_s": round(totals.marks / wall, 1) if wall else 0.0,
        "ttfs_p50_ms": pct(totals.ttfs_ms, 50),
        "ttfs_p99_ms": pct(totals.ttfs_ms, 99),
        "ttfc_p50_ms": pct(totals.ttfc_ms, 50),
        "ttfc_p99_ms": pct(totals.ttfc_ms, 99),
        "lag_p50_ms": pct(lags_ms, 50),
        "lag_p90_ms": pct(lags_ms, 90),
        "lag_p99_ms": pct(lags_ms, 99),
        "lag_max_ms": round(max(lags_ms), 3) if lags_ms else None,
        "held_tokens": len(held_ms) if held else 0,
        "held_lag_p99_ms": pct(held_ms, 99) if held else None,
        "held_lag_max_ms": round(max(held_ms), 3) if held and held_ms else None,
        "lost": totals.lost,
        "duplicated": totals.duplicated,
        "out_of_order": totals.out_of_order,
        "id_gaps": totals.id_gaps,
        "comments": totals.comments,
        "max_open": totals.max_open,
        "tool_results": totals.tool_results,
        "tool_failures": totals.tool_failures,
        "tool_ms_max": max(totals.tool_ms) if totals.tool_ms else None,
        "silence_p99_s": pct(totals.gaps_s, 99),
        "silence_max_s": round(max(totals.gaps_s), 3) if totals.gaps_s else None,
        "client_cpu_pct": round(100 * cpu / wall, 1) if wall else 0.0,
    }


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--total", type=int, default=None, help="streams in all (default: N)")
    parser.add_argument("--tokens", type=int, required=True, help="tokens each stream carries")
    parser.add_argument("--ramp-s", type=float, default=0.0)
    parser.add_argument("--timeout-s", type=float, default=120.0)
    parser.add_argument("--message", default=Target.message, help="text of each user message")
    parser.add_argument(
        "--openai-model", help="send OpenAI Chat Completions requests for this model"
    )
    parser.add_argument(
        "--ai-sdk", action="store_true", help="speak the Vercel AI SDK's chat protocol"
    )
    parser.add_argument(
        "--client-tool",
        help="declare this tool (--openai-model) or expect its call (sluice's own endpoint)"
        " and run its calls here, sending the result in a second request",
    )
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    target = Target(
        args.url,
        {k.strip(): v.strip() for k, v in headers.items()},
        args.message,
        args.openai_model,
        args.ai_sdk,
        args.client_tool,
    )
    result = asyncio.run(
        run_load(
            target,
            args.concurrency,
            args.total or args.concurrency,
            args.tokens,
            args.ramp_s,
            args.timeout_s,
        )
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
