"""Tool calls and results in history, through the real server with fake OpenAI and Gemini
upstreams: ``GET /api/sessions/...`` shows them in order with the answer's text, a later
turn of the session gives them to the model in its provider's format (OpenAI ``tool_calls``
and ``role: "tool"``; Gemini ``functionCall`` / ``functionResponse`` after a fallback), and
``python -m server export`` / ``import`` carry them from SQLite to PostgreSQL.

The tool is the built-in ``current_time``: a known zone answers, an unknown one fails, so
one round has a good and a failed result.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from server.contract import TextPart, ToolCall, ToolResult
from server.stores.sqlite import SQLiteSessionStore
from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes
from tests.support.server import RunningServer, server_command
from tests.support.sse import bearer, events, json_request, start_stream

ALICE = bearer("tok-alice")

# The first turn: text, two calls (one fails), their results, text, a third call, its
# result, text: two rounds, then the answer.
FIRST_TURN = (
    Reply(
        text=["Let me ", "check. "],
        tool_calls=[
            ("call_a", "current_time", '{"timezone": "Asia/Tokyo"}'),
            ("call_b", "current_time", '{"timezone": "Mars/Olympus_Mons"}'),
        ],
    ),
    Reply(
        text=["Mars has no zone; ", "and Paris? "],
        tool_calls=[("call_c", "current_time", '{"timezone": "Europe/Paris"}')],
    ),
    Reply(text=["Done."]),
)
FIRST_TEXT = "Let me check. Mars has no zone; and Paris? Done."


def start(start_server: StartServer, fakes: ThreadedFakes, **env: str) -> RunningServer:
    return start_server(
        {
            "SLUICE_LLM__PROVIDERS": "openai",
            "OPENAI_API_KEY": "sk-test-0123456789",
            "OPENAI_BASE_URL": fakes.openai.base_url,
            "GEMINI_API_KEY": "AIzaTEST0123456789abcdefghijkl",
            "GEMINI_BASE_URL": fakes.gemini.url,
            "SLUICE_LLM__FIRST_TOKEN_TIMEOUT_SECONDS": "5",
            **env,
        }
    )


def ask(server: RunningServer, message: str, **body: Any) -> list[dict[str, Any]]:
    stream = start_stream(server.url, message, **body)
    assert stream.status == 200
    evs = events(stream.read_all())
    assert evs[-1]["type"] == "complete", evs[-1]
    return evs


def messages(server: RunningServer, session_id: str) -> list[dict[str, Any]]:
    status, data, _ = json_request(
        server.url, "GET", f"/api/sessions/alice/{session_id}", headers=ALICE
    )
    assert status == 200 and data is not None, (status, data)
    return list(data["messages"])


def expected_parts(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The parts the first turn's events make: its text cut where each tool event came."""
    parts: list[dict[str, Any]] = []
    for event in evs:
        if event["type"] == "chunk":
            if parts and parts[-1]["type"] == "text":
                parts[-1]["text"] += event["content"]
            else:
                parts.append({"type": "text", "text": event["content"]})
        elif event["type"] == "tool_call":
            parts.append({k: event[k] for k in ("type", "call_id", "name", "arguments")})
        elif event["type"] == "tool_result":
            keep = ("type", "call_id", "name", "ok", "content", "error")
            parts.append({k: event[k] for k in keep if k in event})
    return parts


