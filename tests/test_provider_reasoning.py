"""Reasoning from the OpenAI-compatible and Gemini providers, against their fakes on loopback:
handed on as :class:`ReasoningPart` pieces, never as answer text, its tokens counted, and
never sent back upstream. The fakes' reasoning frames are read by the real SDKs first, so
that the provider tests prove something about the real wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from plugins.providers.gemini import GeminiOptions, GeminiProvider
from plugins.providers.openai import OpenAIOptions, OpenAIProvider, to_openai
from server.config import load_settings
from server.contract import Message, ReasoningPart, ToolCall
from server.llm.transport import provider_context
from server.registry import load_providers
from tests.fakes.llm_upstreams import FakeGemini, FakeOpenAI, Reply, ThinkingReply
from tests.support.server import ROOT

pytestmark = pytest.mark.anyio

PROMPT = [Message("user", "Is 7 prime?")]
THOUGHTS = ["7 has no divisors ", "but 1 and ", "itself."]
# A tool round's assistant message, with the round's reasoning, as the llm stage gives it back.
ROUND = [
    Message("user", "Weather?"),
    Message(
        "assistant",
        "Checking.",
        (ReasoningPart("I should look.", "sig", "anthropic"), ToolCall("c1", "weather", {})),
    ),
]


@pytest.fixture
async def fake_gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as server:
        yield server  # type: ignore[misc]


def openai_provider(fake: FakeOpenAI, **options: Any) -> OpenAIProvider:
    return OpenAIProvider(
        OpenAIOptions(base_url=fake.base_url, model="deepseek-reasoner", **options),
        provider_context({}, max_connections=4, name="local"),
    )


def gemini_provider(fake: FakeGemini, **options: Any) -> GeminiProvider:
    return GeminiProvider(
        GeminiOptions(base_url=fake.url, **options),
        provider_context({"GEMINI_API_KEY": "AIza-test"}, max_connections=4),
    )


async def stream_all(
    provider: OpenAIProvider | GeminiProvider, messages: list[Message] = PROMPT
) -> tuple[list[str | ToolCall | ReasoningPart], Any]:
    stream = provider.stream(messages, max_output_tokens=64, timeout=5)
    try:
        deltas = [delta async for delta in stream]
    finally:
        await stream.aclose()
        await provider.aclose()
    return deltas, stream


def split(deltas: list[Any]) -> tuple[str, str, list[str]]:
    """(reasoning, answer, the kinds in order, runs collapsed)."""
    kinds: list[str] = []
    for delta in deltas:
        kind = "reasoning" if isinstance(delta, ReasoningPart) else "text"
        if not kinds or kinds[-1] != kind:
            kinds.append(kind)
    thought = "".join(d.text for d in deltas if isinstance(d, ReasoningPart))
    return thought, "".join(d for d in deltas if isinstance(d, str)), kinds


async def test_openai_sdk_reads_the_fake_s_reasoning_deltas(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(ThinkingReply(text=["Yes."], reasoning=THOUGHTS, reasoning_tokens=9))
    client = openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0)
    stream = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    thought, text, reasoning_tokens = "", "", None
    async for chunk in stream:
        for choice in chunk.choices:
            thought += (choice.delta.model_extra or {}).get("reasoning_content") or ""
            text += choice.delta.content or ""
        if chunk.usage and chunk.usage.completion_tokens_details:
            reasoning_tokens = chunk.usage.completion_tokens_details.reasoning_tokens
    await client.close()
    assert (thought, text, reasoning_tokens) == ("".join(THOUGHTS), "Yes.", 9)


async def test_google_genai_reads_the_fake_s_thought_parts(fake_gemini: FakeGemini) -> None:
    fake_gemini.script(ThinkingReply(text=["Yes", "."], reasoning=THOUGHTS, reasoning_tokens=9))
    http = httpx2.AsyncClient()
    client = genai.Client(
        api_key="k",
        http_options=genai_types.HttpOptions(
            base_url=fake_gemini.url + "/", httpx_async_client=http
        ),
    )
    thought, text, thoughts_tokens = "", "", None
    async for response in await client.aio.models.generate_content_stream(
        model="gemini-2.5-flash", contents="hi"
    ):
        for part in response.candidates[0].content.parts:  # type: ignore[index,union-attr]
            if part.thought:
                thought += part.text or ""
            else:
                text += part.text or ""
        if response.usage_metadata is not None:
            thoughts_tokens = response.usage_metadata.thoughts_token_count
    await http.aclose()
    assert (thought, text, thoughts_tokens) == ("".join(THOUGHTS), "Yes.", 9)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_openai_reasoning_deltas_stream_as_reasoning(
    fake_openai: FakeOpenAI, field: str
) -> None:
    fake_openai.script(
        ThinkingReply(
            text=["Yes", ", it is."], reasoning=THOUGHTS, reasoning_field=field, reasoning_tokens=7
        )
    )
    deltas, stream = await stream_all(openai_provider(fake_openai))
    assert split(deltas) == ("".join(THOUGHTS), "Yes, it is.", ["reasoning", "text"])
    assert [d.text for d in deltas if isinstance(d, ReasoningPart)] == THOUGHTS  # as they came
    assert stream.usage.reasoning_tokens == 7
    assert stream.usage.as_dict()["reasoning_tokens"] == 7


async def test_usage_without_reasoning_says_nothing_of_it(fake_openai: FakeOpenAI) -> None:
    _, stream = await stream_all(openai_provider(fake_openai))
    assert "reasoning_tokens" not in stream.usage.as_dict()


THINK_CONTENT = ["\n<thi", "nk>\nLet me", " count.</th", "ink>\n", "\nSeven", " is prime."]


async def test_a_think_block_opening_the_content_streams_as_reasoning(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.script(Reply(text=THINK_CONTENT))
    deltas, _ = await stream_all(openai_provider(fake_openai))
    assert split(deltas) == ("Let me count.", "Seven is prime.", ["reasoning", "text"])


async def test_a_think_block_and_its_answer_in_one_frame_keep_their_order(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.script(Reply(text=["<think>Hm.</think>Yes."]))
    deltas, _ = await stream_all(openai_provider(fake_openai))
    assert deltas == [ReasoningPart("Hm."), "Yes."]


async def test_a_partial_tag_at_the_end_is_handed_on(fake_openai: FakeOpenAI) -> None:
    """Content that ends in what might have been the tag's start is text all the same."""
    fake_openai.script(Reply(text=[" <th"]))
    deltas, _ = await stream_all(openai_provider(fake_openai))
    assert deltas == [" <th"]


