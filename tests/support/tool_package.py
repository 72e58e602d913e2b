"""A package of test tools (and one test stage), installed as an operator installs a plugin:
a folder with the module and its ``.dist-info`` metadata, put on the server's ``PYTHONPATH``,
found through the ``sluice.tools`` and ``sluice.stages`` entry point groups."""

from __future__ import annotations

from pathlib import Path

from tests.support.server import ROOT

__all__ = ["ENABLED_TOOLS", "write_tool_package"]

_MODULE = '''
import asyncio
from server import WrapperStage, tool


@tool
async def echo(text: str) -> str:
    """Says the text back."""
    return "echo: " + text


@tool
async def explode() -> str:
    """Always fails."""
    raise RuntimeError("the flux capacitor melted")


@tool
async def slow(seconds: float) -> str:
    """Sleeps."""
    await asyncio.sleep(seconds)
    return "woke up"


@tool(requires_approval=True)
async def guarded_echo(text: str) -> str:
    """Says the text back, once its owner allows it."""
    return "guarded: " + text


class HoldAfterToolCall(WrapperStage):
    """Passes every event on, but after a ``tool_call`` it waits (as a stage saving the
    answer to a slow store would) before it asks for the next event: a stop then lands in
    this stage, not in the llm stage that announced the call."""

    async def wrap(self, turn, rest):
        async for event in rest(turn):
            yield event
            if event.type == "tool_call":
                await asyncio.Event().wait()
'''

_TOOLS = ("echo", "explode", "slow", "guarded_echo")
ENABLED_TOOLS = '["current_time", "echo", "explode", "slow", "guarded_echo"]'


def write_tool_package(site: Path) -> str:
    """Write the package into ``site``; the ``PYTHONPATH`` that finds it (and the server)."""
    site.mkdir(exist_ok=True)
    (site / "sluice_test_tools.py").write_text(_MODULE)
    info = site / "sluice_test_tools-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sluice-test-tools\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[sluice.tools]\n"
        + "".join(f"{name} = sluice_test_tools:{name}\n" for name in _TOOLS)
        + "[sluice.stages]\nhold_after_tool_call = sluice_test_tools:HoldAfterToolCall\n"
    )
    return f"{site}:{ROOT}"
