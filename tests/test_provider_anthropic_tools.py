"""The anthropic provider's tool use and thinking against the fake Anthropic server.

The fake's streamed ``thinking``, ``redacted_thinking`` and ``tool_use`` blocks are first read
by the official SDK's own stream accumulator: if they drifted from the real wire format,
the provider tests after it would prove nothing.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from plugins.providers.anthropic import AnthropicOptions, AnthropicProvider
from plugins.providers.anthropic_prompt import (
    MAX_BREAKPOINTS,
    in_tool_loop_without_thinking,
    to_anthropic,
)
from server import (
    FailureKind,
    GenerationParams,
    ImagePart,
    Message,
    ProviderError,
    ReasoningPart,
    ToolCall,
    ToolChoice,
    ToolErrorKind,
    ToolResult,
    tool,
)
from server.llm.transport import provider_context
from server.testing import make_turn, run_pipeline_async
from tests.fakes.llm_upstreams import AnthropicReply, FakeAnthropic, Reply

pytestmark = pytest.mark.anyio

KEY = "sk-ant-api03-TOOLSECRET0123456789abcdef"
CALLS = [
    ("toolu_01", "current_time", '{"timezone": "Asia/Tokyo"}'),
    ("toolu_02", "word_count", '{"text": "two words", "unique": true}'),
]
THINKING = ["The user wants ", "the time in Tokyo ", "and a word count."]


@tool
async def current_time(timezone: str) -> str:
    """The current time in an IANA time zone."""
    return "12:00"


@tool
async def word_count(text: str, unique: bool = False) -> int:
    """How many words a text has."""
    return len(text.split())


TOOLS = [current_time, word_count]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server  # type: ignore[misc]


def make(base_url: str, **options: Any) -> AnthropicProvider:
    return AnthropicProvider(
        AnthropicOptions(base_url=base_url, **options),
        provider_context({"ANTHROPIC_API_KEY": KEY}),
    )


async def collect(
    provider: AnthropicProvider,
    prompt: list[Message],
    *,
    params: GenerationParams | None = None,
    max_output_tokens: int = 64,
) -> tuple[list[Any], str | None]:
    stream = provider.stream(
        prompt, max_output_tokens=max_output_tokens, timeout=5, params=params, tools=TOOLS
    )
    try:
        return [delta async for delta in stream], stream.finish_reason
    finally:
        await stream.aclose()


async def test_the_sdk_reads_the_fake_s_thinking_and_tool_use_blocks(fake: FakeAnthropic) -> None:
    fake.script(
        AnthropicReply(
            text=["Let me ", "check."],
            thinking=THINKING,
            signature="sig-A",
            redacted="opaque-B",
            tool_calls=CALLS,
            argument_piece=5,
        )
    )
    # Imported here: every pytest worker imports this module to collect it, and the SDK is
    # 1.6 CPU-seconds of imports that only the worker running this test needs.
    import anthropic

    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=fake.url, max_retries=0)
    try:
        async with client.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
        ) as stream:
            kinds = [event.type async for event in stream]
            message = await stream.get_final_message()
    finally:
        await client.close()
    assert kinds.count("input_json") > len(CALLS)  # the inputs really came in pieces
    thinking, redacted, text, *uses = message.content
    assert thinking.type == "thinking"
    assert (thinking.thinking, thinking.signature) == ("".join(THINKING), "sig-A")
    assert redacted.type == "redacted_thinking" and redacted.data == "opaque-B"
    assert text.type == "text" and text.text == "Let me check."
    assert [(u.id, u.name, u.input) for u in uses if u.type == "tool_use"] == [
        (i, n, json.loads(a)) for i, n, a in CALLS
    ]
    assert message.stop_reason == "tool_use"


async def test_streamed_thinking_text_and_tool_calls(fake: FakeAnthropic) -> None:
    fake.script(
        AnthropicReply(
            text=["Let me ", "check."],
            thinking=THINKING,
            signature="sig-A",
            redacted="opaque-B",
            tool_calls=CALLS,
            argument_piece=3,
        )
    )
    provider = make(fake.url, thinking_budget_tokens=2048)
    try:
        deltas, finish = await collect(provider, [Message("user", "Time in Tokyo?")])
    finally:
        await provider.aclose()
    assert deltas == [
        *(ReasoningPart(piece) for piece in THINKING),
        ReasoningPart("", signature="sig-A", source="anthropic"),
        ReasoningPart("", source="anthropic", redacted="opaque-B"),
        "Let me ",
        "check.",
        ToolCall("toolu_01", "current_time", {"timezone": "Asia/Tokyo"}),
        ToolCall("toolu_02", "word_count", {"text": "two words", "unique": True}),
    ]
    assert finish == "tool_calls"
    (request,) = fake.requests
    assert [
        (t["name"], t["description"], t["input_schema"]["required"]) for t in request.body["tools"]
    ] == [
        ("current_time", "The current time in an IANA time zone.", ["timezone"]),
        ("word_count", "How many words a text has.", ["text"]),
    ]
    assert request.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    # Thinking counts against max_tokens, which must exceed the budget: the answer keeps its own.
    assert request.body["max_tokens"] == 2048 + 64


async def test_arguments_that_are_not_an_object_are_a_call_with_an_error(
    fake: FakeAnthropic,
) -> None:
    fake.script(Reply(text=[], tool_calls=[("toolu_x", "word_count", '["not", "an object"]')]))
    provider = make(fake.url)
    try:
        deltas, finish = await collect(provider, [Message("user", "Count")])
    finally:
        await provider.aclose()
    [call] = deltas
    assert isinstance(call, ToolCall)
    assert (call.call_id, call.name, call.arguments) == ("toolu_x", "word_count", {})
    assert call.arguments_error and "object" in call.arguments_error
    assert finish == "tool_calls"
    assert "thinking" not in fake.requests[0].body  # off unless a budget is set


async def test_an_input_given_whole_at_the_block_s_start_is_taken(fake: FakeAnthropic) -> None:
    """A proxy may give a tool_use block's input whole in its start, with no pieces."""
    start = {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_w", "name": "echo", "input": {"a": 1}},
    }
    stop = {"type": "content_block_stop", "index": 1}
    frames = b"".join(
        f"event: {frame['type']}\ndata: {json.dumps(frame)}\n\n".encode() for frame in (start, stop)
    )
    fake.script(Reply(text=["x", "y"], raw_at={1: frames}))
    provider = make(fake.url)
    try:
        deltas, _ = await collect(provider, [Message("user", "Hi")])
    finally:
        await provider.aclose()
    assert deltas == ["x", ToolCall("toolu_w", "echo", {"a": 1})]


