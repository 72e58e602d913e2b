"""In-process token buckets: the embedded rate-limit backend."""

from __future__ import annotations

import time

__all__ = ["MemoryRateLimitStore"]


class MemoryRateLimitStore:
    """Token buckets keyed by string. Idle full buckets are pruned so memory stays bounded."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated_at)
        self._max_keys = max_keys

    async def take(self, key: str, rate_per_second: float, burst: int) -> float:
        now = time.monotonic()
        tokens, updated = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - updated) * rate_per_second)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > self._max_keys:
                self._prune(now, rate_per_second, burst)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate_per_second

    def _prune(self, now: float, rate_per_second: float, burst: int) -> None:
        refill = burst / rate_per_second
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill}

    async def ping(self) -> None:
        return None
