"""sluice's upstream transport (httpx2 over aiohttp) against the fake OpenAI server."""

from __future__ import annotations

import httpx2
import pytest

from server.llm.transport import pooled_http_client
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
