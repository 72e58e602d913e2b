"""sluice's upstream transport (httpx2 over aiohttp) against the fake OpenAI server."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from yarl import URL

from server.llm import transport
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


class ForwardProxy:
    """A proxy on loopback that records each request line and answers it itself: a request
    line in absolute form (``POST http://host/path``) is how a client talks to a proxy."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        self.request_lines.append(head.split("\r\n", 1)[0])
        length = [
            int(h.split(":")[1])
            for h in head.split("\r\n")
            if h.lower().startswith("content-length:")
        ]
        await reader.readexactly(length[0] if length else 0)
        body = b'{"via": "proxy"}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> ForwardProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_requests_go_through_the_proxy_the_environment_names(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY is honoured, and looked up once per upstream, not on every request."""
    lookups: list[str] = []
    looked_up = transport.env_proxy

    def counted(url: URL) -> object:
        lookups.append(str(url))
        return looked_up(url)

    monkeypatch.setattr(transport, "env_proxy", counted)
    upstream = fake_openai.base_url + "/chat/completions"
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        client = pooled_http_client(4)
        try:
            for _ in range(3):
                response = await client.post(upstream, json={"model": "m", "messages": []})
                assert response.json() == {"via": "proxy"}
        finally:
            await client.aclose()
    assert proxy.request_lines == [f"POST {upstream} HTTP/1.1"] * 3
    assert len(lookups) == 1


async def test_no_proxy_names_the_hosts_reached_directly(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_openai.script(Reply(text=["direct"]))
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        client = pooled_http_client(4)
        try:
            async with client.stream(
                "POST", fake_openai.base_url + "/chat/completions", json=STREAM
            ) as response:
                body = await response.aread()
        finally:
            await client.aclose()
    assert b"direct" in body and proxy.request_lines == []
