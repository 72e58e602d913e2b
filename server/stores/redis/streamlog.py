"""Stream logs on Redis: one Redis Stream per turn, entry ``0-<n>`` holding event ``n``'s frame.

The producer's process keeps the whole log locally (its own readers never wait on Redis) and
sends new frames to Redis as they come, batched: one pipeline per loop pass for all its logs,
one Lua step per log that writes only ids Redis does not have yet, and only while this
process still owns the turn (the fencing token in the turn's meta hash). A write that fails
is simply sent again from the last confirmed id, since the local log has every frame.

Any other process that gets a reader for the turn loads the log once (``XRANGE``) into a
local mirror and, while the turn runs, follows it with one ``XREAD BLOCK`` for all of its
mirrors on one connection (:class:`_Tail`), fanning each entry out to its readers through
the mirror — never a blocking connection per reader. The terminal event sets the log to
expire ``stream.log_ttl_seconds`` later; until then any instance can replay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from redis.commands.core import AsyncScript

from server.contract import Turn
from server.core.streamlog import StreamLog
from server.stores.redis import keys, scripts
from server.stores.redis.client import DOWN, RedisContext, connect, guarded, run_scripts
from server.stores.redis.registry import LOST_EVENT

__all__ = ["RedisStreamLogStore"]

log = structlog.get_logger("sluice.redis")

# Frames per Lua step: a long burst is written in several short steps, so one turn's burst
# never holds Redis (single-threaded) for long.
_MAX_FRAMES_PER_WRITE = 512
_BLOCK_MS = 5000
# Frames appended within this long after the first unsent one go to Redis together: fewer,
# fuller round trips. Only readers on other instances wait for it.
_COALESCE_SECONDS = 0.002
# A mirror whose Redis has not answered for this long ends for its readers.
_GIVE_UP_SECONDS = 10.0


class _Written:
    """A producer's log and how much of it Redis has confirmed."""

    __slots__ = ("confirmed", "log", "session_id", "user_id")

    def __init__(self, log: StreamLog, user_id: str, session_id: str) -> None:
        self.log = log
        self.user_id = user_id
        self.session_id = session_id
        self.confirmed = 0


