"""Every configured MCP server as one tool source for the turns.

Kept apart from :mod:`server.tools.mcp` (one server's session) so that a server with no
``[mcp.<name>]`` never imports the ``mcp`` SDK, which costs about half a second of CPU at
every start-up (``python -X importtime -c "import server.tools.mcp"``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from server.contract.tools import Tool

if TYPE_CHECKING:
    from server.config import MCPServerSettings
    from server.tools.mcp import MCPConnection, MCPHealth

__all__ = ["MCPTools"]


class MCPTools:
    """Every configured MCP server, and their tools under the names the model sees."""

    def __init__(self, connections: Iterable[MCPConnection]) -> None:
        self.connections = list(connections)

    @classmethod
    def from_settings(cls, servers: Mapping[str, MCPServerSettings]) -> MCPTools:
        if not servers:
            return cls(())
        # The SDK only when a server is configured (see the module's docstring).
        from server.tools.mcp import MCPConnection

        return cls(MCPConnection(name, settings) for name, settings in servers.items())

    async def start(self, *, wait: float = 10.0) -> None:
        """Start every session; wait up to ``wait`` seconds for each first attempt, so a
        server that starts quickly has its tools from the first turn. Never raises for a
        server that cannot start: see :meth:`health`."""
        for connection in self.connections:
            connection.start()
        await asyncio.gather(*(c.wait_started(wait) for c in self.connections))

    async def aclose(self) -> None:
        await asyncio.gather(*(connection.aclose() for connection in self.connections))

    def health(self) -> list[MCPHealth]:
        return [connection.health() for connection in self.connections]

    def tools(self, taken: Iterable[str] = ()) -> list[Tool]:
        """The tools of every connected server. ``taken`` are names already used (the
        plugin tools'): an MCP tool with such a name, or with one another server also
        offers, is called ``<server>__<tool>``."""
        listed = [(c, remote) for c in self.connections for remote in c.remote_tools()]
        counts: dict[str, int] = {}
        for _, remote in listed:
            counts[remote.name] = counts.get(remote.name, 0) + 1
        reserved = set(taken)
        tools: list[Tool] = []
        for connection, remote in listed:
            clash = counts[remote.name] > 1 or remote.name in reserved
            name = f"{connection.name}__{remote.name}" if clash else remote.name
            made = connection.tool(remote, name)
            if made is not None:
                tools.append(made)
        return tools
