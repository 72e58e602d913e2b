"""The anthropic provider against a fake Anthropic server on loopback, with the real SDK."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from plugins.providers.anthropic import AnthropicOptions, AnthropicProvider
from plugins.providers.anthropic_prompt import MAX_BREAKPOINTS, cache_breakpoints, to_anthropic
from server.config import _WELL_KNOWN, load_settings
from server.contract import FailureKind, GenerationParams, Message, ProviderError
from server.llm.transport import provider_context
from server.registry import load_providers
from tests.fakes.llm_upstreams import ARABIC_EMOJI, FakeAnthropic, Reply, refused_url
from tests.support.server import ROOT, base_env, run_command

pytestmark = pytest.mark.anyio

KEY = "sk-ant-api03-TESTSECRET0123456789abcdef"
PROMPT = [
    Message("system", "Be brief."),
    Message("user", "Hi"),
    Message("assistant", "Hello."),
    Message("system", "Answer in French."),
    Message("user", "How are you?"),
    Message("user", "And the weather?"),
]
EXPECTED_SYSTEM = [
    {"type": "text", "text": "Be brief."},
    {"type": "text", "text": "Answer in French."},
]
EXPECTED_MESSAGES = [
    {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "How are you?"},
            {"type": "text", "text": "And the weather?"},
        ],
    },
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server  # type: ignore[misc]


def make(
    base_url: str, environ: dict[str, str] | None = None, **options: object
) -> AnthropicProvider:
    return AnthropicProvider(
        AnthropicOptions(base_url=base_url, **options),
        provider_context({"ANTHROPIC_API_KEY": KEY} if environ is None else environ),
    )


async def collect(
    provider: AnthropicProvider,
    prompt: list[Message] = PROMPT,
    params: GenerationParams | None = None,
) -> list[str]:
    stream = provider.stream(prompt, max_output_tokens=64, timeout=5, params=params)
    try:
        return [delta async for delta in stream]
    finally:
        await stream.aclose()


async def failure(provider: AnthropicProvider) -> tuple[list[str], ProviderError]:
    stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
    deltas: list[str] = []
    try:
        with pytest.raises(ProviderError) as caught:
            async for delta in stream:
                deltas.append(delta)
    finally:
        await stream.aclose()
    return deltas, caught.value


def marks(body: dict[str, Any]) -> list[tuple[str, int]]:
    """Where a request's cache_control marks are: ("system", block) or ("message", index)."""
    found = [("system", i) for i, b in enumerate(body.get("system", [])) if "cache_control" in b]
    for index, message in enumerate(body["messages"]):
        blocks = message["content"]
        assert all("cache_control" not in b for b in blocks[:-1]), "only a last block is marked"
        if "cache_control" in blocks[-1]:
            assert blocks[-1]["cache_control"] == {"type": "ephemeral"}
            found.append(("message", index))
    return found


def test_roles_and_system_prompt_mapping() -> None:
    system, messages = to_anthropic(PROMPT)
    assert system == EXPECTED_SYSTEM
    assert messages == EXPECTED_MESSAGES


def test_empty_messages_and_a_leading_answer_are_left_out() -> None:
    """History cut to its budget can start with an answer, and an answer that failed before
    its first word is stored empty: the API refuses both."""
    system, messages = to_anthropic(
        [
            Message("system", "Be brief."),
            Message("assistant", "An answer whose question was cut."),
            Message("user", "Hi"),
            Message("assistant", "  "),
            Message("user", "Still there?"),
        ]
    )
    assert system == [{"type": "text", "text": "Be brief."}]
    assert messages == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Still there?"}],
        }
    ]


async def test_streams_text_usage_and_finish_reason(fake: FakeAnthropic) -> None:
    fake.usage = {
        "input_tokens": 40,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 2000,
    }
    provider = make(fake.url)
    try:
        stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
        deltas = [d async for d in stream]  # past a ping, block starts and stops
        await stream.aclose()
    finally:
        await provider.aclose()
    assert deltas == ["Hello", ", wor", "ld!"]
    assert stream.finish_reason == "stop"
    usage = stream.usage
    assert usage is not None
    # Every prompt token, cached ones included; the cached part beside it.
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_creation_tokens) == (
        2340,
        2000,
        300,
    )
    assert (usage.output_tokens, usage.total_tokens) == (3, 2343)
    (request,) = fake.requests
    assert request.path == "/v1/messages" and request.stream is True
    # The SDK's own authentication (this SDK sends the key as a bearer token) and version.
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", request.headers["Anthropic-Version"])
    assert request.headers["Accept-Encoding"] == "identity"
    assert request.body["model"] == "claude-haiku-4-5"
    assert request.body["max_tokens"] == 64
    # Too short a prompt to cache: no cache_control marks.
    assert request.body["system"] == EXPECTED_SYSTEM
    assert request.body["messages"] == EXPECTED_MESSAGES
    for absent in ("temperature", "top_p", "stop_sequences"):
        assert absent not in request.body


