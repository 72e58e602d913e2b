"""What turns share across instances: the active turn of each session, each user's stream
slots, producer leases and cancel signals.

:class:`TurnRegistry` is the seam. :class:`MemoryTurnRegistry` is the embedded backend (one
process holds everything); ``server/stores/redis/registry.py`` is the shared one, where a
slot and an active turn are leases that lapse with a dead instance rather than counters.
Both pass one contract suite (``tests/test_shared_contract.py``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from server.contract import StoreUnavailable, Turn

__all__ = [
    "ActiveTurn",
    "Admission",
    "CancelHandler",
    "MemoryTurnRegistry",
    "StoreUnavailable",
    "TurnInProgress",
    "TurnRegistry",
]


@dataclass(frozen=True, slots=True)
class ActiveTurn:
    """The answer being written in a session now."""

    stream_id: str
    started_at: float  # epoch seconds

    def as_json(self) -> dict[str, object]:
        return {"stream_id": self.stream_id, "started_at": self.started_at}


class TurnInProgress(Exception):
    """The session already has an answer being written: one turn at a time per session
    keeps its history in order (each question before its answer)."""

    def __init__(self, active: ActiveTurn) -> None:
        super().__init__(active.stream_id)
        self.active = active


class Admission(enum.Enum):
    ADMITTED = "admitted"  # slot and session taken: run it
    TOO_MANY = "too_many"  # the user has limits.max_streams_per_user running
    REFUSED = "refused"  # not taking turns (shutting down): only its log is made


# The registry calls this when a turn running here must stop: (stream id, reason).
CancelHandler = Callable[[str, str], object]


class TurnRegistry(Protocol):
    kind: str  # "memory" or the shared backend's name, for readiness and logs

    def on_cancel(self, handler: CancelHandler) -> None:
        """Who stops this process's turns when a cancel arrives from another instance."""
        ...

    async def start(self) -> None:
        """Start background work (lease renewal, cancel signals, lost-turn checks)."""
        ...

    async def admit(self, turn: Turn, *, limit: int, take_slot: bool) -> Admission:
        """Claim ``turn.session_id`` and one of the user's ``limit`` slots for ``turn``.

        Raises :class:`TurnInProgress` when the session has a running turn, and
        :class:`StoreUnavailable` when the shared store cannot be reached. With
        ``take_slot`` false nothing is claimed (the turn will only be refused)."""
        ...

    async def finish(self, turn: Turn) -> None:
        """An admitted turn ended: free its slot and its session."""
        ...

    async def active_turn(self, user_id: str, session_id: str) -> ActiveTurn | None: ...

    async def signal_cancel(self, stream_id: str, reason: str) -> bool:
        """Ask the instance running ``stream_id`` to stop it; False if it is not running."""
        ...

    async def ping(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class MemoryTurnRegistry:
    """Everything in this process: there is no other instance to tell."""

    kind = "memory"

    def __init__(self) -> None:
        # (user id, session id) -> the turn writing its answer: the running turn itself,
        # rather than a record made for it, which every open stream would pay for.
        self._by_session: dict[tuple[str, str], Turn] = {}
        self._per_user: dict[str, int] = {}

    def on_cancel(self, handler: CancelHandler) -> None:
        return None  # every cancel is local

    async def start(self) -> None:
        return None

    async def admit(self, turn: Turn, *, limit: int, take_slot: bool) -> Admission:
        key = (turn.user_id, turn.session_id or "")
        running = self._by_session.get(key)
        if running is not None:
            raise TurnInProgress(ActiveTurn(running.stream_id, running.started_at))
        if not take_slot:
            return Admission.REFUSED
        held = self._per_user.get(turn.user_id, 0)
        if held >= limit:
            return Admission.TOO_MANY
        self._per_user[turn.user_id] = held + 1
        self._by_session[key] = turn
        return Admission.ADMITTED

    async def finish(self, turn: Turn) -> None:
        """Only for an admitted turn (the runner calls it once, as its producer ends)."""
        key = (turn.user_id, turn.session_id or "")
        if self._by_session.get(key) is turn:
            del self._by_session[key]
        left = self._per_user.get(turn.user_id, 0) - 1
        if left > 0:
            self._per_user[turn.user_id] = left
        else:
            self._per_user.pop(turn.user_id, None)

    async def active_turn(self, user_id: str, session_id: str) -> ActiveTurn | None:
        running = self._by_session.get((user_id, session_id))
        return None if running is None else ActiveTurn(running.stream_id, running.started_at)

    async def signal_cancel(self, stream_id: str, reason: str) -> bool:
        return False  # a turn of this process was cancelled by the runner directly

    async def ping(self) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {"slots": sum(self._per_user.values())}

    async def close(self) -> None:
        return None
