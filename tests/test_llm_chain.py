"""The fallback chain with the real providers against fake upstreams.

Time for circuits and Retry-After is moved by hand (``Clock``); first-token and idle timeouts
are real but short.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from plugins.providers.gemini import GeminiOptions, GeminiProvider
from plugins.providers.openai import OpenAIOptions, OpenAIProvider
from server.contract import AnswerError, Message, Provider
from server.llm.chain import AnswerStream, ChainObserver, LLMChain, _pieces
from server.llm.transport import provider_context
from tests.fakes.llm_upstreams import FakeGemini, FakeOpenAI, Reply, refused_url

pytestmark = pytest.mark.anyio

PROMPT = [Message("user", "Hi")]
ENV = {"OPENAI_API_KEY": "sk-test-key-0123456789", "GEMINI_API_KEY": "AIza-test-key-0123456789"}
LONG = "This plain answer is long enough to be handed on in several pieces, not one."


class Clock:
    """``time.monotonic`` plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Recorder(ChainObserver):
    events: list[tuple[str, ...]] = field(default_factory=list)

    def on_attempt(self, provider: str, mode: str) -> None:
        self.events.append(("attempt", provider, mode))

    def on_fallback(self, provider: str, reason: str) -> None:
        self.events.append(("fallback", provider, reason))

    def on_circuit_change(self, provider: str, state: str) -> None:
        self.events.append(("circuit", provider, state))


@dataclass
class Setup:
    openai: FakeOpenAI
    gemini: FakeGemini
    clock: Clock
    observer: Recorder
    chains: list[LLMChain] = field(default_factory=list)

    def chain(
        self,
        order: tuple[str, ...] = ("openai", "gemini"),
        *,
        openai_url: str | None = None,
        first_token_timeout: float = 2.0,
        idle_timeout: float = 2.0,
        circuit_failures: int = 3,
        circuit_cooldown: float = 30.0,
    ) -> LLMChain:
        context = provider_context(ENV, max_connections=8)
        made: dict[str, Provider] = {
            "openai": OpenAIProvider(
                OpenAIOptions(base_url=openai_url or self.openai.base_url), context
            ),
            "gemini": GeminiProvider(GeminiOptions(base_url=self.gemini.url), context),
        }
        chain = LLMChain(
            [made[name] for name in order],
            max_output_tokens=64,
            first_token_timeout=first_token_timeout,
            idle_timeout=idle_timeout,
            circuit_failures=circuit_failures,
            circuit_cooldown=circuit_cooldown,
            clock=self.clock,
            observer=self.observer,
        )
        self.chains.append(chain)
        for name, provider in made.items():
            if name not in order:
                self.chains.append(LLMChain([provider], **_NO_LIMITS))
        return chain

    def deadline(self, seconds: float = 10.0) -> float:
        return self.clock() + seconds


_NO_LIMITS = {
    "max_output_tokens": 1,
    "first_token_timeout": 1.0,
    "idle_timeout": 1.0,
    "circuit_failures": 1,
    "circuit_cooldown": 1.0,
}


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with FakeOpenAI() as openai, FakeGemini() as gemini:
        s = Setup(openai, gemini, Clock(), Recorder())  # type: ignore[arg-type]
        try:
            yield s  # type: ignore[misc]
        finally:
            for chain in s.chains:
                await chain.aclose()


async def run(answer: AnswerStream) -> tuple[list[str], AnswerError | None]:
    deltas: list[str] = []
    try:
        async for delta in answer:
            deltas.append(delta)
    except AnswerError as error:
        return deltas, error
    finally:
        await answer.aclose()
    return deltas, None


def test_pieces_rejoin_exactly() -> None:
    for text in [LONG, "", "x", "ب" * 100, "a\nb " * 30, "👋🏽" * 40]:
        pieces = _pieces(text)
        assert "".join(pieces) == text
        assert all(pieces)
    assert len(_pieces(LONG)) > 2


