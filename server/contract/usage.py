"""The usage service: what a stage calls to keep the usage ledger and hold the budgets.

``services.usage.admit(turn)`` before any model is asked: None to go on, or the ``error``
event (``budget_exhausted``) to end the turn with; an admitted turn holds a reservation until
``services.usage.settle(turn, spent)`` records what it spent (exactly once, however the turn
ended). The built-in ``usage`` stage (``plugins/usage.py``) does both: it admits in
``run`` and settles in ``turn_ended``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from server.contract.events import Error

if TYPE_CHECKING:
    from server.contract.stages import LostTurn, Turn

__all__ = ["Spent", "UsageService"]


@dataclass(frozen=True, slots=True)
class Spent:
    """What one answer took. ``estimated`` is true when any figure was not the provider's
    own (the answer was stopped or cut, or the provider sent none): those are counted from
    characters instead."""

    provider: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False


class UsageService(Protocol):
    """The ledger and the budgets, as lent to stages in :class:`server.contract.Services`."""

    async def admit(self, turn: Turn) -> Error | None:
        """Reserve room in the caller's budget for ``turn``, or the ``budget_exhausted``
        error when none is left (then nothing is reserved)."""
        ...

    async def settle(self, turn: Turn, spent: Spent) -> None:
        """Record the answer in the ledger and count it against the budget, in place of the
        turn's reservation."""
        ...

    async def settle_lost(self, lost: LostTurn, spent: Spent) -> None:
        """The same for a turn whose producer died (its reservation lapses on its own)."""
        ...
