"""One very long answer, and what it costs everyone else: ``python -m bench.long_answer --mb 19``.

Starts the fake upstream and sluice (``--system sluice`` or ``sluice-pg``) with
``llm.max_answer_chars`` raised above the answer, streams one answer of ``--mb`` megabytes
(in tokens of ``--token-kib`` KiB, so the log stays within ``stream.max_log_events``), and
meanwhile, one after another, another user's short answers and ``GET /healthz``. It prints
how long the long turn took, the server's RSS growth, the saved answer's length and status,
and the medians of the other user's first-chunk time and of ``/healthz``, beside the same
figures measured before the long answer started.

The answer is saved as it streams (the session stage, every ``save_every_chars``): a save
whose cost grows with the answer so far makes the whole answer cost its square, and a save
that holds the event loop stalls every other stream on the process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.runner import Session, Workload
from bench.systems import SYSTEMS, Launch

_HEADERS = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
_PATH = "/api/conversation-stream/bench-user"


def _post_stream(port: int, message: str, timeout: float) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", _PATH, json.dumps({"message": message}), _HEADERS)
    response = conn.getresponse()
    assert response.status == 200, response.status
    return response


def _last_event(response: http.client.HTTPResponse) -> tuple[dict[str, Any], int]:
    """Reads the stream to its end: the terminal event's data and the bytes read."""
    last = b""
    size = 0
    while line := response.readline():
        size += len(line)
        if line.startswith(b"data: "):
            last = line
    data: dict[str, Any] = json.loads(last[6:])
    return data, size


def _first_chunk_s(port: int) -> float | None:
    """Seconds from sending a short turn to its first ``chunk`` event; None when the turn
    ended without one (an ``error`` event: a timeout, say)."""
    started = time.perf_counter()
    response = _post_stream(port, "short bench:tokens=3,interval_ms=0", 60)
    first = None
    while line := response.readline():
        if first is None and line == b"event: chunk\n":
            first = time.perf_counter() - started
    return first


def _healthz_s(port: int) -> float:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read()
    conn.close()
    return time.perf_counter() - started


def _saved_answer(port: int, session_id: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", f"/api/sessions/bench-user/{session_id}", headers=_HEADERS)
    body = json.loads(conn.getresponse().read())
    conn.close()
    answer: dict[str, Any] = body["messages"][-1]
    return answer


def _ms(values: Sequence[float | None]) -> str:
    ordered = sorted(v for v in values if v is not None)
    failed = len(values) - len(ordered)
    if not ordered:
        return f"none ({failed} failed)"
    return (
        f"median {statistics.median(ordered) * 1000:.0f} ms, "
        f"p90 {ordered[int(len(ordered) * 0.9)] * 1000:.0f} ms, "
        f"max {ordered[-1] * 1000:.0f} ms (n={len(ordered)}"
        + (f", {failed} without a chunk)" if failed else ")")
    )


def _probe(
    port: int, until: threading.Event, chunks: list[float | None], health: list[float]
) -> None:
    while not until.is_set():
        chunks.append(_first_chunk_s(port))
        health.append(_healthz_s(port))
        until.wait(0.05)  # a user, not a load generator: a short think time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.long_answer", description=__doc__)
    parser.add_argument("--mb", type=float, default=19.0, help="the long answer's size")
    parser.add_argument("--token-kib", type=int, default=16, help="size of each upstream token")
    parser.add_argument("--system", default="sluice", choices=("sluice", "sluice-pg"))
    parser.add_argument("--timeout", type=float, default=180.0, help="give up on the long turn")
    args = parser.parse_args(argv)

    pad = args.token_kib * 1024
    tokens = max(1, int(args.mb * 1_000_000 / pad))
    base = SYSTEMS[args.system]

    def env(launch: Launch) -> dict[str, str]:
        return {**base.extra_env(launch), "SLUICE_LLM__MAX_ANSWER_CHARS": "100000000"}

    system = replace(base, extra_env=env)
    workload = Workload("long_answer", tokens=3, interval_ms=0, warmup=True)
    with Session(system, workload, Path(tempfile.mkdtemp(prefix="bench-long-"))) as session:
        port = session.port
        sampler = session.sampler
        assert sampler is not None
        quiet_chunks = [_first_chunk_s(port) for _ in range(20)]
        quiet_health = [_healthz_s(port) for _ in range(20)]
        rss_before = sampler.rss()

        done = threading.Event()
        chunks: list[float | None] = []
        health: list[float] = []
        prober = threading.Thread(target=_probe, args=(port, done, chunks, health))
        started = time.perf_counter()
        response = _post_stream(
            port, f"long bench:tokens={tokens},interval_ms=0,pad={pad}", args.timeout
        )
        prober.start()
        peak = rss_before
        outcome: dict[str, Any] = {}

        def read() -> None:
            outcome["terminal"], outcome["bytes"] = _last_event(response)

        reader = threading.Thread(target=read)
        reader.start()
        while reader.is_alive() and time.perf_counter() - started < args.timeout:
            peak = max(peak, sampler.rss())
            reader.join(0.1)
        took = time.perf_counter() - started
        done.set()
        prober.join()
        terminal = outcome.get("terminal", {})
        print(f"system {args.system}: one answer of {tokens} x {pad} chars ({args.mb} MB)")
        if reader.is_alive():
            print(f"long turn: NOT finished after {args.timeout:.0f} s")
        else:
            print(
                f"long turn: {took:.1f} s, {outcome['bytes'] / 1e6:.1f} MB of events, "
                f"ended with {terminal.get('type')} {terminal.get('code', '')}".rstrip()
            )
        print(f"server RSS growth (peak during the turn): {(peak - rss_before) / 2**20:.0f} MiB")
        if terminal.get("session_id"):
            saved = _saved_answer(port, terminal["session_id"])
            print(f"saved answer: {len(saved['content'])} chars, {saved['status']}")
        print(f"other user's first chunk, quiet:  {_ms(quiet_chunks)}")
        print(f"other user's first chunk, during: {_ms(chunks)}")
        print(f"/healthz, quiet:  {_ms(quiet_health)}")
        print(f"/healthz, during: {_ms(health)}")


if __name__ == "__main__":
    main()
