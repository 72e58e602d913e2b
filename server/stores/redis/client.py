"""Connecting to Redis, and what every Redis-backed store shares.

``REDIS_URL`` is read by redis-py as it is: ``redis://`` or ``rediss://`` (TLS) with a user
and password, as Heroku, Render, Upstash and Fly give it; ``?ssl_cert_reqs=none`` for a
provider whose certificate is self-signed (Heroku Redis). Timeouts are short and retries
few on purpose: a store that does not answer must turn into a 503 or a clear terminal
event within seconds, never a hang.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.contract import StoreUnavailable
from server.core.coordination import CancelHandler

__all__ = ["DOWN", "RedisContext", "RedisUnavailable", "connect", "guarded", "run_scripts"]

# What "Redis cannot be reached" looks like from redis-py (BusyLoadingError, a server still
# loading its data after a restart, is a ConnectionError).
DOWN = (RedisConnectionError, RedisTimeoutError, OSError)

T = TypeVar("T")


class RedisUnavailable(StoreUnavailable):
    """Redis cannot be reached: new turns, resumes and stops get a 503 meanwhile."""

    store = "redis"


# Seconds a client is told to wait (Retry-After) when Redis is down.
RETRY_AFTER = 5.0
# Connections one process keeps to Redis for commands (the log tail has its own).
_POOL_SIZE = 64


def connect(url: str, *, name: str, block_seconds: float = 0.0) -> aioredis.Redis:
    """A client for ``url``. ``block_seconds``: the longest blocking command it sends
    (the tail's XREAD), so its socket timeout is longer than that."""
    # A bounded pool that makes callers wait for a free connection (up to 5 s) rather than
    # open one per concurrent command: a burst of a thousand new turns would otherwise open
    # a thousand connections, each a handshake on the event loop.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=_POOL_SIZE,
        timeout=5.0,
        socket_connect_timeout=2.0,
        socket_timeout=5.0 + block_seconds,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        client_name=name,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


async def guarded(call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call``, turning "Redis cannot be reached" into :class:`StoreUnavailable`."""
    try:
        return await call()
    except DOWN as error:
        raise RedisUnavailable(
            f"redis unreachable: {type(error).__name__}", retry_after=RETRY_AFTER
        ) from error


async def run_scripts(
    client: aioredis.Redis, calls: list[tuple[AsyncScript, list[str], list[Any]]]
) -> list[Any]:
    """Several script calls in one round trip, by their SHA.

    Not redis-py's way of running a registered script in a pipeline: that asks Redis whether
    the scripts exist (``SCRIPT EXISTS``) before every pipeline, a second round trip each
    time. Here they are loaded only when Redis says it lost them (a restart), and the batch
    is sent again: every script sluice sends in a batch can run twice safely."""
    for attempt in (1, 2):
        async with client.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                replies: list[Any] = await pipe.execute()
                return replies
            except NoScriptError:
                if attempt == 2:
                    raise
        for script in {id(call[0]): call[0] for call in calls}.values():
            script.sha = await client.script_load(script.script)
    raise AssertionError("unreachable")


class RedisContext:
    """The client and settings every Redis-backed store of one process shares."""

    def __init__(
        self,
        url: str,
        *,
        log_ttl_seconds: float,
        max_duration_seconds: float,
        lease_seconds: float = 10.0,
    ) -> None:
        # One id per process: it owns the turns it produces (the fencing token every write
        # of theirs carries) and names the process's own wake-up key.
        self.instance = secrets.token_hex(8)
        self.url = url
        self.client = connect(url, name=f"sluice-{self.instance}")
        self.log_ttl_ms = int(log_ttl_seconds * 1000)
        # A log whose turn never ends (its producer vanished and nobody saw it) still goes.
        self.safety_ttl_ms = int((max_duration_seconds + log_ttl_seconds + 120) * 1000)
        self.lease_ms = int(lease_seconds * 1000)
        # Renewed four times a lease, so that a renewal that is late (Redis slow, the loop
        # busy) or lost (a reconnect) still lands before the lease runs out; lapsed leases
        # are looked for five times a lease, at most every 2 s.
        self.renew_every_seconds = lease_seconds / 4
        self.expired_every_seconds = min(2.0, lease_seconds / 5)
        # Stops a turn of this process (stream id, reason): set by the registry, called
        # also by the log writer when Redis says the turn is no longer this process's.
        self.stop_turn: CancelHandler | None = None

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()

    def stats(self) -> dict[str, Any]:
        return {"instance": self.instance}
