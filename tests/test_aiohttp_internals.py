"""aiohttp's internals that sluice relies on for memory (server/llm/aiohttp_internals.py):
these tests fail when aiohttp changes under them."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import pytest
from yarl import URL

from server.contract import body_reader
from server.llm.aiohttp_internals import CompactResponse, env_proxy
from server.llm.transport import UpstreamBody, pooled_http_client
from tests.fakes.llm_upstreams import FakeOpenAI, Reply

pytestmark = pytest.mark.anyio

STREAM = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}


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


async def test_the_attribute_order_names_exactly_what_aiohttp_sets(
    fake_openai: FakeOpenAI,
) -> None:
    """A name aiohttp stopped setting, or a new one it sets, would make responses fall back
    to an attribute dict of their own: the list must be aiohttp's list."""
    fake_openai.script(Reply(text=["a"]))
    client = pooled_http_client(2)
    try:
        url = fake_openai.base_url + "/chat/completions"
        request = client.build_request("POST", url, json=STREAM)
        body = body_reader(await client.send(request, stream=True))
        assert isinstance(body, UpstreamBody)
        response = body._response
        assert isinstance(response, CompactResponse)
        set_by_aiohttp = set(vars(response))
        await body.aclose()
    finally:
        await client.aclose()
    listed = set(CompactResponse._ATTRIBUTE_ORDER)
    assert set_by_aiohttp == listed, (set_by_aiohttp - listed, listed - set_by_aiohttp)
    assert issubclass(CompactResponse, aiohttp.ClientResponse)


async def test_kept_request_headers_are_the_shared_strings(fake_openai: FakeOpenAI) -> None:
    """aiohttp keeps a request's headers for the life of its response; the saving holds
    only while it keeps the very strings it was given."""
    fake_openai.script(Reply(text=["a"]), Reply(text=["b"]))
    client = pooled_http_client(2)
    bodies = []
    try:
        url = fake_openai.base_url + "/chat/completions"
        for _ in range(2):
            request = client.build_request("POST", url, json=STREAM)
            body = body_reader(await client.send(request, stream=True))
            assert isinstance(body, UpstreamBody)
            bodies.append(body)
        first, second = (b._response.request_info.headers for b in bodies)
        for (name_a, value_a), (name_b, value_b) in zip(first.items(), second.items(), strict=True):
            assert name_a is name_b
            if name_a.lower() != "content-length":
                assert value_a is value_b, name_a
    finally:
        for body in bodies:
            await body.aclose()
        await client.aclose()


def test_env_proxy_is_aiohttps_lookup_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``aiohttp.helpers.get_env_proxy_for_url`` is what ``trust_env`` uses on every request;
    sluice calls it once per upstream (server/llm/transport.py)."""
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.svc.local")
    proxy, auth = env_proxy(URL("https://api.openai.com/v1/chat/completions"))
    assert proxy == URL("http://proxy.internal:3128")
    assert auth is not None and (auth.login, auth.password) == ("user", "secret")
    assert env_proxy(URL("https://ollama.svc.local/v1")) == (None, None)
    monkeypatch.delenv("HTTPS_PROXY")
    assert env_proxy(URL("https://api.openai.com/v1")) == (None, None)
