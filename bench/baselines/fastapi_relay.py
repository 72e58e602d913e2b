"""Baseline: FastAPI + sse-starlette's EventSourceResponse on uvicorn, openai SDK typed stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx2
import openai
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

from bench.baselines.common import API_KEY, KEEPALIVE, MAX_CONNECTIONS, MODEL, PORT, UPSTREAM

client = openai.AsyncOpenAI(
    base_url=UPSTREAM,
    api_key=API_KEY,
    max_retries=0,
    http_client=httpx2.AsyncClient(
        limits=httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=KEEPALIVE),
        timeout=httpx2.Timeout(600, connect=5.0),
    ),
)
app = FastAPI()


class Chat(BaseModel):
    message: str


def _json(data: dict[str, object]) -> str:
    return json.dumps(data, separators=(",", ":"))


@app.post("/chat")
async def chat(body: Chat) -> EventSourceResponse:
    async def events() -> AsyncIterator[dict[str, str]]:
        parts: list[str] = []
        try:
            stream = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": body.message}], stream=True
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text = chunk.choices[0].delta.content
                    parts.append(text)
                    yield {"event": "chunk", "data": _json({"type": "chunk", "content": text})}
            yield {
                "event": "complete",
                "data": _json({"type": "complete", "message": "".join(parts)}),
            }
        except openai.OpenAIError as exc:
            yield {
                "event": "error",
                "data": _json({"type": "error", "code": "upstream", "message": str(exc)}),
            }

    return EventSourceResponse(events())


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", backlog=4096)
