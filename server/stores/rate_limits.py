"""The rate limiter stages see: a bucket store with the configured rate and burst."""

from __future__ import annotations

from server.contract.stores import RateLimitStore

__all__ = ["ConfiguredRateLimiter"]


class ConfiguredRateLimiter:
    """``take(key)`` on ``store`` at ``requests_per_minute`` with ``burst`` tokens."""

    def __init__(self, store: RateLimitStore, *, requests_per_minute: float, burst: int) -> None:
        self.store = store
        self.rate_per_second = requests_per_minute / 60.0
        self.burst = burst

    async def take(self, key: str) -> float:
        return await self.store.take(key, self.rate_per_second, self.burst)