def test_history_shows_the_tool_rounds_and_the_next_turn_gives_them_to_openai(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(*FIRST_TURN, Reply(text=["You're welcome."]))
    server = start(start_server, fakes)
    first = ask(server, "What time is it in Tokyo, on Mars and in Paris?")
    session_id = first[-1]["session_id"]

    question, answer = messages(server, session_id)
    assert question["parts"] == []
    assert answer["content"] == FIRST_TEXT and answer["status"] == "complete"
    parts = answer["parts"]
    assert [(p["type"], p.get("call_id")) for p in parts] == [
        ("text", None),
        ("tool_call", "call_a"),
        ("tool_call", "call_b"),
        ("tool_result", "call_a"),
        ("tool_result", "call_b"),
        ("text", None),
        ("tool_call", "call_c"),
        ("tool_result", "call_c"),
        ("text", None),
    ]
    assert parts == expected_parts(first)
    assert "".join(p["text"] for p in parts if p["type"] == "text") == FIRST_TEXT
    assert parts[1]["arguments"] == {"timezone": "Asia/Tokyo"}
    assert parts[3]["ok"] is True and parts[3]["content"].endswith("+09:00")
    assert parts[4]["ok"] is False and parts[4]["error"] == "failed"
    assert "Mars/Olympus_Mons" in parts[4]["content"]

    ask(server, "Thanks!", session_id=session_id)
    later = fakes.openai.requests[-1].body["messages"]
    conversation = [m for m in later if m["role"] != "system"]
    assert [m["role"] for m in conversation] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    asked, round_one, result_a, result_b, round_two, result_c, last, thanks = conversation
    assert asked["content"] == "What time is it in Tokyo, on Mars and in Paris?"
    assert round_one["content"] == "Let me check. "
    assert [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in round_one["tool_calls"]
    ] == [
        ("call_a", "current_time", {"timezone": "Asia/Tokyo"}),
        ("call_b", "current_time", {"timezone": "Mars/Olympus_Mons"}),
    ]
    assert (result_a["tool_call_id"], result_a["content"]) == ("call_a", parts[3]["content"])
    assert result_b["tool_call_id"] == "call_b" and "Mars/Olympus_Mons" in result_b["content"]
    assert round_two["content"] == "Mars has no zone; and Paris? "
    assert [c["id"] for c in round_two["tool_calls"]] == ["call_c"]
    assert (result_c["tool_call_id"], result_c["content"]) == ("call_c", parts[7]["content"])
    assert last["content"] == "Done." and not last.get("tool_calls")
    assert thanks["content"] == "Thanks!"


def test_the_tool_rounds_reach_gemini_after_a_fallback(
    start_server: StartServer, fakes: ThreadedFakes, database_url: str
) -> None:
    """On PostgreSQL: the round saved there reaches Gemini as functionCall and
    functionResponse parts when OpenAI fails on the next turn."""
    fakes.openai.script(
        Reply(text=[], tool_calls=[("call_t", "current_time", '{"timezone": "Asia/Tokyo"}')]),
        Reply(text=["It is ", "noon."]),
        Reply(status=500),
        Reply(status=500),
    )
    fakes.gemini.default = Reply(text=["Gemini ", "here."])
    server = start(
        start_server, fakes, SLUICE_LLM__PROVIDERS="openai,gemini", DATABASE_URL=database_url
    )
    first = ask(server, "Tokyo time?")
    [result] = [e for e in first if e["type"] == "tool_result"]
    session_id = first[-1]["session_id"]

    second = ask(server, "And now?", session_id=session_id)
    assert second[-1]["provider"] == "gemini" and second[-1]["fallback"] is True
    [sent] = fakes.gemini.requests
    call = {"functionCall": {"name": "current_time", "args": {"timezone": "Asia/Tokyo"}}}
    response = {
        "functionResponse": {"name": "current_time", "response": {"output": result["content"]}}
    }
    assert sent.body["contents"] == [
        {"role": "user", "parts": [{"text": "Tokyo time?"}]},
        {"role": "model", "parts": [call]},
        {"role": "user", "parts": [response]},
        {"role": "model", "parts": [{"text": "It is noon."}]},
        {"role": "user", "parts": [{"text": "And now?"}]},
    ]


def test_export_and_import_carry_the_tool_rounds(
    start_server: StartServer, fakes: ThreadedFakes, database_url: str, tmp_path: Path
) -> None:
    """From SQLite to PostgreSQL through the export file: the session reads the same, parts
    and all, and the next turn on PostgreSQL gives the model the imported rounds."""
    fakes.openai.script(*FIRST_TURN, Reply(text=["Still noon."]))
    old = tmp_path / "old"
    server = start_server(
        {
            "SLUICE_LLM__PROVIDERS": "openai",
            "OPENAI_API_KEY": "sk-test-0123456789",
            "OPENAI_BASE_URL": fakes.openai.base_url,
        },
        data_dir=old,
    )
    session_id = ask(server, "What time is it?")[-1]["session_id"]
    before = messages(server, session_id)
    assert len(before[1]["parts"]) == 9
    assert server.stop() == 0

    export_file = tmp_path / "history.jsonl"
    exported = server_command(old, "export", "--output", str(export_file))
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in export_file.read_text().splitlines()]
    [answer_line] = [line for line in lines if line.get("role") == "assistant"]
    assert answer_line["parts"] == before[1]["parts"]

    pg = {"DATABASE_URL": database_url}
    imported = server_command(tmp_path / "new", "import", str(export_file), env=pg)
    assert imported.returncode == 0, imported.stderr
    moved = start_server(
        {
            **pg,
            "SLUICE_LLM__PROVIDERS": "openai",
            "OPENAI_API_KEY": "sk-test-0123456789",
            "OPENAI_BASE_URL": fakes.openai.base_url,
        }
    )
    after = messages(moved, session_id)
    ids = ("id", "reply_to")  # the importing store gives new ones
    assert [{k: v for k, v in m.items() if k not in ids} for m in after] == [
        {k: v for k, v in m.items() if k not in ids} for m in before
    ]
    ask(moved, "Still?", session_id=session_id)
    sent = fakes.openai.requests[-1].body["messages"]
    assert [m["tool_call_id"] for m in sent if m["role"] == "tool"] == [
        "call_a",
        "call_b",
        "call_c",
    ]


