"""Where a turn's time goes before its first chunk: ``python -m bench.timeline``.

Starts the fake upstream and sluice as the runner does, with sluice's server wrapped (``--serve``,
this module run as the server) so that it stamps each step of a turn with
``time.perf_counter_ns()``: the connection accepted, the request read, the turn started, each
status event, the session's store calls, the provider's request through the SDK and the
transport, the upstream's answer, the first chunk appended, written and flushed. It runs the
latency workload (one stream at a time, so the stamps of one turn never mix with another's)
and prints the median of each step since the connection was accepted, in order.

The wrappers cost a few microseconds each, and a busy machine stretches every step: read the
differences between steps, and compare two commits in the same minute.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import inspect
import json
import os
import runpy
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

_Marks = dict[str, int]
_TURNS: list[_Marks] = []


def _mark(name: str) -> None:
    if _TURNS and name not in _TURNS[-1]:
        _TURNS[-1][name] = time.perf_counter_ns()


def _wrap(owner: Any, attr: str, before: str, after: str | None = None) -> None:
    """Stamp ``before`` as ``owner.attr`` is called and ``after`` when it returns (awaited,
    for a coroutine function)."""
    original = getattr(owner, attr)
    if _is_async(original):

        @functools.wraps(original)
        async def stamped_async(*args: Any, **kwargs: Any) -> Any:
            _mark(before)
            result = await original(*args, **kwargs)
            if after:
                _mark(after)
            return result

        setattr(owner, attr, stamped_async)
        return

    @functools.wraps(original)
    def stamped(*args: Any, **kwargs: Any) -> Any:
        _mark(before)
        result = original(*args, **kwargs)
        if after:
            _mark(after)
        return result

    setattr(owner, attr, stamped)


def _is_async(function: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(function)


def _instrument() -> None:
    import aiohttp
    import openai._base_client
    import tornado.httpserver
    import tornado.web

    import plugins.session
    from server.core import pipeline, runner, streamlog
    from server.http import event_stream, streams
    from server.llm import transport
    from server.stores import sqlite

    handle_stream = tornado.httpserver.HTTPServer.handle_stream

    @functools.wraps(handle_stream)
    def accepted(self: Any, *args: Any, **kwargs: Any) -> Any:
        _TURNS.append({"accepted": time.perf_counter_ns()})
        return handle_stream(self, *args, **kwargs)

    tornado.httpserver.HTTPServer.handle_stream = accepted  # type: ignore[method-assign]
    _wrap(tornado.web._HandlerDelegate, "finish", "request read")
    _wrap(streams._TurnStarter, "start_turn", "handler: start turn")
    _wrap(runner.TurnRunner, "start", "runner: admit, log, task", "runner: started")
    store = sqlite.SQLiteSessionStore
    _wrap(store, "open_session", "sqlite: open session", "sqlite: session opened")
    _wrap(
        store,
        "open_with_message",
        "sqlite: open session, save user message",
        "sqlite: user message saved",
    )
    _wrap(store, "messages", "sqlite: read history", "sqlite: history read")
    _wrap(store, "add_message", "sqlite: save user message", "sqlite: user message saved")
    _wrap(plugins.session.SessionStage, "_open", "session: open")
    _wrap(openai._base_client.AsyncAPIClient, "request", "sdk: request")
    _wrap(openai._base_client.BaseClient, "_build_request", "sdk: build", "sdk: built")
    _wrap(aiohttp.client_reqrep.ClientRequest, "send", "aiohttp: send", "aiohttp: sent")
    # aiohttp writes the request's bytes from a task of its own, started after ``send``.
    _wrap(aiohttp.http_writer.StreamWriter, "_write", "aiohttp: request written")
    _wrap(aiohttp.http_writer.StreamWriter, "_writelines", "aiohttp: request written")
    _wrap(
        transport.AiohttpTransport,
        "handle_async_request",
        "transport: request",
        "upstream: headers in",
    )
    _wrap(transport.UpstreamBody, "read", "upstream: read body", "upstream: body read")

    append = streamlog.StreamLog.append

    async def stamped_append(self: Any, event: Any) -> int:
        if event.type == "status":
            _mark(f"status {event.stage} {event.state}")
        else:
            _mark(f"append {event.type}")
        return await append(self, event)

    streamlog.StreamLog.append = stamped_append  # type: ignore[method-assign]
    write_frames = event_stream.EventStream._write_frames

    def stamped_write(self: Any, handler: Any, frames: list[bytes], telemetry: Any) -> None:
        joined = b"".join(frames)
        _mark("reader: write chunk" if b"event: chunk" in joined else "reader: write")
        write_frames(self, handler, frames, telemetry)

    event_stream.EventStream._write_frames = stamped_write  # type: ignore[method-assign]
    flush = event_stream.EventStream._flush

    async def stamped_flush(self: Any, handler: Any, timeout: float) -> None:
        await flush(self, handler, timeout)
        if _TURNS and "reader: write chunk" in _TURNS[-1]:
            _mark("reader: chunk flushed")

    event_stream.EventStream._flush = stamped_flush  # type: ignore[method-assign]
    stage_done = pipeline.Pipeline._stage_done

    def stamped_stage_done(self: Any, index: int, started: float) -> Any:
        _mark(f"stage {self.names[index]} done")
        return stage_done(self, index, started)

    pipeline.Pipeline._stage_done = stamped_stage_done  # type: ignore[method-assign]


def serve() -> None:
    """Run sluice instrumented; SIGUSR1 (and exit) writes the stamps to ``$BENCH_TIMELINE``."""
    _instrument()
    out = Path(os.environ["BENCH_TIMELINE"])

    def dump(*_: object) -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(_TURNS))
        tmp.rename(out)

    signal.signal(signal.SIGUSR1, dump)
    atexit.register(dump)
    sys.argv = ["server"]
    runpy.run_module("server", run_name="__main__")


def table(turns: list[_Marks]) -> str:
    """Median ms of each step since the connection was accepted, in order, with the step's
    own share (the difference from the step before)."""
    since: dict[str, list[float]] = {}
    for turn in turns:
        for name, at in turn.items():
            since.setdefault(name, []).append((at - turn["accepted"]) / 1e6)
    rows = sorted((statistics.median(values), name, len(values)) for name, values in since.items())
    lines = [f"{'ms since accept':>15}  {'step':>7}  what (turns seen)"]
    previous = 0.0
    for at, name, seen in rows:
        lines.append(f"{at:15.3f}  {at - previous:+7.3f}  {name} ({seen})")
        previous = at
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, default=200, help="turns, one at a time")
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return
    from bench.runner import WORKLOADS, Session, pin_runner, raise_nofile
    from bench.systems import PY, SYSTEMS

    raise_nofile()
    pin_runner()
    folder = Path(tempfile.mkdtemp(prefix="bench-timeline-"))
    out = folder / "timeline.json"
    os.environ["BENCH_TIMELINE"] = str(out)  # the server inherits it
    system = replace(SYSTEMS["sluice"], argv=lambda launch: [PY, "-m", "bench.timeline", "--serve"])
    workload = replace(WORKLOADS["latency"], total=args.total)
    with Session(system, workload, folder) as session:
        result = session.load(1, args.total)
        assert session.sampler is not None
        os.kill(session.sampler.root.pid, signal.SIGUSR1)
        for _ in range(100):
            if out.exists():
                break
            time.sleep(0.05)
    turns = json.loads(out.read_text())[-args.total :]  # the warm-up's turns left out
    print(
        f"{len(turns)} turns; client: first status p50 {result.get('ttfs_p50_ms')} ms,"
        f" first chunk p50 {result.get('ttfc_p50_ms')} ms\n"
    )
    print(table(turns))


if __name__ == "__main__":
    main()
