"""When the session stage saves an answer in progress: every ``save_every_seconds`` from the
first chunk, or sooner after ``save_every_chars``; an answer that ends sooner has one write,
its final one. The stage runs on a real SQLite store; its ``rest`` is driven event by event,
and the history is read between events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from plugins.session import SessionStage
from server import Event, Turn, chunk, complete
from server.contract import SessionStore
from server.testing import make_services, make_turn

pytestmark = pytest.mark.anyio


class CountedWrites:
    """The store, counting the writes of the assistant's answer."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self.answer_writes: list[str] = []
        self.chars_written = 0  # of the answer's text, over all its writes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def add_message(self, *args: Any, **kwargs: Any) -> int:
        if args[2] == "assistant":
            self.answer_writes.append("add")
            self.chars_written += len(args[3])
        return await self._store.add_message(*args, **kwargs)

    async def append_to_message(self, *args: Any, **kwargs: Any) -> None:
        self.answer_writes.append("append")
        self.chars_written += len(args[3])
        await self._store.append_to_message(*args, **kwargs)

    async def update_message(self, *args: Any, **kwargs: Any) -> None:
        self.answer_writes.append("update")
        self.chars_written += len(args[3])
        await self._store.update_message(*args, **kwargs)


def session_stage(**options: Any) -> tuple[SessionStage, CountedWrites]:
    services = make_services()
    store = CountedWrites(services.sessions)
    services.sessions = store  # type: ignore[assignment]
    stage = SessionStage(SessionStage.Options.model_validate(options), services)
    stage.name = "session"
    return stage, store


def the_end(text: str) -> Event:
    return complete(
        text,
        session_id=None,
        suggestions=[],
        provider="scripted",
        model="m",
        mode="stream",
        fallback=False,
        usage=None,
    )


async def saved_answer(store: CountedWrites, turn: Turn) -> tuple[str, str] | None:
    assert turn.session_id is not None
    messages = await store.messages(turn.user_id, turn.session_id)
    answers = [(m.content, m.status) for m in messages if m.role == "assistant"]
    return answers[-1] if answers else None


async def test_an_answer_shorter_than_the_interval_is_written_once_at_its_end() -> None:
    stage, store = session_stage(save_every_seconds=60, save_every_chars=1000)
    turn = make_turn(session_id="s_short")

    async def rest(_: Turn) -> AsyncIterator[Event]:
        for word in ("Short ", "and ", "sweet."):
            yield chunk(word)
        yield the_end("Short and sweet.")

    events = stage.wrap(turn, rest)
    seen = [await anext(events) for _ in range(3)]
    assert [e["content"] for e in seen] == ["Short ", "and ", "sweet."]
    assert await saved_answer(store, turn) is None and store.answer_writes == []
    assert (await anext(events)).type == "complete"
    assert await saved_answer(store, turn) == ("Short and sweet.", "complete")
    assert store.answer_writes == ["add"]


async def test_the_answer_is_saved_after_each_save_every_chars() -> None:
    stage, store = session_stage(save_every_seconds=60, save_every_chars=10)
    turn = make_turn(session_id="s_chars")

    async def rest(_: Turn) -> AsyncIterator[Event]:
        for part in ("12345", "67890", "abcde", "fghij", "k"):
            yield chunk(part)
        yield the_end("1234567890abcdefghijk")

    events = stage.wrap(turn, rest)
    await anext(events)  # "12345"
    await anext(events)  # "67890": 10 characters handed on
    assert await saved_answer(store, turn) is None
    await anext(events)  # asking for the third saves what the first two made
    assert await saved_answer(store, turn) == ("1234567890", "incomplete")
    await anext(events)
    await anext(events)
    assert await saved_answer(store, turn) == ("1234567890abcdefghij", "incomplete")
    assert [(await anext(events)).type] == ["complete"]
    assert await saved_answer(store, turn) == ("1234567890abcdefghijk", "complete")
    assert store.answer_writes == ["add", "append", "append"]


