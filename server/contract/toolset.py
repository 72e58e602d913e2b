"""The tools a turn may use, by the name the model calls them.

The server builds one :class:`ToolSet` from the enabled plugins (and the MCP servers' tools),
and each turn gets its own :meth:`~ToolSet.copy`, so a stage can add or remove tools for one
turn — for one user, one intent — without touching anyone else's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from server.contract.tools import Tool

__all__ = ["ToolSet"]


class ToolSet:
    """Tools by name, in the order they were added (the order the model is shown them)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            self.add(item)

    def add(self, tool: Tool, *, replace: bool = False) -> None:
        """Add ``tool``. A second tool of the same name is refused unless ``replace``: two
        tools the model cannot tell apart would be called at random."""
        if not replace and tool.name in self._tools:
            raise ValueError(
                f"two tools are called {tool.name!r} (from {self._tools[tool.name].source or '?'}"
                f" and {tool.source or '?'}); enable only one of them"
            )
        self._tools[tool.name] = tool

    def remove(self, *names: str) -> None:
        """Take the tools ``names`` out; a name not here is ignored."""
        for name in names:
            self._tools.pop(name, None)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def copy(self) -> ToolSet:
        """A set of the same tools that can change without changing this one."""
        return ToolSet(self._tools.values())

    def schemas(self) -> list[dict[str, Any]]:
        """Every tool as providers describe it to the model."""
        return [item.schema() for item in self._tools.values()]

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __repr__(self) -> str:
        return f"ToolSet({', '.join(self._tools)})"
