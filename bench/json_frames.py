"""Encoding event-stream frames: the standard library's kept C encoder against orjson.

    .venv/bin/python -m bench.json_frames [--frames 20000] [--rounds 7]

Each round encodes the same frames both ways and reports nanoseconds per frame; the table gives
the median of the rounds and orjson's time as a ratio of ours (below 1: orjson is faster).

* ours: ``server.core.sse.encode_chunk`` and ``encode_event``, which run on
  ``server/internals/json_internals.py`` (one C encoder made once, ``encode_basestring`` for a
  chunk's text) and then escape U+0085, U+2028 and U+2029, which the contract requires;
* orjson: the same frame built around ``orjson.dumps`` (bytes), with the same escapes as a
  post-pass on the UTF-8 bytes, since orjson writes those three characters raw.

Before timing, every frame is checked to come out byte for byte the same both ways: a figure
for an encoder that writes something else would mean nothing. Values orjson refuses or writes
differently (integers beyond 64 bits, ``NaN``, non-string keys) are listed, not timed.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from server.core.sse import CHUNK_HEAD, CHUNK_TAIL, encode_chunk, encode_event

# What an answer's chunks look like: a few characters to a few words, some of them not ASCII.
CHUNK_TEXTS = [
    "Hel",
    "lo",
    ", how",
    " can I help",
    " you today?",
    "\n\n",
    "Here is **one** thing:",
    " مرحبا",
    " 日本語の",
    " 👩🏽‍💻",
    ' "quoted"',
    " line\u2028separator",
]

OTHER_EVENTS: list[dict[str, Any]] = [
    {"type": "status", "stage": "llm", "state": "start", "progress": 60, "stream_id": "st_1a2b"},
    {"type": "status", "stage": "session", "state": "done", "progress": 20},
    {
        "type": "context",
        "session_id": "s_9f8e7d",
        "intent": {"name": "find_restaurant", "confidence": 0.92, "entities": {"loc": "Tokyo"}},
        "context": {"last_intent": "find_restaurant"},
    },
    {
        "type": "complete",
        "message": "Here is one thing: a sushi place near Shibuya.\u2028 مرحبا " * 8,
        "session_id": "s_9f8e7d",
        "suggestions": ["What about sushi?", "Something vegetarian?"],
        "provider": "openai",
        "model": "gpt-4o-mini",
        "mode": "stream",
        "fallback": False,
        "usage": {"input_tokens": 812, "output_tokens": 96, "total_tokens": 908},
    },
    {"type": "error", "code": "rate_limited", "message": "Slow down.", "retryable": True},
]

# orjson writes these three characters as raw UTF-8; the contract needs them escaped.
_SPLITTERS = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)
_SPLITTER = re.compile(rb"\xc2\x85|\xe2\x80[\xa8\xa9]")
_HEAD = CHUNK_HEAD.encode()
_TAIL = CHUNK_TAIL.encode()


def _escape(data: bytes) -> bytes:
    # The fastest checks found for bytes: ``isascii`` for the common frame, one regex search
    # for the rest (``b"\xe2\x80\xa8" in data`` took 0.45 µs even on five bytes).
    if data.isascii() or _SPLITTER.search(data) is None:
        return data
    for raw, escaped in _SPLITTERS:
        data = data.replace(raw, escaped)
    return data


def orjson_chunk(event_id: int, content: str) -> bytes:
    return b"id: %d%s%s%s" % (event_id, _HEAD, _escape(orjson.dumps(content)), _TAIL)


def orjson_event(event_id: int, event: str, data: dict[str, Any]) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event_id,
        event.encode(),
        _escape(orjson.dumps(data)),
    )


def _check_identical() -> None:
    pairs = [(encode_chunk(i, t), orjson_chunk(i, t)) for i, t in enumerate(CHUNK_TEXTS)]
    pairs += [
        (encode_event(i, d["type"], d), orjson_event(i, d["type"], d))
        for i, d in enumerate(OTHER_EVENTS)
    ]
    for ours, theirs in pairs:
        if ours != theirs:
            raise SystemExit(f"the encoders differ:\n  ours   {ours!r}\n  orjson {theirs!r}")


def _differences() -> list[str]:
    """What orjson does not write as the contract's encoder (``json.dumps``) does."""
    lines = []
    for value in ({"n": 2**70}, {"x": float("nan")}, {1: "int key"}):
        ours = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        try:
            theirs = orjson.dumps(value).decode()
        except TypeError as error:
            theirs = f"TypeError: {error}"
        lines.append(f"  {value!r}: json {ours}  orjson {theirs}")
    return lines


def _per_frame_ns(encode: Callable[[int], object], frames: int) -> float:
    start = time.perf_counter_ns()
    for i in range(frames):
        encode(i)
    return (time.perf_counter_ns() - start) / frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.json_frames", description=__doc__)
    parser.add_argument("--frames", type=int, default=20000, help="frames per case and round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    _check_identical()

    texts, n_texts = CHUNK_TEXTS, len(CHUNK_TEXTS)
    small = [e for e in OTHER_EVENTS if e["type"] != "complete"]
    n_small = len(small)
    (complete,) = (e for e in OTHER_EVENTS if e["type"] == "complete")
    cases: dict[str, tuple[Callable[[int], object], Callable[[int], object]]] = {
        "chunk": (
            lambda i: encode_chunk(i, texts[i % n_texts]),
            lambda i: orjson_chunk(i, texts[i % n_texts]),
        ),
        "status etc.": (
            lambda i: encode_event(i, small[i % n_small]["type"], small[i % n_small]),
            lambda i: orjson_event(i, small[i % n_small]["type"], small[i % n_small]),
        ),
        "complete": (
            lambda i: encode_event(i, "complete", complete),
            lambda i: orjson_event(i, "complete", complete),
        ),
    }
    print(f"{args.frames} frames x {args.rounds} rounds, ns per frame, median [min-max]")
    print(f"{'case':<14}{'ours':>22}{'orjson':>22}{'orjson/ours':>13}")
    for name, (ours, theirs) in cases.items():
        a: list[float] = []
        b: list[float] = []
        for _ in range(args.rounds):  # alternated, so a busy moment hits both alike
            a.append(_per_frame_ns(ours, args.frames))
            b.append(_per_frame_ns(theirs, args.frames))
        ma, mb = statistics.median(a), statistics.median(b)
        print(
            f"{name:<14}{f'{ma:.0f} [{min(a):.0f}-{max(a):.0f}]':>22}"
            f"{f'{mb:.0f} [{min(b):.0f}-{max(b):.0f}]':>22}{mb / ma:>13.2f}"
        )
    print("identical output on every frame above; where orjson differs from json.dumps:")
    print("\n".join(_differences()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
