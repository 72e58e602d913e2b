"""Baseline: a bare Tornado handler relaying the openai SDK's typed stream as SSE."""

from __future__ import annotations

import asyncio
import json

import httpx2
import openai
import tornado.web

from bench.baselines.common import API_KEY, KEEPALIVE, MAX_CONNECTIONS, MODEL, PORT, UPSTREAM, sse

client = openai.AsyncOpenAI(
    base_url=UPSTREAM,
    api_key=API_KEY,
    max_retries=0,
    http_client=httpx2.AsyncClient(
        limits=httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=KEEPALIVE),
        timeout=httpx2.Timeout(600, connect=5.0),
    ),
)


class ChatHandler(tornado.web.RequestHandler):
    async def post(self) -> None:
        message = json.loads(self.request.body)["message"]
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        parts: list[str] = []
        try:
            stream = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": message}], stream=True
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text = chunk.choices[0].delta.content
                    parts.append(text)
                    self.write(sse("chunk", {"type": "chunk", "content": text}))
                    await self.flush()
            self.write(sse("complete", {"type": "complete", "message": "".join(parts)}))
        except tornado.iostream.StreamClosedError:
            return
        except Exception as exc:
            self.write(sse("error", {"type": "error", "code": "upstream", "message": str(exc)}))
        self.finish()


class HealthHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"status": "ok"})


async def main() -> None:
    app = tornado.web.Application([(r"/chat", ChatHandler), (r"/healthz", HealthHandler)])
    app.listen(PORT, address="127.0.0.1", backlog=4096)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