async def test_a_plain_call_returns_its_calls_and_reasoning(fake: FakeAnthropic) -> None:
    fake.script(
        AnthropicReply(
            text=["Checking."],
            thinking=THINKING,
            signature="sig-P",
            redacted="opaque-P",
            tool_calls=CALLS[:1],
        )
    )
    provider = make(fake.url, thinking_budget_tokens=1024)
    try:
        completion = await provider.complete(
            [Message("user", "Time?")], max_output_tokens=32, timeout=5, tools=TOOLS
        )
    finally:
        await provider.aclose()
    assert completion.text == "Checking."
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls == (
        ToolCall("toolu_01", "current_time", {"timezone": "Asia/Tokyo"}),
    )
    assert completion.reasoning == (
        ReasoningPart("".join(THINKING), "sig-P", "anthropic"),
        ReasoningPart("", None, "anthropic", "opaque-P"),
    )
    (request,) = fake.requests
    assert request.stream is False and request.body["max_tokens"] == 1024 + 32
    assert [t["name"] for t in request.body["tools"]] == ["current_time", "word_count"]


ROUND = [
    Message("system", "Be brief."),
    Message("user", "Time in Tokyo, and on Mars?"),
    Message(
        "assistant",
        "Let me check.",
        (
            ReasoningPart("I need two calls.", "sig-1", "anthropic"),
            ReasoningPart("", None, "anthropic", "opaque-1"),
            ReasoningPart("Gemini's thought.", "gem-sig", "gemini"),
            ReasoningPart("Unsigned thought."),
            ToolCall("toolu_a", "current_time", {"timezone": "Asia/Tokyo"}),
            ToolCall("call_b", "current_time", {"timezone": "Mars/Olympus"}),
        ),
    ),
    Message(
        "tool",
        "",
        (
            ToolResult("toolu_a", "current_time", True, "12:00"),
            ToolResult("call_b", "current_time", False, "No such zone.", ToolErrorKind.FAILED),
        ),
    ),
]


