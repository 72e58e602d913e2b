"""A real MCP server, written with the ``mcp`` SDK's ``MCPServer``, for the MCP tool source's
tests: ``python -m tests.fakes.mcp_server stdio`` or ``... http PORT``.

Its tools exercise what the client must handle: a plain answer (``add``), a tool error
(``explode``), a long call that notes on disk when it is cancelled (``wait``, for proving that a
cancellation reached the server), and a tool that adds another and announces
``tools/list_changed`` (``grow``). ``MARKS_DIR`` in the environment names where the notes go.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("sluice-test")


def _mark(name: str, text: str = "") -> None:
    marks = os.environ.get("MARKS_DIR")
    if marks:
        Path(marks, name).write_text(text, encoding="utf-8")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@server.tool()
def explode(reason: str) -> str:
    """Always fails, with the reason given."""
    raise RuntimeError(f"exploded: {reason}")


@server.tool()
async def wait(seconds: float, label: str) -> str:
    """Wait, then say so; notes a cancellation under MARKS_DIR as cancelled-<label>."""
    _mark(f"started-{label}")
    try:
        await asyncio.sleep(seconds)  # the SDK runs anyio on asyncio
    except asyncio.CancelledError:
        _mark(f"cancelled-{label}")
        raise
    return f"waited {seconds}"


def late(text: str) -> str:
    """A tool that exists only after grow was called."""
    return text[::-1]


@server.tool()
async def grow(ctx: Context) -> str:
    """Add the tool 'late' and tell the client that the list of tools changed."""
    server.add_tool(late)
    # Both spellings: the subscription event of the 2026 protocol, and the notification of
    # the earlier ones, so the client is told whichever protocol it negotiated.
    await ctx.notify_tools_changed()
    try:
        await ctx.session.send_tool_list_changed()
    except Exception as error:  # a connection with no notification channel: the event suffices
        print(f"send_tool_list_changed: {error!r}", file=sys.stderr)
    return "grown"


def main() -> None:
    _mark("pid", str(os.getpid()))
    transport = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if transport == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
