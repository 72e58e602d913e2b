"""Reasoning a provider streams reaches the client as ``reasoning`` events, never as answer
text, and goes back to the model with its tool calls (signed blocks whole, as Anthropic
requires within a tool round)."""

from __future__ import annotations

from typing import Any

from server import (
    FailureKind,
    ProviderError,
    ReasoningPart,
    ToolCall,
    part_from_dict,
    part_to_dict,
    tool,
)
from server.testing import ScriptedProvider, run_pipeline


@tool
async def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny in {city}"


def test_reasoning_streams_apart_from_the_answer() -> None:
    provider = ScriptedProvider(
        [ReasoningPart("The user "), ReasoningPart("greets me."), "Hello ", "there"]
    )
    result = run_pipeline(["llm"], provider=provider)
    assert [e["content"] for e in result.of_type("reasoning")] == ["The user ", "greets me."]
    assert "".join(e["content"] for e in result.of_type("chunk")) == "Hello there"
    assert result.complete is not None
    assert result.complete["message"] == "Hello there"
    # Reasoning comes before the text, in the order the provider gave it.
    kinds = [e["type"] for e in result.events if e["type"] in ("reasoning", "chunk")]
    assert kinds == ["reasoning", "reasoning", "chunk", "chunk"]


def test_a_tool_round_gives_the_model_its_signed_reasoning_back() -> None:
    provider = ScriptedProvider(
        rounds=[
            [
                ReasoningPart("I should "),
                ReasoningPart("check the weather."),
                ReasoningPart("", signature="sig-1", source="scripted"),
                ReasoningPart("", redacted="opaque", source="scripted"),
                ReasoningPart("Unsigned tail."),
                ToolCall("c1", "weather", {"city": "Oslo"}),
            ],
            ["Sunny."],
        ]
    )
    result = run_pipeline(["llm"], provider=provider, tools=[weather])
    assert result.complete is not None
    assert result.complete["message"] == "Sunny."
    assert len(result.of_type("reasoning")) == 3  # empty pieces carry no event
    second_prompt = provider.prompts[1]
    assistant = second_prompt[-2]
    assert assistant.role == "assistant"
    assert assistant.parts == (
        ReasoningPart("I should check the weather.", "sig-1", "scripted"),
        ReasoningPart("", None, "scripted", "opaque"),
        ReasoningPart("Unsigned tail."),
        ToolCall("c1", "weather", {"city": "Oslo"}),
    )


class PlainOnly(ScriptedProvider):
    """Refuses to stream, so the chain falls back to a plain call."""

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        raise ProviderError(FailureKind.STREAM_UNSUPPORTED, "no streaming here")


def test_a_plain_call_gives_its_reasoning_first() -> None:
    provider = PlainOnly([ReasoningPart("Hmm."), "Answer."])
    result = run_pipeline(["llm"], provider=provider)
    kinds = [e["type"] for e in result.events if e["type"] in ("reasoning", "chunk")]
    assert kinds[0] == "reasoning" and "chunk" in kinds
    assert result.of_type("reasoning")[0]["content"] == "Hmm."
    assert result.complete is not None
    assert result.complete["message"] == "Answer."
    assert result.complete["mode"] == "non-stream"


def test_reasoning_parts_keep_their_shape_as_json() -> None:
    for part in (
        ReasoningPart("thinking"),
        ReasoningPart("signed", "sig", "anthropic"),
        ReasoningPart("", None, "anthropic", "opaque"),
        ReasoningPart("kept in history", duration_ms=4210.5),
    ):
        data = part_to_dict(part)
        assert data["type"] == "reasoning"
        assert part_from_dict(data) == part
    assert part_to_dict(ReasoningPart("t")) == {"type": "reasoning", "text": "t"}
