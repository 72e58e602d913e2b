"""Claude with tools, end to end: the real server (``python -m server``) with fake Anthropic,
OpenAI and Gemini upstreams on loopback. A plugin tool and an MCP server's tool run for
Claude as they do for OpenAI, its thinking streams as ``reasoning`` events and goes back
signed within the tool round, and a conversation moves between the three providers between
rounds: the calls one made reach the next in its own format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import AnthropicReply, Reply
from tests.fakes.threaded import ThreadedFakes
from tests.support.packages import install_into
from tests.support.server import ROOT, RunningServer
from tests.support.sse import bearer, events, json_request, start_stream
from tests.support.tool_package import ENABLED_TOOLS, write_tool_package

ALICE = bearer("tok-alice")
THINKING = ["Two tools: ", "count, then convert."]


def keys(fakes: ThreadedFakes) -> dict[str, str]:
    return {
        "ANTHROPIC_API_KEY": "sk-ant-api03-E2ETOOLS0123456789abcdef",
        "ANTHROPIC_BASE_URL": fakes.anthropic.url,
        "OPENAI_API_KEY": "sk-test-0123456789",
        "OPENAI_BASE_URL": fakes.openai.base_url,
        "GEMINI_API_KEY": "AIzaTEST0123456789abcdefghijkl",
        "GEMINI_BASE_URL": fakes.gemini.url,
        "SLUICE_LLM__FIRST_TOKEN_TIMEOUT_SECONDS": "5",
    }


def ask(server: RunningServer, message: str, **body: Any) -> list[dict[str, Any]]:
    stream = start_stream(server.url, message, **body)
    assert stream.status == 200
    evs = events(stream.read_all())
    assert evs[-1]["type"] == "complete", evs[-1]
    return evs


def of(evs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in evs if e["type"] == kind]


def blocks(body: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """A request's messages as (role, block types)."""
    return [(m["role"], [b["type"] for b in m["content"]]) for m in body["messages"]]


@pytest.fixture(scope="module")
def installed_tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_into(tmp_path_factory.mktemp("tools-site"), ROOT / "examples" / "tools")


