"""Token buckets in Redis: every instance takes from the same bucket on every admission.

Reading a local copy instead is how a limit ends up multiplied by the number of replicas
(LiteLLM's users saw exactly that). The bucket is refilled and taken from in one Lua step, by
Redis's clock.
"""

from __future__ import annotations

from server.stores.redis import keys, scripts
from server.stores.redis.client import RedisContext, guarded

__all__ = ["RedisRateLimitStore"]


class RedisRateLimitStore:
    def __init__(self, context: RedisContext) -> None:
        self._redis = context.client
        self._take = context.client.register_script(scripts.TAKE_TOKEN)

    async def take(self, key: str, rate_per_second: float, burst: int) -> float:
        """Take one token from ``key``'s bucket: 0 when allowed, else seconds to wait."""

        async def run() -> bytes:
            reply: bytes = await self._take(
                keys=[keys.rate_key(key)], args=[rate_per_second / 1000.0, burst]
            )
            return reply

        wait_ms = float(await guarded(run))
        return wait_ms / 1000.0

    async def ping(self) -> None:
        await guarded(self._redis.ping)
