"""Generation parameters through the answer service (server/llm/chain.py): the client's
token limit lowers the configured one, and parameters reach the provider that answers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from server.contract import GenerationParams, Message
from server.llm.chain import LLMChain
from server.testing import ScriptedProvider

PROMPT = [Message("user", "hi")]
PARAMS = GenerationParams(temperature=0.1, top_p=0.2, stop=("x",), max_output_tokens=5)


def chain(*providers: Any) -> LLMChain:
    return LLMChain(
        providers,
        max_output_tokens=64,
        first_token_timeout=5,
        idle_timeout=5,
        circuit_failures=3,
        circuit_cooldown=30,
    )


async def text(chain: LLMChain, **kwargs: Any) -> str:
    answer = chain.answer(PROMPT, deadline=time.monotonic() + 10, **kwargs)
    return "".join([delta async for delta in answer])


@pytest.mark.anyio
async def test_parameters_reach_the_provider() -> None:
    scripted = ScriptedProvider(["a", "b"])
    assert await text(chain(scripted), params=PARAMS) == "ab"
    assert await text(chain(scripted), params=GenerationParams()) == "ab"
    assert scripted.params == [PARAMS, None]  # default parameters are no parameters


@pytest.mark.anyio
async def test_the_clients_limit_lowers_the_configured_one_only() -> None:
    seen: list[int] = []

    class Recording(ScriptedProvider):
        def stream(self, messages: list[Message], **kwargs: Any) -> Any:
            seen.append(kwargs["max_output_tokens"])
            return super().stream(messages, **kwargs)

    provider = Recording(["a"])
    for limit in (5, 500, None):
        await text(chain(provider), params=GenerationParams(max_output_tokens=limit))
    assert seen == [5, 64, 64]


@pytest.mark.anyio
async def test_one_named_provider_answers_alone() -> None:
    first, second = ScriptedProvider(["one"]), ScriptedProvider(["two"])
    first.name, second.name = "first", "second"
    assert await text(chain(first, second), provider="second") == "two"
    assert first.prompts == []
    with pytest.raises(KeyError):
        chain(first).answer(PROMPT, deadline=time.monotonic() + 1, provider="nobody")


@pytest.mark.anyio
async def test_the_demo_provider_honours_stop_and_the_limit() -> None:
    from plugins.providers.demo import DemoOptions, DemoProvider
    from server.contract import ProviderContext

    demo = DemoProvider(DemoOptions(words_per_second=0), ProviderContext())
    stream = demo.stream(PROMPT, max_output_tokens=3, timeout=1)
    words = [w async for w in stream]
    assert len(words) == 3 and stream.finish_reason == "length"
    stopped = await demo.complete(
        PROMPT, max_output_tokens=100, timeout=1, params=GenerationParams(stop=(" model key",))
    )
    assert stopped.text == "*Demo mode: no" and stopped.finish_reason == "stop"
