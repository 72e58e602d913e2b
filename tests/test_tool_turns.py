"""Tool rounds end to end: the real server (``python -m server``) with fake OpenAI and Gemini
upstreams speaking their real wire formats (streamed ``delta.tool_calls`` with arguments
split over frames and two calls interleaved; Gemini ``functionCall``), and tools from a
package found through the ``sluice.tools`` entry point group, as an operator installs one.

What the client sees (``tool_call`` / ``tool_result`` events, one result per call before the
terminal event, the text), and what the upstream was sent for the next round.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Recorded, Reply
from tests.fakes.threaded import ThreadedFakes
from tests.support.server import RunningServer
from tests.support.sse import EventStream, bearer, events, json_request, request, start_stream
from tests.support.tool_package import ENABLED_TOOLS, write_tool_package

AUTH = bearer("tok-alice")


@pytest.fixture
def tools_path(tmp_path: Path) -> str:
    return write_tool_package(tmp_path / "site")


ENABLED = ENABLED_TOOLS


def start(
    start_server: StartServer, fakes: ThreadedFakes, tools_path: str, **env: str
) -> RunningServer:
    base = {
        "PYTHONPATH": tools_path,
        "SLUICE_TOOLS__ENABLED": ENABLED,
        "SLUICE_LLM__PROVIDERS": "openai",
        "OPENAI_API_KEY": "sk-test-0123456789",
        "OPENAI_BASE_URL": fakes.openai.base_url,
        "GEMINI_API_KEY": "AIzaTEST0123456789abcdefghijkl",
        "GEMINI_BASE_URL": fakes.gemini.url,
        "SLUICE_LLM__FIRST_TOKEN_TIMEOUT_SECONDS": "5",
    }
    base.update(env)
    return start_server(base)


def ask(server: RunningServer, message: str = "Use your tools") -> list[dict[str, Any]]:
    stream = start_stream(server.url, message)
    assert stream.status == 200
    return events(stream.read_all())


def of(evs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in evs if e["type"] == kind]


def check_pairs(evs: list[dict[str, Any]]) -> None:
    """Every tool_call has exactly one tool_result, after it and before the one terminal."""
    calls = [e["call_id"] for e in of(evs, "tool_call")]
    results = [e["call_id"] for e in of(evs, "tool_result")]
    assert sorted(calls) == sorted(results) and len(set(calls)) == len(calls)
    for call_id in calls:
        at_call = next(i for i, e in enumerate(evs) if e.get("call_id") == call_id)
        at_result = max(i for i, e in enumerate(evs) if e.get("call_id") == call_id)
        assert at_call < at_result
    assert evs[-1]["type"] in ("complete", "error")
    assert sum(e["type"] in ("complete", "error") for e in evs) == 1


def text_of(evs: list[dict[str, Any]]) -> str:
    return "".join(e["content"] for e in of(evs, "chunk"))


def requests(fake: Any) -> list[Recorded]:
    return list(fake.requests)


def test_a_tool_round_through_openai_with_parallel_calls_split_over_frames(
    start_server: StartServer, fakes: ThreadedFakes, tools_path: str
) -> None:
    fakes.openai.script(
        Reply(
            text=["Let me check. "],
            tool_calls=[
                ("call_a", "echo", '{"text": "hello there, world"}'),
                ("call_b", "current_time", '{"timezone": "Asia/Tokyo"}'),
            ],
        ),
        Reply(text=["Both ", "done."]),
    )
    server = start(start_server, fakes, tools_path)
    evs = ask(server)
    check_pairs(evs)
    calls = of(evs, "tool_call")
    assert [(c["call_id"], c["name"], c["arguments"], c["approval"]) for c in calls] == [
        ("call_a", "echo", {"text": "hello there, world"}, "none"),
        ("call_b", "current_time", {"timezone": "Asia/Tokyo"}, "none"),
    ]
    results = {r["call_id"]: r for r in of(evs, "tool_result")}
    assert (
        results["call_a"]["ok"] is True
        and results["call_a"]["content"] == "echo: hello there, world"
    )
    assert results["call_b"]["ok"] is True and results["call_b"]["content"].endswith("+09:00")
    end = evs[-1]
    assert end["type"] == "complete" and end["tool_calls"] == 2
    assert text_of(evs) == end["message"] == "Let me check. Both done."
    first, second = requests(fakes.openai)
    assert {t["function"]["name"] for t in first.body["tools"]} >= {"echo", "current_time"}
    sent = second.body["messages"]
    assistant = next(m for m in sent if m.get("tool_calls"))
    assert assistant["content"] == "Let me check. "
    assert [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in assistant["tool_calls"]
    ] == [
        ("call_a", "echo", {"text": "hello there, world"}),
        ("call_b", "current_time", {"timezone": "Asia/Tokyo"}),
    ]
    tool_messages = [m for m in sent if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages[:1]] == [
        ("call_a", "echo: hello there, world")
    ]
    assert sent.index(assistant) + 1 == sent.index(tool_messages[0])


def test_a_tool_round_through_gemini(
    start_server: StartServer, fakes: ThreadedFakes, tools_path: str
) -> None:
    fakes.gemini.script(
        Reply(text=["Checking. "], tool_calls=[("", "echo", '{"text": "hi"}')]),
        Reply(text=["Gemini ", "answered."]),
    )
    server = start(start_server, fakes, tools_path, SLUICE_LLM__PROVIDERS="gemini")
    evs = ask(server)
    check_pairs(evs)
    [call] = of(evs, "tool_call")
    assert call["name"] == "echo" and call["arguments"] == {"text": "hi"} and call["call_id"]
    [result] = of(evs, "tool_result")
    assert result["ok"] and result["content"] == "echo: hi"
    assert evs[-1]["type"] == "complete" and evs[-1]["provider"] == "gemini"
    assert text_of(evs) == evs[-1]["message"] == "Checking. Gemini answered."
    first, second = requests(fakes.gemini)
    declared = first.body["tools"][0]["functionDeclarations"]
    assert "echo" in {d["name"] for d in declared}
    model_turn = next(c for c in second.body["contents"] if c["role"] == "model")
    assert {"functionCall": {"name": "echo", "args": {"text": "hi"}}} in model_turn["parts"]
    answered = second.body["contents"][-1]
    assert answered["role"] == "user"
    assert answered["parts"] == [
        {"functionResponse": {"name": "echo", "response": {"output": "echo: hi"}}}
    ]


def test_the_second_round_falls_back_to_another_provider(
    start_server: StartServer, fakes: ThreadedFakes, tools_path: str
) -> None:
    fakes.openai.script(
        Reply(text=[], tool_calls=[("call_x", "echo", '{"text": "moved"}')]),
        Reply(status=500),
        Reply(status=500),
    )
    fakes.gemini.default = Reply(text=["From ", "Gemini."])
    server = start(start_server, fakes, tools_path, SLUICE_LLM__PROVIDERS="openai,gemini")
    evs = ask(server)
    check_pairs(evs)
    end = evs[-1]
    assert end["type"] == "complete" and end["provider"] == "gemini" and end["fallback"] is True
    assert text_of(evs) == end["message"] == "From Gemini."
    [sent] = requests(fakes.gemini)
    parts = [p for c in sent.body["contents"] for p in c["parts"]]
    assert {"functionCall": {"name": "echo", "args": {"text": "moved"}}} in parts
    assert {"functionResponse": {"name": "echo", "response": {"output": "echo: moved"}}} in parts


def test_the_demo_provider_calls_the_time_tool(start_server: StartServer) -> None:
    server = start_server({})
    evs = ask(server, "What time is it in Tokyo?")
    check_pairs(evs)
    [call] = of(evs, "tool_call")
    assert call["name"] == "current_time" and call["arguments"] == {"timezone": "Asia/Tokyo"}
    [result] = of(evs, "tool_result")
    assert result["ok"] and result["content"].endswith("+09:00")
    end = evs[-1]
    assert end["type"] == "complete" and end["provider"] == "demo" and end["tool_calls"] == 1
    assert "in Asia/Tokyo" in end["message"] and text_of(evs) == end["message"]


def test_failures_are_results_for_the_model(
    start_server: StartServer, fakes: ThreadedFakes, tools_path: str
) -> None:
    """Malformed argument JSON, arguments against the schema, a tool that raises and one
    that outlives tools.timeout_seconds: each a result the model is given; the turn goes on."""
    fakes.openai.script(
        Reply(
            text=[],
            tool_calls=[
                ("c1", "echo", '{"text": "unterminated'),
                ("c2", "echo", '{"words": 3}'),
                ("c3", "explode", "{}"),
                ("c4", "slow", '{"seconds": 30}'),
            ],
        ),
        Reply(text=["Sorry."]),
    )
    server = start(start_server, fakes, tools_path, SLUICE_TOOLS__TIMEOUT_SECONDS="0.5")
    evs = ask(server)
    check_pairs(evs)
    results = {r["call_id"]: r for r in of(evs, "tool_result")}
    assert results["c1"]["error"] == "invalid_arguments" and "JSON" in results["c1"]["content"]
    assert results["c2"]["error"] == "invalid_arguments" and "text" in results["c2"]["content"]
    assert results["c3"]["error"] == "failed"
    assert (
        "flux capacitor" in results["c3"]["content"] and "Traceback" not in results["c3"]["content"]
    )
    assert results["c4"]["error"] == "timeout" and 400 <= results["c4"]["duration_ms"] < 5000
    assert not any(r["ok"] for r in results.values())
    assert evs[-1]["type"] == "complete" and evs[-1]["message"] == "Sorry."
    _, second = requests(fakes.openai)
    given = {
        m["tool_call_id"]: m["content"] for m in second.body["messages"] if m["role"] == "tool"
    }
    assert given == {k: r["content"] for k, r in results.items()}


def test_rounds_are_capped_and_the_last_answer_has_no_tools(
    start_server: StartServer, fakes: ThreadedFakes, tools_path: str
) -> None:
    fakes.openai.default = Reply(text=["again "], tool_calls=[("c", "echo", '{"text": "x"}')])
    server = start(start_server, fakes, tools_path, SLUICE_TOOLS__MAX_ROUNDS="2")
    evs = ask(server)
    check_pairs(evs)
    assert len(of(evs, "tool_result")) == 2
    sent = requests(fakes.openai)
    assert len(sent) == 3
    assert "tools" in sent[0].body and "tools" in sent[1].body and "tools" not in sent[2].body
    assert evs[-1]["type"] == "complete" and evs[-1]["tool_calls"] == 2
    assert evs[-1]["message"] == "again again again "
    # Ids the provider repeated are made unique in the stream.
    assert len({e["call_id"] for e in of(evs, "tool_call")}) == 2


def wait_for_call(stream: EventStream) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for frame in stream:
        if frame.data:
            seen.append(frame.data)
            if frame.data["type"] == "tool_call":
                return seen
    raise AssertionError(f"no tool_call in {seen}")


def test_stop_ends_a_running_tool_within_a_second(
    start_server: StartServer, fakes: ThreadedFakes, tools_path: str
) -> None:
    fakes.openai.script(
        Reply(
            text=[],
            tool_calls=[("c1", "slow", '{"seconds": 60}'), ("c2", "echo", '{"text": "never"}')],
        )
    )
    server = start(start_server, fakes, tools_path)
    stream = start_stream(server.url, "Sleep")
    seen = wait_for_call(stream)
    stream_id = seen[0]["stream_id"]
    stopped = time.monotonic()
    status, _, _ = json_request(
        server.url, "POST", f"/api/streams/{stream_id}/cancel", headers=AUTH
    )
    assert status == 200
    evs = events(stream.read_all())
    took = time.monotonic() - stopped
    check_pairs(evs)
    assert took < 1.0
    results = {r["call_id"]: r for r in of(evs, "tool_result")}
    assert results["c1"]["error"] == "cancelled" and results["c2"]["error"] == "cancelled"
    assert evs[-1]["type"] == "error" and evs[-1]["code"] == "cancelled"


def decide(
    server: RunningServer, stream_id: str, call_id: str, approve: Any, token: str = "tok-alice"
) -> int:
    status, _, _ = json_request(
        server.url,
        "POST",
        f"/api/streams/{stream_id}/tools/{call_id}",
        body={"approve": approve},
        headers=bearer(token),
    )
    return status


def test_approval_approve_deny_and_the_rules_of_the_endpoint(
    start_server: StartServer, fakes: ThreadedFakes, tools_path: str
) -> None:
    fakes.openai.script(
        Reply(
            text=[],
            tool_calls=[
                ("c1", "guarded_echo", '{"text": "one"}'),
                ("c2", "guarded_echo", '{"text": "two"}'),
            ],
        ),
        Reply(text=["ok"]),
    )
    server = start(start_server, fakes, tools_path)
    stream = start_stream(server.url, "Guarded")
    seen = wait_for_call(stream)
    stream_id = seen[0]["stream_id"]
    assert seen[-1]["approval"] == "required"
    assert decide(server, stream_id, "c1", True, token="tok-bob") == 404  # not bob's stream
    assert decide(server, stream_id, "nope", True) == 404
    assert decide(server, stream_id, "c1", "yes") == 400
    assert decide(server, stream_id, "c1", True) == 204
    assert decide(server, stream_id, "c1", False) == 409
    assert decide(server, stream_id, "c2", False) == 204
    evs = events(stream.read_all())
    check_pairs(evs)
    results = {r["call_id"]: r for r in of(evs, "tool_result")}
    assert results["c1"]["ok"] and results["c1"]["content"] == "guarded: one"
    assert results["c2"]["error"] == "denied" and not results["c2"]["ok"]
    assert evs[-1]["type"] == "complete" and evs[-1]["tool_calls"] == 2
    # Counted by the tool service, where the call was decided and run.
    metrics = request(server.url, "GET", "/metrics").body().decode()
    assert 'sluice_tool_calls_total{outcome="ok",tool="guarded_echo"} 1.0' in metrics
    assert 'sluice_tool_calls_total{outcome="denied",tool="guarded_echo"} 1.0' in metrics


def test_an_undecided_call_is_denied_after_the_approval_timeout(
    start_server: StartServer, fakes: ThreadedFakes, tools_path: str
) -> None:
    fakes.openai.script(
        Reply(text=[], tool_calls=[("c1", "guarded_echo", '{"text": "one"}')]),
        Reply(text=["ok"]),
    )
    server = start(start_server, fakes, tools_path, SLUICE_TOOLS__APPROVAL_TIMEOUT_SECONDS="0.5")
    evs = ask(server)
    check_pairs(evs)
    [result] = of(evs, "tool_result")
    assert result["error"] == "denied"
    stream_id = evs[0]["stream_id"]
    assert decide(server, stream_id, "c1", True) == 409


def test_stop_ends_a_wait_for_approval(
    start_server: StartServer, fakes: ThreadedFakes, tools_path: str
) -> None:
    fakes.openai.script(Reply(text=[], tool_calls=[("c1", "guarded_echo", '{"text": "one"}')]))
    server = start(start_server, fakes, tools_path)
    stream = start_stream(server.url, "Guarded")
    seen = wait_for_call(stream)
    stream_id = seen[0]["stream_id"]
    stopped = time.monotonic()
    json_request(server.url, "POST", f"/api/streams/{stream_id}/cancel", headers=AUTH)
    evs = events(stream.read_all())
    assert time.monotonic() - stopped < 1.0
    check_pairs(evs)
    assert of(evs, "tool_result")[0]["error"] == "cancelled"
    assert evs[-1]["code"] == "cancelled"
    assert decide(server, stream_id, "c1", True) == 409
