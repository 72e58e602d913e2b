"""Edit and regenerate through the real server and a fake OpenAI: an edit starts a new branch
beside the edited message, a regeneration adds a variant of an answer, ``POST .../branch``
switches between them, the model is given the current branch only, and all of it survives a
restart."""

from __future__ import annotations

from typing import Any

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes, openai_env
from tests.support.server import RunningServer
from tests.support.sse import bearer, events, json_request, request
from tests.test_openapi import check

ALICE = bearer("tok-alice")


def ask(server: RunningServer, **body: Any) -> dict[str, Any]:
    """One turn on the stream endpoint; its ``complete`` event."""
    frames = request(
        server.url, "POST", "/api/conversation-stream/alice", body=body, headers=ALICE
    ).read_all()
    last = events(frames)[-1]
    assert last["type"] == "complete", last
    return last


def session(server: RunningServer, session_id: str, query: str = "") -> dict[str, Any]:
    status, data, _ = json_request(
        server.url, "GET", f"/api/sessions/alice/{session_id}{query}", headers=ALICE
    )
    assert status == 200 and data is not None
    check("GET", "/api/sessions/{user_id}/{session_id}", status, data, "application/json")
    return data


def said(data: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """The current branch: each message's role, text and place among its alternatives."""
    return [
        (m["role"], m["content"], m["siblings"]["index"], m["siblings"]["count"])
        for m in data["messages"]
    ]


def prompt(fakes: ThreadedFakes) -> list[tuple[str, str]]:
    """What the model was last given, without the system prompt."""
    body = fakes.openai.requests[-1].body
    return [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]


def test_edit_regenerate_and_switch_give_the_model_the_current_branch_only(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(
        Reply(text=["4"]),
        Reply(text=["12"]),
        Reply(text=["6"]),
        Reply(text=["six"]),
        Reply(text=["48"]),
    )
    server = start_server(openai_env(fakes))
    ask(server, message="What is 2+2?", session_id="maths")
    ask(server, message="Times 3?", session_id="maths")
    first = session(server, "maths")
    question = first["messages"][0]
    assert said(first) == [
        ("user", "What is 2+2?", 1, 1),
        ("assistant", "4", 1, 1),
        ("user", "Times 3?", 1, 1),
        ("assistant", "12", 1, 1),
    ]

    # Editing the first question: a new branch from before it, given to the model alone.
    ask(server, message="What is 3+3?", session_id="maths", edit_of=question["id"])
    assert prompt(fakes) == [("user", "What is 3+3?")]
    edited = session(server, "maths")
    assert said(edited) == [("user", "What is 3+3?", 2, 2), ("assistant", "6", 1, 1)]
    assert edited["messages"][0]["siblings"]["ids"] == [question["id"], edited["messages"][0]["id"]]
    assert edited["messages"][0]["parent_id"] is None

    # Regenerating the last answer: the same question again, no new user message.
    ask(server, session_id="maths", regenerate=True)
    assert prompt(fakes) == [("user", "What is 3+3?")]
    again = session(server, "maths", "?alternatives=1")
    assert said(again) == [("user", "What is 3+3?", 2, 2), ("assistant", "six", 2, 2)]
    off_branch = [m["content"] for m in again["alternatives"]]
    assert off_branch == ["What is 2+2?", "4", "Times 3?", "12", "6"]
    assert "alternatives" not in session(server, "maths")

    # ‹ 1/2 ›: back to the first question, on to where its branch was last written.
    status, switched, _ = json_request(
        server.url,
        "POST",
        "/api/sessions/alice/maths/branch",
        body={"message_id": question["id"]},
        headers=ALICE,
    )
    assert status == 200 and switched is not None
    check(
        "POST", "/api/sessions/{user_id}/{session_id}/branch", status, switched, "application/json"
    )
    assert said(switched) == [
        ("user", "What is 2+2?", 1, 2),
        ("assistant", "4", 1, 1),
        ("user", "Times 3?", 1, 1),
        ("assistant", "12", 1, 1),
    ]
    # The conversation carries on from there, and the model sees that branch alone.
    ask(server, message="Times 4?", session_id="maths")
    assert prompt(fakes) == [
        ("user", "What is 2+2?"),
        ("assistant", "4"),
        ("user", "Times 3?"),
        ("assistant", "12"),
        ("user", "Times 4?"),
    ]
    before = said(session(server, "maths"))
    assert before[-1] == ("assistant", "48", 1, 1)

    assert server.stop() == 0
    restarted = start_server(openai_env(fakes), data_dir=server.data_dir)
    assert said(session(restarted, "maths")) == before


def test_edit_and_regenerate_name_messages_of_the_session_or_are_refused(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    server = start_server(openai_env(fakes))
    ask(server, message="Hello", session_id="mine")
    ask(server, message="Elsewhere", session_id="other")
    question, answer = session(server, "mine")["messages"]
    [elsewhere, _] = session(server, "other")["messages"]
    requests = len(fakes.openai.requests)

    def refused(body: dict[str, Any], path: str = "/api/conversation-stream/alice") -> str:
        status, data, _ = json_request(server.url, "POST", path, body=body, headers=ALICE)
        assert status == 400 and data is not None, (status, data)
        return str(data["error"]["message"])

    assert "edit_of" in refused({"message": "x", "session_id": "mine", "edit_of": elsewhere["id"]})
    assert "edit_of" in refused({"message": "x", "session_id": "mine", "edit_of": answer["id"]})
    assert "edit_of" in refused({"message": "x", "edit_of": question["id"]})  # no session
    assert "edit_of" in refused({"message": "x", "session_id": "mine", "edit_of": "1"})
    assert "regenerate" in refused({"session_id": "mine", "regenerate": question["id"]})
    assert "regenerate" in refused({"regenerate": True})
    assert "regenerate" in refused({"session_id": "nothing-here", "regenerate": True})
    assert "not both" in refused(
        {"message": "x", "session_id": "mine", "edit_of": question["id"], "regenerate": True}
    )
    assert "this session" in refused(
        {"message_id": elsewhere["id"]}, "/api/sessions/alice/mine/branch"
    )
    assert len(fakes.openai.requests) == requests  # no turn started
    assert [m["content"] for m in session(server, "mine")["messages"]] == ["Hello", "Hello, world!"]
    # Someone else's session is not theirs to switch.
    status, _, _ = json_request(
        server.url,
        "POST",
        "/api/sessions/alice/mine/branch",
        body={"message_id": question["id"]},
        headers=bearer("tok-bob"),
    )
    assert status == 403


def test_a_regeneration_refused_before_any_model_keeps_the_answer_on_the_branch(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """With the rate limit after the session stage, a regeneration it refuses has moved the
    leaf to the question already: it must go back, or the answer would drop out of view."""
    server = start_server(
        openai_env(
            fakes,
            SLUICE_PIPELINE__STAGES="session,rate_limit,intent,context,llm",
            SLUICE_RATE_LIMIT__BURST="1",
            SLUICE_RATE_LIMIT__REQUESTS_PER_MINUTE="1",
        )
    )
    ask(server, message="Hello", session_id="limited")
    frames = request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"session_id": "limited", "regenerate": True},
        headers=ALICE,
    ).read_all()
    assert events(frames)[-1]["code"] == "rate_limited"
    assert said(session(server, "limited")) == [
        ("user", "Hello", 1, 1),
        ("assistant", "Hello, world!", 1, 1),
    ]
