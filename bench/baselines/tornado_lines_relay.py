"""Baseline: a bare Tornado handler that calls the upstream with httpx2 itself, no SDK.

The leanest relay here: one ``POST`` with a hand-written JSON body, the streamed response
read with ``aiter_lines`` and each ``data:`` line parsed with ``json.loads``, ``write`` +
``await flush()`` per chunk. It does none of the SDK's work (parameter transform, typed
chunks) and nothing a product does (auth, limits, history): the floor for a Python relay's
first chunk.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx2
import tornado.web

from bench.baselines.common import API_KEY, KEEPALIVE, MAX_CONNECTIONS, MODEL, UPSTREAM
from bench.baselines.tornado_app import relay, serve

client = httpx2.AsyncClient(
    base_url=UPSTREAM,
    headers={"Authorization": f"Bearer {API_KEY}"},
    limits=httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=KEEPALIVE),
    timeout=httpx2.Timeout(600, connect=5.0),
)


async def deltas(message: str) -> AsyncIterator[str]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": message}], "stream": True}
    async with client.stream("POST", "/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            text = (choices[0].get("delta") or {}).get("content")
            if text:
                yield text


class ChatHandler(tornado.web.RequestHandler):
    async def post(self) -> None:
        await relay(self, deltas(json.loads(self.request.body)["message"]))


if __name__ == "__main__":
    asyncio.run(serve(ChatHandler))
