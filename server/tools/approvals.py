"""Approval of tool calls: each waiting call's decision, where any instance can record it.

A call that needs its owner's approval is *requested* (its state ``pending``) when its
``tool_call`` event is in the stream log; ``POST /api/streams/{stream_id}/tools/{call_id}``
records ``approved`` or ``denied`` through whichever instance it reaches; the producer waits
for a decision, and settles the call ``expired`` when none came in time or ``cancelled`` when
the turn was stopped. A state other than ``pending`` never changes again (a second decision
is 409), and the record outlives the decision long enough to say so.

:class:`MemoryApprovals` keeps everything in this process; the Redis backend
(``server/stores/redis/approvals.py``) keeps each call as a key the producer polls.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["PENDING", "ApprovalStore", "Decision", "MemoryApprovals"]

PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
EXPIRED = "expired"
CANCELLED = "cancelled"


class Decision(enum.Enum):
    """What recording a decision came to."""

    RECORDED = "recorded"
    UNKNOWN = "unknown"  # no such call waits in that stream (404)
    ALREADY = "already"  # decided before, or expired, or cancelled (409)


class ApprovalStore(Protocol):
    async def request(self, stream_id: str, call_id: str, *, keep_seconds: float) -> None:
        """Mark the call ``pending``; the record is kept ``keep_seconds``."""
        ...

    async def decide(self, stream_id: str, call_id: str, approve: bool) -> Decision:
        """The owner's decision (the HTTP endpoint)."""
        ...

    async def settle(self, stream_id: str, call_id: str, state: str) -> str:
        """Set ``state`` if the call is still ``pending``; the call's state after that (a
        decision that came first wins)."""
        ...

    async def wait(self, stream_id: str, call_id: str, timeout: float) -> str:
        """The call's state once it is no longer ``pending``, settling it ``expired`` after
        ``timeout`` seconds. Cancelling the wait leaves the call pending: settle it."""
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _Call:
    state: str = PENDING
    decided: asyncio.Event = field(default_factory=asyncio.Event)
    forget: asyncio.TimerHandle | None = None


class MemoryApprovals:
    """Every waiting call of this process: the embedded stores' one instance."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], _Call] = {}

    async def request(self, stream_id: str, call_id: str, *, keep_seconds: float) -> None:
        key = (stream_id, call_id)
        call = self._calls[key] = _Call()
        call.forget = asyncio.get_running_loop().call_later(
            keep_seconds, self._calls.pop, key, None
        )

    async def decide(self, stream_id: str, call_id: str, approve: bool) -> Decision:
        call = self._calls.get((stream_id, call_id))
        if call is None:
            return Decision.UNKNOWN
        if call.state != PENDING:
            return Decision.ALREADY
        call.state = APPROVED if approve else DENIED
        call.decided.set()
        return Decision.RECORDED

    async def settle(self, stream_id: str, call_id: str, state: str) -> str:
        call = self._calls.get((stream_id, call_id))
        if call is None:
            return state
        if call.state == PENDING:
            call.state = state
            call.decided.set()
        return call.state

    async def wait(self, stream_id: str, call_id: str, timeout: float) -> str:
        call = self._calls.get((stream_id, call_id))
        if call is None:
            return EXPIRED
        try:
            async with asyncio.timeout(timeout):
                await call.decided.wait()
        except TimeoutError:
            pass
        return await self.settle(stream_id, call_id, EXPIRED)

    async def close(self) -> None:
        for call in self._calls.values():
            if call.forget is not None:
                call.forget.cancel()
        self._calls.clear()
