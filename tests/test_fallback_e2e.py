"""Fallback end to end: the real server (``python -m server``) with the real SDKs talking to
fake OpenAI and Gemini upstreams on loopback.

For each case: what the client receives (events, order, text never repeated) and what is
saved (GET /api/sessions/{user}/{session}).
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import ARABIC_EMOJI, Reply
from tests.fakes.threaded import ThreadedFakes
from tests.support.server import RunningServer
from tests.support.sse import bearer, events, json_request, request, start_stream

OPENAI_KEY = "sk-e2e-secret-0123456789abcdef"
GEMINI_KEY = "AIzaE2ESECRET0123456789abcdefghij"
AUTH = bearer("tok-alice")
LONG = "A plain answer, long enough to arrive in several chunk events on the page."


def start(start_server: StartServer, fakes: ThreadedFakes, **env: str) -> RunningServer:
    base = {
        "SLUICE_LLM__PROVIDERS": "openai,gemini",
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": fakes.openai.base_url,
        "GEMINI_API_KEY": GEMINI_KEY,
        "GEMINI_BASE_URL": fakes.gemini.url,
        "SLUICE_LLM__FIRST_TOKEN_TIMEOUT_SECONDS": "2",
        "SLUICE_LLM__IDLE_TIMEOUT_SECONDS": "2",
    }
    base.update(env)
    return start_server(base)


def ask(server: RunningServer, message: str = "Hello there") -> list[dict[str, Any]]:
    stream = start_stream(server.url, message)
    assert stream.status == 200
    return events(stream.read_all())


def text_of(evs: list[dict[str, Any]]) -> str:
    return "".join(e["content"] for e in evs if e["type"] == "chunk")


def session_of(evs: list[dict[str, Any]]) -> str:
    return next(e["session_id"] for e in evs if e["type"] in ("context", "complete"))


def saved(server: RunningServer, session_id: str) -> list[dict[str, Any]]:
    status, data, _ = json_request(
        server.url, "GET", f"/api/sessions/alice/{session_id}", headers=AUTH
    )
    assert status == 200 and data is not None
    return [{k: m[k] for k in ("role", "content", "status")} for m in data["messages"]]


def terminal(evs: list[dict[str, Any]]) -> dict[str, Any]:
    assert evs[-1]["type"] in ("complete", "error")
    assert sum(e["type"] in ("complete", "error") for e in evs) == 1
    return evs[-1]


def no_secrets(server: RunningServer, evs: list[dict[str, Any]]) -> None:
    blob = json.dumps(evs) + server.output()
    assert OPENAI_KEY not in blob and GEMINI_KEY not in blob
    assert "Traceback" not in json.dumps(evs)


def test_streams_from_the_first_provider(start_server: StartServer, fakes: ThreadedFakes) -> None:
    fakes.openai.default = Reply(text=ARABIC_EMOJI, split_utf8=True)
    server = start(start_server, fakes)
    evs = ask(server)
    end = terminal(evs)
    assert end["type"] == "complete"
    assert text_of(evs) == end["message"] == "".join(ARABIC_EMOJI)
    assert (end["provider"], end["mode"], end["fallback"]) == ("openai", "stream", False)
    assert end["usage"]["output_tokens"] == len(ARABIC_EMOJI)
    assert saved(server, end["session_id"])[-1] == {
        "role": "assistant",
        "content": "".join(ARABIC_EMOJI),
        "status": "complete",
    }
    assert fakes.gemini.requests == []
    no_secrets(server, evs)


def test_500_falls_back_to_plain_then_next_provider(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(status=500)
    fakes.gemini.script(Reply(status=503), Reply(text=[LONG]))
    server = start(start_server, fakes)
    evs = ask(server)
    end = terminal(evs)
    assert end["type"] == "complete"
    chunks = [e["content"] for e in evs if e["type"] == "chunk"]
    assert "".join(chunks) == end["message"] == LONG  # one answer, no repeated text
    assert len(chunks) > 2  # a plain answer still animates
    assert (end["provider"], end["mode"], end["fallback"]) == ("gemini", "non-stream", True)
    assert [r.stream for r in fakes.openai.requests] == [True, False]
    assert [r.stream for r in fakes.gemini.requests] == [True, False]
    assert saved(server, end["session_id"])[-1]["content"] == LONG
    no_secrets(server, evs)


def test_streaming_refused_but_plain_works(start_server: StartServer, fakes: ThreadedFakes) -> None:
    fakes.openai.default = Reply(text=[LONG], refuse_stream=True)
    server = start(start_server, fakes)
    end = terminal(evs := ask(server))
    assert end["type"] == "complete" and text_of(evs) == LONG
    assert (end["provider"], end["mode"], end["fallback"]) == ("openai", "non-stream", True)


def test_429_and_refused_connection_move_on(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(status=429, headers={"Retry-After": "30"})
    server = start(start_server, fakes)
    first = terminal(ask(server))
    assert (first["provider"], first["fallback"]) == ("gemini", True)
    second = terminal(ask(server))
    assert second["provider"] == "gemini"
    assert len(fakes.openai.requests) == 1  # skipped until Retry-After has passed


def test_hang_before_first_token_moves_on(start_server: StartServer, fakes: ThreadedFakes) -> None:
    fakes.openai.script(Reply(hang_at=0))
    server = start(start_server, fakes, SLUICE_LLM__FIRST_TOKEN_TIMEOUT_SECONDS="0.5")
    evs = ask(server)
    end = terminal(evs)
    assert end["type"] == "complete" and end["provider"] == "gemini"
    assert text_of(evs) == "Hello, world!"
    fakes.run(fakes.openai.wait_closed(1, within=1.0))


def test_cut_after_text_is_interrupted_and_saved_incomplete(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(text=["Partial ", "answer ", "lost"], cut_at=2)
    server = start(start_server, fakes)
    evs = ask(server, "Tell me")
    end = terminal(evs)
    assert end["type"] == "error"
    assert end["code"] == "upstream_interrupted" and end["retryable"] is True
    assert text_of(evs) == "Partial answer "
    assert fakes.gemini.requests == []  # text was sent: no second answer
    assert saved(server, session_of(evs)) == [
        {"role": "user", "content": "Tell me", "status": "complete"},
        {"role": "assistant", "content": "Partial answer ", "status": "incomplete"},
    ]
    # An answer cut short is kept with who was writing it.
    status, data, _ = json_request(
        server.url, "GET", f"/api/sessions/alice/{session_of(evs)}", headers=AUTH
    )
    assert status == 200 and data is not None
    answer = data["messages"][-1]
    assert (answer["provider"], answer["mode"], answer["fallback"]) == ("openai", "stream", False)
    assert answer["model"] and answer["time_to_first_token_ms"] is not None


def test_malformed_frame_before_text_recovers(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(Reply(text=["x"], malformed_at=0), Reply(text=["Recovered."]))
    server = start(start_server, fakes)
    end = terminal(evs := ask(server))
    assert end["type"] == "complete" and text_of(evs) == "Recovered."
    assert end["mode"] == "non-stream"


def test_nothing_can_answer_keeps_the_user_message(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(status=500)
    fakes.gemini.default = Reply(status=500)
    server = start(start_server, fakes)
    evs = ask(server, "Anyone there?")
    end = terminal(evs)
    assert end["type"] == "error"
    assert end["code"] == "upstream_unavailable" and end["retryable"] is True
    assert text_of(evs) == ""
    messages = saved(server, session_of(evs))
    assert messages[0] == {"role": "user", "content": "Anyone there?", "status": "complete"}
    assert all(m["role"] != "assistant" or m["status"] == "error" for m in messages)
    no_secrets(server, evs)


def test_refused_key_and_unknown_model_say_what_to_fix(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(status=401, message=f"Incorrect API key provided: {OPENAI_KEY}")
    fakes.gemini.default = Reply(status=404, message="models/gemini-x is not found")
    server = start(start_server, fakes, GEMINI_MODEL="gemini-x")
    evs = ask(server)
    end = terminal(evs)
    assert end["code"] == "upstream_unavailable"
    assert "OPENAI_API_KEY" in end["message"] and "GEMINI_MODEL" in end["message"]
    assert "'gemini-x'" in end["message"]
    no_secrets(server, evs)


def test_circuit_opens_after_consecutive_failures(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(status=500)
    server = start(
        start_server,
        fakes,
        SLUICE_LLM__CIRCUIT_FAILURES="2",
        SLUICE_LLM__CIRCUIT_COOLDOWN_SECONDS="600",
    )
    for _ in range(3):
        end = terminal(ask(server))
        assert end["type"] == "complete" and end["provider"] == "gemini"
    # Two failing turns (stream + plain each), then the open circuit skips openai.
    assert len(fakes.openai.requests) == 4


def test_cancel_closes_the_upstream_request(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(text=["Thinking ", "hard"], hang_at=1)
    server = start(start_server, fakes, SLUICE_LLM__IDLE_TIMEOUT_SECONDS="30")
    stream = request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": "Go"},
        headers=AUTH,
    )
    stream_id = stream.headers["X-Stream-Id"]
    stream.until(lambda f: f.type == "chunk")
    status, _, _ = json_request(
        server.url, "POST", f"/api/streams/{stream_id}/cancel", headers=AUTH
    )
    cancelled_at = time.monotonic()
    assert status == 200
    seconds = fakes.run(fakes.openai.wait_closed(1, within=1.0))
    assert seconds < 1.0 and time.monotonic() - cancelled_at < 1.5
    evs = events(stream.read_all())
    end = terminal(evs)
    assert end["type"] == "error" and end["code"] == "cancelled"
    assert text_of(evs) == "Thinking "
    assert saved(server, session_of(evs))[-1] == {
        "role": "assistant",
        "content": "Thinking ",
        "status": "incomplete",
    }
    assert fakes.gemini.requests == []
