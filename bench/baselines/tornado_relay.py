"""Baseline: a bare Tornado handler relaying the openai SDK's typed stream as SSE."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx2
import openai
import tornado.web

from bench.baselines.common import API_KEY, KEEPALIVE, MAX_CONNECTIONS, MODEL, UPSTREAM
from bench.baselines.tornado_app import relay, serve

client = openai.AsyncOpenAI(
    base_url=UPSTREAM,
    api_key=API_KEY,
    max_retries=0,
    http_client=httpx2.AsyncClient(
        limits=httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=KEEPALIVE),
        timeout=httpx2.Timeout(600, connect=5.0),
    ),
)


async def deltas(message: str) -> AsyncIterator[str]:
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": message}], stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


class ChatHandler(tornado.web.RequestHandler):
    async def post(self) -> None:
        await relay(self, deltas(json.loads(self.request.body)["message"]))


if __name__ == "__main__":
    asyncio.run(serve(ChatHandler))