async def test_first_provider_streams(setup: Setup) -> None:
    chain = setup.chain()
    answer = chain.answer(PROMPT, deadline=setup.deadline())
    deltas, error = await run(answer)
    assert error is None
    assert deltas == ["Hello", ", wor", "ld!"]
    assert answer.result is not None
    assert (answer.result.provider, answer.result.mode, answer.result.fallback) == (
        "openai",
        "stream",
        False,
    )
    assert answer.result.usage is not None and answer.result.usage.output_tokens == 3
    assert setup.gemini.requests == []


async def test_500_then_same_provider_without_streaming(setup: Setup) -> None:
    setup.openai.script(Reply(status=500), Reply(text=[LONG]))
    chain = setup.chain()
    answer = chain.answer(PROMPT, deadline=setup.deadline())
    deltas, error = await run(answer)
    assert error is None
    assert "".join(deltas) == LONG and len(deltas) > 2  # still several chunk events
    assert answer.result is not None
    assert (answer.result.provider, answer.result.mode, answer.result.fallback) == (
        "openai",
        "non-stream",
        True,
    )
    assert [r.stream for r in setup.openai.requests] == [True, False]
    assert setup.gemini.requests == []


async def test_streaming_refused_goes_plain_and_is_remembered(setup: Setup) -> None:
    setup.openai.default = Reply(text=["plain ", "words"], refuse_stream=True)
    chain = setup.chain()
    first = chain.answer(PROMPT, deadline=setup.deadline())
    deltas, error = await run(first)
    assert error is None and "".join(deltas) == "plain words"
    assert first.result is not None and first.result.mode == "non-stream"
    second = chain.answer(PROMPT, deadline=setup.deadline())
    deltas, error = await run(second)
    assert error is None and "".join(deltas) == "plain words"
    # The second turn did not ask for a stream again: stream, plain, plain.
    assert [r.stream for r in setup.openai.requests] == [True, False, False]


async def test_malformed_frame_before_text_falls_back_to_plain(setup: Setup) -> None:
    setup.openai.script(Reply(text=["a", "b"], malformed_at=0), Reply(text=["whole"]))
    chain = setup.chain()
    answer = chain.answer(PROMPT, deadline=setup.deadline())
    deltas, error = await run(answer)
    assert error is None and deltas == ["whole"]
    assert answer.result is not None and answer.result.mode == "non-stream"


async def test_connection_refused_moves_to_next_provider(setup: Setup) -> None:
    chain = setup.chain(openai_url=refused_url() + "/v1")
    answer = chain.answer(PROMPT, deadline=setup.deadline())
    deltas, error = await run(answer)
    assert error is None and deltas == ["Hello", ", wor", "ld!"]
    assert answer.result is not None
    assert (answer.result.provider, answer.result.mode, answer.result.fallback) == (
        "gemini",
        "stream",
        True,
    )
    # Nothing answered at all: no plain call to the same dead host.
    assert ("attempt", "openai", "non-stream") not in setup.observer.events


async def test_429_skips_provider_until_retry_after(setup: Setup) -> None:
    setup.openai.script(Reply(status=429, headers={"Retry-After": "20"}))
    chain = setup.chain()
    deltas, error = await run(chain.answer(PROMPT, deadline=setup.deadline()))
    assert error is None and "".join(deltas) == "Hello, world!"
    assert len(setup.openai.requests) == 1 and len(setup.gemini.requests) == 1
    # Within the Retry-After, openai is not asked at all.
    setup.clock.advance(19)
    answer = chain.answer(PROMPT, deadline=setup.deadline())
    await run(answer)
    assert answer.result is not None and answer.result.provider == "gemini"
    assert len(setup.openai.requests) == 1
    # After it, openai answers again.
    setup.clock.advance(2)
    answer = chain.answer(PROMPT, deadline=setup.deadline())
    await run(answer)
    assert answer.result is not None and answer.result.provider == "openai"
    assert len(setup.openai.requests) == 2


