"""Memory per open stream on the Anthropic provider path: the official SDK's streams against
ours.

    .venv/bin/python -m bench.provider_memory [--streams 200] [--rounds 3]

A child process serves Anthropic Messages events on loopback: ``message_start``, a text
block's start, a ``ping``, one ``text_delta``, then nothing until the client leaves (a model
thinking between two tokens). This process opens ``--streams`` streams at once, reads each to
its first text, and reports what stays allocated per open stream (``tracemalloc``: what
Python allocated, after a garbage collection), median of the rounds:

* ours: ``AnthropicProvider.stream`` (``with_streaming_response`` bytes + ``jiter``, only the
  transport's body reader kept while the answer streams);
* SDK ``AsyncStream``: ``client.messages.create(stream=True)``, a ``RawMessageStreamEvent``
  per event, on the same pooled client (sluice's aiohttp transport) as ours;
* SDK ``MessageStream``: ``client.messages.stream()``, the SDK's helper that accumulates the
  message as it goes, on the same client;
* SDK ``AsyncStream``, default client: the same, on the SDK's own httpx2 client, as a user of
  the SDK alone runs it.

Each path's first round also warms imports and the connection pool, so rounds after it
count only what a stream holds: ``--warmup`` rounds (2) run unmeasured before those counted
(the smoke test runs one).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

from plugins.providers.anthropic import AnthropicOptions, AnthropicProvider
from server.contract import Message
from server.llm.transport import pooled_http_client, provider_context

PROMPT = [Message("system", "Be brief."), Message("user", "Tell me a long story.")]


def _event(kind: str, **data: object) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


HEAD = (
    _event(
        "message_start",
        message={
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 9, "cache_read_input_tokens": 0, "output_tokens": 1},
        },
    )
    + _event("content_block_start", index=0, content_block={"type": "text", "text": ""})
    + _event("ping")
    + _event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Once"})
)


def serve() -> None:
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets
    from tornado.web import Application, RequestHandler

    class Held(RequestHandler):
        def initialize(self) -> None:
            self.gone = asyncio.Event()

        def on_connection_close(self) -> None:
            self.gone.set()

        async def post(self) -> None:
            self.set_header("Content-Type", "text/event-stream")
            self.write(HEAD)
            await self.flush()
            await self.gone.wait()

    async def main() -> None:
        sockets = bind_sockets(0, "127.0.0.1", backlog=4096)
        HTTPServer(Application([(r"/v1/messages", Held)])).add_sockets(sockets)
        print(sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


Opener = Callable[[], Awaitable[Callable[[], Awaitable[None]]]]
"""Opens one stream, reads it to its first text; returns how to close it."""


async def settle() -> None:
    """Let closed connections finish closing (their transports go on the next loop turns),
    and collect, twice: a collected async generator that was not exhausted is closed by a
    task the loop runs afterwards, and only then freed."""
    for _ in range(3):
        for _ in range(10):
            await asyncio.sleep(0.01)
        gc.collect()


async def per_stream(open_one: Opener, streams: int) -> float:
    """KiB per open stream: what the open streams hold, measured as what closing them
    frees (a snapshot with all open, one after all are closed), so that anything a
    previous round freed late is counted in neither."""
    closers = await asyncio.gather(*(open_one() for _ in range(streams)))
    await settle()
    held = tracemalloc.take_snapshot()
    for close in closers:
        await close()
    del closers
    await settle()
    closed = tracemalloc.take_snapshot()
    freed = -sum(stat.size_diff for stat in closed.compare_to(held, "filename"))
    return freed / streams / 1024


async def measure_path(port: int, path: str, streams: int, rounds: int, warmup: int) -> float:
    """Median KiB per open stream of one path, in this process alone."""
    import anthropic  # here, not at the top: the child serving the events never needs it

    base = f"http://127.0.0.1:{port}"
    context = provider_context({"ANTHROPIC_API_KEY": "bench-key"}, max_connections=streams + 8)
    ours = AnthropicProvider(AnthropicOptions(base_url=base, prompt_caching=False), context)
    client = anthropic.AsyncAnthropic(
        api_key="bench-key",
        base_url=base,
        max_retries=0,
        # Long enough for hundreds of connections opened at once on a busy machine.
        timeout=60,
        http_client=None if path == "sdk-default" else pooled_http_client(streams + 8),
    )
    request: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
    }

    async def open_ours() -> Callable[[], Awaitable[None]]:
        stream = ours.stream(PROMPT, max_output_tokens=1024, timeout=30)
        assert await stream.__anext__() == "Once"
        return stream.aclose

    async def open_typed() -> Callable[[], Awaitable[None]]:
        stream = await client.messages.create(**request, stream=True)
        events = stream.__aiter__()
        while (await events.__anext__()).type != "content_block_delta":
            pass

        async def close() -> None:
            await events.aclose()
            await stream.close()

        return close

    async def open_helper() -> Callable[[], Awaitable[None]]:
        manager = client.messages.stream(**request)
        stream = await manager.__aenter__()
        events = stream.__aiter__()
        while (await events.__anext__()).type != "text":
            pass

        async def close() -> None:
            # The event iterator is an async generator: closed here, not left to the
            # garbage collector's finalizer, which keeps the stream alive a while longer.
            await events.aclose()  # type: ignore[attr-defined]
            await manager.__aexit__(None, None, None)

        return close

    open_one = {"ours": open_ours, "sdk-helper": open_helper}.get(path, open_typed)
    try:
        for _ in range(warmup):  # warm up: imports, pool, caches, the loop's own queues
            await per_stream(open_one, streams)
        samples = [await per_stream(open_one, streams) for _ in range(rounds)]
    finally:
        await ours.aclose()
        await client.close()
    return statistics.median(samples)


PATHS = {
    "ours": "ours (aiohttp transport, streamed bytes + jiter)",
    "sdk": "SDK AsyncStream (same pooled client)",
    "sdk-helper": "SDK MessageStream helper (same pooled client)",
    "sdk-default": "SDK AsyncStream (SDK's default httpx2 client)",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--warmup", type=int, default=2, help="rounds per path before those measured"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return
    if args.path:
        # One path per process: what one path's closed streams free late is never counted
        # against another's.
        # The SDK imported before the freeze: what is imported lives as long as the process,
        # and frozen, the collections each round runs skip it (a second each path).
        import anthropic  # noqa: F401

        gc.freeze()
        tracemalloc.start()
        measured = measure_path(args.port, args.path, args.streams, args.rounds, args.warmup)
        print(asyncio.run(measured))
        return
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.provider_memory", "--serve"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    port = int(child.stdout.readline())
    results = []
    try:
        for path, label in PATHS.items():
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.provider_memory",
                    "--path",
                    path,
                    "--port",
                    str(port),
                    "--streams",
                    str(args.streams),
                    "--rounds",
                    str(args.rounds),
                    "--warmup",
                    str(args.warmup),
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode:
                sys.exit(f"{path}: {done.stderr[-2000:]}")
            results.append((label, float(done.stdout.split()[-1])))
    finally:
        child.terminate()
        child.wait(timeout=5)
        child.stdout.close()
    print(f"anthropic stream memory per open stream ({args.streams} open, median of {args.rounds})")
    for label, kib in results:
        print(f"  {label:<52} {kib:7.1f} KiB")


if __name__ == "__main__":
    main()