async def test_sampling_parameters_are_mapped(fake: FakeAnthropic) -> None:
    provider = make(fake.url)
    try:
        params = GenerationParams(temperature=0.3, top_p=0.9, stop=("END", "\n\n"))
        assert await collect(provider, params=params) == ["Hello", ", wor", "ld!"]
        await provider.complete(PROMPT, max_output_tokens=9, timeout=5, params=params)
    finally:
        await provider.aclose()
    for request in fake.requests:
        assert request.body["temperature"] == 0.3
        assert request.body["top_p"] == 0.9
        assert request.body["stop_sequences"] == ["END", "\n\n"]
    assert [r.body["max_tokens"] for r in fake.requests] == [64, 9]


async def test_a_temperature_beyond_anthropics_scale_is_refused_before_asking(
    fake: FakeAnthropic,
) -> None:
    """OpenAI's temperatures reach 2, Anthropic's 1: the chain must hear that this provider
    cannot honour it (and ask another), not get an answer at another temperature."""
    provider = make(fake.url)
    hot = GenerationParams(temperature=1.5)
    try:
        stream = provider.stream(PROMPT, max_output_tokens=8, timeout=5, params=hot)
        with pytest.raises(ProviderError) as streamed:
            await stream.__anext__()
        await stream.aclose()
        with pytest.raises(ProviderError) as plain:
            await provider.complete(PROMPT, max_output_tokens=8, timeout=5, params=hot)
    finally:
        await provider.aclose()
    assert streamed.value.kind is plain.value.kind is FailureKind.BAD_REQUEST
    assert "temperature" in streamed.value.message
    assert fake.requests == []


async def test_plain_call_through_the_sdk(fake: FakeAnthropic) -> None:
    fake.script(Reply(text=["Bonjour ", "!"], finish_reason="length"))
    fake.usage = {"input_tokens": 5, "cache_read_input_tokens": 1500}
    provider = make(fake.url, model="claude-sonnet-4-6")
    try:
        completion = await provider.complete(PROMPT, max_output_tokens=64, timeout=5)
    finally:
        await provider.aclose()
    assert completion.text == "Bonjour !"
    assert completion.finish_reason == "length"
    assert completion.model == "claude-sonnet-4-6"
    assert completion.usage is not None
    assert (completion.usage.input_tokens, completion.usage.cached_tokens) == (1505, 1500)
    (request,) = fake.requests
    assert request.stream is False
    assert request.body["messages"] == EXPECTED_MESSAGES
    assert request.body["max_tokens"] == 64


async def test_utf8_split_across_writes(fake: FakeAnthropic) -> None:
    fake.script(Reply(text=ARABIC_EMOJI, split_utf8=True))
    provider = make(fake.url)
    try:
        deltas = await collect(provider)
    finally:
        await provider.aclose()
    assert deltas == ARABIC_EMOJI
    assert "\ufffd" not in "".join(deltas)


async def test_500_is_unavailable_and_not_retried_by_the_sdk(fake: FakeAnthropic) -> None:
    fake.script(Reply(status=500), Reply(status=500))
    provider = make(fake.url)
    try:
        deltas, error = await failure(provider)
        with pytest.raises(ProviderError) as plain:
            await provider.complete(PROMPT, max_output_tokens=8, timeout=5)
    finally:
        await provider.aclose()
    assert deltas == []
    assert error.kind is FailureKind.UNAVAILABLE and error.status == 500
    assert plain.value.kind is FailureKind.UNAVAILABLE and plain.value.status == 500
    assert len(fake.requests) == 2  # one each: max_retries=0, the chain is the only retry loop


