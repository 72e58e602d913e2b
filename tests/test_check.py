"""The connection check: ``GET /api/check-stream`` and ``python -m server check URL``.

The verdict logic is fed made-up timings (what a buffering or compressing proxy does to
arrival times); the endpoint and the command run for real against the server. Real nginx with
buffering on and off is in ``tests/test_nginx.py``.
"""

from __future__ import annotations

import os

from server.commands.check import Arrival, analyse, run_check
from tests.support.server import RunningServer, run_command
from tests.support.sse import events, request


def _steady(count: int, interval: float, lag: float = 3.0) -> list[Arrival]:
    return [Arrival(i + 1, i * interval, i * interval + lag) for i in range(count)]


def test_events_arriving_as_sent_stream() -> None:
    report = analyse(
        _steady(10, 500),
        expected=10,
        interval_ms=500,
        encoding=None,
        finished=True,
        pings_sent=9,
        pings_received=9,
    )
    assert report.verdict == "streaming" and report.ok
    assert report.bursts == 10 and report.max_delay_ms == 0
    assert any("Heartbeats pass: 9 of 9" in line for line in report.lines)


def test_events_held_back_and_released_together_are_buffered_with_the_delay() -> None:
    # A proxy holding everything until the response ends: all ten arrive at 4.6 s.
    arrivals = [Arrival(i + 1, i * 500, 4600) for i in range(10)]
    report = analyse(
        arrivals,
        expected=10,
        interval_ms=500,
        encoding=None,
        finished=True,
        pings_sent=9,
        pings_received=9,
    )
    assert report.verdict == "buffered" and not report.ok
    assert report.bursts == 1
    assert report.max_delay_ms == 4500
    assert "one burst" in report.lines[0] and "4.5 s" in report.lines[0]
    assert "docs/deploy.md" in report.lines[-1]


def test_compressed_streams_are_named_as_such() -> None:
    report = analyse(
        _steady(5, 200),
        expected=5,
        interval_ms=200,
        encoding="gzip",
        finished=True,
        pings_sent=4,
        pings_received=4,
    )
    assert report.verdict == "compressed"
    assert "Content-Encoding: gzip" in report.lines[0]


def test_lost_heartbeats_and_cut_streams_are_reported() -> None:
    report = analyse(
        _steady(3, 500),
        expected=10,
        interval_ms=500,
        encoding=None,
        finished=False,
        pings_sent=None,
        pings_received=0,
    )
    assert report.verdict == "cut" and "3 of 10 events" in report.lines[0]
    report = analyse(
        _steady(4, 500),
        expected=4,
        interval_ms=500,
        encoding=None,
        finished=True,
        pings_sent=3,
        pings_received=0,
    )
    assert report.verdict == "streaming"
    assert any(line.startswith("Heartbeats do not pass") for line in report.lines)


def test_the_endpoint_sends_timed_ticks_and_pings(demo_server: RunningServer) -> None:
    response = request(demo_server.url, "GET", "/api/check-stream?events=4&interval_ms=100")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in response.headers
    frames = response.read_all()
    data = events(frames)
    assert [d["type"] for d in data] == ["tick"] * 4 + ["done"]
    assert [f.id for f in frames if f.data] == [1, 2, 3, 4, 5]
    # The server keeps a fixed cadence from its start: each tick at its time, never before
    # it, and a late one followed by the next on time (so no lower bound between two). The
    # upper bound is loose: on a loaded machine the server's loop may run a little late.
    sent = [d["elapsed_ms"] for d in data[:4]]
    assert all(i * 100 <= at < i * 100 + 1000 for i, at in enumerate(sent)), sent
    pings = sum(f.comments.count("ping") for f in frames)
    assert pings == data[-1]["pings"] == 3


def test_run_check_and_the_command_say_a_direct_connection_streams(
    demo_server: RunningServer,
) -> None:
    report = run_check(demo_server.url, events=4, interval_ms=100)
    assert report.verdict == "streaming", report.lines
    assert report.pings_received == report.pings_sent == 3
    done = run_command(["check", demo_server.url, "--events", "3"], os.environ, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verdict: streaming" in done.stdout
    assert "Events arrive at once" in done.stdout


def test_the_command_fails_plainly_on_something_that_is_not_sluice(
    demo_server: RunningServer,
) -> None:
    done = run_command(["check", demo_server.url + "/nowhere"], os.environ, timeout=60)
    assert done.returncode == 1
    assert "Verdict: failed" in done.stdout and "404" in done.stdout
