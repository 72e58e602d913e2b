"""sluice's upstream transport (httpx2 over aiohttp) against the fake OpenAI server."""

from __future__ import annotations

import asyncio
import sys

import httpx2
import pytest

from server.contract import body_reader
from server.llm.transport import UpstreamBody, pooled_http_client
from tests.fakes.llm_upstreams import FakeOpenAI, Reply, refused_url

pytestmark = pytest.mark.anyio

STREAM = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}


async def test_a_refused_connection_is_a_connect_error_not_a_timeout() -> None:
    client = pooled_http_client(4)
    try:
        with pytest.raises(httpx2.ConnectError):
            await client.post(refused_url() + "/v1/chat/completions", json=STREAM)
    finally:
        await client.aclose()


async def test_a_silent_upstream_is_a_read_timeout(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply(hang_before_headers=True))
    client = pooled_http_client(4)
    try:
        with pytest.raises(httpx2.ReadTimeout):
            await client.post(
                fake_openai.base_url + "/chat/completions",
                json=STREAM,
                timeout=httpx2.Timeout(5.0, read=0.2),
            )
    finally:
        await client.aclose()


async def test_open_responses_keep_a_compact_attribute_table(fake_openai: FakeOpenAI) -> None:
    """Concurrent requests used to leave every aiohttp response with an attribute dict of
    its own (1,584 bytes, for the life of a stream); the shared table is ~260 bytes."""
    fake_openai.script(*[Reply(text=["a", "b"]) for _ in range(8)])
    fake_openai.script(*[Reply(text=["a", "b"], hang_at=1) for _ in range(3)])
    client = pooled_http_client(16)

    url = fake_openai.base_url + "/chat/completions"

    async def whole_answer() -> None:
        async with client.stream("POST", url, json=STREAM) as r:
            await r.aread()

    bodies: list[UpstreamBody] = []
    try:
        await asyncio.gather(*[whole_answer() for _ in range(8)])
        for _ in range(3):
            request = client.build_request("POST", url, json=STREAM)
            body = body_reader(await client.send(request, stream=True))
            assert isinstance(body, UpstreamBody)
            bodies.append(body)
        sizes = [sys.getsizeof(body._response.__dict__) for body in bodies]
        assert max(sizes) < 600, sizes
    finally:
        for body in bodies:
            await body.aclose()
        await client.aclose()