def test_what_the_model_is_given_is_always_a_valid_conversation(
    start_server: StartServer, fakes: ThreadedFakes, tmp_path: Path
) -> None:
    """History the model could not take is mended on the way: a call saved without its
    result (its turn torn down before the result) is given a ``cancelled`` one, and a
    ``history_chars`` cut that falls between a call and its result drops the result too
    (providers refuse results without their calls, and calls without results)."""
    data_dir = tmp_path / "data"
    store = SQLiteSessionStore(data_dir / "sessions.sqlite3")
    torn = (TextPart("Looking. "), ToolCall("call_x", "current_time", {"timezone": "UTC"}))
    long_result = "r" * 100
    cut = (
        ToolCall("call_y", "current_time", {"timezone": "Asia/Tokyo"}),
        ToolResult("call_y", "current_time", True, long_result),
        TextPart("Done."),
    )

    async def write() -> None:
        await store.open_session("alice", "torn", "t")
        asked = await store.add_message("alice", "torn", "user", "Time?", "complete")
        await store.add_message(
            "alice", "torn", "assistant", "Looking. ", "incomplete", reply_to=asked, parts=torn
        )
        await store.open_session("alice", "cut", "t")
        asked = await store.add_message("alice", "cut", "user", "Time?", "complete")
        await store.add_message(
            "alice", "cut", "assistant", "Done.", "complete", reply_to=asked, parts=cut
        )
        await store.close()

    asyncio.run(write())
    # Enough for "Done." and the result, not for the call before it.
    server = start_server(
        {
            "SLUICE_LLM__PROVIDERS": "openai",
            "OPENAI_API_KEY": "sk-test-0123456789",
            "OPENAI_BASE_URL": fakes.openai.base_url,
            "SLUICE_STAGES__CONTEXT__HISTORY_CHARS": str(len("Done.") + len(long_result) + 10),
        },
        data_dir=data_dir,
    )
    ask(server, "Again?", session_id="torn")
    sent = [m for m in fakes.openai.requests[-1].body["messages"] if m["role"] != "system"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_x"]
    assert sent[2]["tool_call_id"] == "call_x" and "cancelled" in sent[2]["content"]

    ask(server, "Again?", session_id="cut")
    sent = [m for m in fakes.openai.requests[-1].body["messages"] if m["role"] != "system"]
    assert [(m["role"], m["content"]) for m in sent] == [("assistant", "Done."), ("user", "Again?")]


def test_import_names_a_line_whose_parts_are_not_parts(tmp_path: Path) -> None:
    header = '{"type": "sluice.history", "version": 1}\n'
    session = (
        '{"type": "session", "user_id": "alice", "session_id": "s1", "title": "t",'
        ' "memory": {}, "created_at": 1.0, "updated_at": 2.0}\n'
    )
    message = (
        '{"type": "message", "user_id": "alice", "session_id": "s1", "id": 1,'
        ' "role": "assistant", "content": "x", "status": "complete", "created_at": 1.5,'
        ' "parts": [{"type": "tool_call", "name": "current_time"}]}\n'
    )
    file = tmp_path / "history.jsonl"
    file.write_text(header + session + message)
    result = server_command(tmp_path, "import", str(file))
    assert result.returncode == 1
    assert "sluice: import failed: line 3: a part that is not one" in result.stderr