def test_a_tool_round_in_the_messages_api_s_shape() -> None:
    """Calls become tool_use blocks, results one user message of tool_result blocks (the
    failed one is_error); Anthropic's signed and redacted thinking goes first in the
    assistant message, other providers' and unsigned reasoning is left out."""
    system, messages = to_anthropic(ROUND)
    assert system == [{"type": "text", "text": "Be brief."}]
    assert messages == [
        {"role": "user", "content": [{"type": "text", "text": "Time in Tokyo, and on Mars?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I need two calls.", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "opaque-1"},
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_a",
                    "name": "current_time",
                    "input": {"timezone": "Asia/Tokyo"},
                },
                {
                    "type": "tool_use",
                    "id": "call_b",
                    "name": "current_time",
                    "input": {"timezone": "Mars/Olympus"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "12:00"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_b",
                    "content": "No such zone.",
                    "is_error": True,
                },
            ],
        },
    ]


def test_call_ids_from_other_servers_are_made_ones_anthropic_takes() -> None:
    """Some OpenAI-compatible servers name calls "functions.search:0"; Anthropic takes
    letters, digits, _ and - only. The call and its result keep the same id."""
    _, messages = to_anthropic(
        [
            Message("user", "Search"),
            Message("assistant", "", (ToolCall("functions.search:0", "search", {}),)),
            Message("tool", "", (ToolResult("functions.search:0", "search", True, "found"),)),
        ]
    )
    assert messages[1]["content"][0]["id"] == "functions_search_0"
    assert messages[2]["content"][0]["tool_use_id"] == "functions_search_0"


def test_results_come_first_in_a_merged_user_turn_and_orphans_are_left_out() -> None:
    png = b"\x89PNG\r\n\x1a\nfake"
    _, messages = to_anthropic(
        [
            # History cut between a call and its result: the call's message is gone.
            Message("tool", "", (ToolResult("lost", "current_time", True, "10:00"),)),
            Message("user", "Hi"),
            Message("assistant", "", (ToolCall("toolu_c", "current_time", {}),)),
            Message("tool", "", (ToolResult("toolu_c", "current_time", True, "11:00"),)),
            Message("user", "And this picture?", (ImagePart(png, "image/png"),)),
        ]
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == [{"type": "text", "text": "Hi"}]
    assert messages[1]["content"] == [
        {"type": "tool_use", "id": "toolu_c", "name": "current_time", "input": {}}
    ]
    assert [b["type"] for b in messages[2]["content"]] == ["tool_result", "text", "image"]
    image = messages[2]["content"][2]["source"]
    assert image["type"] == "base64" and image["media_type"] == "image/png"


async def test_a_tool_round_goes_back_with_its_thinking(fake: FakeAnthropic) -> None:
    fake.script(Reply(text=["Tokyo: 12:00."]))
    provider = make(fake.url, thinking_budget_tokens=1500)
    try:
        deltas, finish = await collect(provider, ROUND)
    finally:
        await provider.aclose()
    assert deltas == ["Tokyo: 12:00."] and finish == "stop"
    body = fake.requests[0].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1500}
    assert [b["type"] for b in body["messages"][1]["content"]][:2] == [
        "thinking",
        "redacted_thinking",
    ]


