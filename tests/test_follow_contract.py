"""What the page relies on to follow an answer being written elsewhere (docs/api.md):
``active_turn`` while it is written, 409 ``turn_in_progress`` naming it in the body *and* the
``X-Stream-Id`` header, its log readable from the first event, and every event stream telling
its heartbeat interval (``X-Heartbeat-Seconds``) for the page's stall watchdog."""

from __future__ import annotations

import json

from tests.conftest import StartServer
from tests.support.sse import bearer, events, json_request, request

ALICE = bearer("tok-alice")


def test_a_second_message_is_refused_with_the_answer_to_follow(start_server: StartServer) -> None:
    server = start_server(
        {"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "20", "SLUICE_STREAM__HEARTBEAT_SECONDS": "2.5"}
    )
    first = request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": "Find me a restaurant in Tokyo", "session_id": "s_follow"},
        headers=ALICE,
    )
    assert first.headers["X-Heartbeat-Seconds"] == "2.5"
    stream_id = first.headers["X-Stream-Id"]
    first.until(lambda f: f.event == "chunk")

    status, session, _ = json_request(
        server.url, "GET", "/api/sessions/alice/s_follow", headers=ALICE
    )
    assert status == 200 and session is not None
    assert session["active_turn"]["stream_id"] == stream_id
    assert [m["role"] for m in session["messages"]] == ["user"]  # the question is kept already

    second = request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": "Another one", "session_id": "s_follow"},
        headers=ALICE,
    )
    assert second.status == 409
    assert second.headers["X-Stream-Id"] == stream_id
    error = json.loads(second.body())["error"]
    assert error["code"] == "turn_in_progress" and error["stream_id"] == stream_id

    # Following it from the first event: the whole answer, as the POST's reader saw it.
    follow = request(server.url, "GET", f"/api/streams/{stream_id}", headers=ALICE)
    assert follow.headers["X-Heartbeat-Seconds"] == "2.5"
    followed = events(follow.read_all())
    original = events(first.read_all())  # the frames read so far and the rest
    assert followed == original and followed[-1]["type"] == "complete"

    status, session, _ = json_request(
        server.url, "GET", "/api/sessions/alice/s_follow", headers=ALICE
    )
    assert session is not None and session["active_turn"] is None
    assert [m["role"] for m in session["messages"]] == ["user", "assistant"]