async def test_a_proxy_refusing_streams_lets_a_plain_call_try(fake: FakeAnthropic) -> None:
    fake.script(Reply(status=405, message="Method not allowed"), Reply(text=["plain"]))
    provider = make(fake.url)
    try:
        _, error = await failure(provider)
        completion = await provider.complete(PROMPT, max_output_tokens=8, timeout=5)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.STREAM_UNSUPPORTED
    assert completion.text == "plain"


async def test_529_overloaded_is_unavailable_with_its_retry_after(fake: FakeAnthropic) -> None:
    fake.script(Reply(status=529, message="Overloaded", headers={"Retry-After": "9"}))
    provider = make(fake.url)
    try:
        _, error = await failure(provider)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.UNAVAILABLE and error.status == 529
    assert error.retry_after == 9.0
    assert "overloaded" in error.message and "overloaded_error" in (error.detail or "")
    assert len(fake.requests) == 1


async def test_429_carries_retry_after(fake: FakeAnthropic) -> None:
    fake.script(Reply(status=429, headers={"Retry-After": "12"}))
    provider = make(fake.url)
    try:
        _, error = await failure(provider)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.RATE_LIMITED and error.retry_after == 12.0
    assert len(fake.requests) == 1


async def test_connection_refused() -> None:
    provider = make(refused_url())
    try:
        _, error = await failure(provider)
        with pytest.raises(ProviderError) as plain:
            await provider.complete(PROMPT, max_output_tokens=8, timeout=5)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.UNAVAILABLE and error.status is None
    assert "could not be reached" in error.message
    assert plain.value.kind is FailureKind.UNAVAILABLE


async def test_cut_mid_stream_after_text(fake: FakeAnthropic) -> None:
    fake.script(Reply(text=["a", "b", "c"], cut_at=2))
    provider = make(fake.url)
    try:
        deltas, error = await failure(provider)
    finally:
        await provider.aclose()
    assert deltas == ["a", "b"]
    assert error.kind is FailureKind.UNAVAILABLE and error.status == 200


async def test_an_error_event_after_text_fails_the_stream(fake: FakeAnthropic) -> None:
    """Anthropic reports overload mid-answer as an ``error`` event on a 200 stream."""
    fake.script(Reply(text=["a", "b", "c"], error_event_at=2))
    provider = make(fake.url)
    try:
        deltas, error = await failure(provider)
    finally:
        await provider.aclose()
    assert deltas == ["a", "b"]
    assert error.kind is FailureKind.UNAVAILABLE and error.status == 200
    assert "Overloaded" in (error.detail or "")


async def test_malformed_frame(fake: FakeAnthropic) -> None:
    fake.script(Reply(text=["a", "b"], malformed_at=1))
    provider = make(fake.url)
    try:
        deltas, error = await failure(provider)
    finally:
        await provider.aclose()
    assert deltas == ["a"]
    assert error.kind is FailureKind.MALFORMED


async def test_a_frame_of_the_wrong_shape_is_malformed(fake: FakeAnthropic) -> None:
    frame = b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":"x"}\n\n'
    fake.script(Reply(text=["a", "b"], raw_at={1: frame}))
    provider = make(fake.url)
    try:
        deltas, error = await failure(provider)
    finally:
        await provider.aclose()
    assert deltas == ["a"]
    assert error.kind is FailureKind.MALFORMED


async def test_a_body_held_open_after_message_stop_still_ends(fake: FakeAnthropic) -> None:
    """The answer is whole at ``message_stop``: an upstream (or proxy) that keeps the body
    open afterwards must not hold the stream until the idle timeout."""
    fake.script(Reply(text=["a", "b"], hold_after_done=True))
    provider = make(fake.url)
    try:
        started = time.monotonic()
        assert await collect(provider) == ["a", "b"]
        assert time.monotonic() - started < 3
    finally:
        await provider.aclose()


async def test_refused_key_says_what_to_fix_without_the_key(fake: FakeAnthropic) -> None:
    fake.script(Reply(status=401, message=f"invalid x-api-key {KEY}"))
    provider = make(fake.url)
    try:
        _, error = await failure(provider)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.AUTH
    assert "ANTHROPIC_API_KEY" in error.message and "operator" in error.message
    assert KEY not in error.message and KEY not in (error.detail or "")
    assert str(fake.port) not in error.message


async def test_unknown_model_says_what_to_fix(fake: FakeAnthropic) -> None:
    fake.script(Reply(status=404, message="model: claude-9"))
    provider = make(fake.url, model="claude-9")
    try:
        _, error = await failure(provider)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.BAD_REQUEST
    assert "'claude-9'" in error.message and "ANTHROPIC_MODEL" in error.message
    assert "ANTHROPIC_BASE_URL" in error.message and str(fake.port) not in error.message


