"""What the two Tornado baselines share: relaying text deltas as SSE, and the application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import tornado.iostream
import tornado.web

from bench.baselines.common import PORT, sse


async def relay(handler: tornado.web.RequestHandler, deltas: AsyncIterator[str]) -> None:
    """Each delta as a ``chunk`` event (``write`` + ``await flush()``), then ``complete``; an
    upstream failure as ``error``."""
    handler.set_header("Content-Type", "text/event-stream; charset=utf-8")
    handler.set_header("Cache-Control", "no-cache")
    parts: list[str] = []
    try:
        async for text in deltas:
            parts.append(text)
            handler.write(sse("chunk", {"type": "chunk", "content": text}))
            await handler.flush()
        handler.write(sse("complete", {"type": "complete", "message": "".join(parts)}))
    except tornado.iostream.StreamClosedError:
        return
    except Exception as exc:
        handler.write(sse("error", {"type": "error", "code": "upstream", "message": str(exc)}))
    handler.finish()


class HealthHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"status": "ok"})


async def serve(chat_handler: type[tornado.web.RequestHandler]) -> None:
    app = tornado.web.Application([(r"/chat", chat_handler), (r"/healthz", HealthHandler)])
    app.listen(PORT, address="127.0.0.1", backlog=4096)
    await asyncio.Event().wait()
