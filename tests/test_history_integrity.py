"""Nothing a user sent or saw is lost, and nothing deleted comes back: history against the
real server (kill -9 included), and the session stage's memory merge against the real
SQLite store."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from plugins.session import SessionOptions, SessionStage
from server import Event, Rest, Services, Turn, complete
from server.stores.sqlite import SQLiteSessionStore
from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes, openai_env
from tests.support.server import RunningServer
from tests.support.sse import bearer, events, json_request, request, start_stream

AUTH = bearer("tok-alice")
WORDS = [f"word{i:03d} " for i in range(300)]


def history(server: RunningServer, session_id: str) -> tuple[int, list[dict[str, Any]]]:
    status, data, _ = json_request(
        server.url, "GET", f"/api/sessions/alice/{session_id}", headers=AUTH
    )
    return status, (list(data["messages"]) if status == 200 and data else [])


def chunks_until(stream: Any, count: int) -> str:
    seen: list[str] = []
    while len(seen) < count:
        frame = stream.until(lambda f: f.event in ("chunk", "complete", "error"))
        assert frame.event == "chunk", frame.data
        seen.append(frame.data["content"])
    return "".join(seen)


def test_deleting_a_session_while_it_streams_leaves_nothing_behind(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """DELETE answered 204 while the answer streamed, then the running turn saved its answer
    into the deleted session: reusing the session id brought it back, into history and into
    the next prompt."""
    fakes.openai.script(Reply(text=WORDS, interval=0.02), Reply(text=["Fresh start."]))
    server = start_server(openai_env(fakes))
    stream = start_stream(server.url, "Secret question", session_id="s_reused")
    chunks_until(stream, 5)
    status, _, _ = json_request(server.url, "DELETE", "/api/sessions/alice/s_reused", headers=AUTH)
    assert status == 204
    end = stream.read_all()[-1]
    assert end.event == "error" and end.data is not None and end.data["code"] == "cancelled"
    assert history(server, "s_reused")[0] == 404

    again = events(start_stream(server.url, "New question", session_id="s_reused").read_all())
    assert again[-1]["type"] == "complete"
    status, messages = history(server, "s_reused")
    assert status == 200
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "New question"),
        ("assistant", "Fresh start."),
    ]
    prompt = fakes.openai.requests[-1].body["messages"]
    assert not any("Secret" in m["content"] or "word0" in m["content"] for m in prompt)


def test_kill_9_mid_answer_leaves_the_partial_answer_marked_incomplete(
    start_server: StartServer, fakes: ThreadedFakes, tmp_path: Path
) -> None:
    """After kill -9 mid-answer the user's message survived but the 15 chunks already shown
    left no trace. The answer is saved as it streams (here every 40 characters)."""
    fakes.openai.default = Reply(text=WORDS, interval=0.02)
    env = openai_env(fakes, SLUICE_STAGES__SESSION__SAVE_EVERY_CHARS="40")
    server = start_server(env, data_dir=tmp_path)
    stream = start_stream(server.url, "Tell me a long story", session_id="s_crash")
    seen = chunks_until(stream, 15)
    # While it streams, the answer is followed through active_turn, not listed twice.
    status, data, _ = json_request(server.url, "GET", "/api/sessions/alice/s_crash", headers=AUTH)
    assert status == 200 and data is not None and data["active_turn"] is not None
    assert [m["role"] for m in data["messages"]] == ["user"]
    server.stop(signal.SIGKILL)
    stream.close()

    restarted = start_server(env, data_dir=tmp_path)
    status, messages = history(restarted, "s_crash")
    assert status == 200
    assert [m["role"] for m in messages] == ["user", "assistant"]
    answer = messages[-1]
    assert answer["status"] == "incomplete"
    # What the user saw, give or take the last save interval and the chunk in flight.
    assert "".join(WORDS).startswith(answer["content"])
    assert len(answer["content"]) >= len(seen) - 40 - len(WORDS[0])


def test_history_equals_what_the_client_saw_when_the_log_overflows(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """When the stream log overflowed, history saved 2,280 characters while the client was
    sent 2,268: the chunk the log refused was saved all the same."""
    fakes.openai.default = Reply(text=WORDS)
    server = start_server(openai_env(fakes, SLUICE_STREAM__MAX_LOG_EVENTS="40"))
    stream = start_stream(server.url, "Long one", session_id="s_overflow")
    evs = events(stream.read_all())
    assert evs[-1]["type"] == "error"
    sent = "".join(e["content"] for e in evs if e["type"] == "chunk")
    status, messages = history(server, "s_overflow")
    assert status == 200
    assert messages[-1]["role"] == "assistant" and messages[-1]["status"] == "incomplete"
    assert messages[-1]["content"] == sent


def test_two_sends_into_one_session_at_once_get_409_with_the_running_stream(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """Two tabs sending into one conversation at once stored Q1, Q2, A2, A1. The second
    send is refused with 409 ``turn_in_progress`` naming the answer to follow."""
    fakes.openai.script(Reply(text=WORDS[:40], interval=0.02), Reply(text=["Second."]))
    server = start_server(openai_env(fakes))
    first = start_stream(server.url, "First", session_id="s_tabs")
    first_id = first.headers["X-Stream-Id"]
    chunks_until(first, 1)
    second = request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": "Second", "session_id": "s_tabs"},
        headers=AUTH,
    )
    assert second.status == 409
    assert second.headers["X-Stream-Id"] == first_id
    body = second.body()
    assert b'"turn_in_progress"' in body and first_id.encode() in body
    assert events(first.read_all())[-1]["type"] == "complete"
    assert (
        events(start_stream(server.url, "Second", session_id="s_tabs").read_all())[-1]["type"]
        == "complete"
    )
    _, messages = history(server, "s_tabs")
    pairs = [(m["role"], m["status"]) for m in messages]
    assert pairs == [("user", "complete"), ("assistant", "complete")] * 2
    assert [m["content"] for m in messages if m["role"] == "user"] == ["First", "Second"]


class _Learns:
    """The stages after the session stage: learns ``facts`` into the memory, waiting at
    ``gate`` so that two turns overlap."""

    def __init__(self, facts: dict[str, Any], gate: asyncio.Event) -> None:
        self.facts = facts
        self.gate = gate
        self.entered = asyncio.Event()

    async def __call__(self, turn: Turn) -> AsyncIterator[Event]:
        turn.memory.update(self.facts)
        self.entered.set()
        await self.gate.wait()
        yield complete(
            "ok",
            session_id=turn.session_id,
            suggestions=[],
            provider="t",
            model="t",
            mode="stream",
            fallback=False,
            usage=None,
        )


@pytest.mark.anyio
async def test_two_tabs_turns_merge_what_each_learnt(tmp_path: Path) -> None:
    """The session's memory was last-writer-wins: tab 1's turn learnt the cuisine, tab 2's
    the city (``location: Paris``), and whichever saved last erased the other's."""
    store = SQLiteSessionStore(tmp_path / "s.sqlite3")
    try:
        await store.open_session("alice", "s_mem", "t")
        await store.save_memory("alice", "s_mem", {"location": "Tokyo", "mood": "hungry"})
        stage = SessionStage(SessionOptions(), Services(store, None, None))  # type: ignore[arg-type]
        stage.name = "session"
        gate_one, gate_two = asyncio.Event(), asyncio.Event()

        async def run(message: str, rest: Rest) -> None:
            turn = Turn(
                stream_id="st_" + message,
                user_id="alice",
                message=message,
                client_ip="127.0.0.1",
                session_id="s_mem",
            )
            async for _ in stage.wrap(turn, rest):
                pass

        sushi = _Learns({"cuisine": "sushi"}, gate_one)
        paris = _Learns({"location": "Paris"}, gate_two)
        one = asyncio.create_task(run("sushi", sushi))
        two = asyncio.create_task(run("paris", paris))
        async with asyncio.timeout(5):  # both turns loaded the memory as it was, and learnt
            await sushi.entered.wait()
            await paris.entered.wait()
        gate_two.set()
        await two
        gate_one.set()
        await one
        record = await store.get_session("alice", "s_mem")
        assert record is not None
        assert record.memory == {"location": "Paris", "mood": "hungry", "cuisine": "sushi"}
    finally:
        await store.close()