async def test_hang_before_first_token_times_out_and_closes_upstream(setup: Setup) -> None:
    setup.openai.script(Reply(hang_at=0))
    # The same bound applies to gemini's first token, which a loaded machine delayed past
    # 0.3 s: long enough for that, still far inside the turn's 10 s deadline.
    timeout = 1.5
    chain = setup.chain(first_token_timeout=timeout)
    started = time.monotonic()
    answer = chain.answer(PROMPT, deadline=setup.deadline())
    deltas, error = await run(answer)
    assert error is None and "".join(deltas) == "Hello, world!"
    assert answer.result is not None and answer.result.provider == "gemini"
    assert timeout <= time.monotonic() - started < timeout + 3
    await setup.openai.wait_closed(1, within=1.0)
    assert ("fallback", "openai", "timeout") in setup.observer.events


async def test_cut_after_text_is_interrupted_and_not_repeated(setup: Setup) -> None:
    setup.openai.script(Reply(text=["one ", "two ", "three"], cut_at=2))
    chain = setup.chain()
    answer = chain.answer(PROMPT, deadline=setup.deadline())
    deltas, error = await run(answer)
    assert deltas == ["one ", "two "]
    assert error is not None and error.code == "upstream_interrupted" and error.retryable
    assert answer.result is None
    assert len(setup.openai.requests) == 1 and setup.gemini.requests == []


async def test_idle_timeout_after_text_is_interrupted(setup: Setup) -> None:
    setup.gemini.script(Reply(text=["one ", "two"], hang_at=1))
    chain = setup.chain(("gemini", "openai"), idle_timeout=0.3)
    deltas, error = await run(chain.answer(PROMPT, deadline=setup.deadline()))
    assert deltas == ["one "]
    assert error is not None and error.code == "upstream_interrupted"
    await setup.gemini.wait_closed(1, within=1.0)
    assert setup.openai.requests == []


async def test_nothing_can_answer(setup: Setup) -> None:
    setup.openai.default = Reply(status=503)
    setup.gemini.default = Reply(status=500)
    chain = setup.chain()
    deltas, error = await run(chain.answer(PROMPT, deadline=setup.deadline()))
    assert deltas == []
    assert error is not None and error.code == "upstream_unavailable" and error.retryable
    assert "sk-" not in error.message and "AIza" not in error.message
    # Each provider: stream, then plain once.
    assert [r.stream for r in setup.openai.requests] == [True, False]
    assert [r.stream for r in setup.gemini.requests] == [True, False]


async def test_refused_keys_tell_what_to_fix(setup: Setup) -> None:
    setup.openai.default = Reply(status=401)
    setup.gemini.default = Reply(status=403)
    chain = setup.chain()
    _, error = await run(chain.answer(PROMPT, deadline=setup.deadline()))
    assert error is not None and error.code == "upstream_unavailable"
    assert "OPENAI_API_KEY" in error.message and "GEMINI_API_KEY" in error.message
    assert ENV["OPENAI_API_KEY"] not in error.message
    assert ENV["GEMINI_API_KEY"] not in error.message
    # Only the operator can fix a key: trying again cannot help, so it is not retryable.
    assert not error.retryable
    assert "operator" in error.message


async def test_a_refused_key_beside_an_outage_is_still_worth_retrying(setup: Setup) -> None:
    setup.openai.default = Reply(status=401)
    setup.gemini.default = Reply(status=503)
    _, error = await run(setup.chain().answer(PROMPT, deadline=setup.deadline()))
    assert error is not None and error.code == "upstream_unavailable" and error.retryable
    assert "OPENAI_API_KEY" in error.message


