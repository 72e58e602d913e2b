"""Tools the API client runs itself (``Tool.for_client``), in the llm stage's loop: offered to
the model, never run; a round that calls one ends the turn with the calls on ``complete``.
In-process, through the real pipeline with a scripted model, as a plugin author tests."""

from __future__ import annotations

from server import GenerationParams, Message, Tool, ToolCall, ToolChoice, ToolResult, tool
from server.testing import ScriptedProvider, make_turn, run_pipeline

LOOKUP = Tool.for_client("lookup", "Look a city up.", {"type": "object"})


@tool
async def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny in {city}"


def test_a_client_call_ends_the_turn_with_the_call_and_sluice_runs_nothing() -> None:
    provider = ScriptedProvider(
        rounds=[["Let me see. ", ToolCall("c1", "lookup", {"city": "Oslo"})], ["never asked"]]
    )
    result = run_pipeline(["llm"], provider=provider, tools=[weather, LOOKUP])
    assert result.complete is not None
    assert result.complete["message"] == "Let me see. "
    assert result.complete["finish_reason"] == "tool_calls"
    assert result.complete["client_tool_calls"] == [
        {"call_id": "c1", "name": "lookup", "arguments": {"city": "Oslo"}}
    ]
    assert result.complete["tool_calls"] == 0
    assert not result.of_type("tool_call") and not result.of_type("tool_result")
    assert len(provider.prompts) == 1
    assert LOOKUP.runs_on_client and not weather.runs_on_client


def test_server_rounds_run_first_and_a_mixed_round_runs_none_of_its_server_calls() -> None:
    provider = ScriptedProvider(
        rounds=[
            [ToolCall("s1", "weather", {"city": "Oslo"})],
            [ToolCall("s2", "weather", {"city": "Rome"}), ToolCall("c1", "lookup", {})],
            ["never asked"],
        ]
    )
    result = run_pipeline(["llm"], provider=provider, tools=[weather, LOOKUP])
    assert result.complete is not None
    # The first round's server call ran; the second round's did not, its client call ended it.
    assert [e["call_id"] for e in result.of_type("tool_call")] == ["s1"]
    assert [e["call_id"] for e in result.of_type("tool_result")] == ["s1"]
    assert [c["call_id"] for c in result.complete["client_tool_calls"]] == ["c1"]
    assert result.complete["tool_calls"] == 1
    assert len(provider.prompts) == 2


def test_a_forced_tool_choice_holds_for_the_first_round_only() -> None:
    turn = make_turn("Weather?")
    turn.params = GenerationParams(tool_choice=ToolChoice("function", "weather"))
    provider = ScriptedProvider(rounds=[[ToolCall("s1", "weather", {"city": "Oslo"})], ["Sunny."]])
    result = run_pipeline(["llm"], provider=provider, tools=[weather], turn=turn)
    assert result.complete is not None and result.complete["message"] == "Sunny."
    choices = [p.tool_choice if p is not None else None for p in provider.params]
    assert choices == [ToolChoice("function", "weather"), ToolChoice("auto")]


def test_a_continuation_turn_ends_the_prompt_with_the_client_results() -> None:
    """An empty message (the client sent its tools' results) adds no user message."""
    provider = ScriptedProvider(["Sunny in Oslo."])
    turn = make_turn("")
    turn.history = [
        Message("user", "Weather in Oslo?"),
        Message("assistant", "", (ToolCall("c1", "lookup", {"city": "Oslo"}),)),
        Message("tool", "", (ToolResult("c1", "lookup", True, "sunny"),)),
    ]
    run_pipeline(["context", "llm"], provider=provider, turn=turn, tools=[LOOKUP])
    assert [m.role for m in provider.prompts[0]] == ["system", "user", "assistant", "tool"]
