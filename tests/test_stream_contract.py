"""The event stream as docs/api.md gives it, read from the real server."""

from __future__ import annotations

from tests.conftest import StartServer
from tests.support.server import RunningServer
from tests.support.sse import bearer, events, json_request, parse_frames, request

ALICE = bearer("tok-alice")
TERMINAL = {"complete", "error"}


def start_stream(server: RunningServer, message: str, **body: str):  # type: ignore[no-untyped-def]
    return request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": message, **body},
        headers=ALICE,
    )


def test_headers_and_framing(demo_server: RunningServer) -> None:
    response = start_stream(demo_server, "Find me a restaurant in Tokyo")
    assert response.status == 200
    headers = response.headers
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache, no-transform"
    assert headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in headers
    stream_id = headers["X-Stream-Id"]
    assert stream_id

    raw = response.body()
    frames = parse_frames(raw)
    assert raw.startswith(b"retry: 2000\n\n")
    assert frames[0].retry == 2000 and frames[0].data is None
    data_frames = frames[1:]
    assert [f.id for f in data_frames] == list(range(1, len(data_frames) + 1))
    for frame in data_frames:
        assert frame.data is not None and frame.event == frame.data["type"]
    kinds = [f.event for f in data_frames]
    assert sum(kind in TERMINAL for kind in kinds) == 1 and kinds[-1] == "complete"

    evs = events(data_frames)
    statuses = [e for e in evs if e["type"] == "status"]
    assert statuses[0]["stream_id"] == stream_id
    assert all("stream_id" not in s for s in statuses[1:])
    progress = [s["progress"] for s in statuses]
    assert progress == sorted(progress) and progress[0] == 0 and progress[-1] == 100
    stages = [s["stage"] for s in statuses if s["state"] == "start"]
    assert stages == ["rate_limit", "session", "intent", "context", "llm"]  # usage is quiet

    complete = evs[-1]
    chunks = [e["content"] for e in evs if e["type"] == "chunk"]
    assert len(chunks) > 5
    assert "".join(chunks) == complete["message"]
    assert complete["provider"] == "demo" and complete["mode"] == "stream"
    assert complete["fallback"] is False and complete["suggestions"]
    assert set(complete) >= {"session_id", "model", "usage"}


def test_events_arrive_while_the_turn_is_still_running(start_server: StartServer) -> None:
    """The first status and the first chunk reach the client before the answer exists
    in the store, i.e. events are flushed as they happen, not all at the end."""
    server = start_server({"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "15"})
    response = start_stream(server, "hello there", session_id="live1")

    def saved_roles() -> list[str]:
        status, data, _ = json_request(
            server.url, "GET", "/api/sessions/alice/live1", headers=ALICE
        )
        return [m["role"] for m in data["messages"]] if status == 200 and data else []

    first = response.until(lambda f: f.data is not None)
    assert first.event == "status" and first.id == 1
    response.until(lambda f: f.event == "chunk")
    assert saved_roles() == ["user"]  # the user's words are saved; the answer is not yet
    rest = response.read_all()
    assert rest[-1].event == "complete"
    assert saved_roles() == ["user", "assistant"]


def test_json_endpoint_runs_the_same_pipeline(demo_server: RunningServer) -> None:
    status, data, headers = json_request(
        demo_server.url,
        "POST",
        "/api/conversation/alice",
        body={"message": "Find me a restaurant in Tokyo"},
        headers=ALICE,
    )
    assert status == 200 and data is not None
    assert set(data) == {
        "message",
        "suggestions",
        "session_id",
        "provider",
        "model",
        "fallback",
        "finish_reason",  # why it ended: "length" when a cap cut it
    }
    assert "Tokyo" in data["message"] and data["provider"] == "demo"
    assert data["fallback"] is False and data["suggestions"]
    assert headers["X-Stream-Id"]


def test_stream_survives_multibyte_text(demo_server: RunningServer) -> None:
    message = "مرحبا 👩🏽‍💻 — line\nbreak"
    frames = start_stream(demo_server, message).read_all()
    complete = frames[-1].data
    assert complete is not None and message in complete["message"]
