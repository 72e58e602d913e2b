"""``rate_limit``: a token bucket per user and per client address.

Both buckets must have a token; over the limit the turn ends with ``rate_limited`` and the
seconds until a token is back. Settings: ``[rate_limit] requests_per_minute, burst``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from server import Event, Stage, Turn, error

__all__ = ["RateLimitStage"]


class RateLimitStage(Stage):
    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        limits = self.services.settings.rate_limit
        rate = limits.requests_per_minute / 60.0
        store = self.services.rate_limits
        wait = await store.take(f"user:{turn.user_id}", rate, limits.burst)
        if not wait and turn.client_ip:
            wait = await store.take(f"ip:{turn.client_ip}", rate, limits.burst)
        if wait:
            seconds = max(1, round(wait + 0.499))
            yield error(
                "rate_limited",
                f"You are sending messages too fast. Try again in {seconds} s.",
                retryable=True,
                retry_after=wait,
            )
