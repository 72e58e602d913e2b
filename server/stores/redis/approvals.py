"""Tool-call approvals on Redis: one key per waiting call, decided through any instance.

The producer polls its call's key (every ``POLL_SECONDS``) rather than waiting on a pub/sub
message: a message can be lost (Redis restarting, a connection dropping), a key cannot, and
one small GET per waiting call is cheap next to a person's decision. A decision and the
producer's ``expired`` / ``cancelled`` race in one Lua step: whichever comes first stays.
"""

from __future__ import annotations

import asyncio

from server.stores.redis import keys, scripts
from server.stores.redis.client import DOWN, RedisContext, guarded
from server.tools.approvals import APPROVED, DENIED, EXPIRED, PENDING, Decision

__all__ = ["POLL_SECONDS", "RedisApprovals"]

POLL_SECONDS = 0.1


class RedisApprovals:
    def __init__(self, context: RedisContext) -> None:
        self._redis = context.client
        self._settle = context.client.register_script(scripts.SETTLE_APPROVAL)

    async def request(self, stream_id: str, call_id: str, *, keep_seconds: float) -> None:
        key = keys.approval_key(stream_id, call_id)
        await guarded(lambda: self._redis.set(key, PENDING, px=int(keep_seconds * 1000)))

    async def _set(self, stream_id: str, call_id: str, state: str) -> tuple[bool, str]:
        key = keys.approval_key(stream_id, call_id)

        async def run() -> tuple[bool, str]:
            changed, now = await self._settle(keys=[key], args=[state])
            return bool(changed), now.decode() if isinstance(now, bytes) else str(now)

        return await guarded(run)

    async def settle(self, stream_id: str, call_id: str, state: str) -> str:
        _, now = await self._set(stream_id, call_id, state)
        return now or state

    async def decide(self, stream_id: str, call_id: str, approve: bool) -> Decision:
        changed, now = await self._set(stream_id, call_id, APPROVED if approve else DENIED)
        if changed:
            return Decision.RECORDED
        return Decision.ALREADY if now else Decision.UNKNOWN

    async def wait(self, stream_id: str, call_id: str, timeout: float) -> str:
        key = keys.approval_key(stream_id, call_id)
        loop = asyncio.get_running_loop()
        ends = loop.time() + timeout
        while loop.time() < ends:
            try:
                state = await self._redis.get(key)
            except DOWN:
                state = None  # polled again: Redis may be back before the timeout
                await asyncio.sleep(POLL_SECONDS)
                continue
            if state is None:
                return EXPIRED
            value = state.decode() if isinstance(state, bytes) else str(state)
            if value != PENDING:
                return value
            await asyncio.sleep(min(POLL_SECONDS, max(0.0, ends - loop.time())))
        return await self.settle(stream_id, call_id, EXPIRED)

    async def close(self) -> None:
        return None
