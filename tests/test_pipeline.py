"""The run loop (server/core/pipeline.py) and producer (server/core/runner.py), in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server import (
    Chunk,
    Event,
    Rest,
    Stage,
    TextFilter,
    Turn,
    WrapperStage,
    chunk,
    complete,
    error,
)
from server.config import Settings
from server.core.coordination import TurnInProgress
from server.core.pipeline import Pipeline
from server.core.runner import TurnRunner
from server.core.streamlog import MemoryStreamLogStore


def answered(message: str, provider: str = "t") -> Event:
    """A ``complete`` with ``message``, as a stage that answers would end with."""
    return complete(
        message,
        session_id=None,
        suggestions=[],
        provider=provider,
        model="t",
        mode="stream",
        fallback=False,
        usage=None,
    )


def make_turn() -> Turn:
    return Turn(stream_id="st_test", user_id="alice", message="hi", client_ip="127.0.0.1")


def stage(cls: type, name: str) -> Any:
    instance = cls(None, None)
    instance.name = name
    return instance


class Words(Stage):
    gate: asyncio.Event | None = None

    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        for word in ("one ", "two ", "three"):
            yield chunk(word)
            if self.gate is not None and word == "two ":
                await self.gate.wait()  # hangs until cancelled
        yield answered("one two three", provider="t")


class Quiet(Stage):
    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        turn.state["quiet"] = True
        return
        yield


class Boom(Stage):
    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        yield chunk("partial ")
        raise RuntimeError("secret internal detail")


class Refuse(Stage):
    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        yield error("rate_limited", "slow down", retryable=True, retry_after=3)
        raise AssertionError("a stage must not run on after its terminal event")


class Upper(WrapperStage):
    """Transforms the events of the rest, and records what it saw end the turn."""

    seen: list[str]

    async def wrap(self, turn: Turn, rest: Rest) -> AsyncIterator[Event]:
        self.seen = []
        async for event in rest(turn):
            if event["type"] == "chunk":
                event = chunk(event["content"].upper())
            self.seen.append(event["type"])
            yield event


async def collect(pipeline: Pipeline, turn: Turn) -> list[Event]:
    return [event async for event in pipeline.run(turn)]


@pytest.mark.gen_test
async def test_wrapper_transforms_the_rest_and_progress_never_falls() -> None:
    wrapper = stage(Upper, "upper")
    events = await collect(Pipeline([stage(Quiet, "a"), wrapper, stage(Words, "b")]), make_turn())
    statuses = [(e["stage"], e["state"], e["progress"]) for e in events if e["type"] == "status"]
    # A wrapper is done after its last event: after everything inside it.
    assert statuses == [
        ("a", "start", 0),
        ("a", "done", 20),
        ("upper", "start", 40),
        ("b", "start", 60),
        ("b", "done", 80),
        ("upper", "done", 100),
    ]
    assert [e["content"] for e in events if e["type"] == "chunk"] == ["ONE ", "TWO ", "THREE"]
    assert events[-1]["type"] == "complete" and wrapper.seen[-1] == "complete"
    # The wrapper changed every chunk and never touched complete: its message was made
    # from what it let through.
    assert events[-1]["message"] == "ONE TWO THREE"
    assert [e["type"] for e in events[-2:]] == ["status", "complete"]


@pytest.mark.gen_test
async def test_terminal_event_ends_the_turn() -> None:
    events = await collect(Pipeline([stage(Refuse, "limit"), stage(Words, "llm")]), make_turn())
    # A stage that ends the turn with an error is not reported done: it failed.
    assert [(e["type"], e.get("state")) for e in events] == [("status", "start"), ("error", None)]
    assert events[-1]["code"] == "rate_limited" and events[-1]["retry_after"] == 3
    assert not any(e.get("stage") == "llm" for e in events)


@pytest.mark.gen_test
async def test_a_failing_stage_becomes_an_internal_error_that_wrappers_see() -> None:
    wrapper = stage(Upper, "upper")
    events = await collect(Pipeline([wrapper, stage(Boom, "boom")]), make_turn())
    assert [e["type"] for e in events][-2:] == ["chunk", "error"]
    assert events[-1]["code"] == "internal"
    assert "secret" not in events[-1]["message"]  # no internals reach the client
    assert wrapper.seen[-1] == "error"


@pytest.mark.gen_test
async def test_cancel_ends_with_cancelled_and_wrappers_keep_the_partial() -> None:
    words = stage(Words, "llm")
    words.gate = asyncio.Event()
    wrapper = stage(Upper, "upper")
    runner = TurnRunner(
        Pipeline([wrapper, words]),
        MemoryStreamLogStore(ttl_seconds=60, max_events=100),
        Settings(),
    )
    turn = make_turn()
    log = await runner.start(turn)
    while not any(e.type == "chunk" and e.data["content"] == "TWO " for e in await log.read(0)):
        await log.wait()
    assert await runner.cancel(turn.stream_id, "cancelled") is True
    while not log.finished:
        await log.wait()
    entries = await log.read(0)
    assert [e.id for e in entries] == list(range(1, len(entries) + 1))
    assert entries[-1].data["code"] == "cancelled"
    assert "".join(e.data["content"] for e in entries if e.type == "chunk") == "ONE TWO "
    assert wrapper.seen[-1] == "error"
    assert runner.running_count == 0
    assert await runner.cancel(turn.stream_id, "cancelled") is False  # already over


class Settles(Stage):
    """Does nothing in ``run``; notes each ``turn_ended`` call (its stage name and end)."""

    ended: list[tuple[str, str | None]]

    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        return
        yield

    async def turn_ended(self, turn: Turn, end: Event | None) -> None:
        self.ended.append((self.name, None if end is None else end.type))


class SettlesAround(Upper):
    ended: list[tuple[str, str | None]]

    async def turn_ended(self, turn: Turn, end: Event | None) -> None:
        self.ended.append((self.name, None if end is None else end.type))


def settling(cls: type, name: str, ended: list[tuple[str, str | None]]) -> Any:
    made = stage(cls, name)
    made.ended = ended
    return made


@pytest.mark.gen_test
async def test_turn_ended_is_called_once_innermost_first_with_the_end_the_client_got() -> None:
    ended: list[tuple[str, str | None]] = []
    pipeline = Pipeline(
        [
            settling(Settles, "first", ended),
            settling(SettlesAround, "around", ended),
            settling(Settles, "inside", ended),
            stage(Words, "llm"),
        ]
    )
    events = await collect(pipeline, make_turn())
    assert events[-1]["type"] == "complete"
    assert ended == [("inside", "complete"), ("around", "complete"), ("first", "complete")]


@pytest.mark.gen_test
async def test_turn_ended_only_for_stages_that_began() -> None:
    ended: list[tuple[str, str | None]] = []
    pipeline = Pipeline(
        [
            settling(Settles, "before", ended),
            stage(Refuse, "limit"),
            settling(Settles, "after", ended),
        ]
    )
    events = await collect(pipeline, make_turn())
    assert events[-1]["code"] == "rate_limited"
    assert ended == [("before", "error")]


@pytest.mark.gen_test
async def test_turn_ended_when_a_stage_fails_or_the_turn_is_torn_down() -> None:
    ended: list[tuple[str, str | None]] = []
    await collect(Pipeline([settling(Settles, "a", ended), stage(Boom, "boom")]), make_turn())
    assert ended == [("a", "error")]
    ended.clear()
    # The consumer closes the stream before any terminal event: the end is None.
    events = Pipeline([settling(SettlesAround, "b", ended), stage(Words, "llm")]).run(make_turn())
    async for event in events:
        if event.type == "chunk":
            break
    assert ended == []
    await events.aclose()  # type: ignore[attr-defined]
    assert ended == [("b", None)]


def test_a_pipeline_finds_the_stages_with_turn_ended_once() -> None:
    pipeline = Pipeline([stage(Words, "llm")])
    assert not pipeline._any_hooked  # then no list of begun stages is kept per turn
    pipeline = Pipeline([settling(Settles, "s", []), stage(Words, "llm")])
    assert pipeline._hooked == [True, False]


@pytest.mark.gen_test
async def test_too_many_streams_per_user() -> None:
    words = stage(Words, "llm")
    words.gate = asyncio.Event()
    settings = Settings.model_validate({"limits": {"max_streams_per_user": 1}})
    runner = TurnRunner(
        Pipeline([words]), MemoryStreamLogStore(ttl_seconds=60, max_events=100), settings
    )
    first = make_turn()
    await runner.start(first)
    second = make_turn()
    second.stream_id = "st_second"
    log = await runner.start(second)
    [entry] = await log.read(0)
    assert entry.data["code"] == "too_many_streams" and entry.data["retryable"] is True
    await runner.cancel(first.stream_id, "cancelled")
    await runner.shutdown(1)


@pytest.mark.gen_test
async def test_cancel_before_the_producer_took_a_step() -> None:
    """Regression: a turn cancelled in the same loop step that started it never ran its
    producer, so its stream never ended and the user's slot was never freed."""
    settings = Settings.model_validate({"limits": {"max_streams_per_user": 1}})
    runner = TurnRunner(
        Pipeline([stage(Words, "llm")]),
        MemoryStreamLogStore(ttl_seconds=60, max_events=100),
        settings,
    )
    turn = make_turn()
    log = await runner.start(turn)
    assert await runner.cancel(turn.stream_id, "cancelled") is True
    while not log.finished:
        await log.wait()
    [entry] = await log.read(0)
    assert entry.data["code"] == "cancelled"
    assert runner.running_count == 0
    again = make_turn()
    again.stream_id = "st_again"
    second = await runner.start(again)  # the slot was given back: not too_many_streams
    await runner.shutdown(5)
    assert (await second.read(0))[-1].data["type"] == "complete"


