"""Tools for plugin authors (server/contract/tools.py) and running one call
(server/tools/runner.py): schema from type hints, validation before the call, timeouts,
cancellation, failures given to the model, results cut; the tool set and the entry points."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from server.config import ConfigError, Settings, load_settings
from server.contract import (
    Tool,
    ToolCall,
    ToolContext,
    ToolError,
    ToolErrorKind,
    tool,
)
from server.contract.toolset import ToolSet
from server.registry import load_tools
from server.tools.runner import ToolRun, cut, run_tool_call
from tests.support.packages import install_into
from tests.support.server import ROOT, base_env


def call(
    target: Tool | None,
    arguments: dict[str, Any],
    *,
    context: ToolContext | None = None,
    timeout: float = 5.0,
    max_result_chars: int = 1000,
) -> ToolRun:
    async def go() -> ToolRun:
        return await run_tool_call(
            target,
            ToolCall("call-1", target.name if target else "missing", arguments),
            context or ToolContext(user_id="alice", session_id="s1", call_id="call-1"),
            timeout=timeout,
            max_result_chars=max_result_chars,
        )

    return asyncio.run(go())


@tool
async def weather(
    city: Annotated[str, Field(description="A city name")], days: int = 1
) -> dict[str, Any]:
    """The forecast for a city.

    Sunny, always."""
    return {"city": city, "days": days, "sky": "sunny"}


def test_schema_and_description_come_from_the_function() -> None:
    assert weather.name == "weather"
    assert weather.description == "The forecast for a city.\n\nSunny, always."
    schema = weather.input_schema
    assert schema["type"] == "object" and schema["required"] == ["city"]
    assert schema["properties"]["city"] == {
        "description": "A city name",
        "title": "City",
        "type": "string",
    }
    assert schema["properties"]["days"]["default"] == 1
    assert schema["additionalProperties"] is False
    assert weather.schema()["name"] == "weather"


def test_a_call_returns_json_for_anything_but_text() -> None:
    done = call(weather, {"city": "Oslo", "days": 3})
    assert done.result.ok and done.result.error is None
    assert json.loads(done.result.content) == {"city": "Oslo", "days": 3, "sky": "sunny"}
    event = done.event().as_dict()
    assert event["type"] == "tool_result" and event["call_id"] == "call-1"
    assert "error" not in event and event["duration_ms"] >= 0


def test_arguments_are_checked_before_the_call() -> None:
    ran = []

    @tool
    async def record(count: int) -> str:
        """Count."""
        ran.append(count)
        return "ran"

    for bad in ({"count": "many"}, {}, {"count": 1, "extra": True}):
        done = call(record, bad)
        assert done.result.error is ToolErrorKind.INVALID_ARGUMENTS
        assert done.result.content.startswith("Invalid arguments: ")
        assert "errors.pydantic.dev" not in done.result.content
    assert ran == []


class Booking(BaseModel):
    """A table to book."""

    restaurant: str
    people: int = Field(ge=1, le=12)


def test_one_pydantic_model_parameter_is_the_schema() -> None:
    @tool(name="book", requires_approval=True)
    async def book_table(booking: Booking, ctx: ToolContext) -> str:
        """Book a table."""
        return f"{booking.people} at {booking.restaurant} for {ctx.user_id} in {ctx.session_id}"

    assert book_table.name == "book" and book_table.requires_approval
    assert set(book_table.input_schema["properties"]) == {"restaurant", "people"}
    assert "ctx" not in json.dumps(book_table.input_schema)
    assert call(book_table, {"restaurant": "Ichiran", "people": 2}).result.content == (
        "2 at Ichiran for alice in s1"
    )
    too_many = call(book_table, {"restaurant": "Ichiran", "people": 40})
    assert too_many.result.error is ToolErrorKind.INVALID_ARGUMENTS
    assert "people" in too_many.result.content


def test_a_plain_function_runs_in_a_thread() -> None:
    loop_thread = threading.get_ident()

    def where() -> str:
        """Which thread."""
        return "other" if threading.get_ident() != loop_thread else "loop"

    assert call(Tool.from_function(where), {}).result.content == "other"


def test_failures_are_results_for_the_model() -> None:
    @tool
    async def chosen() -> str:
        """Fails on purpose."""
        raise ToolError("no city called 'Pariss'; check the spelling")

    @tool
    async def crash() -> str:
        """Crashes."""
        raise ValueError("internal\nTraceback line that must not reach the model")

    done = call(chosen, {})
    assert (done.result.ok, done.result.error) == (False, ToolErrorKind.FAILED)
    assert done.result.content == "no city called 'Pariss'; check the spelling"
    crashed = call(crash, {})
    assert crashed.result.error is ToolErrorKind.FAILED
    assert crashed.result.content == "The tool failed: ValueError: internal"
    missing = call(None, {})
    assert missing.result.error is ToolErrorKind.FAILED and "no tool" in missing.result.content


def test_a_slow_tool_times_out_and_is_stopped() -> None:
    stopped = []

    @tool
    async def slow() -> str:
        """Sleeps."""
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.append(True)
            raise
        return "late"

    done = call(slow, {}, timeout=0.2)
    assert done.result.error is ToolErrorKind.TIMEOUT
    assert done.result.content == "The tool did not answer within 0.2 seconds."
    assert stopped == [True]
    assert 150 <= done.duration_ms < 5000


def test_the_turns_cancellation_ends_a_running_call() -> None:
    stopped = []
    started = asyncio.Event()

    @tool
    async def slow(ctx: ToolContext) -> str:
        """Sleeps."""
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.append(ctx.cancelled.is_set())
            raise
        return "late"

    async def scenario() -> ToolRun:
        context = ToolContext(user_id="alice")
        running = asyncio.create_task(
            run_tool_call(
                slow, ToolCall("c", "slow", {}), context, timeout=30, max_result_chars=100
            )
        )
        await started.wait()
        context.cancelled.set()
        return await asyncio.wait_for(running, 1.0)

    done = asyncio.run(scenario())
    assert done.result.error is ToolErrorKind.CANCELLED and stopped == [True]


def test_the_callers_own_cancellation_stops_the_tool_and_propagates() -> None:
    stopped = []
    started = asyncio.Event()

    @tool
    async def slow() -> str:
        """Sleeps."""
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.append(True)
        return "late"

    async def scenario() -> None:
        running = asyncio.create_task(
            run_tool_call(
                slow,
                ToolCall("c", "slow", {}),
                ToolContext(user_id="a"),
                timeout=30,
                max_result_chars=100,
            )
        )
        await started.wait()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    asyncio.run(scenario())
    assert stopped == [True]


def test_results_are_cut_and_say_so() -> None:
    @tool
    async def big() -> str:
        """Lots."""
        return "x" * 5000

    done = call(big, {}, max_result_chars=300)
    assert len(done.result.content) == 300
    assert done.result.content.endswith("[cut: 5000 characters, 300 shown]")
    assert cut("short", 300) == "short" and cut("abcdef", 4) == "abcd"


def test_schema_tools_validate_with_json_schema() -> None:
    async def echo(arguments: dict[str, Any], context: ToolContext) -> str:
        return f"{arguments['q']} for {context.user_id}"

    search = Tool.from_schema(
        "search",
        "Search.",
        {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        echo,
    )
    assert call(search, {"q": "ramen"}).result.content == "ramen for alice"
    bad = call(search, {"q": 3})
    assert bad.result.error is ToolErrorKind.INVALID_ARGUMENTS
    assert bad.result.content == "Invalid arguments: q: 3 is not of type 'string'"


def test_functions_that_cannot_be_described_are_refused() -> None:
    async def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(TypeError, match="needs a type hint"):
        Tool.from_function(untyped)
    with pytest.raises(ValueError, match="needs a name"):
        Tool.from_function(lambda: None)


def test_a_toolset_per_turn_changes_alone() -> None:
    shared = ToolSet([weather])
    turn = shared.copy()
    turn.remove("weather", "not-there")
    turn.add(Tool.from_function(weather.invoke, name="other", description="x"))
    assert shared.names() == ["weather"] and turn.names() == ["other"]
    with pytest.raises(ValueError, match="two tools are called 'weather'"):
        shared.add(weather)
    shared.add(weather, replace=True)
    assert len(shared) == 1 and "weather" in shared and shared.get("nope") is None


def test_the_built_in_current_time_tool() -> None:
    toolset = load_tools(Settings())
    assert toolset.names() == ["current_time"]
    clock = toolset.get("current_time")
    done = call(clock, {"timezone": "Asia/Tokyo"})
    assert done.result.ok and datetime.fromisoformat(done.result.content).utcoffset() is not None
    assert done.result.content.endswith("+09:00")
    wrong = call(clock, {"timezone": "Mars/Olympus"})
    assert wrong.result.error is ToolErrorKind.FAILED and "IANA" in wrong.result.content


def test_an_unknown_tool_in_config_is_one_line() -> None:
    settings = load_settings({"SLUICE_TOOLS__ENABLED": "current_time,wether"})
    with pytest.raises(ConfigError) as caught:
        load_tools(settings)
    assert str(caught.value) == (
        "config error: tools.enabled: unknown tool 'wether' (installed: current_time);"
        " install the package that provides it or remove it from the list"
    )
    assert load_tools(load_settings({"SLUICE_TOOLS__ENABLED": "[]"})).names() == []


def test_a_package_offers_a_tool_and_one_line_enables_it(tmp_path: Path) -> None:
    site = install_into(tmp_path / "site", ROOT / "examples" / "plugin-guide")
    env = base_env(tmp_path / "data")
    env["PYTHONPATH"] = f"{site}:{ROOT}"
    env["SLUICE_TOOLS__ENABLED"] = '["current_time", "city_weather"]'
    result = subprocess.run(
        [sys.executable, "-m", "server", "plugins"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    listed = {(i["group"], i["name"]): i for i in json.loads(result.stdout)}
    guide = listed[("tool", "city_weather")]
    assert guide["enabled"] is True and guide["package"].startswith("sluice-guide ")
    [described] = guide["options"]["tools"]
    assert described["name"] == "city_weather"
    assert described["input_schema"]["required"] == ["city"]
    assert listed[("tool", "current_time")]["enabled"] is True
