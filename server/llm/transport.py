"""The upstream HTTP transport both providers hand their SDK: httpx2's API over aiohttp.

Both SDKs speak httpx2; aiohttp reads a streamed frame for about a third of the CPU httpx2's
own transport needs (``bench/provider_cpu.py``). The openai SDK ships such a transport
(``openai.DefaultAioHttpClient``); this one is ours for two reasons, both measured:

* **Memory per open stream.** The response's body is exposed as :class:`UpstreamBody` in
  ``response.extensions``, so a provider can keep only aiohttp's body reader for the life of a
  stream and let go of the SDK's response wrapper, httpx2's request and response models
  (with the request's headers and JSON body) and five layers of async generators as soon as
  the headers are in: 66 → 51 KiB of RSS per open stream (``docs/performance.md``).
* **Errors that say what happened.** The vendored transport calls every connection error a
  ``ConnectTimeout``; here a refused connection is a ``ConnectError`` and only a timeout is a
  timeout, so users are told "could not be reached", not "did not answer in time".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping

import aiohttp
import httpx2
from multidict import istr
from yarl import URL

from server.contract import ProviderContext
from server.internals.aiohttp_internals import (
    CompactResponse,
    aiohttp_headers,
    compact_queues,
    env_proxy,
)
from server.provider_kit import BODY

__all__ = [
    "AiohttpTransport",
    "UpstreamBody",
    "limits_for",
    "pooled_http_client",
    "provider_context",
]

# Keep-alive around 100, and a cap matched to what the server admits: the pool does work
# proportional to its connections on every request, and a large keep-alive pool stalls the loop.
KEEPALIVE_CONNECTIONS = 100


def _as_httpx_error(error: aiohttp.ClientError) -> httpx2.TransportError:
    """aiohttp's failure as the httpx2 exception both SDKs map to their own."""
    return _mapped(error)(str(error) or type(error).__name__)


def _mapped(error: aiohttp.ClientError) -> type[httpx2.TransportError]:
    # Most specific first: several of aiohttp's classes derive from one another.
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx2.ConnectTimeout
    if isinstance(error, aiohttp.ServerTimeoutError):
        return httpx2.ReadTimeout
    if isinstance(error, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return httpx2.ProxyError
    if isinstance(error, aiohttp.ClientConnectorError):
        return httpx2.ConnectError
    if isinstance(error, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx2.UnsupportedProtocol
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx2.RemoteProtocolError
    if isinstance(error, aiohttp.ClientPayloadError | aiohttp.ClientOSError):
        return httpx2.ReadError
    return httpx2.NetworkError


# Adds trace context headers (traceparent) for the current span to a carrier: a Tracer's
# ``inject`` when traces are on (server.observability.tracing).
Inject = Callable[[MutableMapping[str, str]], None]

# A proxy's URL and credentials, or (None, None) for a direct connection.
_Proxy = tuple[URL | None, aiohttp.BasicAuth | None]


class UpstreamBody(httpx2.AsyncByteStream):
    """A response body read straight from aiohttp: ``read()`` returns what has arrived
    (``b""`` at the end); ``aclose()`` gives the connection back to the pool when the body was
    read to its end, and closes it otherwise (the upstream sees the stream stop)."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def read(self) -> bytes:
        # try/except rather than a context manager: this frame is suspended for the whole
        # life of an idle stream, and a context manager would be kept alive with it.
        try:
            return await self._response.content.readany()
        except aiohttp.ClientError as error:
            raise _as_httpx_error(error) from error
        except asyncio.CancelledError:
            # A read given up on leaves the body half-read, so the connection cannot go
            # back to the pool: close it now, and the upstream stops generating at once.
            self._response.close()
            raise

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await self.read():
            yield chunk

    async def aclose(self) -> None:
        try:
            self._response.release()
            await self._response.wait_for_close()
        except aiohttp.ClientError as error:
            raise _as_httpx_error(error) from error


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """One aiohttp session (created on first use, in the running loop) with its connection
    pool sized by ``limits``. Certificates are verified with httpx2's defaults.

    Proxies come from the usual environment variables (``HTTPS_PROXY``, ``NO_PROXY``), read
    once for each upstream origin, the first time it is asked (the environment of a running
    server does not change). ``~/.netrc`` is read for a proxy's credentials only: both SDKs
    send their own key, and aiohttp refuses a request that has both an ``Authorization``
    header and netrc credentials for its host."""

    def __init__(self, limits: httpx2.Limits, inject: Inject | None = None) -> None:
        self._limits = limits
        self._inject = inject
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str | None, int | None], _Proxy] = {}

    async def _proxy_for(self, url: URL) -> _Proxy:
        origin = (url.scheme, url.host, url.port)
        proxy = self._proxies.get(origin)
        if proxy is None:
            proxy = self._proxies[origin] = await asyncio.to_thread(env_proxy, url)
        return proxy

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            limit_per_host=0,
            keepalive_timeout=self._limits.keepalive_expiry or 30.0,
            ssl=httpx2.create_ssl_context(),
        )
        # trust_env stays off: it looks the proxy up again on every request (_proxy_for).
        return aiohttp.ClientSession(connector=connector, response_class=CompactResponse)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._session is None:
            self._session = self._open_session()
        timeout = request.extensions.get("timeout", {})
        data: bytes | httpx2.AsyncByteStream | None
        try:
            data = request.content or None
        except httpx2.RequestNotRead:
            data = request.stream  # type: ignore[assignment]
            request.headers.pop("transfer-encoding", None)  # aiohttp frames the body itself
        url = URL(str(request.url))
        proxy, proxy_auth = await self._proxy_for(url)
        headers = aiohttp_headers(request)
        if self._inject is not None:
            # Added here rather than to the request's headers: each value is new, and
            # aiohttp_headers shares the values that repeat from request to request.
            carrier: dict[str, str] = {}
            self._inject(carrier)
            headers.extend((istr(name), value) for name, value in carrier.items())
        try:
            response = await self._session.request(
                request.method,
                url,
                proxy=proxy,
                proxy_auth=proxy_auth,
                headers=headers,
                data=data,
                allow_redirects=False,
                auto_decompress=False,  # httpx2 decodes, as it would with its own transport
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
            )
        except aiohttp.ClientError as error:
            raise _as_httpx_error(error) from error
        compact_queues(response)
        body = UpstreamBody(response)
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1", BODY: body}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx2.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=body,
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def limits_for(max_connections: int) -> httpx2.Limits:
    return httpx2.Limits(
        max_connections=max_connections,
        max_keepalive_connections=min(KEEPALIVE_CONNECTIONS, max_connections),
        keepalive_expiry=30.0,
    )


def pooled_http_client(max_connections: int, inject: Inject | None = None) -> httpx2.AsyncClient:
    """The HTTP client providers hand their SDK (``ProviderContext.http_client``): httpx2's
    API on aiohttp. Proxy variables are read by aiohttp; ``inject`` adds the trace context
    to every request."""
    return httpx2.AsyncClient(
        transport=AiohttpTransport(limits_for(max_connections), inject),
        timeout=httpx2.Timeout(60.0, connect=10.0),
        follow_redirects=True,
        trust_env=False,
    )


def provider_context(
    environ: Mapping[str, str],
    *,
    name: str = "",
    max_connections: int = 256,
    inject: Inject | None = None,
) -> ProviderContext:
    """A :class:`ProviderContext` whose ``http_client()`` is :func:`pooled_http_client`."""
    return ProviderContext(
        environ=environ,
        max_connections=max_connections,
        name=name,
        http_client=lambda: pooled_http_client(max_connections, inject),
    )