class DropVowels(WrapperStage):
    """Drops one chunk entirely and adds one of its own."""

    async def wrap(self, turn: Turn, rest: Rest) -> AsyncIterator[Event]:
        async for event in rest(turn):
            if isinstance(event, Chunk) and event.content == "two ":
                continue
            if event.type == "complete":
                yield chunk("!")
            yield event


class Canned(WrapperStage):
    """Answers without asking the rest, with a complete and no chunk."""

    async def wrap(self, turn: Turn, rest: Rest) -> AsyncIterator[Event]:
        yield answered("from the cache", provider="cache")


@pytest.mark.gen_test
async def test_complete_message_is_what_the_wrapper_let_through() -> None:
    events = await collect(Pipeline([stage(DropVowels, "w"), stage(Words, "b")]), make_turn())
    chunks = "".join(e["content"] for e in events if e["type"] == "chunk")
    assert chunks == "one three!"
    assert events[-1]["message"] == chunks


@pytest.mark.gen_test
async def test_a_complete_without_chunks_is_sent_as_one_chunk() -> None:
    events = await collect(Pipeline([stage(Canned, "cache"), stage(Words, "b")]), make_turn())
    assert [e["content"] for e in events if e["type"] == "chunk"] == ["from the cache"]
    assert events[-1]["message"] == "from the cache"
    assert not any(e.get("stage") == "b" for e in events)