def test_a_plugin_tool_and_an_mcp_tool_run_for_claude_with_its_thinking(
    start_server: StartServer, fakes: ThreadedFakes, installed_tool: Path, tmp_path: Path
) -> None:
    """The README's tool plugin and MCP server (examples/tools), Claude thinking first."""
    config = tmp_path / "config.toml"
    config.write_text(
        (ROOT / "examples/tools/enable.toml").read_text(encoding="utf-8")
        + "\n"
        + (ROOT / "examples/tools/mcp.toml").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    fakes.anthropic.script(
        AnthropicReply(
            text=["Let me check. "],
            thinking=THINKING,
            signature="sig-round-1",
            tool_calls=[
                ("toolu_1", "word_count", '{"text": "three small words"}'),
                ("toolu_2", "celsius_to_fahrenheit", '{"celsius": 100}'),
            ],
        ),
        Reply(text=["Three words; ", "212 °F."]),
    )
    server = start_server(
        {
            **keys(fakes),
            "SLUICE_CONFIG": str(config),
            "PYTHONPATH": f"{installed_tool}:{ROOT}",
            "SLUICE_LLM__PROVIDERS": "anthropic",
            "SLUICE_LLM__ANTHROPIC__THINKING_BUDGET_TOKENS": "1024",
        }
    )
    stream = start_stream(server.url, "How many words, and how hot is 100 °C?")
    seen: list[dict[str, Any]] = []
    for frame in stream:
        if frame.data:
            seen.append(frame.data)
            if frame.data["type"] == "tool_call" and frame.data["call_id"] == "toolu_2":
                break
    assert seen[-1]["approval"] == "required"  # the MCP server's require_approval
    status, _, _ = json_request(
        server.url,
        "POST",
        f"/api/streams/{seen[0]['stream_id']}/tools/toolu_2",
        body={"approve": True},
        headers=ALICE,
    )
    assert status == 204
    evs = events(stream.read_all())  # every frame, those read above included
    end = evs[-1]
    assert end["type"] == "complete" and end["provider"] == "anthropic"
    assert end["tool_calls"] == 2
    assert "".join(e["content"] for e in of(evs, "reasoning")) == "".join(THINKING)
    assert "".join(e["content"] for e in of(evs, "chunk")) == end["message"]
    assert end["message"] == "Let me check. Three words; 212 °F."
    results = {e["call_id"]: e for e in of(evs, "tool_result")}
    assert results["toolu_1"]["ok"] and results["toolu_1"]["content"] == "3"
    assert json.loads(results["toolu_2"]["content"]) == 212.0

    first, second = (r.body for r in fakes.anthropic.requests)
    assert {t["name"] for t in first["tools"]} == {
        "current_time",
        "word_count",
        "celsius_to_fahrenheit",
    }
    assert all({"name", "description", "input_schema"} <= set(t) for t in first["tools"])
    assert first["thinking"] == second["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert blocks(second)[1:] == [
        ("assistant", ["thinking", "text", "tool_use", "tool_use"]),
        ("user", ["tool_result", "tool_result"]),
    ]
    thought = second["messages"][1]["content"][0]
    assert thought == {
        "type": "thinking",
        "thinking": "".join(THINKING),
        "signature": "sig-round-1",
    }
    answered = {b["tool_use_id"]: b["content"] for b in second["messages"][2]["content"]}
    assert answered == {"toolu_1": "3", "toolu_2": results["toolu_2"]["content"]}


def test_a_round_begun_by_openai_is_finished_by_claude_and_the_history_stays(
    start_server: StartServer, fakes: ThreadedFakes, tmp_path: Path
) -> None:
    fakes.openai.script(
        Reply(text=["Checking. "], tool_calls=[("call_x", "echo", '{"text": "moved"}')]),
    )
    fakes.openai.default = Reply(status=500)
    fakes.anthropic.script(Reply(text=["From ", "Claude."]), Reply(text=["Again Claude."]))
    server = start_server(
        {
            **keys(fakes),
            "PYTHONPATH": write_tool_package(tmp_path / "site"),
            "SLUICE_TOOLS__ENABLED": ENABLED_TOOLS,
            "SLUICE_LLM__PROVIDERS": "openai,anthropic",
            # Thinking on: the round began without it, so it goes on without it.
            "SLUICE_LLM__ANTHROPIC__THINKING_BUDGET_TOKENS": "1024",
        }
    )
    evs = ask(server, "Echo something")
    end = evs[-1]
    assert (end["provider"], end["fallback"]) == ("anthropic", True)
    assert end["message"] == "Checking. From Claude."
    [result] = of(evs, "tool_result")
    assert result["content"] == "echo: moved"
    [sent] = (r.body for r in fakes.anthropic.requests)
    assert "thinking" not in sent
    assert blocks(sent) == [
        ("user", ["text"]),
        ("assistant", ["text", "tool_use"]),
        ("user", ["tool_result"]),
    ]
    assert sent["messages"][1]["content"][1] == {
        "type": "tool_use",
        "id": "call_x",
        "name": "echo",
        "input": {"text": "moved"},
    }
    assert sent["messages"][2]["content"][0]["tool_use_id"] == "call_x"
    assert sent["messages"][2]["content"][0]["content"] == "echo: moved"

    # The next turn of the session: the round, from history, in Claude's format again.
    ask(server, "Thanks", session_id=end["session_id"])
    later = fakes.anthropic.requests[-1].body
    assert blocks(later) == [
        ("user", ["text"]),
        ("assistant", ["text", "tool_use"]),
        ("user", ["tool_result"]),
        ("assistant", ["text"]),
        ("user", ["text"]),
    ]
    assert later["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_a_round_begun_by_claude_is_finished_by_gemini(
    start_server: StartServer, fakes: ThreadedFakes, tmp_path: Path
) -> None:
    """Claude's signed thinking means nothing to Gemini: the calls and results reach it as
    functionCall and functionResponse, the thinking does not."""
    fakes.anthropic.script(
        AnthropicReply(
            text=[],
            thinking=["Echo it."],
            tool_calls=[("toolu_g", "echo", '{"text": "across"}')],
        )
    )
    fakes.anthropic.default = Reply(status=529, message="Overloaded")
    fakes.gemini.default = Reply(text=["Gemini ", "finished."])
    server = start_server(
        {
            **keys(fakes),
            "PYTHONPATH": write_tool_package(tmp_path / "site"),
            "SLUICE_TOOLS__ENABLED": ENABLED_TOOLS,
            "SLUICE_LLM__PROVIDERS": "anthropic,gemini",
            "SLUICE_LLM__ANTHROPIC__THINKING_BUDGET_TOKENS": "1024",
        }
    )
    evs = ask(server, "Echo across")
    end = evs[-1]
    assert (end["provider"], end["fallback"], end["message"]) == (
        "gemini",
        True,
        "Gemini finished.",
    )
    assert [e["content"] for e in of(evs, "reasoning")] == ["Echo it."]
    [sent] = fakes.gemini.requests
    parts = [p for c in sent.body["contents"] for p in c["parts"]]
    assert {"functionCall": {"name": "echo", "args": {"text": "across"}}} in parts
    response = {"functionResponse": {"name": "echo", "response": {"output": "echo: across"}}}
    assert response in parts
    assert "Echo it." not in json.dumps(sent.body)
    # Anthropic: the stream, the plain call after its 529; then Gemini.
    assert [r.stream for r in fakes.anthropic.requests] == [True, True, False]


@pytest.mark.parametrize(
    ("chain", "failing", "answering"),
    [
        ("anthropic,gemini", "anthropic", "gemini"),
        ("gemini,anthropic", "gemini", "anthropic"),
        ("openai,anthropic", "openai", "anthropic"),
    ],
)
def test_falls_back_both_ways(
    start_server: StartServer, fakes: ThreadedFakes, chain: str, failing: str, answering: str
) -> None:
    fake = {"anthropic": fakes.anthropic, "gemini": fakes.gemini, "openai": fakes.openai}
    status = 529 if failing == "anthropic" else 503
    fake[failing].default = Reply(status=status, message="Overloaded")
    fake[answering].default = Reply(text=["مرحبا ", "👋🏽", " done."], split_utf8=True)
    server = start_server({**keys(fakes), "SLUICE_PROVIDERS": chain})
    evs = ask(server, "Hello")
    end = evs[-1]
    assert (end["provider"], end["fallback"]) == (answering, True)
    assert "".join(e["content"] for e in of(evs, "chunk")) == end["message"] == "مرحبا 👋🏽 done."
    assert len(fake[failing].requests) == 2  # streamed, then plain: a 5xx
    assert len(fake[answering].requests) == 1
