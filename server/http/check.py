"""``GET /api/check-stream``: timed events for the connection check.

The most common failure in the field is something between the client and sluice (a proxy, a
PaaS router, a CDN) that buffers or compresses event streams. This endpoint sends ``events``
``tick`` events ``interval_ms`` apart, each carrying the server's own elapsed time, with a
``: ping`` comment half-way between two ticks, and ends with a ``done`` event that says how
many of each it sent. A client that notes when each tick *arrived* can tell whether they came
through one by one, late in bursts (and how late), or compressed, and whether comments pass:
the page's menu and ``python -m server check URL`` do exactly that (``server/commands/check.py``).

It needs no identity, so an operator can run it from a terminal against a deployment; it is
bounded (at most 50 events, at most 15 s) and calls no model.
"""

from __future__ import annotations

import asyncio
import time

from tornado.iostream import StreamClosedError

from server.core.sse import comment, encode_event, padding, retry_field
from server.http.base import ApiCode, ApiError, BaseHandler

__all__ = ["MAX_CHECK_EVENTS", "MAX_CHECK_SECONDS", "CheckStreamHandler"]

MAX_CHECK_EVENTS = 50
MAX_CHECK_SECONDS = 15.0
_PING = comment("ping")


class CheckStreamHandler(BaseHandler):
    def initialize(self) -> None:
        super().initialize()
        self._gone = False

    def on_connection_close(self) -> None:
        self._gone = True

    def _int_argument(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.get_query_argument(name, str(default))
        if not raw.isdigit() or not low <= int(raw) <= high:
            message = f"'{name}' must be a whole number {low}-{high}."
            raise ApiError(400, ApiCode.BAD_REQUEST, message)
        return int(raw)

    async def get(self) -> None:
        count = self._int_argument("events", 10, 1, MAX_CHECK_EVENTS)
        interval_ms = self._int_argument("interval_ms", 500, 50, 2000)
        if count * interval_ms > MAX_CHECK_SECONDS * 1000:
            message = f"events x interval_ms must stay under {MAX_CHECK_SECONDS:g} s."
            raise ApiError(400, ApiCode.BAD_REQUEST, message)
        # The same headers as every answer stream: what a proxy does to this, it does to them.
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache, no-transform")
        self.set_header("X-Accel-Buffering", "no")
        settings = self.state.settings.stream
        self.write(retry_field(settings.retry_ms) + padding(settings.padding_bytes))
        interval = interval_ms / 1000
        started = time.monotonic()
        pings = 0
        try:
            await self.flush()
            for seq in range(1, count + 1):
                if seq > 1:
                    await self._until(started + (seq - 1.5) * interval)
                    self.write(_PING)
                    await self.flush()
                    pings += 1
                    await self._until(started + (seq - 1) * interval)
                elapsed_ms = round((time.monotonic() - started) * 1000, 1)
                tick = {"type": "tick", "seq": seq, "elapsed_ms": elapsed_ms}
                self.write(encode_event(seq, "tick", tick))
                await self.flush()
            done = {
                "type": "done",
                "events": count,
                "pings": pings,
                "interval_ms": interval_ms,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            }
            self.write(encode_event(count + 1, "done", done))
            self.finish()
        except StreamClosedError:
            return  # the client left: an ordinary end

    async def _until(self, when: float) -> None:
        delay = when - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._gone:
            raise StreamClosedError()
