"""Sessions: history saved in SQLite, served by /api/sessions, surviving a restart."""

from __future__ import annotations

import http.cookies

from tests.conftest import StartServer
from tests.support.sse import bearer, json_request, request

ALICE = bearer("tok-alice")


def ask(url: str, message: str, session_id: str) -> None:
    frames = request(
        url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": message, "session_id": session_id},
        headers=ALICE,
    ).read_all()
    assert frames[-1].event == "complete"


def test_history_and_memory_survive_a_restart(start_server: StartServer) -> None:
    first = start_server()
    ask(first.url, "Find me a restaurant in Tokyo", "trip")
    ask(first.url, "What about sushi?", "trip")
    assert first.stop() == 0

    second = start_server(data_dir=first.data_dir)
    status, data, _ = json_request(second.url, "GET", "/api/sessions/alice/trip", headers=ALICE)
    assert status == 200 and data is not None
    roles = [(m["role"], m["status"]) for m in data["messages"]]
    assert roles == [("user", "complete"), ("assistant", "complete")] * 2
    assert data["messages"][2]["content"] == "What about sushi?"
    assert data["context"]["location"] == "Tokyo" and data["context"]["cuisine"] == "sushi"

    # And the conversation carries on where it was: Tokyo is still remembered.
    frames = request(
        second.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": "Any ramen?", "session_id": "trip"},
        headers=ALICE,
    ).read_all()
    context = next(f.data for f in frames if f.event == "context")
    assert context is not None and context["context"]["location"] == "Tokyo"


def test_cookie_identity_survives_a_restart(start_server: StartServer) -> None:
    first = start_server()
    page = request(first.url, "GET", "/")
    page.body()
    jar = http.cookies.SimpleCookie(page.headers["Set-Cookie"])
    cookie = f"sluice_uid={jar['sluice_uid'].value}"
    _, me, _ = json_request(first.url, "GET", "/api/me", headers={"Cookie": cookie})
    assert me is not None
    first.stop()
    second = start_server(data_dir=first.data_dir)
    _, again, _ = json_request(second.url, "GET", "/api/me", headers={"Cookie": cookie})
    assert again == me


def test_list_and_delete(start_server: StartServer) -> None:
    server = start_server()
    ask(server.url, "first conversation", "one")
    ask(server.url, "second conversation", "two")
    status, data, _ = json_request(server.url, "GET", "/api/sessions/alice", headers=ALICE)
    assert status == 200 and data is not None
    assert [s["session_id"] for s in data["sessions"]] == ["two", "one"]  # newest first
    assert data["sessions"][0]["title"] == "second conversation"

    status, _, _ = json_request(server.url, "DELETE", "/api/sessions/alice/one", headers=ALICE)
    assert status == 204
    status, body, _ = json_request(server.url, "GET", "/api/sessions/alice/one", headers=ALICE)
    assert status == 404 and body is not None and body["error"]["code"] == "not_found"
    status, _, _ = json_request(server.url, "DELETE", "/api/sessions/alice/one", headers=ALICE)
    assert status == 404


def test_sessions_of_another_user_are_out_of_reach(start_server: StartServer) -> None:
    server = start_server()
    ask(server.url, "private", "mine")
    bob = bearer("tok-bob")
    status, _, _ = json_request(server.url, "GET", "/api/sessions/alice/mine", headers=bob)
    assert status == 403
    status, data, _ = json_request(server.url, "GET", "/api/sessions/bob/mine", headers=bob)
    assert status == 404  # the same id in bob's own space is simply not there
    status, data, _ = json_request(server.url, "GET", "/api/sessions/bob", headers=bob)
    assert data == {"sessions": []}
