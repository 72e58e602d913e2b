"""A list that stands in for a library's ``collections.deque`` where the queue stays short.

Tornado and aiohttp keep several per-connection queues as deques, and a deque allocates a
64-slot block (0.74 KiB) from the start; a list holds the one or two items these queues
hold in a few dozen bytes. Every open stream has a connection on each side and a log its
readers wait on: four such deques, ~3 KiB of each open stream's memory. ``popleft`` is
linear in the length: only for queues that stay short. The modules that put one in a
library's place (``server/internals/lean_condition.py``, ``server/internals/tornado_internals.py``,
``server/internals/aiohttp_internals.py``) each say why theirs stays short, and their tests fail
if the library starts using a deque method this lacks.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ShortQueue"]


class ShortQueue(list[Any]):
    """A list with a deque's ``popleft``."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)
