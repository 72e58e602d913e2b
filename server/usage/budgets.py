"""Budget counters: what each user has spent in the period, and what running turns hold.

A turn is admitted when what the user spent plus what their running turns hold is under the
limit; it then holds a reservation (its prompt's estimate plus ``llm.max_output_tokens``)
until it settles with what it really spent. So two turns started at once on two instances
cannot both take the last of a budget: the second sees the first's reservation. A turn once
admitted finishes whole, and is counted whole, even if it crosses the limit.

The counters are a cache of the ledger: a period's counter that does not exist yet (the first
turn of the period, a new process without Redis, Redis restarted empty) is seeded from the
ledger's sum, so restarts lose nothing. A reservation whose turn never settles (its process
died) lapses after ``hold_seconds``.

:class:`MemoryBudgets` is the one-process counter; ``server.stores.redis.budgets`` the shared
one, the same steps as Lua scripts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["BudgetCounter", "MemoryBudgets", "Standing"]


@dataclass(frozen=True, slots=True)
class Standing:
    """The answer to a reservation: admitted or not, and what was spent before it."""

    admitted: bool
    used_tokens: int
    used_usd: float


class BudgetCounter(Protocol):
    async def reserve(
        self,
        key: str,
        stream_id: str,
        tokens: int,
        usd: float,
        *,
        limit_tokens: int | None,
        limit_usd: float | None,
        hold_seconds: float,
    ) -> Standing | None:
        """Admit and hold, or refuse; None when the period's counter is not seeded yet."""
        ...

    async def seed(self, key: str, tokens: int, usd: float, expires_at: float) -> None:
        """Start the period's counter at the ledger's sum, unless another did first."""
        ...

    async def settle(self, key: str, stream_id: str, tokens: int, usd: float) -> None:
        """Drop the turn's hold and count what it spent (nothing to count in a counter
        that is gone: the ledger, which seeds it again, has the answer already)."""
        ...

    async def used(self, key: str) -> tuple[int, float] | None:
        """What was spent (settled) in the period; None when not seeded."""
        ...


@dataclass(slots=True)
class _Counter:
    tokens: int
    usd: float
    expires_at: float
    holds: dict[str, tuple[int, float, float]] = field(default_factory=dict)


class MemoryBudgets:
    """The counters of one process (no Redis): the same rules, in a dict."""

    def __init__(self) -> None:
        self._counters: dict[str, _Counter] = {}

    def _counter(self, key: str) -> _Counter | None:
        counter = self._counters.get(key)
        if counter is not None and counter.expires_at <= time.time():
            del self._counters[key]  # a past period
            return None
        return counter

    async def reserve(
        self,
        key: str,
        stream_id: str,
        tokens: int,
        usd: float,
        *,
        limit_tokens: int | None,
        limit_usd: float | None,
        hold_seconds: float,
    ) -> Standing | None:
        counter = self._counter(key)
        if counter is None:
            return None
        now = time.monotonic()
        for lapsed in [sid for sid, hold in counter.holds.items() if hold[2] <= now]:
            del counter.holds[lapsed]
        held_tokens = sum(hold[0] for hold in counter.holds.values())
        held_usd = sum(hold[1] for hold in counter.holds.values())
        over = (limit_tokens is not None and counter.tokens + held_tokens >= limit_tokens) or (
            limit_usd is not None and counter.usd + held_usd >= limit_usd
        )
        if not over:
            counter.holds[stream_id] = (tokens, usd, now + hold_seconds)
        return Standing(not over, counter.tokens, counter.usd)

    async def seed(self, key: str, tokens: int, usd: float, expires_at: float) -> None:
        if self._counter(key) is None:
            self._counters[key] = _Counter(tokens, usd, expires_at)

    async def settle(self, key: str, stream_id: str, tokens: int, usd: float) -> None:
        counter = self._counter(key)
        if counter is None:
            return
        counter.holds.pop(stream_id, None)
        counter.tokens += tokens
        counter.usd += usd

    async def used(self, key: str) -> tuple[int, float] | None:
        counter = self._counter(key)
        return None if counter is None else (counter.tokens, counter.usd)
