"""The fake upstreams' tool calls are what the providers' own SDKs read as tool calls.

The tool tests drive sluice against these fakes; if a fake's frames drifted from the real
wire format, those tests would prove nothing. So each fake's streamed tool calls are read
here by the real SDK (openai's stream of ``ChatCompletionChunk``, google-genai's
``generate_content_stream``) and must come out as the calls that were scripted: arguments
split over frames and two calls interleaved by index for OpenAI, ``functionCall`` parts for
Gemini.
"""

from __future__ import annotations

import asyncio
import json

import httpx2
import openai
from google import genai
from google.genai import types as genai_types

from tests.fakes.llm_upstreams import FakeGemini, FakeOpenAI, Reply

CALLS = [
    ("call_a", "current_time", '{"timezone": "Asia/Tokyo"}'),
    ("call_b", "word_count", '{"text": "two words", "unique": true}'),
]


def test_openai_sdk_reads_the_fake_s_split_and_interleaved_tool_calls() -> None:
    async def scenario() -> tuple[dict[int, dict[str, str]], str | None]:
        fake = FakeOpenAI()
        await fake.start()
        try:
            fake.script(Reply(text=["Let me check."], tool_calls=CALLS, argument_piece=4))
            client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            calls: dict[int, dict[str, str]] = {}
            finish = None
            pieces_per_call: dict[int, int] = {}
            async for chunk in stream:
                for choice in chunk.choices:
                    finish = choice.finish_reason or finish
                    for delta in choice.delta.tool_calls or []:
                        call = calls.setdefault(delta.index, {"id": "", "name": "", "args": ""})
                        if delta.id:
                            call["id"] = delta.id
                        if delta.function and delta.function.name:
                            call["name"] = delta.function.name
                        if delta.function and delta.function.arguments:
                            call["args"] += delta.function.arguments
                            pieces_per_call[delta.index] = pieces_per_call.get(delta.index, 0) + 1
            await client.close()
            assert all(count > 1 for count in pieces_per_call.values())  # really split
            return calls, finish
        finally:
            await fake.stop()

    calls, finish = asyncio.run(scenario())
    assert finish == "tool_calls"
    assert [(c["id"], c["name"], json.loads(c["args"])) for _, c in sorted(calls.items())] == [
        (i, n, json.loads(a)) for i, n, a in CALLS
    ]


def test_google_genai_reads_the_fake_s_function_calls() -> None:
    async def scenario() -> list[tuple[str, dict[str, object]]]:
        fake = FakeGemini()
        await fake.start()
        try:
            fake.script(Reply(text=["Let me", " check."], tool_calls=CALLS))
            # On an httpx2 client, as the provider runs it (not the SDK's aiohttp session).
            http = httpx2.AsyncClient()
            client = genai.Client(
                api_key="k",
                http_options=genai_types.HttpOptions(
                    base_url=fake.url + "/", httpx_async_client=http
                ),
            )
            found: list[tuple[str, dict[str, object]]] = []
            stream = await client.aio.models.generate_content_stream(
                model="gemini-2.5-flash", contents="hi"
            )
            async for response in stream:
                for call in response.function_calls or []:
                    found.append((call.name or "", dict(call.args or {})))
            await http.aclose()
            return found
        finally:
            await fake.stop()

    assert asyncio.run(scenario()) == [(n, json.loads(a)) for _, n, a in CALLS]