async def test_deadline_bounds_the_turn(setup: Setup) -> None:
    setup.openai.script(Reply(hang_at=0))
    chain = setup.chain(first_token_timeout=5.0)
    started = time.monotonic()
    _, error = await run(chain.answer(PROMPT, deadline=setup.deadline(0.4)))
    assert error is not None and error.code == "timeout" and error.retryable
    assert time.monotonic() - started < 1.5
    assert setup.gemini.requests == []
    await setup.openai.wait_closed(1, within=1.0)


async def test_circuit_opens_then_lets_one_trial_through(setup: Setup) -> None:
    setup.openai.default = Reply(status=500)
    chain = setup.chain(circuit_failures=2, circuit_cooldown=30.0)
    for _ in range(2):
        answer = chain.answer(PROMPT, deadline=setup.deadline())
        await run(answer)
        assert answer.result is not None and answer.result.provider == "gemini"
    assert len(setup.openai.requests) == 4  # two turns of stream + plain
    assert ("circuit", "openai", "open") in setup.observer.events
    assert chain.circuit("openai").state.value == "open"

    # Open: openai is not asked; gemini answers, flagged as a fallback.
    answer = chain.answer(PROMPT, deadline=setup.deadline())
    await run(answer)
    assert len(setup.openai.requests) == 4
    assert answer.result is not None and answer.result.fallback is True
    assert ("fallback", "openai", "circuit_open") in setup.observer.events

    # After the cooldown: one trial. It fails: open again, without another trial.
    setup.clock.advance(31)
    await run(chain.answer(PROMPT, deadline=setup.deadline()))
    assert len(setup.openai.requests) == 6
    assert chain.circuit("openai").state.value == "open"
    await run(chain.answer(PROMPT, deadline=setup.deadline()))
    assert len(setup.openai.requests) == 6

    # Next trial succeeds: closed.
    setup.clock.advance(31)
    setup.openai.default = Reply(text=["back"])
    answer = chain.answer(PROMPT, deadline=setup.deadline())
    deltas, _ = await run(answer)
    assert deltas == ["back"]
    assert answer.result is not None and answer.result.provider == "openai"
    assert chain.circuit("openai").state.value == "closed"
    states = [e[2] for e in setup.observer.events if e[:2] == ("circuit", "openai")]
    assert states == ["open", "half_open", "open", "half_open", "closed"]


async def test_half_open_lets_only_one_turn_through(setup: Setup) -> None:
    setup.openai.default = Reply(status=500)
    chain = setup.chain(("openai",), circuit_failures=1, circuit_cooldown=5.0)
    await run(chain.answer(PROMPT, deadline=setup.deadline()))
    setup.clock.advance(6)
    setup.openai.default = Reply(text=["a", "b"], hang_at=1)
    trial = chain.answer(PROMPT, deadline=setup.deadline())
    assert await trial.__anext__() == "a"
    # While the trial is in flight, another turn finds no provider.
    _, error = await run(chain.answer(PROMPT, deadline=setup.deadline()))
    assert error is not None and error.code == "upstream_unavailable"
    await trial.aclose()  # cancelled: no verdict, the trial is given back
    await setup.openai.wait_closed(1, within=1.0)
    setup.openai.default = Reply(text=["ok"])
    deltas, error = await run(chain.answer(PROMPT, deadline=setup.deadline()))
    assert error is None and deltas == ["ok"]


async def test_cancelled_turn_closes_upstream_within_a_second(setup: Setup) -> None:
    setup.openai.script(Reply(text=["first ", "second"], hang_at=1))
    chain = setup.chain()
    answer = chain.answer(PROMPT, deadline=setup.deadline())
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in answer:
            got_first.set()

    task = asyncio.ensure_future(consume())
    async with asyncio.timeout(5):
        await got_first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await setup.openai.wait_closed(1, within=1.0) < 1.0
    await answer.aclose()
    assert setup.gemini.requests == []  # a cancel is not a failure to fall back from
    assert chain.circuit("openai").consecutive_failures == 0