class RedisStreamLogStore:
    kind = "redis"

    def __init__(self, context: RedisContext, *, ttl_seconds: float, max_events: int) -> None:
        self._context = context
        self._redis = context.client
        self._append = context.client.register_script(scripts.APPEND)
        self._ttl = ttl_seconds
        self._max_events = max_events
        self._local: dict[str, StreamLog] = {}  # logs this process produces
        self._unsent: dict[str, _Written] = {}  # of those, the ones with frames to send
        self._written: dict[str, _Written] = {}  # every producer log until its terminal is in
        self._wanted = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._mirrors: dict[str, StreamLog] = {}  # logs of other processes, being followed
        self._tail = _Tail(context, self._mirrors)

    # -- the producer's side ---------------------------------------------------------------

    def create(self, turn: Turn) -> StreamLog:
        stream_log = StreamLog(turn.stream_id, turn.user_id, self._max_events, self._sink)
        self._local[turn.stream_id] = stream_log
        self._written[turn.stream_id] = _Written(stream_log, turn.user_id, turn.session_id or "")
        return stream_log

    def _sink(self, stream_log: StreamLog, frame: bytes, terminal: bool) -> None:
        stream_id = stream_log.stream_id
        if stream_id not in self._unsent:
            written = self._written.get(stream_id)
            if written is None:
                return
            if not self._unsent:
                asyncio.get_running_loop().call_later(_COALESCE_SECONDS, self._wanted.set)
            self._unsent[stream_id] = written
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_forever(), name="sluice-log-writer")

    def finished(self, stream_log: StreamLog) -> None:
        asyncio.get_running_loop().call_later(
            self._ttl, self._local.pop, stream_log.stream_id, None
        )

    async def _sent_all(self) -> None:
        for _ in range(60):  # at shutdown only: a short poll will do
            if not self._unsent:
                return
            await asyncio.sleep(0.05)

    async def _write_forever(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            batch, self._unsent = self._unsent, {}
            try:
                await self._write(batch)
            except DOWN:
                # Kept, and sent again from the last confirmed id once Redis answers.
                for stream_id, written in batch.items():
                    self._unsent.setdefault(stream_id, written)
                await asyncio.sleep(0.5)
                self._wanted.set()
            except Exception:
                log.exception("log_write_failed")
                await asyncio.sleep(0.5)

    async def _write(self, batch: dict[str, _Written]) -> None:
        context = self._context
        sent: list[tuple[_Written, bool]] = []
        calls: list[tuple[AsyncScript, list[str], list[Any]]] = []
        for stream_id, written in batch.items():
            stream_log = written.log
            frames = stream_log.frames_after(written.confirmed)
            if not frames:
                continue
            more = len(frames) > _MAX_FRAMES_PER_WRITE
            if more:
                frames = frames[:_MAX_FRAMES_PER_WRITE]
            terminal = stream_log.finished and not more
            keys_ = [
                keys.log_key(stream_id),
                keys.meta_key(stream_id),
                keys.LIVE,
                keys.slots_key(written.user_id),
                keys.active_key(written.user_id, written.session_id),
            ]
            args = [
                context.instance,
                written.confirmed + 1,
                1 if terminal else 0,
                context.log_ttl_ms,
                context.safety_ttl_ms,
                stream_id,
                *frames,
            ]
            calls.append((self._append, keys_, args))
            sent.append((written, terminal))
        if not calls:
            return
        if len(calls) == 1:  # one log: a plain call, no pipeline to set up
            script, keys_, args = calls[0]
            replies = [await script(keys=keys_, args=args)]
        else:
            replies = await run_scripts(self._redis, calls)
        for (written, terminal), newest in zip(sent, replies, strict=True):
            stream_id = written.log.stream_id
            if newest == -1:
                # Not ours any more: declared lost, or Redis lost the turn's keys. Nobody
                # else can follow it; its own readers here get its end from the producer.
                self._written.pop(stream_id, None)
                if not written.log.finished and context.stop_turn is not None:
                    context.stop_turn(stream_id, "lost")
                continue
            written.confirmed = int(newest)
            if terminal:
                self._written.pop(stream_id, None)
            elif written.confirmed < written.log.last_id:
                self._unsent.setdefault(stream_id, written)
                self._wanted.set()

    # -- readers ---------------------------------------------------------------------------

    async def open(self, stream_id: str) -> StreamLog | None:
        local = self._local.get(stream_id)
        if local is not None:
            return local
        mirror = self._mirrors.get(stream_id)
        if mirror is None:
            loaded = await guarded(lambda: self._load(stream_id))
            if loaded is None:
                return None
            # Another reader may have loaded it meanwhile: then follow that one.
            mirror = self._mirrors.get(stream_id) or loaded
            if mirror is loaded and not loaded.finished:
                self._mirrors[stream_id] = loaded
                self._tail.follow()
        mirror.readers += 1
        return mirror

    async def _load(self, stream_id: str) -> StreamLog | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.meta_key(stream_id), "user")
            pipe.xrange(keys.log_key(stream_id))
            user, entries = await pipe.execute()
        if user is None:
            return None
        mirror = StreamLog(stream_id, user.decode(), self._max_events)
        frames, terminal = _frames_from(entries, 1)
        mirror.add_frames(frames, terminal)
        return mirror

    def release(self, stream_log: StreamLog) -> None:
        if stream_log.readers <= 0:
            return  # the producer's own log
        stream_log.readers -= 1
        stream_id = stream_log.stream_id
        if stream_log.readers == 0 and self._mirrors.get(stream_id) is stream_log:
            del self._mirrors[stream_id]

    async def ping(self) -> None:
        await guarded(self._redis.ping)

    def stats(self) -> dict[str, Any]:
        return {
            "logs": len(self._local),
            "mirrors": len(self._mirrors),
            "unconfirmed": len(self._written),
        }

    async def close(self) -> None:
        # Send what is left (the terminal events of a drain) before letting go.
        if self._writer is not None:
            await self._sent_all()
        for task in (self._writer, self._tail.task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._tail.close()


def _frames_from(entries: list[Any], expected: int) -> tuple[list[bytes], bool]:
    """Frames of consecutive entries starting at id ``expected``, and whether the last is the
    terminal event. Entries before ``expected`` (already had) are skipped."""
    frames: list[bytes] = []
    for entry_id, fields in entries:
        number = int(entry_id.rpartition(b"-")[2])
        if number < expected:
            continue
        if number != expected:
            break  # never written with a gap; read again from here next time
        frames.append(fields[b"f"])
        expected += 1
        if b"t" in fields:
            return frames, True
    return frames, False


class _Tail:
    """Follows every mirror of this process with one ``XREAD BLOCK`` on its own connection.

    The read also names this process's wake-up stream: a new mirror adds an entry there, so
    the blocked read returns and the next one includes the new log."""

    def __init__(self, context: RedisContext, mirrors: dict[str, StreamLog]) -> None:
        self._context = context
        self._mirrors = mirrors
        self._client = connect(
            context.url, name=f"sluice-tail-{context.instance}", block_seconds=_BLOCK_MS / 1000
        )
        self._wake_key = keys.wake_key(context.instance)
        self._wake_last: bytes = b"0-0"
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._waker: asyncio.Task[None] | None = None

    def follow(self) -> None:
        self._changed.set()
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="sluice-log-tail")
        elif self._waker is None or self._waker.done():
            self._waker = asyncio.create_task(self._wake())

    async def _wake(self) -> None:
        with contextlib.suppress(*DOWN):
            await self._context.client.xadd(self._wake_key, {"w": "1"}, maxlen=1, approximate=False)
            await self._context.client.pexpire(self._wake_key, 60_000)

    async def close(self) -> None:
        await self._client.aclose()

    async def _run(self) -> None:
        down_since: float | None = None
        checked = time.monotonic()
        while True:
            if not self._mirrors:
                self._changed.clear()
                await self._changed.wait()
                continue
            self._changed.clear()
            streams: dict[Any, Any] = {self._wake_key: self._wake_last}
            for stream_id, followed in self._mirrors.items():
                streams[keys.log_key(stream_id)] = f"0-{followed.last_id}"
            try:
                reply: Any = await self._client.xread(streams, count=1000, block=_BLOCK_MS)
                # Now and then (not only when everything is quiet): a log whose keys are
                # gone would otherwise be waited on for ever while others keep the tail busy.
                if not reply or time.monotonic() - checked > _BLOCK_MS / 1000:
                    checked = time.monotonic()
                    await self._end_vanished()
                down_since = None
            except DOWN:
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                    log.warning("redis_unreachable", what="log tail")
                elif now - down_since > _GIVE_UP_SECONDS:
                    self._end_all()
                await asyncio.sleep(0.5)
                continue
            for raw_key, entries in reply or ():
                key = raw_key.decode()
                if key == self._wake_key:
                    self._wake_last = entries[-1][0]
                    continue
                stream_id = key.removeprefix(keys.log_key(""))
                mirror = self._mirrors.get(stream_id)
                if mirror is None:
                    continue
                frames, terminal = _frames_from(entries, mirror.last_id + 1)
                mirror.add_frames(frames, terminal)
                if terminal:
                    del self._mirrors[stream_id]

    async def _end_vanished(self) -> None:
        """A followed log whose keys are gone (Redis restarted empty, or it expired) will
        never get its terminal event: end it here."""
        stream_ids = list(self._mirrors)
        async with self._client.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.exists(keys.meta_key(stream_id))
            present = await pipe.execute()
        for stream_id, exists in zip(stream_ids, present, strict=True):
            if not exists:
                self._end(stream_id)

    def _end_all(self) -> None:
        for stream_id in list(self._mirrors):
            self._end(stream_id)

    def _end(self, stream_id: str) -> None:
        mirror = self._mirrors.pop(stream_id, None)
        if mirror is not None:
            log.warning("followed_log_lost", stream_id=stream_id)
            mirror.end_here(LOST_EVENT)
