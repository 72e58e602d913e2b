"""CPU per streamed chunk on the provider path: the SDKs' typed streams against ours.

    .venv/bin/python -m bench.provider_cpu [--chunks 2000] [--rounds 5]

A child process serves OpenAI ``chat.completion.chunk`` SSE, Gemini
``streamGenerateContent?alt=sse`` and Anthropic Messages events on loopback, one write per
frame, as fast as it can; this process reads them in pairs and reports its own CPU time
(``time.process_time``, so the server's work is not counted) divided by the number of text
chunks, median of the rounds:

* openai typed: ``client.chat.completions.create(stream=True)`` (a ``ChatCompletionChunk``
  per frame), reading ``choices[0].delta.content``;
* openai ours: ``OpenAIProvider.stream`` (``with_streaming_response`` bytes + ``jiter``);
* gemini typed: ``client.aio.models.generate_content_stream`` (a ``GenerateContentResponse``
  per frame), reading ``.text``;
* gemini ours: ``GeminiProvider.stream`` (the SDK's pooled httpx2 client + ``jiter``);
* anthropic typed: ``client.messages.create(stream=True)`` (a ``RawMessageStreamEvent`` per
  event), reading text deltas;
* anthropic ours: ``AnthropicProvider.stream`` (``with_streaming_response`` bytes + ``jiter``);
* the floor: ``httpx2`` reading the same OpenAI body with no decoding at all.

Two runs: "burst" (the upstream writes as fast as it can, so one read often holds several
frames) and "paced" (frames 1 ms apart, one read each, like a model generating tokens). In the
paced run most of the cost is the HTTP client's per-read work (httpx2, httpcore2, h11) and the
event loop waking up: compare "ours" with the floor.

Everything else (the HTTP client, TLS-free loopback sockets, the event loop) is the same for
both sides of a pair, so the difference is the per-chunk decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import anthropic
import httpx2
import openai
from google import genai
from google.genai import types as genai_types

from plugins.providers.anthropic import AnthropicOptions, AnthropicProvider
from plugins.providers.gemini import GeminiOptions, GeminiProvider
from plugins.providers.openai import OpenAIOptions, OpenAIProvider
from server.contract import Message
from server.llm.transport import provider_context

PROMPT = [Message("system", "Be brief."), Message("user", "Tell me a long story.")]
WORDS = ["Once", " upon", " a", " time", ",", " in", " a", " land", " far", " away"]


# --- the upstream, in a child process -------------------------------------------------------


def _openai_frames(chunks: int) -> list[bytes]:
    def frame(delta: dict[str, object], finish: str | None) -> bytes:
        obj = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    frames = [frame({"role": "assistant", "content": "", "refusal": None}, None)]
    frames += [frame({"content": WORDS[i % len(WORDS)]}, None) for i in range(chunks)]
    frames.append(frame({}, "stop"))
    return [*frames, b"data: [DONE]\n\n"]


def _gemini_frames(chunks: int) -> list[bytes]:
    frames = []
    for i in range(chunks):
        candidate: dict[str, object] = {
            "content": {"parts": [{"text": WORDS[i % len(WORDS)]}], "role": "model"},
            "index": 0,
        }
        obj: dict[str, object] = {
            "candidates": [candidate],
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9 + i},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "bench",
        }
        if i == chunks - 1:
            candidate["finishReason"] = "STOP"
        frames.append(b"data: " + json.dumps(obj).encode() + b"\r\n\r\n")
    return frames


def _anthropic_frames(chunks: int) -> list[bytes]:
    def event(kind: str, **data: object) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    usage = {"input_tokens": 9, "cache_read_input_tokens": 0, "output_tokens": 1}
    message: dict[str, object] = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    frames = [
        event("message_start", message=message),
        event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        event("ping"),
    ]
    frames += [
        event(
            "content_block_delta",
            index=0,
            delta={"type": "text_delta", "text": WORDS[i % len(WORDS)]},
        )
        for i in range(chunks)
    ]
    frames.append(event("content_block_stop", index=0))
    frames.append(
        event(
            "message_delta",
            delta={"stop_reason": "end_turn", "stop_sequence": None},
            usage={"output_tokens": chunks},
        )
    )
    return [*frames, event("message_stop")]


def serve(chunks: int, pace: float) -> None:
    from tornado.httpserver import HTTPServer
    from tornado.iostream import StreamClosedError
    from tornado.netutil import bind_sockets
    from tornado.web import Application, RequestHandler

    openai_frames = _openai_frames(chunks)
    gemini_frames = _gemini_frames(chunks)
    anthropic_frames = _anthropic_frames(chunks)

    class Frames(RequestHandler):
        def initialize(self, frames: list[bytes]) -> None:
            self.frames = frames

        async def post(self, *args: str) -> None:
            self.set_header("Content-Type", "text/event-stream")
            try:
                for frame in self.frames:
                    self.write(frame)
                    await self.flush()
                    if pace:
                        await asyncio.sleep(pace)
            except StreamClosedError:
                return
            self.finish()

    async def main() -> None:
        sockets = bind_sockets(0, "127.0.0.1")
        app = Application(
            [
                (r"/v1/chat/completions", Frames, {"frames": openai_frames}),
                (
                    r"/v1beta/models/([^:]+):streamGenerateContent",
                    Frames,
                    {"frames": gemini_frames},
                ),
                (r"/v1/messages", Frames, {"frames": anthropic_frames}),
            ]
        )
        HTTPServer(app).add_sockets(sockets)
        print(sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the four readers -----------------------------------------------------------------------


async def measure(read: Callable[[], Awaitable[int]], rounds: int) -> float:
    await read()  # warm up: connections, imports, caches
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        count = await read()
        samples.append((time.process_time() - started) / count * 1e6)
    return statistics.median(samples)


async def bench(port: int, chunks: int, rounds: int) -> list[tuple[str, float]]:
    base = f"http://127.0.0.1:{port}"
    env = {
        "OPENAI_API_KEY": "sk-bench",
        "GEMINI_API_KEY": "bench-key",
        "ANTHROPIC_API_KEY": "bench-key",
    }
    # The server's own pooled client (the aiohttp transport), as the providers get it.
    context = provider_context(env, max_connections=8)
    ours_openai = OpenAIProvider(OpenAIOptions(base_url=base + "/v1"), context)
    ours_gemini = GeminiProvider(GeminiOptions(base_url=base), context)
    ours_anthropic = AnthropicProvider(AnthropicOptions(base_url=base), context)
    typed_anthropic = anthropic.AsyncAnthropic(api_key="bench-key", base_url=base, max_retries=0)
    typed_openai = openai.AsyncOpenAI(api_key="sk-bench", base_url=base + "/v1", max_retries=0)
    typed_http = httpx2.AsyncClient()
    typed_gemini = genai.Client(
        vertexai=False,
        api_key="bench-key",
        http_options=genai_types.HttpOptions(
            base_url=base + "/", api_version="v1beta", httpx_async_client=typed_http
        ),
    )
    messages = [{"role": m.role, "content": m.content} for m in PROMPT]

    async def openai_typed() -> int:
        count = 0
        stream = await typed_openai.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
        )
        assert isinstance(stream, openai.AsyncStream)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                count += 1
        return count

    async def gemini_typed() -> int:
        count = 0
        stream = await typed_gemini.aio.models.generate_content_stream(
            model="gemini-2.5-flash",
            contents="Tell me a long story.",
            config=genai_types.GenerateContentConfig(system_instruction="Be brief."),
        )
        async for response in stream:
            if response.text:
                count += 1
        return count

    async def anthropic_typed() -> int:
        count = 0
        stream = await typed_anthropic.messages.create(
            model="claude-haiku-4-5",
            max_tokens=4096,
            system="Be brief.",
            messages=[{"role": "user", "content": "Tell me a long story."}],
            stream=True,
        )
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                count += 1
        return count

    async def httpx2_alone() -> int:
        # The floor: the same HTTP client reading the same body, no decoding at all.
        async with typed_http.stream("POST", base + "/v1/chat/completions", json={}) as response:
            async for _ in response.aiter_raw():
                pass
        return chunks  # per text chunk, like the others

    def ours(
        provider: OpenAIProvider | GeminiProvider | AnthropicProvider,
    ) -> Callable[[], Awaitable[int]]:
        async def read() -> int:
            count = 0
            stream = provider.stream(PROMPT, max_output_tokens=4096, timeout=10)
            try:
                async for _ in stream:
                    count += 1
            finally:
                await stream.aclose()
            return count

        return read

    results = [
        (
            "openai  typed ChatCompletionChunk (SDK AsyncStream)",
            await measure(openai_typed, rounds),
        ),
        (
            "openai  ours  (aiohttp transport, streamed bytes + jiter)",
            await measure(ours(ours_openai), rounds),
        ),
        ("gemini  typed GenerateContentResponse (SDK stream)", await measure(gemini_typed, rounds)),
        (
            "gemini  ours  (aiohttp transport, streamed bytes + jiter)",
            await measure(ours(ours_gemini), rounds),
        ),
        (
            "anthropic typed RawMessageStreamEvent (SDK AsyncStream)",
            await measure(anthropic_typed, rounds),
        ),
        (
            "anthropic ours (aiohttp transport, streamed bytes + jiter)",
            await measure(ours(ours_anthropic), rounds),
        ),
        (
            "floor: default httpx2 transport reads the body, no decoding",
            await measure(httpx2_alone, rounds),
        ),
    ]
    await ours_openai.aclose()
    await ours_gemini.aclose()
    await ours_anthropic.aclose()
    await typed_anthropic.close()
    await typed_openai.close()
    await typed_gemini.aio.aclose()
    typed_gemini.close()
    await typed_http.aclose()
    return results


def _start(chunks: int, pace: float) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, "-m", "bench.provider_cpu", "--serve", "--chunks", str(chunks)]
    child = subprocess.Popen(
        [*command, "--pace", str(pace)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    return child, int(child.stdout.readline())


def _stop(child: subprocess.Popen[str]) -> None:
    child.terminate()
    child.wait(timeout=5)
    if child.stdout is not None:
        child.stdout.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--paced-chunks", type=int, default=400)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pace", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.chunks, args.pace)
        return
    runs = [
        (f"burst: {args.chunks} chunks as fast as the upstream writes", args.chunks, 0.0),
        (f"paced: {args.paced_chunks} chunks 1 ms apart, one read each", args.paced_chunks, 0.001),
    ]
    print(f"provider path CPU per chunk (median of {args.rounds} rounds)")
    for title, chunks, pace in runs:
        child, port = _start(chunks, pace)
        try:
            results = asyncio.run(bench(port, chunks, args.rounds))
        finally:
            _stop(child)
        print(f"{title}")
        for label, micros in results:
            print(f"  {label:<56} {micros:8.1f} µs")
        pairs = [(results[i][1], results[i + 1][1]) for i in (0, 2, 4)]
        ratios = (t / o for t, o in pairs)
        print("  typed / ours: openai {:.1f}x, gemini {:.1f}x, anthropic {:.1f}x".format(*ratios))


if __name__ == "__main__":
    main()
