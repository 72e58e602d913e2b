"""tornado's :class:`~tornado.locks.Condition` with a list, not a deque, of waiters.

Every open stream's log has one condition its readers wait on, and tornado's keeps its
waiters in a ``collections.deque``, which allocates a 64-slot block from the start: 0.74 KiB
of every open stream (``python -m bench.memory``), for the one or two readers a log has. A
list of them costs a few dozen bytes. This reaches into tornado's private ``_waiters``:
``tests/test_lean_condition.py`` fails if tornado stops keeping its waiters there or stops
taking them with ``append`` and ``popleft``.
"""

from __future__ import annotations

from typing import Any

from tornado.locks import Condition

__all__ = ["LeanCondition", "ShortQueue"]


class ShortQueue(list[Any]):
    """A list with a deque's ``popleft``, for the queues tornado keeps as deques that
    hold a handful of items: a deque allocates a 64-slot block (0.74 KiB) from the start, a
    list a few dozen bytes. ``popleft`` is linear in the length: only for short queues."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class LeanCondition(Condition):
    """A :class:`~tornado.locks.Condition` (``wait``, ``notify``, ``notify_all``) to be used
    without timeouts: a timeout would make tornado rebuild its deque."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters = ShortQueue()  # type: ignore[assignment]
