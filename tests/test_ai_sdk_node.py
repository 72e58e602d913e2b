"""``POST /api/chat`` and ``GET /api/chat/{chat_id}/stream`` driven by the Vercel AI SDK's own
npm package from Node (tests/clients/ai_sdk_node.mjs): ``DefaultChatTransport`` sends and
reconnects, ``readUIMessageStream`` builds the message, each chunk checked against the SDK's
schema. Against the real server, with fake upstreams in OpenAI's wire format and tools from
an installed plugin package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from server.core.sse import encode_event
from server.core.ui_message_stream import UIMessageEncoder
from tests.conftest import StartServer
from tests.fakes.llm_upstreams import ARABIC_EMOJI, Reply
from tests.fakes.threaded import ThreadedFakes
from tests.support import upstream_server
from tests.support.ai_sdk import ai_sdk_modules, run_node
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer
from tests.support.sse import bearer, json_request, request, start_stream
from tests.support.tool_package import ENABLED_TOOLS, write_tool_package

# How a stopped answer ends, in the AI SDK's protocol.
ABORTED = b'data: {"type":"abort","reason":"cancelled"}\n\ndata: [DONE]\n\n'


@pytest.fixture(scope="session")
def modules() -> Path:
    return ai_sdk_modules()


# The fixtures of tests/support/upstream_server.py, named here so that pytest finds them.
upstreams = upstream_server.upstreams
server = upstream_server.server
fakes = upstream_server.fakes


@pytest.fixture(scope="module")
def server_env(
    upstreams: ThreadedFakes, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return {
        "PYTHONPATH": write_tool_package(tmp_path_factory.mktemp("site")),
        "SLUICE_TOOLS__ENABLED": ENABLED_TOOLS,
        "SLUICE_LLM__PROVIDERS": "openai",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": upstreams.openai.base_url,
    }


def kinds(seen: dict[str, Any]) -> list[str]:
    return [chunk["type"] for chunk in seen["chunks"]]


def parts(seen: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [part for part in seen["message"]["parts"] if part["type"] == kind]


def history(server: RunningServer, user: str, session: str) -> list[tuple[str, str]]:
    status, body, _ = json_request(
        server.url, "GET", f"/api/sessions/{user}/{session}", headers=bearer(f"tok-{user}")
    )
    assert status == 200 and body is not None
    return [(m["role"], m["content"]) for m in body["messages"]]


def test_an_answer_streams_into_a_ui_message(
    modules: Path, server: RunningServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(text=ARABIC_EMOJI, split_utf8=True)
    seen = run_node(modules, server.url, "send", chatId="trip-1", text="Hello there")
    assert seen["error"] is None
    chunks = seen["chunks"]
    start, finish = chunks[0], chunks[-1]
    stream_id = start["messageMetadata"]["streamId"]
    assert start == {
        "type": "start",
        "messageId": stream_id,
        "messageMetadata": {"streamId": stream_id, "sessionId": "trip-1"},
    }
    assert stream_id.startswith("st_")
    # One step, one text part; the answer whole, as the upstream wrote it.
    assert kinds(seen).count("start-step") == kinds(seen).count("finish-step") == 1
    [text] = parts(seen, "text")
    assert text["text"] == "".join(ARABIC_EMOJI) and text["state"] == "done"
    assert finish["type"] == "finish" and finish["finishReason"] == "stop"
    message = seen["message"]
    assert message["id"] == stream_id
    metadata = message["metadata"]
    sent_model = fakes.openai.requests[0].body["model"]
    assert (metadata["provider"], metadata["model"]) == ("openai", sent_model)
    assert metadata["usage"]["input_tokens"] == 11 and metadata["usage"]["output_tokens"] == 5
    assert metadata["sessionId"] == "trip-1" and metadata["streamId"] == stream_id
    # Stage progress is one data part, updated in place, ending at 100.
    [status] = parts(seen, "data-status")
    assert status["id"] == "status" and status["data"]["progress"] == 100
    progress = [c["data"]["progress"] for c in chunks if c["type"] == "data-status"]
    assert progress == sorted(progress) and len(progress) > 3
    # The chat is the user's session: the server kept the conversation.
    assert history(server, "alice", "trip-1") == [
        ("user", "Hello there"),
        ("assistant", "".join(ARABIC_EMOJI)),
    ]


def test_a_tool_round_is_two_steps_with_typed_tool_parts(
    modules: Path, server: RunningServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(
        Reply(
            text=["Let me check. "],
            tool_calls=[
                ("call_a", "echo", '{"text": "hi"}'),
                ("call_b", "explode", "{}"),
            ],
        ),
        Reply(text=["Both ", "done."]),
    )
    seen = run_node(modules, server.url, "send", chatId="tools-1", text="Use your tools")
    assert seen["error"] is None
    steps = [c["type"] for c in seen["chunks"] if c["type"] in ("start-step", "finish-step")]
    assert steps == ["start-step", "finish-step", "start-step", "finish-step"]
    shape = [p["type"] for p in seen["message"]["parts"] if p["type"] != "data-status"]
    assert shape == ["step-start", "text", "tool-echo", "tool-explode", "step-start", "text"]
    [echo] = parts(seen, "tool-echo")
    assert echo["toolCallId"] == "call_a" and echo["state"] == "output-available"
    assert echo["input"] == {"text": "hi"} and echo["output"] == "echo: hi"
    [explode] = parts(seen, "tool-explode")
    assert explode["state"] == "output-error" and "melted" in explode["errorText"]
    assert [p["text"] for p in parts(seen, "text")] == ["Let me check. ", "Both done."]


def test_equal_chat_ids_of_two_users_never_meet(
    modules: Path, server: RunningServer, fakes: ThreadedFakes
) -> None:
    run_node(modules, server.url, "send", chatId="same-id", text="alpha secret")
    fakes.openai.requests.clear()
    seen = run_node(modules, server.url, "send", token="tok-bob", chatId="same-id", text="beta")
    assert seen["error"] is None
    [sent] = fakes.openai.requests
    assert "alpha secret" not in json.dumps(sent.body)
    assert history(server, "bob", "same-id") == [("user", "beta"), ("assistant", "Hello, world!")]
    assert history(server, "alice", "same-id")[0] == ("user", "alpha secret")


def test_a_session_the_server_made_continues_under_its_own_id(
    modules: Path, server: RunningServer, fakes: ThreadedFakes
) -> None:
    first = start_stream(server.url, "My name is Ada").read_all()
    session_id = next(f.data["session_id"] for f in first if f.type == "complete")
    fakes.openai.requests.clear()
    # The client sends its whole conversation; the server's history is what the model gets.
    said = [
        {"id": "x", "role": "user", "parts": [{"type": "text", "text": "made-up earlier turn"}]},
        {"id": "y", "role": "user", "parts": [{"type": "text", "text": "What is my name?"}]},
    ]
    seen = run_node(modules, server.url, "send", chatId=session_id, messages=said)
    assert seen["message"]["metadata"]["sessionId"] == session_id
    [sent] = fakes.openai.requests
    contents = [m["content"] for m in sent.body["messages"] if m["role"] == "user"]
    assert contents[-2:] == ["My name is Ada", "What is my name?"]
    assert "made-up earlier turn" not in json.dumps(sent.body)


def test_a_client_that_leaves_does_not_stop_the_answer_and_reconnects_to_it(
    modules: Path, server: RunningServer, fakes: ThreadedFakes
) -> None:
    pieces = [f"word{i} " for i in range(40)]
    fakes.openai.default = Reply(text=pieces, interval=0.05)
    both = run_node(modules, server.url, "leaveAndResume", chatId="leaver", text="Tell me a story")
    left, seen = both["left"], both["resumed"]
    stream_id = left[0]["messageMetadata"]["streamId"]
    assert left[-1]["type"] == "text-delta"
    # From its start, the same message: the text whole, though the first reader had left.
    assert seen["chunks"][0]["messageId"] == stream_id
    assert [p["text"] for p in parts(seen, "text")] == ["".join(pieces)]
    assert seen["chunks"][-1]["type"] == "finish"
    # Finished: nothing to reconnect to (204), as the AI SDK expects.
    assert run_node(modules, server.url, "resume", chatId="leaver") == {"none": True}
    # Nor, while it answers, for a chat that is someone else's.
    fakes.openai.script(Reply(text=["one ", "two ", "never"], hang_at=2))
    left = run_node(modules, server.url, "leave", chatId="leaver", text="Once more")["chunks"]
    assert run_node(modules, server.url, "resume", token="tok-bob", chatId="leaver") == {
        "none": True
    }
    stream_id = left[0]["messageMetadata"]["streamId"]
    status, body, _ = json_request(
        server.url, "POST", f"/api/streams/{stream_id}/cancel", headers=bearer("tok-alice")
    )
    assert status == 200 and body is not None and body["cancelled"] is True  # it was answering


def test_a_stop_through_sluice_ends_the_stream_with_abort(
    modules: Path, server: RunningServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(Reply(text=["first ", "never"], hang_at=1))
    body = {
        "id": "stopped",
        "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Go"}]}],
        "trigger": "submit-message",
    }
    closed_before = fakes.openai.closed
    stream = request(server.url, "POST", "/api/chat", body=body, headers=bearer("tok-alice"))
    assert stream.status == 200
    assert stream.headers["x-vercel-ai-ui-message-stream"] == "v1"
    stream_id = stream.headers["X-Stream-Id"]
    raw = b""
    while b"text-delta" not in raw:
        raw += stream.response.read1(65536)
    status, answer, _ = json_request(
        server.url, "POST", f"/api/streams/{stream_id}/cancel", headers=bearer("tok-alice")
    )
    assert status == 200 and answer == {"stream_id": stream_id, "cancelled": True}
    raw += stream.body()
    assert fakes.run(fakes.openai.wait_closed(closed_before + 1, within=1.0)) < 1.0
    assert raw.endswith(ABORTED)
    # The AI SDK reads it as a stopped message, not an error.
    seen = run_node(modules, server.url, "parse", body=raw.decode())
    assert seen["error"] is None and [p["text"] for p in parts(seen, "text")] == ["first "]
    assert seen["chunks"][-1] == {"type": "abort", "reason": "cancelled"}


def _log(events: list[dict[str, Any]]) -> list[bytes]:
    return [encode_event(i, e["type"], e) for i, e in enumerate(events, start=1)]


def test_every_event_reads_through_the_sdk_schema(modules: Path, server: RunningServer) -> None:
    """Events the fake upstreams do not make (reasoning, approvals, denials) encoded as the
    routes encode them, then read by the AI SDK's own parser and message builder."""
    call = {"type": "tool_call", "approval": "none"}
    result = {"type": "tool_result", "duration_ms": 3}
    events = [
        {"type": "status", "stage": "llm", "state": "start", "progress": 50, "stream_id": "st_x"},
        {"type": "context", "session_id": "s", "intent": {}, "context": {}},
        {"type": "reasoning", "content": "Think "},
        {"type": "reasoning", "content": "hard."},
        {"type": "chunk", "content": "Line\u2028sep "},
        # A round's calls are all announced before their results (plugins/llm.py).
        call | {"call_id": "c1", "name": "shell", "arguments": {}, "approval": "required"},
        call | {"call_id": "c2", "name": "echo", "arguments": {"text": "x"}},
        result | {"call_id": "c1", "name": "shell", "ok": False, "content": "", "error": "denied"},
        result | {"call_id": "c2", "name": "echo", "ok": True, "content": "echo: x"},
        {"type": "reasoning", "content": "Now answer."},
        {"type": "chunk", "content": "Done."},
        {
            "type": "complete",
            "message": "Line\u2028sep Done.",
            "session_id": "s",
            "suggestions": [],
            "provider": "openai",
            "model": "m",
            "mode": "stream",
            "fallback": True,
            "usage": {"input_tokens": 1, "output_tokens": 2},
            "finish_reason": "length",
        },
    ]
    encoder = UIMessageEncoder("st_x", {"streamId": "st_x", "sessionId": "s"})
    body = encoder.start() + encoder.frames(_log(events))
    seen = run_node(modules, server.url, "parse", body=body.decode())
    assert seen["error"] is None
    shape = [p["type"] for p in seen["message"]["parts"]]
    assert shape == [
        "data-status",
        "step-start",
        "reasoning",
        "text",
        "tool-shell",
        "tool-echo",
        "step-start",
        "reasoning",
        "text",
    ]
    assert [p["text"] for p in parts(seen, "reasoning")] == ["Think hard.", "Now answer."]
    assert [p["text"] for p in parts(seen, "text")] == ["Line\u2028sep ", "Done."]
    [shell] = parts(seen, "tool-shell")
    assert shell["state"] == "output-denied" and shell["approval"] == {"id": "c1"}
    assert "tool-approval-request" in kinds(seen)
    assert seen["chunks"][-1]["finishReason"] == "length"
    assert seen["message"]["metadata"]["fallback"] is True

    failed = UIMessageEncoder("st_y", {"streamId": "st_y"})
    error = {"type": "error", "code": "rate_limited", "message": "Slow down.", "retryable": True}
    body = failed.start() + failed.frames(_log([error | {"retry_after": 7}]))
    seen = run_node(modules, server.url, "parse", body=body.decode())
    assert seen["error"] == "Slow down."
    assert seen["message"]["metadata"]["error"] == {
        "code": "rate_limited",
        "retryable": True,
        "retryAfter": 7,
    }


