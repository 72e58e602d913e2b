"""One contract for the stores instances share, run against the embedded backend and Redis.

Stream logs, the turn registry (a session's active turn, a user's stream slots, cancel) and
rate-limit buckets. Each test takes two "instances": with Redis, two sets of stores with
their own connections and instance ids, as two processes have; embedded, the one process
is both (there is no other instance). Redis is a real ``redis-server`` on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from server import Event, Stage, Turn, chunk, complete
from server.config import Settings
from server.contract import RateLimitStore
from server.core.coordination import (
    Admission,
    MemoryTurnRegistry,
    TurnInProgress,
    TurnRegistry,
)
from server.core.pipeline import Pipeline
from server.core.runner import TurnRunner
from server.core.streamlog import MemoryStreamLogStore, StreamLog, StreamLogStore
from server.stores.memory import MemoryRateLimitStore
from server.stores.redis.client import RedisContext
from server.stores.redis.rate_limits import RedisRateLimitStore
from server.stores.redis.registry import RedisTurnRegistry
from server.stores.redis.streamlog import RedisStreamLogStore
from tests.support.redis_server import RedisServer

TTL = 0.5


@dataclass
class Instance:
    logs: StreamLogStore
    registry: TurnRegistry
    rates: RateLimitStore
    close: Callable[[], Awaitable[None]]


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """``"memory"``, or the URL of a fresh redis-server."""
    if request.param == "memory":
        yield "memory"
        return
    server = RedisServer(tmp_path).start()
    try:
        yield server.url
    finally:
        server.stop()


def _memory() -> Instance:
    async def close() -> None:
        return None

    return Instance(
        MemoryStreamLogStore(ttl_seconds=TTL, max_events=100),
        MemoryTurnRegistry(),
        MemoryRateLimitStore(),
        close,
    )


def _redis(url: str) -> Instance:
    context = RedisContext(url, log_ttl_seconds=TTL, max_duration_seconds=60)
    logs = RedisStreamLogStore(context, ttl_seconds=TTL, max_events=100)
    registry = RedisTurnRegistry(context)

    async def close() -> None:
        await logs.close()
        await registry.close()
        await context.close()

    return Instance(logs, registry, RedisRateLimitStore(context), close)


@asynccontextmanager
async def two_instances(backend: str) -> AsyncIterator[tuple[Instance, Instance]]:
    if backend == "memory":
        one = _memory()
        pair = (one, one)
    else:
        pair = (_redis(backend), _redis(backend))
    for instance in pair:
        await instance.registry.start()
    try:
        yield pair
    finally:
        for instance in pair:
            await instance.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


def make_turn(stream_id: str, session_id: str = "s_one", user_id: str = "alice") -> Turn:
    return Turn(
        stream_id=stream_id,
        user_id=user_id,
        message="hello",
        client_ip="127.0.0.1",
        session_id=session_id,
    )


def done(message: str = "") -> Event:
    return complete(
        message,
        session_id=None,
        suggestions=[],
        provider="t",
        model="t",
        mode="stream",
        fallback=False,
        usage=None,
    )


async def end_turn(instance: Instance, turn: Turn, stream_log: StreamLog) -> None:
    """What the producer does as a turn ends: terminal, expiry clock, release."""
    await stream_log.append(done())
    instance.logs.finished(stream_log)
    await instance.registry.finish(turn)


@pytest.mark.gen_test(timeout=30)
async def test_a_log_is_replayed_and_followed_from_another_instance(backend: str) -> None:
    async with two_instances(backend) as (a, b):
        turn = make_turn("st_follow")
        assert await a.registry.admit(turn, limit=3, take_slot=True) is Admission.ADMITTED
        written = a.logs.create(turn)
        for word in ("one ", "two "):
            await written.append(chunk(word))
        reader = None

        async def opened() -> bool:
            nonlocal reader
            reader = await b.logs.open("st_follow")
            if reader is not None and reader.last_id < 2:
                b.logs.release(reader)
                reader = None
            return reader is not None

        await eventually(opened)
        assert reader is not None and reader.user_id == "alice"
        assert reader.frames_after(0) == written.frames_after(0)  # the same bytes
        # A second reader in the same process shares the log (one follower per process).
        second = await b.logs.open("st_follow")
        assert second is reader
        b.logs.release(second)
        for word in ("three ", "four "):
            await written.append(chunk(word))
        await end_turn(a, turn, written)
        while not reader.finished:  # followed live, woken on the condition
            await asyncio.wait_for(reader.wait(), 5)
        assert reader.frames_after(0) == written.frames_after(0)
        assert [entry.id for entry in await reader.read(0)] == [1, 2, 3, 4, 5]
        terminal = reader.terminal_event()
        assert terminal is not None and terminal.type == "complete"
        b.logs.release(reader)


@pytest.mark.gen_test(timeout=30)
async def test_an_unknown_stream_has_no_log_and_a_finished_one_expires(backend: str) -> None:
    async with two_instances(backend) as (a, b):
        assert await b.logs.open("st_nobody") is None
        turn = make_turn("st_expiring")
        await a.registry.admit(turn, limit=3, take_slot=True)
        stream_log = a.logs.create(turn)
        await end_turn(a, turn, stream_log)

        async def gone() -> bool:
            found = await b.logs.open("st_expiring")
            if found is not None:
                b.logs.release(found)
            return found is None

        await eventually(gone, within=TTL + 3)


@pytest.mark.gen_test(timeout=30)
async def test_one_turn_at_a_time_per_session_across_instances(backend: str) -> None:
    async with two_instances(backend) as (a, b):
        first = make_turn("st_first")
        await a.registry.admit(first, limit=3, take_slot=True)
        written = a.logs.create(first)
        with pytest.raises(TurnInProgress) as busy:
            await b.registry.admit(make_turn("st_second"), limit=3, take_slot=True)
        assert busy.value.active.stream_id == "st_first"
        active = await b.registry.active_turn("alice", "s_one")
        assert active is not None and active.stream_id == "st_first"
        assert active.started_at == pytest.approx(first.started_at)
        other = make_turn("st_other", session_id="s_two")  # another session is not blocked
        assert await b.registry.admit(other, limit=3, take_slot=True) is Admission.ADMITTED
        await end_turn(a, first, written)

        async def free() -> bool:
            return await b.registry.active_turn("alice", "s_one") is None

        await eventually(free)
        second = make_turn("st_second")
        assert await b.registry.admit(second, limit=3, take_slot=True) is Admission.ADMITTED


@pytest.mark.gen_test(timeout=30)
async def test_stream_slots_count_once_across_instances(backend: str) -> None:
    async with two_instances(backend) as (a, b):
        one, two = make_turn("st_1", "s_1"), make_turn("st_2", "s_2")
        assert await a.registry.admit(one, limit=2, take_slot=True) is Admission.ADMITTED
        assert await b.registry.admit(two, limit=2, take_slot=True) is Admission.ADMITTED
        third = make_turn("st_3", "s_3")
        assert await a.registry.admit(third, limit=2, take_slot=True) is Admission.TOO_MANY
        # Another user has slots of their own.
        bob = make_turn("st_bob", "s_1", user_id="bob")
        assert await a.registry.admit(bob, limit=2, take_slot=True) is Admission.ADMITTED
        # A refused turn still has a log, readable anywhere.
        refused = a.logs.create(third)
        await refused.append(done("refused"))
        a.logs.finished(refused)
        await end_turn(b, two, b.logs.create(two))

        async def slot_back() -> bool:
            again = make_turn(f"st_again_{time.monotonic_ns()}", "s_4")
            admitted = await b.registry.admit(again, limit=2, take_slot=True)
            return admitted is Admission.ADMITTED

        await eventually(slot_back)
        seen = await b.logs.open("st_3")
        assert seen is not None and seen.finished
        b.logs.release(seen)


@pytest.mark.gen_test(timeout=30)
async def test_not_taking_turns_claims_nothing(backend: str) -> None:
    async with two_instances(backend) as (a, b):
        turn = make_turn("st_refused")
        assert await a.registry.admit(turn, limit=1, take_slot=False) is Admission.REFUSED
        assert await b.registry.active_turn("alice", "s_one") is None
        other = make_turn("st_next", "s_next")
        assert await b.registry.admit(other, limit=1, take_slot=True) is Admission.ADMITTED


@pytest.mark.gen_test(timeout=30)
async def test_rate_limit_buckets_are_shared(backend: str) -> None:
    async with two_instances(backend) as (a, b):
        rate = 1 / 60  # one token a minute
        assert await a.rates.take("user:alice", rate, 3) == 0
        assert await b.rates.take("user:alice", rate, 3) == 0
        assert await a.rates.take("user:alice", rate, 3) == 0
        wait = await b.rates.take("user:alice", rate, 3)
        assert 50 < wait <= 60  # seconds until the next token
        assert await b.rates.take("user:bob", rate, 3) == 0  # buckets are per key


class Endless(Stage):
    """Writes a word every 20 ms until stopped."""

    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        while True:
            yield chunk("word ")
            await asyncio.sleep(0.02)


@pytest.mark.gen_test(timeout=30)
async def test_a_cancel_from_any_instance_stops_the_producer_within_a_second(
    backend: str,
) -> None:
    async with two_instances(backend) as (a, b):
        endless = Endless(None, None)  # type: ignore[arg-type]
        endless.name = "llm"
        settings = Settings()
        runner_a = TurnRunner(Pipeline([endless]), a.logs, settings, registry=a.registry)
        runner_b = (  # one process, one runner
            runner_a
            if b is a
            else TurnRunner(Pipeline([endless]), b.logs, settings, registry=b.registry)
        )
        turn = make_turn("st_endless")
        stream_log = await runner_a.start(turn)
        while stream_log.last_id < 4:
            await stream_log.wait()
        asked = time.monotonic()
        assert await runner_b.cancel("st_endless", "cancelled") is True
        while not stream_log.finished:
            await asyncio.wait_for(stream_log.wait(), 2)
        assert time.monotonic() - asked < 1.0
        terminal = stream_log.terminal_event()
        assert terminal is not None and terminal["code"] == "cancelled"

        async def over() -> bool:  # once the terminal event is in the shared log
            return await runner_b.cancel("st_endless", "cancelled") is False

        await eventually(over)
        await runner_a.shutdown(1)