async def test_the_answer_is_saved_once_the_interval_has_passed_since_its_first_chunk() -> None:
    interval = 0.05
    stage, store = session_stage(save_every_seconds=interval, save_every_chars=1000)
    turn = make_turn(session_id="s_time")

    async def rest(_: Turn) -> AsyncIterator[Event]:
        yield chunk("Once ")
        # What the stage's timer measures is time itself: let the interval pass (the
        # upstream's pause between two words).
        await asyncio.sleep(2 * interval)
        yield chunk("upon ")
        yield chunk("a time.")
        yield the_end("Once upon a time.")

    events = stage.wrap(turn, rest)
    await anext(events)  # the first chunk starts the clock and writes nothing
    assert store.answer_writes == []
    await anext(events)  # "upon ", after the interval
    await anext(events)  # asking for "a time." saves what the user has seen
    assert await saved_answer(store, turn) == ("Once upon ", "incomplete")
    assert (await anext(events)).type == "complete"
    assert await saved_answer(store, turn) == ("Once upon a time.", "complete")
    assert store.answer_writes == ["add", "append"]


async def test_a_long_answer_writes_each_character_once_not_the_square_of_its_length() -> None:
    """Regression: every save rewrote the whole answer so far, so an answer of n characters
    saved every k wrote about n²/2k of them (a 19 MB answer: gigabytes, for over a minute,
    with every other user's stream stalled meanwhile). Each save now adds only the text
    that arrived since the last one, and the final save only the rest."""
    stage, store = session_stage(save_every_seconds=60, save_every_chars=100)
    turn = make_turn(session_id="s_long")
    parts = [f"{i:04d}" + "x" * 46 for i in range(400)]  # 20,000 characters, 200 saves
    whole = "".join(parts)

    async def rest(_: Turn) -> AsyncIterator[Event]:
        for part in parts:
            yield chunk(part)
        yield the_end(whole)

    events = stage.wrap(turn, rest)
    for _ in parts[:-1]:
        await anext(events)
    draft = await saved_answer(store, turn)
    assert draft is not None and draft[1] == "incomplete" and whole.startswith(draft[0])
    assert len(draft[0]) >= len(whole) - 150  # at most one interval (and a chunk) behind
    async for _ in events:
        pass
    assert await saved_answer(store, turn) == (whole, "complete")
    assert store.chars_written == len(whole)
    assert store.answer_writes[0] == "add" and set(store.answer_writes[1:]) == {"append"}


async def test_a_final_text_unlike_the_streamed_one_replaces_the_saved_draft() -> None:
    """The final save appends only when the final text carries on what was saved; a
    ``complete`` whose message differs from the chunks (a stage rewrote it) replaces the
    draft, leaving none of the appended pieces behind."""
    stage, store = session_stage(save_every_seconds=60, save_every_chars=5)
    turn = make_turn(session_id="s_rewritten")

    async def rest(_: Turn) -> AsyncIterator[Event]:
        for part in ("Hello ", "there ", "friend"):
            yield chunk(part)
        yield the_end("Goodbye.")

    async for _ in stage.wrap(turn, rest):
        pass
    assert await saved_answer(store, turn) == ("Goodbye.", "complete")
    assert store.answer_writes == ["add", "append", "append", "update"]


async def test_an_answer_torn_down_mid_stream_keeps_every_piece_marked_incomplete() -> None:
    """Appending must not lose the guarantee rewriting gave: a turn torn down mid-answer
    leaves all the text handed on so far in history, marked incomplete."""
    stage, store = session_stage(save_every_seconds=60, save_every_chars=4)
    turn = make_turn(session_id="s_torn")

    async def rest(_: Turn) -> AsyncIterator[Event]:
        for part in ("one ", "two ", "three ", "four"):
            yield chunk(part)
        await asyncio.Event().wait()  # the upstream hangs: the turn is cancelled here
        yield the_end("never")

    events = stage.wrap(turn, rest)
    for _ in range(4):
        await anext(events)
    await events.aclose()  # "four" was yielded, but never asked past: not handed on
    assert await saved_answer(store, turn) == ("one two three ", "incomplete")
    assert store.chars_written == len("one two three ")
