"""A stage can change the tools of one turn: remove one for a user, add one for an intent.

The llm stage offers the model exactly ``turn.tools`` as the stages before it left them, and
a change made for one turn does not leak into the next.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from server import Event, Stage, ToolCall, Turn, tool
from server.testing import ScriptedProvider, make_turn, run_pipeline


@tool
async def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny in {city}"


@tool
async def book_table(restaurant: str, seats: int) -> str:
    """Book a table."""
    return f"Booked {seats} at {restaurant}"


class GuestsGetNoBooking(Stage):
    """Per user: guests may not book."""

    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        if turn.user_id.startswith("guest"):
            turn.tools.remove("book_table")
        return
        yield


class BookingForRestaurantTalk(Stage):
    """Per intent: the booking tool only when the message is about a restaurant."""

    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        if "restaurant" in turn.message:
            turn.tools.add(book_table)
        return
        yield


def test_a_stage_removes_a_tool_for_one_user() -> None:
    provider = ScriptedProvider(rounds=[["Hi."], ["Hi."]])
    member = run_pipeline(
        [GuestsGetNoBooking, "llm"], provider=provider, tools=[weather, book_table]
    )
    assert member.complete is not None
    guest_turn = run_pipeline(
        [GuestsGetNoBooking, "llm"],
        provider=provider,
        tools=[weather, book_table],
        turn=_turn("guest-7"),
    )
    assert guest_turn.complete is not None
    assert provider.tools == [["weather", "book_table"], ["weather"]]


def test_a_stage_adds_a_tool_for_an_intent_and_the_model_can_call_it() -> None:
    provider = ScriptedProvider(
        rounds=[
            [ToolCall("c1", "book_table", {"restaurant": "Sushi Dai", "seats": 2})],
            ["Done."],
            ["Sunny."],
        ]
    )
    booked = run_pipeline(
        [BookingForRestaurantTalk, "llm"],
        message="book the restaurant Sushi Dai for two",
        provider=provider,
        tools=[weather],
    )
    results = booked.of_type("tool_result")
    assert [r["content"] for r in results] == ["Booked 2 at Sushi Dai"]
    plain = run_pipeline(
        [BookingForRestaurantTalk, "llm"], message="weather?", provider=provider, tools=[weather]
    )
    assert plain.complete is not None
    assert provider.tools[0] == ["weather", "book_table"]
    assert provider.tools[-1] == ["weather"]  # the addition was for that turn only


def _turn(user_id: str) -> Turn:
    return make_turn("Hello", user_id=user_id)