async def test_a_round_begun_without_thinking_goes_on_without_it(fake: FakeAnthropic) -> None:
    """Another provider made the calls (or thinking was off): the API wants one thinking
    setting per assistant turn, and refuses a tool round's continuation with thinking on
    whose assistant message does not start with a thinking block."""
    foreign = [
        Message("user", "Time in Tokyo?"),
        Message("assistant", "", (ToolCall("call_1", "current_time", {"timezone": "Asia/Tokyo"}),)),
        Message("tool", "", (ToolResult("call_1", "current_time", True, "12:00"),)),
    ]
    fake.script(Reply(text=["12:00."]), Reply(text=["Next."]))
    provider = make(fake.url, thinking_budget_tokens=1024)
    try:
        await collect(provider, foreign)
        await collect(provider, [*foreign, Message("assistant", "12:00."), Message("user", "Ok")])
    finally:
        await provider.aclose()
    continued, next_turn = (r.body for r in fake.requests)
    assert "thinking" not in continued and continued["max_tokens"] == 64
    assert next_turn["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_a_loop_begun_with_thinking_keeps_it_over_later_rounds() -> None:
    """Claude thinks at the start of its turn, not before each later round's calls: the
    whole loop counts as begun with thinking. One begun by another provider does not,
    whatever a later round did."""
    signed = ReasoningPart("Plan.", "sig", "anthropic")

    def loop(first: tuple[Any, ...], later: tuple[Any, ...]) -> list[Message]:
        return [
            Message("user", "Two steps, please."),
            Message("assistant", "", (*first, ToolCall("t1", "current_time", {}))),
            Message("tool", "", (ToolResult("t1", "current_time", True, "1"),)),
            Message("assistant", "", (*later, ToolCall("t2", "current_time", {}))),
            Message("tool", "", (ToolResult("t2", "current_time", True, "2"),)),
        ]

    assert not in_tool_loop_without_thinking(to_anthropic(loop((signed,), ()))[1])
    assert in_tool_loop_without_thinking(to_anthropic(loop((), (signed,)))[1])
    # A new question ends the loop: its turn may think again.
    asked = [*loop((), ()), Message("assistant", "Done."), Message("user", "Thanks")]
    assert not in_tool_loop_without_thinking(to_anthropic(asked)[1])


async def test_thinking_takes_no_temperature_and_a_narrow_top_p(fake: FakeAnthropic) -> None:
    """Refused before asking (the chain then asks another provider), never dropped."""
    provider = make(fake.url, thinking_budget_tokens=1024)
    prompt = [Message("user", "Hi")]
    try:
        for params in (GenerationParams(temperature=0.2), GenerationParams(top_p=0.5)):
            with pytest.raises(ProviderError) as caught:
                await collect(provider, prompt, params=params)
            assert caught.value.kind is FailureKind.BAD_REQUEST
        await collect(provider, prompt, params=GenerationParams(top_p=0.97))
    finally:
        await provider.aclose()
    (request,) = fake.requests
    assert request.body["top_p"] == 0.97 and "temperature" not in request.body


def test_the_thinking_budget_has_anthropic_s_minimum() -> None:
    with pytest.raises(ValueError, match="1024"):
        AnthropicOptions(thinking_budget_tokens=500)


LONG_SYSTEM = "You answer questions about the time anywhere on Earth. " * 80


def marks(body: dict[str, Any]) -> list[tuple[str, int]]:
    found = [("tools", i) for i, t in enumerate(body.get("tools", [])) if "cache_control" in t]
    found += [("system", i) for i, b in enumerate(body["system"]) if "cache_control" in b]
    for index, message in enumerate(body["messages"]):
        assert all("cache_control" not in b for b in message["content"][:-1])
        if "cache_control" in message["content"][-1]:
            found.append(("message", index))
    return found


async def test_cache_marks_follow_tool_rounds_over_ten_turns(fake: FakeAnthropic) -> None:
    """Every request marks the last tool, the system prompt, the previous request's last
    message (a question or a round's results) and its own last one: four, Anthropic's
    limit. Turns alternate a tool round and a plain answer, so the marks move forward
    through questions and tool results alike. (A low minimum: two short tools' prefix is
    long enough to cache here.)"""
    provider = make(fake.url, cache_min_tokens=100)
    history: list[Message] = []
    try:
        for turn in range(1, 11):
            question = Message("user", f"Question {turn}: the time in zone {turn}?")
            history.append(question)
            if turn % 2:
                call = ToolCall(f"toolu_{turn}", "current_time", {"timezone": f"Etc/GMT+{turn}"})
                fake.script(
                    Reply(
                        text=[],
                        tool_calls=[(call.call_id, call.name, json.dumps(dict(call.arguments)))],
                    )
                )
                deltas, _ = await collect(provider, [Message("system", LONG_SYSTEM), *history])
                assert deltas == [call]
                history.append(Message("assistant", "", (call,)))
                history.append(
                    Message("tool", "", (ToolResult(call.call_id, call.name, True, f"{turn}:00"),))
                )
            fake.script(Reply(text=[f"Answer {turn}."]))
            await collect(provider, [Message("system", LONG_SYSTEM), *history])
            history.append(Message("assistant", f"Answer {turn}."))
    finally:
        await provider.aclose()
    placed = [marks(request.body) for request in fake.requests]
    assert len(placed) == 15
    assert placed[0] == [("tools", 1), ("system", 0), ("message", 0)]
    for before, found in itertools.pairwise(placed):
        assert len(found) == MAX_BREAKPOINTS
        assert found[:2] == [("tools", 1), ("system", 0)]
        # The prefix the previous request wrote is read back; the last mark moved forward.
        assert found[2] == before[-1]
        assert found[3][1] > before[-1][1]
    last = fake.requests[-1].body["messages"]
    assert last[-1]["content"][-1]["text"].startswith("Question 10")
    assert placed[-1][-1] == ("message", len(last) - 1)


async def test_a_plain_tool_round_through_the_llm_stage(fake: FakeAnthropic) -> None:
    """Streaming refused (a proxy's 405): the plain answer's thinking becomes reasoning
    events, its call runs, and the next (plain) round gets the signed block back first."""
    fake.script(
        Reply(status=405, message="Method not allowed"),
        AnthropicReply(
            text=[],
            thinking=["Count ", "the words."],
            signature="sig-plain",
            tool_calls=[("toolu_p", "word_count", '{"text": "one two three"}')],
        ),
        Reply(text=["Three."]),
    )
    provider = make(fake.url, thinking_budget_tokens=1024)
    try:
        # The question as the prompt stage would have put it (the llm stage alone here).
        turn = make_turn("Count: one two three", prompt=[Message("user", "Count: one two three")])
        result = await run_pipeline_async(["llm"], provider=provider, tools=TOOLS, turn=turn)
    finally:
        await provider.aclose()
    assert [e["content"] for e in result.of_type("reasoning")] == ["Count the words."]
    [call] = result.of_type("tool_call")
    assert (call["call_id"], call["arguments"]) == ("toolu_p", {"text": "one two three"})
    [done] = result.of_type("tool_result")
    assert done["ok"] and done["content"] == "3"
    assert result.complete is not None
    assert (result.complete["message"], result.complete["mode"]) == ("Three.", "non-stream")
    assert [r.stream for r in fake.requests] == [True, False, False]
    second = fake.requests[2].body["messages"]
    assert second[1]["content"][0] == {
        "type": "thinking",
        "thinking": "Count the words.",
        "signature": "sig-plain",
    }
    assert second[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_p", "content": "3"}
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "wire"),
    [
        (ToolChoice("auto"), None, {"type": "auto"}),
        (ToolChoice("none"), None, {"type": "none"}),
        (ToolChoice("required"), None, {"type": "any"}),
        (ToolChoice("function", "word_count"), None, {"type": "tool", "name": "word_count"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice("required"), False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, None, None),
    ],
)
def test_the_clients_tool_choice_in_the_messages_api_s_shape(
    choice: ToolChoice | None, parallel: bool | None, wire: dict[str, Any] | None
) -> None:
    params = GenerationParams(tool_choice=choice, parallel_tool_calls=parallel)
    body = make("http://127.0.0.1:9")._body([Message("user", "Hi")], 64, params, TOOLS)
    assert body.get("tool_choice") == wire


def test_a_forced_call_with_thinking_is_refused_not_dropped() -> None:
    params = GenerationParams(tool_choice=ToolChoice("required"))
    provider = make("http://127.0.0.1:9", thinking_budget_tokens=1024)
    with pytest.raises(ProviderError) as refused:
        provider._body([Message("user", "Hi")], 64, params, TOOLS)
    assert refused.value.kind is FailureKind.BAD_REQUEST