async def test_missing_key() -> None:
    provider = AnthropicProvider(AnthropicOptions(), provider_context({}))
    other = AnthropicProvider(
        AnthropicOptions(), provider_context({"ANTHROPIC_API_KEY": KEY}, name="claude2")
    )
    try:
        assert provider.missing_configuration() == (
            "ANTHROPIC_API_KEY is not set: export it, or remove anthropic from llm.providers"
        )
        with pytest.raises(ProviderError) as caught:
            await provider.complete(PROMPT, max_output_tokens=8, timeout=1)
        assert caught.value.kind is FailureKind.AUTH
        # Another instance reads only the variable its api_key_env names.
        assert other.missing_configuration() is not None
    finally:
        await provider.aclose()
        await other.aclose()


async def test_an_open_stream_keeps_no_sdk_response(fake: FakeAnthropic) -> None:
    """While an answer streams, only aiohttp's body reader is kept: the SDK's response and
    httpx2's request (headers, the whole prompt) and response are gone (memory per stream)."""
    fake.script(Reply(text=["a", "b"], hang_at=1))
    provider = make(fake.url)
    stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
    try:
        assert await stream.__anext__() == "a"
        gc.collect()
        held = {"Request", "Response", "AsyncAPIResponse"}
        assert not held & {type(o).__name__ for o in gc.get_objects()}
    finally:
        await stream.aclose()
        await provider.aclose()


async def test_cancelled_read_closes_the_upstream_connection(fake: FakeAnthropic) -> None:
    """A first-token or idle timeout cancels the read: the upstream sees its connection
    close within 1 s."""
    fake.script(Reply(text=["a", "b"], hang_at=1))
    provider = make(fake.url)
    try:
        stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
        assert await stream.__anext__() == "a"
        pending = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert await fake.wait_closed(1, within=1.0) < 1.0
        await stream.aclose()
    finally:
        await provider.aclose()


async def test_aclose_closes_the_upstream_connection(fake: FakeAnthropic) -> None:
    fake.script(Reply(text=["a", "b"], hang_at=1))
    provider = make(fake.url)
    try:
        stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
        assert await stream.__anext__() == "a"
        await stream.aclose()
        assert await fake.wait_closed(1, within=1.0) < 1.0
        await stream.aclose()  # safe twice
        assert [d async for d in stream] == []
    finally:
        await provider.aclose()


# Prompt caching.

LONG_SYSTEM = "You answer questions about the garden. " * 100  # about 1,000 tokens


async def test_cache_marks_move_forward_over_a_ten_turn_conversation(fake: FakeAnthropic) -> None:
    """Each request marks the system prompt, the previous turn's question (where the
    previous request put its last mark: that prefix is in the cache now) and its own last
    message, so that the next turn reads everything before it from the cache."""
    provider = make(fake.url)
    history: list[Message] = []
    try:
        for turn in range(1, 11):
            question = Message("user", f"Question {turn}: what grows in bed {turn}?")
            fake.script(Reply(text=[f"Answer {turn}: ", "tomatoes."]))
            answer = await collect(provider, [Message("system", LONG_SYSTEM), *history, question])
            history += [question, Message("assistant", "".join(answer))]
    finally:
        await provider.aclose()
    placed = [marks(request.body) for request in fake.requests]
    assert all(len(found) <= MAX_BREAKPOINTS for found in placed)
    assert placed[0] == [("system", 0), ("message", 0)]
    for turn, found in enumerate(placed[1:], start=2):
        last = 2 * (turn - 1)  # the question, after turn - 1 questions and answers
        assert found == [("system", 0), ("message", last - 2), ("message", last)], turn
        # The mark read back is exactly the one the previous request wrote.
        assert ("message", last - 2) == placed[turn - 2][-1]
    last_body = fake.requests[-1].body
    assert last_body["messages"][-1]["content"][-1]["text"].startswith("Question 10")


async def test_prompt_caching_can_be_turned_off(fake: FakeAnthropic) -> None:
    provider = make(fake.url, prompt_caching=False)
    prompt = [Message("system", LONG_SYSTEM), *PROMPT[1:]]
    try:
        await collect(provider, prompt)
        await provider.complete(prompt, max_output_tokens=8, timeout=5)
    finally:
        await provider.aclose()
    assert [marks(r.body) for r in fake.requests] == [[], []]


