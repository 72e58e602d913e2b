"""Through the real server: renaming a conversation (``PATCH``), searching one's history
(``?q=``), and choosing the model that writes the next answer (the turn's ``model``)."""

from __future__ import annotations

from typing import Any

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes
from tests.support.server import RunningServer
from tests.support.sse import bearer, events, json_request, request, start_stream

ALICE = bearer("tok-alice")
BOB = bearer("tok-bob")


def ask(server: RunningServer, message: str, session_id: str, **body: Any) -> dict[str, Any]:
    """One turn; its terminal event."""
    stream = start_stream(server.url, message, session_id=session_id, **body)
    assert stream.status == 200
    return events(stream.read_all())[-1]


def titles(server: RunningServer, query: str | None = None) -> list[tuple[str, str]]:
    path = "/api/sessions/alice" + (f"?q={query}" if query is not None else "")
    status, data, _ = json_request(server.url, "GET", path, headers=ALICE)
    assert status == 200 and data is not None
    return [(s["session_id"], s["title"]) for s in data["sessions"]]


def test_a_rename_is_kept_listed_and_only_the_owners(start_server: StartServer) -> None:
    server = start_server()
    assert ask(server, "Find me a restaurant in Tokyo", "trip")["type"] == "complete"
    ask(server, "Something newer", "other")
    before = titles(server)

    status, data, _ = json_request(
        server.url,
        "PATCH",
        "/api/sessions/alice/trip",
        body={"title": "  Tokyo\n dinner   plans "},
        headers=ALICE,
    )
    assert status == 200 and data == {"session_id": "trip", "title": "Tokyo dinner plans"}
    # Listed under its new name, in the same place: a rename is not a new message.
    assert titles(server) == [(s, "Tokyo dinner plans" if s == "trip" else t) for s, t in before]
    status, session, _ = json_request(server.url, "GET", "/api/sessions/alice/trip", headers=ALICE)
    assert status == 200 and session is not None and session["title"] == "Tokyo dinner plans"

    def patch(path: str, body: Any, headers: dict[str, str]) -> tuple[int, str | None]:
        status, data, _ = json_request(server.url, "PATCH", path, body=body, headers=headers)
        return status, (data or {}).get("error", {}).get("code")

    # Bob may not rename Alice's conversation, nor find it under his own name.
    assert patch("/api/sessions/alice/trip", {"title": "mine"}, BOB) == (403, "forbidden")
    assert patch("/api/sessions/bob/trip", {"title": "mine"}, BOB) == (404, "not_found")
    assert patch("/api/sessions/alice/nope", {"title": "x"}, ALICE) == (404, "not_found")
    for bad in ({"title": "   "}, {"title": 5}, {}, {"title": "x" * 201}, {"title": "a\x1bb"}):
        assert patch("/api/sessions/alice/trip", bad, ALICE) == (400, "bad_request"), bad
    assert titles(server)[1] == ("trip", "Tokyo dinner plans")


def test_search_finds_titles_and_answer_text_of_the_callers_own_history(
    start_server: StartServer,
) -> None:
    server = start_server()
    ask(server, "Find me a restaurant in Tokyo", "trip")
    ask(server, "What about museums", "art")
    # The demo answer repeats the question: "You said: …"; its text is in the index too.
    status, data, _ = json_request(
        server.url, "GET", "/api/sessions/alice?q=SAID+museum", headers=ALICE
    )
    assert status == 200 and data is not None
    [found] = data["sessions"]
    assert found["session_id"] == "art" and "museums" in found["snippet"]
    # By title, after a rename: no snippet, since no message holds the words.
    json_request(
        server.url, "PATCH", "/api/sessions/alice/trip", body={"title": "Ramen"}, headers=ALICE
    )
    status, data, _ = json_request(server.url, "GET", "/api/sessions/alice?q=ram", headers=ALICE)
    assert data is not None and data["sessions"] == [
        {"session_id": "trip", "title": "Ramen", "updated_at": data["sessions"][0]["updated_at"],
         "snippet": None}
    ]  # fmt: skip
    assert titles(server, "pizza") == []
    # No words: the whole list, as without q.
    assert titles(server, "%20%21") == titles(server)
    # Someone else's search path is refused; their own finds nothing of Alice's.
    status, _, _ = json_request(server.url, "GET", "/api/sessions/alice?q=tokyo", headers=BOB)
    assert status == 403
    status, data, _ = json_request(server.url, "GET", "/api/sessions/bob?q=tokyo", headers=BOB)
    assert status == 200 and data == {"sessions": []}


def test_the_turn_is_answered_by_the_model_it_names(
    fakes: ThreadedFakes, start_server: StartServer
) -> None:
    fakes.openai.script(*[Reply(text=["from openai"])] * 3)
    fakes.gemini.script(Reply(text=["from gemini"]))
    server = start_server(
        {
            "SLUICE_LLM__PROVIDERS": "openai,gemini",
            "OPENAI_API_KEY": "sk-test-0123456789abcdef",
            "OPENAI_BASE_URL": fakes.openai.base_url,
            "GEMINI_API_KEY": "AIzaTEST0123456789abcdefghijklmno",
            "GEMINI_BASE_URL": fakes.gemini.url,
        }
    )
    status, models, _ = json_request(server.url, "GET", "/v1/models", headers=ALICE)
    assert status == 200 and models is not None
    ids = [m["id"] for m in models["data"]]
    assert ids[0] == "sluice" and "gemini" in ids

    chosen = ask(server, "Hello", "picked", model="gemini")
    assert chosen["type"] == "complete" and chosen["provider"] == "gemini"
    assert chosen["message"] == "from gemini"
    # Without a model, the chain answers from its first provider, as before.
    assert ask(server, "Hello", "picked")["provider"] == "openai"
    assert ask(server, "Hello", "picked", model="sluice")["provider"] == "openai"

    for model, status_code, code in (
        ("no-such-model", 404, "model_not_found"),
        (7, 400, "bad_request"),
        ("", 400, "bad_request"),
    ):
        response = request(
            server.url,
            "POST",
            "/api/conversation-stream/alice",
            body={"message": "Hello", "model": model},
            headers=ALICE,
        )
        body = response.body()
        assert response.status == status_code, body
        assert code.encode() in body
