"""``rate_limit``: a token bucket per user and per client address.

Both buckets must have a token; over the limit the turn ends with ``rate_limited`` and the
seconds until a token is back. The buckets' rate and burst come from ``[rate_limit]``
(``requests_per_minute``, ``burst``), applied by the ``services.rate_limits`` it is lent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from server import ErrorCode, Event, Stage, Turn, error

__all__ = ["RateLimitStage"]


class RateLimitStage(Stage):
    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        limiter = self.services.rate_limits
        wait = await limiter.take(f"user:{turn.user_id}")
        if not wait and turn.client_ip:
            wait = await limiter.take(f"ip:{turn.client_ip}")
        if wait:
            seconds = max(1, round(wait + 0.499))
            yield error(
                ErrorCode.RATE_LIMITED,
                f"You are sending messages too fast. Try again in {seconds} s.",
                retryable=True,
                retry_after=wait,
            )
