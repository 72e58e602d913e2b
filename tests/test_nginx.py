"""Real nginx with deploy/nginx.conf in front of the server.

The shipped file is used as it is, with only ports and file paths rewritten for a test
sandbox, so a change to a directive that matters (buffering, HTTP/1.1, timeouts) shows here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from server.commands.check import run_check
from tests.conftest import StartServer
from tests.support.server import ROOT, RunningServer, free_port, wait_until_answering
from tests.support.sse import Frame, bearer, json_request, request

pytestmark = pytest.mark.nginx

ALICE = bearer("tok-alice")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def sandboxed_config(upstream_port: int, listen_port: int, workdir: Path) -> str:
    text = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    replacements = [
        (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{upstream_port};"),
        (r"listen 8080;", f"listen 127.0.0.1:{listen_port};"),
        (r"pid [^;]+;", f"pid {workdir}/nginx.pid;"),
        (r"error_log [^;]+;", f"error_log {workdir}/error.log warn;"),
        (r"access_log [^;]+;", f"access_log {workdir}/access.log;"),
        (r"(\w+_temp_path) /var/lib/nginx/(\w+);", rf"\1 {workdir}/\2;"),
    ]
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text)
        assert count, f"deploy/nginx.conf no longer has {pattern!r}"
    return text


# A buffering proxy: nginx told to buffer and to ignore the X-Accel-Buffering header with
# which sluice asks every proxy not to, speaking nginx's default HTTP/1.0 to the upstream.
# (Over HTTP/1.1 nginx reads the upstream's chunks and passes each whole one on even with
# buffering on; over HTTP/1.0 there are no chunks, and it holds the body until its buffers
# fill or the response ends.)
BUFFERING = [
    (
        "proxy_buffering off;",
        "proxy_buffering on;\n            proxy_ignore_headers X-Accel-Buffering;",
    ),
    ("proxy_http_version 1.1;", "proxy_http_version 1.0;"),
]
# Buffering on, but HTTP/1.1 as the shipped file has it.
BUFFERING_HTTP11 = BUFFERING[:1]
# What a compressing proxy does: gzip on event streams too.
COMPRESSING = [("gzip_types application/json", "gzip_types text/event-stream application/json")]


def start_nginx(
    start_server: StartServer,
    tmp_path: Path,
    changes: Sequence[tuple[str, str]] = (),
) -> Iterator[tuple[RunningServer, str]]:
    server = start_server(
        {
            "SLUICE_LLM__DEMO__WORDS_PER_SECOND": "4",
            "SLUICE_STREAM__HEARTBEAT_SECONDS": "0.1",
            "SLUICE_SERVER__TRUST_PROXY": "true",
        }
    )
    port = free_port()
    config = tmp_path / "nginx.conf"
    text = sandboxed_config(server.port, port, tmp_path)
    for old, new in changes:
        assert old in text, f"deploy/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    config.write_text(text, encoding="utf-8")
    check = subprocess.run(
        [NGINX, "-t", "-c", str(config), "-p", str(tmp_path)], capture_output=True
    )
    assert check.returncode == 0, check.stderr.decode()
    nginx = subprocess.Popen(
        [NGINX, "-c", str(config), "-p", str(tmp_path), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_answering(url, nginx, timeout=10, what="nginx")  # answers through to sluice
    yield server, url
    nginx.terminate()
    nginx.wait(timeout=10)
    assert nginx.stderr is not None
    nginx.stderr.close()


@pytest.fixture
def proxied(start_server: StartServer, tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    yield from start_nginx(start_server, tmp_path)


@pytest.fixture
def buffering(start_server: StartServer, tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    yield from start_nginx(start_server, tmp_path, BUFFERING)


@pytest.fixture
def buffering_http11(
    start_server: StartServer, tmp_path: Path
) -> Iterator[tuple[RunningServer, str]]:
    yield from start_nginx(start_server, tmp_path, BUFFERING_HTTP11)


@pytest.fixture
def compressing(start_server: StartServer, tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    yield from start_nginx(start_server, tmp_path, COMPRESSING)


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