@pytest.mark.gen_test
async def test_an_error_inside_a_wrapper_reports_no_done() -> None:
    events = await collect(Pipeline([stage(Upper, "upper"), stage(Boom, "boom")]), make_turn())
    assert [e["state"] for e in events if e["type"] == "status"] == ["start", "start"]
    assert events[-1]["type"] == "error"


class Censor(TextFilter):
    def transform(self, text: str) -> str:
        return text.replace("secret", "******")


class Split(Stage):
    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        for piece in ("the sec", "ret is ", "out: sec", "ret"):
            yield chunk(piece)
        yield answered("the secret is out: secret", provider="t")


@pytest.mark.gen_test
async def test_text_filter_sees_words_split_across_chunks() -> None:
    events = await collect(Pipeline([stage(Censor, "censor"), stage(Split, "b")]), make_turn())
    chunks = "".join(e["content"] for e in events if e["type"] == "chunk")
    assert chunks == "the ****** is out: ******"
    assert events[-1]["message"] == chunks


def test_events_are_immutable() -> None:
    event = chunk("a")
    with pytest.raises(AttributeError):
        event.content = "b"  # type: ignore[misc]
    assert event["content"] == "a" and event.as_dict() == {"type": "chunk", "content": "a"}


@pytest.mark.gen_test
async def test_one_turn_at_a_time_per_session() -> None:
    words = stage(Words, "llm")
    words.gate = asyncio.Event()
    runner = TurnRunner(
        Pipeline([words]), MemoryStreamLogStore(ttl_seconds=60, max_events=100), Settings()
    )
    first = make_turn()
    first.session_id = "s_one"
    await runner.start(first)
    active = await runner.active_turn("alice", "s_one")
    assert active is not None and active.stream_id == first.stream_id
    second = make_turn()
    second.stream_id = "st_second"
    second.session_id = "s_one"
    with pytest.raises(TurnInProgress) as refused:
        await runner.start(second)
    assert refused.value.active.stream_id == first.stream_id
    other = make_turn()
    other.stream_id = "st_other"
    other.session_id = "s_two"  # another session of the same user is not blocked
    await runner.start(other)
    assert await runner.cancel_session("alice", "s_one", "cancelled") is True
    await runner.shutdown(1)
    assert await runner.active_turn("alice", "s_one") is None


class SeesWhatReadersSent(Stage):
    """A first stage that notes, as it starts its work, which events a reader of the turn's
    log had already taken: a stage's start-up work runs without suspending the loop."""

    reader_had: list[str] | None = None
    taken: list[str]

    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        self.reader_had = list(self.taken)
        yield answered("done")


@pytest.mark.gen_test
async def test_readers_send_the_first_status_before_the_first_stage_does_its_work() -> None:
    first = stage(SeesWhatReadersSent, "first")
    first.taken = []
    runner = TurnRunner(
        Pipeline([first]), MemoryStreamLogStore(ttl_seconds=60, max_events=100), Settings()
    )
    log = await runner.start(make_turn())

    async def reader() -> None:
        position = 0
        while not log.finished or position < log.last_id:
            for entry in await log.read(position):
                first.taken.append(f"{entry.type}:{entry.data.get('state')}")
                position = entry.id
            if not log.finished:
                await log.wait()

    await asyncio.wait_for(reader(), 5)
    assert first.reader_had == ["status:start"]
    assert first.taken[0] == "status:start" and first.taken[-1] == "complete:None"
