"""tornado's :class:`~tornado.locks.Condition` with a list, not a deque, of waiters.

Every open stream's log has one condition its readers wait on, and tornado's keeps its
waiters in a ``collections.deque``, which allocates a 64-slot block from the start: 0.74 KiB
of every open stream (``python -m bench.memory``), for the one or two readers a log has. A
list of them costs a few dozen bytes. This reaches into tornado's private ``_waiters``:
``tests/test_lean_condition.py`` fails if tornado stops keeping its waiters there or stops
taking them with ``append`` and ``popleft``.
"""

from __future__ import annotations

from tornado.locks import Condition

from server.internals.short_queue import ShortQueue

__all__ = ["LeanCondition"]


class LeanCondition(Condition):
    """A :class:`~tornado.locks.Condition` (``wait``, ``notify``, ``notify_all``) to be used
    without timeouts: a timeout would make tornado rebuild its deque."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters = ShortQueue()  # type: ignore[assignment]
