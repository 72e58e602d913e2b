"""The turn registry on Redis: active turns, stream slots, producer leases, cancel signals.

Each running turn holds a lease (its score in ``sluice:live``) that its instance renews
every few seconds; a user's stream slots and a session's active turn are leases of the same
length, not counters, so a dead instance's turns free themselves. Every instance also looks
for leases that ran out: the first to find one ends that turn's log with ``error``
``internal`` (retryable) and hands the partial answer to the stages (``Stage.turn_lost``).

A cancel is kept as a key *and* published: the producing instance hears the message at
once, and polls the keys of its own turns a few times a second in case the message was lost
(pub/sub alone loses stops across pods, as Open WebUI's users found).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from redis.commands.core import AsyncScript

from server.contract import ErrorCode, LostTurn, Turn, error
from server.core.coordination import (
    ActiveTurn,
    Admission,
    CancelHandler,
    TurnInProgress,
)
from server.core.open_calls import OpenToolCalls
from server.core.sse import answer_text, encode_event
from server.stores.redis import keys, scripts
from server.stores.redis.client import DOWN, RedisContext, guarded, run_scripts
from server.tools.approvals import CANCELLED

__all__ = ["LOST_EVENT", "RedisTurnRegistry"]

log = structlog.get_logger("sluice.redis")

LOST_EVENT = error(
    ErrorCode.INTERNAL,
    "The server writing this answer stopped. Please try again.",
    retryable=True,
)

# How often this process looks for cancel keys of its turns (a lost pub/sub message still
# stops the turn within one second); its leases' upkeep follows store.redis_lease_seconds
# (RedisContext).
CANCEL_POLL_SECONDS = 0.25
CANCEL_TTL_MS = 60_000
# Reads of a lost turn's log before it is ended: each retry means the log grew meanwhile (a
# producer that stalled past its lease and came back), which a few reads outlast.
_RESCUE_ATTEMPTS = 3

LostHandler = Callable[[LostTurn], Awaitable[None]]


class RedisTurnRegistry:
    kind = "redis"

    def __init__(self, context: RedisContext) -> None:
        self._context = context
        self._redis = context.client
        self._admit = self._redis.register_script(scripts.ADMIT)
        self._renew = self._redis.register_script(scripts.RENEW)
        self._expired = self._redis.register_script(scripts.EXPIRED)
        self._rescue = self._redis.register_script(scripts.RESCUE)
        self._signal = self._redis.register_script(scripts.SIGNAL_CANCEL)
        self._settle_approval = self._redis.register_script(scripts.SETTLE_APPROVAL)
        # The turns this process produces and holds leases for.
        self._local: dict[str, Turn] = {}
        self._cancelled: set[str] = set()  # already told to stop: tell them once
        self._on_cancel: CancelHandler | None = None
        self._on_lost: LostHandler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._down_since: float | None = None
        self.rescued = 0

    # -- wiring ----------------------------------------------------------------------------

    def on_cancel(self, handler: CancelHandler) -> None:
        self._on_cancel = handler
        self._context.stop_turn = self._stop_here

    def on_lost(self, handler: LostHandler) -> None:
        """Who saves a lost turn's partial answer (once, by the instance that found it)."""
        self._on_lost = handler

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="sluice-cancel-listener"),
            asyncio.create_task(self._tick(), name="sluice-leases"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- the protocol ----------------------------------------------------------------------

    async def admit(self, turn: Turn, *, limit: int, take_slot: bool) -> Admission:
        session_id = turn.session_id or ""
        context = self._context

        async def run() -> list[bytes]:
            reply: list[bytes] = await self._admit(
                keys=[
                    keys.active_key(turn.user_id, session_id),
                    keys.slots_key(turn.user_id),
                    keys.LIVE,
                    keys.meta_key(turn.stream_id),
                ],
                args=[
                    turn.stream_id,
                    turn.user_id,
                    session_id,
                    turn.message,
                    repr(turn.started_at),
                    context.instance,
                    limit,
                    context.lease_ms,
                    1 if take_slot else 0,
                    context.safety_ttl_ms,
                ],
            )
            return reply

        reply = await guarded(run)
        status = reply[0].decode()
        if status == "busy":
            stream_id, _, started = reply[1].decode().partition(" ")
            raise TurnInProgress(ActiveTurn(stream_id, float(started)))
        if status == "ok":
            self._local[turn.stream_id] = turn
            return Admission.ADMITTED
        return Admission.TOO_MANY if status == "too_many" else Admission.REFUSED

    async def finish(self, turn: Turn) -> None:
        # The terminal event's write frees the slot and the session in the same Lua step
        # (server/stores/redis/streamlog.py): a client that saw the terminal and sends its
        # next message is never told the session is still busy. Here the lease just stops
        # being renewed.
        self._local.pop(turn.stream_id, None)
        self._cancelled.discard(turn.stream_id)

    async def active_turn(self, user_id: str, session_id: str) -> ActiveTurn | None:
        async def run() -> Any:
            return await self._redis.get(keys.active_key(user_id, session_id))

        value = await guarded(run)
        if value is None:
            return None
        stream_id, _, started = value.decode().partition(" ")
        return ActiveTurn(stream_id, float(started))

    async def signal_cancel(self, stream_id: str, reason: str) -> bool:
        async def run() -> int:
            reply: int = await self._signal(
                keys=[keys.LIVE, keys.cancel_key(stream_id)],
                args=[stream_id, reason, CANCEL_TTL_MS, keys.CANCEL_CHANNEL],
            )
            return reply

        return bool(await guarded(run))

    async def ping(self) -> None:
        await guarded(self._redis.ping)

    def stats(self) -> dict[str, Any]:
        return {"local_turns": len(self._local), "rescued": self.rescued}

    # -- background ------------------------------------------------------------------------

    def _stop_here(self, stream_id: str, reason: str) -> None:
        if stream_id in self._cancelled or self._on_cancel is None:
            return
        self._cancelled.add(stream_id)
        self._on_cancel(stream_id, reason)

    async def _listen(self) -> None:
        """Cancel messages, as they are published; resubscribes after Redis comes back."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.CANCEL_CHANNEL)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    stream_id, _, reason = message["data"].decode().partition(" ")
                    if stream_id in self._local:
                        self._stop_here(stream_id, reason or "cancelled")
            except DOWN:
                await asyncio.sleep(1.0)  # the keys are polled meanwhile
            finally:
                with contextlib.suppress(*DOWN):
                    await pubsub.aclose()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_renew = next_expired = loop.time()
        while True:
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            try:
                await self._poll_cancels()
                now = loop.time()
                if now >= next_renew:
                    next_renew = now + self._context.renew_every_seconds
                    await self._renew_leases()
                if now >= next_expired:
                    next_expired = now + self._context.expired_every_seconds
                    await self._end_lost_turns()
                if self._down_since is not None:
                    log.info(
                        "redis_back", down_seconds=round(time.monotonic() - self._down_since, 1)
                    )
                    self._down_since = None
            except DOWN as problem:
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning("redis_unreachable", error=type(problem).__name__)
            except Exception:
                log.exception("lease_upkeep_failed")

    async def _poll_cancels(self) -> None:
        if not self._local:
            return
        stream_ids = list(self._local)
        reasons: list[Any] = await self._redis.mget([keys.cancel_key(s) for s in stream_ids])
        for stream_id, reason in zip(stream_ids, reasons, strict=True):
            if reason is not None:
                self._stop_here(stream_id, reason.decode())

    async def _renew_leases(self) -> None:
        if not self._local:
            return
        turns = list(self._local.values())
        context = self._context
        calls: list[tuple[AsyncScript, list[str], list[Any]]] = [
            (
                self._renew,
                [
                    keys.LIVE,
                    keys.slots_key(turn.user_id),
                    keys.active_key(turn.user_id, turn.session_id or ""),
                    keys.meta_key(turn.stream_id),
                ],
                [turn.stream_id, context.instance, context.lease_ms, repr(turn.started_at)],
            )
            for turn in turns
        ]
        replies = await run_scripts(self._redis, calls)
        for turn, kept in zip(turns, replies, strict=True):
            if not kept and turn.stream_id in self._local:
                # Declared lost (this process stalled past its lease) or Redis lost the keys
                # (restarted empty): its readers elsewhere cannot follow it any more.
                log.warning("turn_lease_lost", stream_id=turn.stream_id)
                self._stop_here(turn.stream_id, "lost")

    async def _end_lost_turns(self) -> None:
        expired: list[bytes] = await self._expired(keys=[keys.LIVE], args=[100])
        for raw in expired:
            await self._end_lost_turn(raw.decode())

    async def _end_lost_turn(self, stream_id: str) -> None:
        meta: list[Any] = await self._redis.hmget(
            keys.meta_key(stream_id), ["user", "session", "message"]
        )
        user, session, message = meta
        if user is None:  # its log expired already
            await self._redis.zrem(keys.LIVE, stream_id)
            return
        user_id, session_id = user.decode(), (session or b"").decode()
        terminal = _without_id(encode_event(0, LOST_EVENT.type, LOST_EVENT.as_dict()))
        keys_ = [
            keys.LIVE,
            keys.log_key(stream_id),
            keys.meta_key(stream_id),
            keys.slots_key(user_id),
            keys.active_key(user_id, session_id),
        ]
        for _ in range(_RESCUE_ATTEMPTS):
            # Calls the dead producer announced and never answered get their cancelled
            # results before the terminal event, as they would have from a live one.
            entries: Any = await self._redis.xrange(keys.log_key(stream_id))
            frames = [fields[b"f"] for _, fields in entries]
            open_calls = OpenToolCalls()
            open_calls.see_frames(frames)
            closed = open_calls.close_all()
            results = [_without_id(encode_event(0, r.type, r.as_dict())) for r in closed]
            read_up_to = int(entries[-1][0].rpartition(b"-")[2]) if entries else 0
            terminal_id: int = await self._rescue(
                keys=keys_,
                args=[stream_id, terminal, self._context.log_ttl_ms, read_up_to, *results],
            )
            if terminal_id != -1:
                break
        else:  # still being written to: ended without the results rather than not at all
            closed = []
            terminal_id = await self._rescue(
                keys=keys_, args=[stream_id, terminal, self._context.log_ttl_ms]
            )
        if terminal_id <= 0:
            return
        self.rescued += 1
        log.warning("producer_lost", stream_id=stream_id, terminal_id=terminal_id)
        for result in closed:
            # A call that waited for approval is settled as its result says: a decision
            # posted now is too late (409), as after a stop.
            key = keys.approval_key(stream_id, result.call_id)
            await self._settle_approval(keys=[key], args=[CANCELLED])
        if self._on_lost is None or not session_id:
            return
        lost = LostTurn(
            stream_id=stream_id,
            user_id=user_id,
            session_id=session_id,
            message=(message or b"").decode(),
            partial=answer_text(frames),
        )
        try:
            await self._on_lost(lost)
        except Exception:
            log.exception("lost_turn_not_saved", stream_id=stream_id)


def _without_id(frame: bytes) -> bytes:
    """A frame without its ``id: n`` line: the script numbers it where it lands."""
    return frame.split(b"\n", 1)[1]
