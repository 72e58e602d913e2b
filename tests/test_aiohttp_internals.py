"""aiohttp's internals that sluice relies on for memory (server/internals/aiohttp_internals.py):
these tests fail when aiohttp changes under them."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import sys

import aiohttp
import aiohttp.client_proto
import aiohttp.streams
import pytest
from yarl import URL

from server.internals.aiohttp_internals import CompactResponse, env_proxy
from server.internals.short_queue import ShortQueue
from server.llm.transport import UpstreamBody, pooled_http_client
from server.provider_kit import body_reader
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


def _deque_methods(source: str, attribute: str) -> set[str]:
    return set(re.findall(re.escape(attribute) + r"\.(\w+)\(", source))


def test_aiohttp_queues_responses_in_a_deque_used_as_a_short_queue() -> None:
    """``compact_queues`` swaps the connection's queue of responses for a list with
    ``popleft``: aiohttp must still create it as a deque and use no deque method a list
    lacks."""
    streams = inspect.getsource(aiohttp.streams.DataQueue)
    assert "self._buffer: collections.deque[tuple[_T, int]] = collections.deque()" in streams
    assert _deque_methods(streams, "self._buffer") <= {"append", "popleft"}
    protocol = inspect.getsource(aiohttp.client_proto)
    assert _deque_methods(protocol, "self._buffer") <= {"append", "popleft"}
    assert issubclass(aiohttp.client_proto.ResponseHandler, aiohttp.streams.DataQueue)


async def test_a_streamed_response_holds_short_queues_and_reads_whole(
    fake_openai: FakeOpenAI,
) -> None:
    """Chunked bodies of many pieces, read as they come: every byte, in order, with the
    connection's queue a short list."""
    words = [f"w{n} " for n in range(400)]
    fake_openai.script(Reply(text=words), Reply(text=words, interval=0.001))
    client = pooled_http_client(2)
    try:
        url = fake_openai.base_url + "/chat/completions"
        for _ in range(2):
            request = client.build_request("POST", url, json=STREAM)
            body = body_reader(await client.send(request, stream=True))
            assert isinstance(body, UpstreamBody)
            response = body._response
            assert type(response._protocol._buffer) is ShortQueue  # type: ignore[union-attr]
            received = bytearray()
            while piece := await body.read():
                received += piece
            text = "".join(
                json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                for line in received.decode().splitlines()
                if line.startswith("data: {")
            )
            assert text == "".join(words)
            await body.aclose()
    finally:
        await client.aclose()
