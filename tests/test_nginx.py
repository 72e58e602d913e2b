"""Real nginx with deploy/nginx.conf in front of the server.

The shipped file is used as it is, with only ports and file paths rewritten for a test
sandbox, so a change to a directive that matters (buffering, HTTP/1.1, timeouts) shows here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.commands.check import run_check
from tests.conftest import StartServer
from tests.support.nginx import BUFFERING, BUFFERING_HTTP11, COMPRESSING, nginx_in_front
from tests.support.server import RunningServer
from tests.support.sse import Frame, bearer, json_request, request

pytestmark = pytest.mark.nginx

ALICE = bearer("tok-alice")


@pytest.fixture
def proxied(start_server: StartServer, tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    with nginx_in_front(start_server, tmp_path) as running:
        yield running


@pytest.fixture
def buffering(start_server: StartServer, tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    with nginx_in_front(start_server, tmp_path, BUFFERING) as running:
        yield running


@pytest.fixture
def buffering_http11(
    start_server: StartServer, tmp_path: Path
) -> Iterator[tuple[RunningServer, str]]:
    with nginx_in_front(start_server, tmp_path, BUFFERING_HTTP11) as running:
        yield running


@pytest.fixture
def compressing(start_server: StartServer, tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    with nginx_in_front(start_server, tmp_path, COMPRESSING) as running:
        yield running


def test_the_connection_check_passes_the_shipped_config(
    proxied: tuple[RunningServer, str],
) -> None:
    _, url = proxied
    report = run_check(url, events=6, interval_ms=300)
    assert report.verdict == "streaming", report.lines
    assert report.pings_received == report.pings_sent == 5


def test_the_connection_check_finds_a_buffering_proxy_and_measures_the_delay(
    buffering: tuple[RunningServer, str],
) -> None:
    _, url = buffering
    report = run_check(url, events=6, interval_ms=300)
    assert report.verdict == "buffered", report.lines
    # Held until the response ended: the first event came about 1.5 s late.
    assert 1200 <= report.max_delay_ms <= 3000, report.max_delay_ms
    assert report.bursts == 1
    assert "buffers the stream" in report.lines[0]


def test_buffering_on_over_http11_still_passes_events_one_by_one(
    buffering_http11: tuple[RunningServer, str],
) -> None:
    """What docs/deploy.md says about nginx: with HTTP/1.1 to sluice, even a location that
    buffers passes each chunk on; it is HTTP/1.0 (nginx's default) that holds them."""
    _, url = buffering_http11
    report = run_check(url, events=6, interval_ms=300)
    assert report.verdict == "streaming", report.lines


def test_the_connection_check_finds_a_compressing_proxy(
    compressing: tuple[RunningServer, str],
) -> None:
    _, url = compressing
    report = run_check(url, events=4, interval_ms=300)
    assert report.verdict == "compressed", report.lines
    assert "gzip" in report.lines[0]


def test_chunks_and_heartbeats_pass_one_by_one(proxied: tuple[RunningServer, str]) -> None:
    _, url = proxied
    stream = request(
        url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": "through the proxy", "session_id": "px"},
        headers=ALICE,
    )
    assert stream.status == 200 and "Content-Encoding" not in stream.headers
    chunks: list[Frame] = []
    pings = 0
    for frame in stream:
        if frame.event == "chunk":
            chunks.append(frame)
            if len(chunks) == 3:
                break
        elif frame.comments == ["ping"]:
            pings += 1
    # Three chunks in while the answer is still being written: nothing waits for the end.
    _, data, _ = json_request(url, "GET", "/api/sessions/alice/px", headers=ALICE)
    assert data is not None and [m["role"] for m in data["messages"]] == ["user"]
    assert pings >= 1  # heartbeats between chunks came through too
    rest = stream.read_all()
    assert rest[-1].event == "complete"


def test_resume_through_the_proxy(proxied: tuple[RunningServer, str]) -> None:
    _, url = proxied
    stream = request(
        url, "POST", "/api/conversation-stream/alice", body={"message": "hi"}, headers=ALICE
    )
    stream_id = stream.headers["X-Stream-Id"]
    first = stream.until(lambda f: f.event == "chunk")
    stream.close()
    resumed = request(
        url, "GET", f"/api/streams/{stream_id}", headers={**ALICE, "Last-Event-ID": str(first.id)}
    )
    frames = [f for f in resumed.read_all() if f.data is not None]
    assert frames[0].id == (first.id or 0) + 1
    assert frames[-1].event == "complete"
    ids = [f.id for f in frames]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_secure_cookie_behind_https_proxy(proxied: tuple[RunningServer, str]) -> None:
    """nginx sets X-Forwarded-Proto from its scheme; with https in front, cookies are Secure."""
    _, url = proxied
    plain = request(url, "GET", "/")
    plain.body()
    assert "Secure" not in plain.headers["Set-Cookie"]  # nginx here listens on plain http