def test_no_mark_before_the_prompt_reaches_the_cache_minimum() -> None:
    """Anthropic caches no prefix below its minimum length: a mark there would be wasted."""
    system, messages = to_anthropic(
        [
            Message("system", "Be brief."),
            Message("user", "x" * 2000),
            Message("assistant", "y" * 2000),
            Message("user", "Short question"),
        ]
    )
    picked = cache_breakpoints(system, messages, min_tokens=1024)
    # Too short: the system prompt and the first question; long enough: the whole prompt.
    assert picked == [messages[-1]["content"][-1]]
    assert cache_breakpoints(system, messages, min_tokens=10_000) == []
    tools = [{"name": "weather", "description": "w" * 4000, "input_schema": {}}]
    with_tools = cache_breakpoints(system, messages, tools=tools, min_tokens=1024)
    assert with_tools[0] is tools[-1] and len(with_tools) == 4


def test_an_instance_without_a_key_does_not_import_the_sdk() -> None:
    """The SDK takes seconds to import: a server with no Anthropic key, which still builds
    the provider to learn that it is not configured, must not wait for it."""
    code = (
        "import sys\n"
        "from plugins.providers.anthropic import AnthropicOptions, AnthropicProvider\n"
        "from server.llm.transport import provider_context\n"
        "provider = AnthropicProvider(AnthropicOptions(), provider_context({}))\n"
        "assert provider.missing_configuration() is not None\n"
        "print('anthropic' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


def test_well_known_names_and_the_shipped_table_configure_the_instance() -> None:
    """``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_MODEL`` override ``[llm.anthropic]``, whose
    shipped values are the provider's defaults; the key comes from ``ANTHROPIC_API_KEY``."""
    shipped = tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))
    assert AnthropicOptions.model_validate(shipped["llm"]["anthropic"]) == AnthropicOptions()
    environ = {
        "SLUICE_CONFIG": str(ROOT / "config.toml"),
        "SLUICE_PROVIDERS": "anthropic,openai",
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/",
        "ANTHROPIC_MODEL": "claude-sonnet-4-6",
        "OPENAI_API_KEY": "sk-openai-only",
    }
    settings = load_settings(environ)
    providers, problems = load_providers(
        settings, lambda name: provider_context(environ, name=name)
    )
    try:
        assert problems == []
        assert [p.name for p in providers] == ["anthropic", "openai"]
        claude = providers[0]
        assert isinstance(claude, AnthropicProvider)
        assert (claude.base_url, claude.model) == ("http://127.0.0.1:9", "claude-sonnet-4-6")
        assert claude.options.prompt_caching is True
    finally:
        for provider in providers:
            asyncio.run(provider.aclose())


def test_plugins_command_lists_the_anthropic_instance(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    env.update(SLUICE_PROVIDERS="anthropic,demo", ANTHROPIC_API_KEY=KEY)
    done = run_command(["plugins"], env, timeout=60)
    assert done.returncode == 0, done.stderr
    listing = {(item["group"], item["name"]): item for item in json.loads(done.stdout)}
    assert listing[("provider", "anthropic")]["enabled"] is True
    instance = listing[("provider instance", "anthropic")]
    assert instance["value"] == "anthropic"
    assert instance["options"]["model"] == "claude-haiku-4-5"
    assert instance["options"]["prompt_caching"] is True
    assert KEY not in done.stdout + done.stderr


def test_the_readme_table_and_the_provider_docs_name_every_anthropic_setting() -> None:
    """The well-known names the configuration honours for Anthropic, its key and every
    ``[llm.anthropic]`` option are where a user looks for them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = [line for line in readme.splitlines() if line.startswith("| `")]
    names = {name for name in _WELL_KNOWN if name.startswith("ANTHROPIC_")}
    assert names == {"ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL"}
    for name in [*names, "ANTHROPIC_API_KEY"]:
        assert any(f"`{name}`" in line for line in table), name
    assert any("`SLUICE_PROVIDERS`" in line and "anthropic" in line for line in table)
    providers = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")
    for option in AnthropicOptions.model_fields:
        # Shared by every type, documented once for all.
        if option not in ("api_key_env", "vision"):
            assert f"`[llm.anthropic] {option}`" in providers, option
