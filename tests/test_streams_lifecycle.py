"""Heartbeats, first byte, slow readers, limits and graceful shutdown."""

from __future__ import annotations

import gzip
import signal
import socket
from typing import Any

import pytest

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes, openai_env
from tests.support.server import RunningServer
from tests.support.sse import FrameParser, bearer, json_request, request, start_stream

ALICE = bearer("tok-alice")


def openai_server(start_server: StartServer, fakes: ThreadedFakes, **env: str) -> RunningServer:
    return start_server(openai_env(fakes, **env))


def test_heartbeats_while_quiet_and_never_inside_an_event(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(text=["Thinking", " more"], hang_at=1)
    server = openai_server(start_server, fakes, SLUICE_STREAM__HEARTBEAT_SECONDS="0.2")
    stream = start_stream(server.url, "Go")
    stream_id = stream.headers["X-Stream-Id"]
    stream.until(lambda f: f.event == "chunk")
    pings = [stream.until(lambda f: f.data is None and f.retry is None) for _ in range(3)]
    for ping in pings:
        assert ping.comments == ["ping"] and ping.id is None and ping.event is None
    json_request(server.url, "POST", f"/api/streams/{stream_id}/cancel", headers=ALICE)
    frames = stream.read_all()  # the strict parser checked every frame on the way
    assert frames[-1].event == "error"
    ids = [f.id for f in frames if f.id is not None]
    assert ids == list(range(1, len(ids) + 1))  # pings took no ids


def test_padding_after_retry_for_buffering_proxies(start_server: StartServer) -> None:
    server = start_server({"SLUICE_STREAM__PADDING_BYTES": "2048"})
    raw = start_stream(server.url, "Go").body()
    assert raw.startswith(b"retry: 2000\n\n: ")
    padding_end = raw.index(b"\n\n", len(b"retry: 2000\n\n")) + 2
    assert padding_end - len(b"retry: 2000\n\n") == 2048
    assert raw[padding_end:].startswith(b"id: 1\n")


def test_event_streams_are_never_compressed(demo_server: RunningServer) -> None:
    gzip_ok = {"Accept-Encoding": "gzip"}
    stream = request(
        demo_server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": "hello"},
        headers={**ALICE, **gzip_ok},
    )
    assert "Content-Encoding" not in stream.headers
    assert stream.body().startswith(b"retry:")
    # ...while other responses are, so the transform is on and really excludes streams.
    script = request(
        demo_server.url, "GET", "/static/vendor/dompurify/purify.es.mjs", headers=gzip_ok
    )
    assert script.headers["Content-Encoding"] == "gzip"
    assert b"DOMPurify" in gzip.decompress(script.body())


def test_a_slow_reader_is_dropped_while_a_fast_one_keeps_pace(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    # About 6 MB of answer: far more than the socket buffers of a reader that reads nothing.
    fakes.openai.default = Reply(text=["x" * 4000 + " "] * 1500, usage=False)
    server = openai_server(
        start_server,
        fakes,
        SLUICE_STREAM__SEND_TIMEOUT_SECONDS="2",
        SLUICE_LLM__MAX_ANSWER_CHARS="10000000",
    )
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = b'{"message": "big", "session_id": "big"}'
    slow.sendall(
        b"POST /api/conversation-stream/alice HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer tok-alice\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    head = slow.recv(1024)
    stream_id = head.split(b"X-Stream-Id: ")[1].split(b"\r\n")[0].decode()

    # A fast reader of the same turn gets every event while the slow one sits there.
    fast = request(server.url, "GET", f"/api/streams/{stream_id}", headers=ALICE)
    frames = fast.read_all()
    assert frames[-1].event == "complete"
    assert len("".join(f.data["content"] for f in frames if f.event == "chunk")) == 4001 * 1500  # type: ignore[index]
    assert not [line for line in server.lines if line.get("event") == "slow_reader_dropped"]

    server.wait_for_log("slow_reader_dropped", timeout=15)
    # Dropped with a reset: what the kernel still held for it is thrown away, not delivered.
    slow.settimeout(10)
    received = 0
    with pytest.raises(ConnectionResetError):
        while chunk := slow.recv(1 << 20):
            received += len(chunk)
    slow.close()
    assert received < 4001 * 1500  # it never got the whole answer


def test_a_turn_cannot_outlive_max_duration(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(text=["Still ", "going"], hang_at=1)
    server = openai_server(start_server, fakes, SLUICE_STREAM__MAX_DURATION_SECONDS="1")
    frames = start_stream(server.url, "Go", session_id="slow").read_all()
    end = frames[-1].data
    assert end is not None and end["code"] == "timeout" and end["retryable"] is True
    fakes.run(fakes.openai.wait_closed(1, within=1.0))  # and the upstream was let go
    _, data, _ = json_request(server.url, "GET", "/api/sessions/alice/slow", headers=ALICE)
    assert data is not None and data["messages"][-1]["status"] == "incomplete"


def test_concurrent_answers_per_user_are_capped(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(text=["Hold ", "on"], hang_at=1)
    server = openai_server(start_server, fakes, SLUICE_LIMITS__MAX_STREAMS_PER_USER="1")
    first = start_stream(server.url, "Go")
    first.until(lambda f: f.event == "chunk")
    second = start_stream(server.url, "Go").read_all()
    end = second[-1].data
    assert end is not None and end["code"] == "too_many_streams" and end["retryable"] is True
    bob = request(
        server.url,
        "POST",
        "/api/conversation-stream/bob",
        body={"message": "hi"},
        headers=bearer("tok-bob"),
    )
    bob.until(lambda f: f.event == "chunk")  # other users are not affected


def read_until_chunk(stream: Any) -> None:
    stream.until(lambda f: f.event == "chunk")


def test_sigterm_lets_short_answers_finish_and_saves_the_rest(start_server: StartServer) -> None:
    # Answers take ~9 s at 5 words/s; the grace period is 1 s: they are ended, not lost.
    server = start_server(
        {"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "5", "SLUICE_SERVER__SHUTDOWN_GRACE_SECONDS": "1"}
    )
    streams = [start_stream(server.url, f"message {i}", session_id=f"s{i}") for i in range(3)]
    for stream in streams:
        read_until_chunk(stream)
    server.process.send_signal(signal.SIGTERM)
    for stream in streams:
        end = stream.read_all()[-1].data
        assert end is not None and end["type"] == "error"
        assert end["retryable"] is True and "restarting" in end["message"]
    assert server.process.wait(timeout=20) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2)

    again = start_server(data_dir=server.data_dir)
    for i in range(3):
        _, data, _ = json_request(again.url, "GET", f"/api/sessions/alice/s{i}", headers=ALICE)
        assert data is not None
        user, answer = data["messages"]
        assert user["content"] == f"message {i}"
        assert answer["status"] == "incomplete" and answer["content"].startswith("*Demo")


def test_sigterm_waits_for_answers_within_the_grace_period(start_server: StartServer) -> None:
    server = start_server(
        {"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "40", "SLUICE_SERVER__SHUTDOWN_GRACE_SECONDS": "20"}
    )
    stream = start_stream(server.url, "Go", session_id="done")
    read_until_chunk(stream)
    server.process.send_signal(signal.SIGTERM)
    assert stream.read_all()[-1].event == "complete"
    assert server.process.wait(timeout=20) == 0
    assert "draining_turns" in server.output()


def test_first_bytes_leave_before_the_model_answers(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """Headers, retry and the first status leave at once, even while the upstream hangs
    before sending anything (a PaaS router drops a response with no first byte in 30 s)."""
    fakes.openai.default = Reply(hang_before_headers=True)
    server = openai_server(start_server, fakes, SLUICE_LLM__FIRST_TOKEN_TIMEOUT_SECONDS="30")
    stream = start_stream(server.url, "Go")
    assert stream.status == 200
    parser = FrameParser()
    first = parser.feed(stream.response.read1(65536))
    while not any(f.data for f in first):
        first += parser.feed(stream.response.read1(65536))
    assert first[0].retry == 2000
    assert fakes.openai.requests == [] or fakes.openai.closed == 0  # the upstream said nothing
    stream.close()