def test_refusals_reach_the_transport_as_errors(
    modules: Path, server: RunningServer, fakes: ThreadedFakes
) -> None:
    user = [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}]
    no_token = run_node(modules, server.url, "refused", token="", chatId="c", messages=user)
    assert json.loads(no_token["thrown"])["error"]["code"] == "unauthorized"
    with_file = [
        {
            "id": "u",
            "role": "user",
            "parts": [
                {"type": "text", "text": "What is this?"},
                {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AA=="},
            ],
        }
    ]
    refused = run_node(modules, server.url, "refused", chatId="c", messages=with_file)
    assert json.loads(refused["thrown"])["error"]["code"] == "unsupported_media_type"
    answer_last = [*user, {"id": "a", "role": "assistant", "parts": []}]
    refused = run_node(modules, server.url, "refused", chatId="c", messages=answer_last)
    assert "/tools/" in json.loads(refused["thrown"])["error"]["message"]
    bad_id = run_node(modules, server.url, "refused", chatId="a b", messages=user)
    assert json.loads(bad_id["thrown"])["error"]["code"] == "bad_request"
    assert not fakes.openai.requests


def test_a_long_conversation_fits_the_chat_body_limit(
    modules: Path, server: RunningServer, fakes: ThreadedFakes
) -> None:
    """The transport sends every earlier message each time: 300 KiB of them is more than
    limits.max_body_bytes, and still a chat the route answers."""
    earlier = [
        {"id": f"m{i}", "role": role, "parts": [{"type": "text", "text": "x" * 3000}]}
        for i, role in enumerate(["user", "assistant"] * 50)
    ]
    said = [*earlier, {"id": "last", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}]
    seen = run_node(modules, server.url, "send", chatId="long-1", messages=said)
    assert seen["error"] is None and parts(seen, "text")[0]["text"] == "Hello, world!"


def test_a_chat_resumes_and_stops_through_another_instance(
    modules: Path,
    start_server: StartServer,
    redis_server: RedisServer,
    tmp_path: Path,
    fakes: ThreadedFakes,
) -> None:
    """Two processes on one Redis (history shared, as PostgreSQL would be): a chat answered
    by one is resumed from the other, from its start, and stopped through it."""
    env = {
        "REDIS_URL": redis_server.url,
        "SLUICE_LLM__PROVIDERS": "openai",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": fakes.openai.base_url,
    }
    shared = tmp_path / "shared-data"
    shared.mkdir()
    producer, other = (start_server(env, data_dir=shared) for _ in range(2))
    pieces = [f"word{i} " for i in range(30)]
    fakes.openai.default = Reply(text=pieces, interval=0.05)
    both = run_node(
        modules,
        producer.url,
        "leaveAndResume",
        resumeUrl=other.url,
        chatId="roaming",
        text="Tell me a story",
    )
    left, seen = both["left"], both["resumed"]
    assert seen["chunks"][0] == left[0]
    assert [p["text"] for p in parts(seen, "text")] == ["".join(pieces)]
    assert seen["chunks"][-1]["type"] == "finish"

    fakes.openai.script(Reply(text=["first ", "never"], hang_at=1))
    said = {"id": "u", "role": "user", "parts": [{"type": "text", "text": "Go on"}]}
    body = {"id": "roaming", "messages": [said], "trigger": "submit-message"}
    stream = request(producer.url, "POST", "/api/chat", body=body, headers=bearer("tok-alice"))
    raw = b""
    while b"text-delta" not in raw:
        raw += stream.response.read1(65536)
    stream_id = stream.headers["X-Stream-Id"]
    status, _, _ = json_request(
        other.url, "POST", f"/api/streams/{stream_id}/cancel", headers=bearer("tok-alice")
    )
    assert status == 200
    assert stream.body().endswith(ABORTED)


def test_a_second_message_while_the_chat_answers_is_refused_and_regenerate_asks_again(
    modules: Path, server: RunningServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(Reply(text=["w0 ", "w1 ", "never"], hang_at=2))
    left = run_node(modules, server.url, "leave", chatId="busy", text="First")
    stream_id = left["chunks"][0]["messageMetadata"]["streamId"]
    user = [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Second"}]}]
    refused = run_node(modules, server.url, "refused", chatId="busy", messages=user)
    error = json.loads(refused["thrown"])["error"]
    assert error == error | {"code": "turn_in_progress", "stream_id": stream_id}
    status, _, _ = json_request(
        server.url, "POST", f"/api/streams/{stream_id}/cancel", headers=bearer("tok-alice")
    )
    assert status == 200
    run_node(modules, server.url, "resume", chatId="busy")  # until that answer has ended
    fakes.openai.default = Reply(text=["Again."])
    first = {"id": "u", "role": "user", "parts": [{"type": "text", "text": "First"}]}
    seen = run_node(
        modules, server.url, "send", chatId="busy", messages=[first], trigger="regenerate-message"
    )
    assert [p["text"] for p in parts(seen, "text")] == ["Again."]
    said = history(server, "alice", "busy")
    assert (
        said[0][0] == "user"
        and said[0][1] == "First"
        and said[-2:]
        == [
            ("user", "First"),
            ("assistant", "Again."),
        ]
    )
