"""Budget counters in Redis, shared by every instance (see ``server.usage.budgets``).

Admission reads what was spent and what running turns hold and adds its own hold in one Lua
step, by Redis's clock: two instances admitting the same user's turns at once take turns,
and the second sees the first's hold.
"""

from __future__ import annotations

from typing import Any

from server.stores.redis import keys, scripts
from server.stores.redis.client import RedisContext, guarded
from server.usage.budgets import Standing

__all__ = ["RedisBudgets"]


class RedisBudgets:
    def __init__(self, context: RedisContext) -> None:
        client = context.client
        self._reserve = client.register_script(scripts.BUDGET_RESERVE)
        self._seed = client.register_script(scripts.BUDGET_SEED)
        self._settle = client.register_script(scripts.BUDGET_SETTLE)
        self._client = client

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
        args: list[str | int | float] = [
            stream_id,
            tokens,
            repr(usd),
            -1 if limit_tokens is None else limit_tokens,
            -1 if limit_usd is None else repr(limit_usd),
            int(hold_seconds * 1000),
        ]

        async def run() -> Any:
            return await self._reserve(keys=keys.budget_keys(key), args=args)

        reply = await guarded(run)
        if reply[0] == b"unseeded":
            return None
        return Standing(reply[0] == b"ok", int(reply[1]), float(reply[2]))

    async def seed(self, key: str, tokens: int, usd: float, expires_at: float) -> None:
        args: list[str | int | float] = [tokens, repr(usd), int(expires_at * 1000)]

        async def run() -> Any:
            return await self._seed(keys=keys.budget_keys(key)[:1], args=args)

        await guarded(run)

    async def settle(self, key: str, stream_id: str, tokens: int, usd: float) -> None:
        async def run() -> Any:
            return await self._settle(
                keys=keys.budget_keys(key), args=[stream_id, tokens, repr(usd)]
            )

        await guarded(run)

    async def used(self, key: str) -> tuple[int, float] | None:
        async def run() -> Any:
            return await self._client.hmget(keys.budget_keys(key)[0], ["tokens", "usd"])

        tokens, usd = await guarded(run)
        if tokens is None:
            return None
        return int(tokens), float(usd)