async def test_think_tags_off_leaves_the_content_as_it_came(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply(text=THINK_CONTENT))
    deltas, _ = await stream_all(openai_provider(fake_openai, think_tags=False))
    assert deltas == THINK_CONTENT


async def test_an_ordinary_answer_is_not_held_back(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply(text=["<", "b>bold</b>", " and more"]))
    deltas, _ = await stream_all(openai_provider(fake_openai))
    assert deltas == ["<b>bold</b>", " and more"]  # only the "<" waited for the next piece


@pytest.mark.parametrize(
    "reply",
    [
        ThinkingReply(text=["Seven is prime."], reasoning=["Let me ", "count."]),
        ThinkingReply(
            text=["Seven is prime."], reasoning=["Let me count."], reasoning_field="reasoning"
        ),
        Reply(text=["<think>\nLet me count.</think>\n\nSeven is prime."]),
    ],
)
async def test_openai_plain_call_gives_its_reasoning_apart(
    fake_openai: FakeOpenAI, reply: Reply
) -> None:
    fake_openai.script(reply)
    provider = openai_provider(fake_openai)
    try:
        completion = await provider.complete(PROMPT, max_output_tokens=64, timeout=5)
    finally:
        await provider.aclose()
    assert completion.text == "Seven is prime."
    assert completion.reasoning == (ReasoningPart("Let me count."),)


async def test_openai_plain_call_counts_reasoning_tokens(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(ThinkingReply(text=["Yes."], reasoning=["Hm."], reasoning_tokens=4))
    provider = openai_provider(fake_openai)
    try:
        completion = await provider.complete(PROMPT, max_output_tokens=64, timeout=5)
    finally:
        await provider.aclose()
    assert completion.usage is not None and completion.usage.reasoning_tokens == 4


async def test_reasoning_is_never_sent_to_an_openai_compatible_upstream(
    fake_openai: FakeOpenAI,
) -> None:
    await stream_all(openai_provider(fake_openai), ROUND)
    (request,) = fake_openai.requests
    assistant = request.body["messages"][1]
    assert assistant["content"] == "Checking."
    assert set(assistant) == {"role", "content", "tool_calls"}
    assert "I should look" not in str(request.body)
    # A message with reasoning and no call goes as plain text.
    wire = to_openai([Message("assistant", "Yes.", (ReasoningPart("Hm."),))])
    assert wire == [{"role": "assistant", "content": "Yes."}]


async def test_gemini_include_thoughts_asks_for_them_and_streams_them_apart(
    fake_gemini: FakeGemini,
) -> None:
    fake_gemini.script(ThinkingReply(text=["Yes", "."], reasoning=THOUGHTS, reasoning_tokens=12))
    deltas, stream = await stream_all(
        gemini_provider(fake_gemini, include_thoughts=True, thinking_budget=512)
    )
    assert split(deltas) == ("".join(THOUGHTS), "Yes.", ["reasoning", "text"])
    (request,) = fake_gemini.requests
    assert request.body["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 512,
        "includeThoughts": True,
    }
    # Thoughts are output, as the other providers count it: the two answer frames and 12.
    assert stream.usage.reasoning_tokens == 12
    assert stream.usage.output_tokens == 2 + 12
    assert stream.usage.total_tokens == 9 + 2 + 12


async def test_gemini_asks_for_no_thoughts_by_default(fake_gemini: FakeGemini) -> None:
    _, stream = await stream_all(gemini_provider(fake_gemini))
    assert "thinkingConfig" not in fake_gemini.requests[0].body["generationConfig"]
    assert stream.usage.reasoning_tokens is None


async def test_gemini_thoughts_and_text_in_one_frame_keep_their_order(
    fake_gemini: FakeGemini,
) -> None:
    """A frame with a thought part, a text part and a call: all handed on in the parts' order."""
    fake_gemini.script(
        ThinkingReply(text=["Checking."], reasoning=[], tool_calls=[("c", "weather", "{}")])
    )
    provider = gemini_provider(fake_gemini, include_thoughts=True)
    stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
    stream._text(  # a frame as Gemini sends it when a thought ends and the answer begins
        {
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {"text": "Hm.", "thought": True},
                            {"text": "Checking."},
                            {"functionCall": {"name": "weather", "args": {}}},
                        ]
                    }
                }
            ]
        }
    )
    handed = list(stream._calls)
    await provider.aclose()
    assert handed[0] == ReasoningPart("Hm.")
    assert handed[1] == "Checking."
    assert isinstance(handed[2], ToolCall) and handed[2].name == "weather"


async def test_gemini_plain_call_gives_its_thoughts_apart(fake_gemini: FakeGemini) -> None:
    fake_gemini.script(ThinkingReply(text=["Yes."], reasoning=THOUGHTS, reasoning_tokens=5))
    provider = gemini_provider(fake_gemini, include_thoughts=True)
    try:
        completion = await provider.complete(PROMPT, max_output_tokens=64, timeout=5)
    finally:
        await provider.aclose()
    assert completion.text == "Yes."
    assert completion.reasoning == (ReasoningPart("".join(THOUGHTS)),)
    assert completion.usage is not None and completion.usage.reasoning_tokens == 5
    # The SDK sends the proto field's own name, which the API's JSON accepts as well.
    thinking = fake_gemini.requests[0].body["generationConfig"]["thinkingConfig"]
    assert thinking in ({"includeThoughts": True}, {"include_thoughts": True})


async def test_reasoning_is_never_sent_to_gemini(fake_gemini: FakeGemini) -> None:
    await stream_all(gemini_provider(fake_gemini), ROUND)
    (request,) = fake_gemini.requests
    assert "I should look" not in str(request.body)
    assert request.body["contents"][1]["parts"][0] == {"text": "Checking."}


async def test_the_documented_reasoning_configuration_loads(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")
    marker = "<!-- tested: tests/test_provider_reasoning.py -->\n```toml\n"
    start = doc.index(marker) + len(marker)
    config = '[llm]\nproviders = ["deepseek", "gemini"]\n\n' + doc[start : doc.index("```", start)]
    (tmp_path / "config.toml").write_text(config, encoding="utf-8")
    environ = {
        "SLUICE_CONFIG": str(tmp_path / "config.toml"),
        "SLUICE_DATA_DIR": str(tmp_path),
        "DEEPSEEK_API_KEY": "sk-deepseek",
        "GEMINI_API_KEY": "AIza-test",
    }
    providers, problems = load_providers(
        load_settings(environ), lambda name: provider_context(environ, name=name)
    )
    try:
        assert problems == []
        deepseek, gemini = providers
        assert isinstance(deepseek, OpenAIProvider) and deepseek.options.think_tags is True
        assert deepseek.model == "deepseek-reasoner"
        assert isinstance(gemini, GeminiProvider)
        assert (gemini.options.include_thoughts, gemini.options.thinking_budget) == (True, 2048)
    finally:
        for provider in providers:
            await provider.aclose()
