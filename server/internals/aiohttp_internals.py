"""Where sluice reaches into aiohttp (and multidict) for memory and CPU, and nowhere else.

Three tricks save memory for every open upstream stream and depend on aiohttp's internals:
the names of the attributes its response sets; that it keeps a request's headers for the life
of the response; and the deque in which a connection queues its responses
(:func:`compact_queues`). The first two going stale costs memory, never correctness.

One saves CPU on every upstream request: the proxy the environment names for a host is looked
up once (:func:`env_proxy`, aiohttp's own lookup from its ``helpers`` module) instead of on
every request, as ``ClientSession(trust_env=True)`` does in two trips to a worker thread (the
environment scanned, ``~/.netrc`` read and parsed): 5-9% of the server's CPU with 500-token
answers, more with short ones.

``tests/test_aiohttp_internals.py`` fails when aiohttp changes under any of them.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import aiohttp.helpers
import httpx2
from multidict import istr
from yarl import URL

from server.internals.short_queue import ShortQueue

__all__ = ["CompactResponse", "aiohttp_headers", "compact_queues", "env_proxy"]


def env_proxy(url: URL) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy (and its credentials) that ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY``
    and ``~/.netrc`` name for ``url``, found as aiohttp's ``trust_env`` finds it; ``(None,
    None)`` for a direct connection. Reads files: call it off the event loop."""
    try:
        return aiohttp.helpers.get_env_proxy_for_url(url)
    except LookupError:
        return None, None


# aiohttp keeps a request's headers (in ``response.request_info``) for as long as its
# response is open: for a stream, the whole answer. All but the body's length (the SDK's
# user agent and platform headers, the key) are the same on every request, so each distinct
# name and value is decoded once and shared. Names are ``istr``, whose lower-case form
# multidict then reuses instead of making one per header: together ~3 KiB less per open
# stream (docs/performance.md).
_SHARED_NAMES: dict[bytes, istr] = {}
_SHARED_VALUES: dict[bytes, str] = {}
_SHARED_MAX = 512


def _shared_name(raw: bytes) -> istr:
    name = _SHARED_NAMES.get(raw)
    if name is None:
        name = istr(raw.decode("latin-1"))
        if len(_SHARED_NAMES) < _SHARED_MAX:
            _SHARED_NAMES[raw] = name
    return name


def _shared_value(raw: bytes) -> str:
    value = _SHARED_VALUES.get(raw)
    if value is None:
        value = raw.decode("latin-1")
        if len(_SHARED_VALUES) < _SHARED_MAX:
            _SHARED_VALUES[raw] = value
    return value


def aiohttp_headers(request: httpx2.Request) -> list[tuple[istr, str]]:
    return [
        (
            _shared_name(name),
            value.decode("latin-1") if name.lower() == b"content-length" else _shared_value(value),
        )
        for name, value in request.headers.raw
    ]


class CompactResponse(aiohttp.ClientResponse):
    """aiohttp's response, with its attributes created in one fixed order.

    CPython lets all instances of a class share one table of attribute names (~260 bytes an
    instance) only while every instance adds its attributes in the same order. aiohttp's
    response adds some of them later, in an order that depends on timing (a request body
    written before or after the headers arrived), so under concurrent requests every
    response ended up with a dict of its own: 1,584 bytes, for as long as a stream is open.
    Creating them all up front, with the class's defaults, keeps the shared table. An
    attribute not listed here costs memory, never correctness.
    """

    _ATTRIBUTE_ORDER = (
        "method",
        "_real_url",
        "_url",
        "_output_size",
        "_stream_writer",
        "_ClientResponse__writer",
        "_request_info",
        "_timer",
        "_cache",
        "_traces",
        "_loop",
        "_session",
        "_resolve_charset",
        "_closed",
        "_protocol",
        "_connection",
        "version",
        "status",
        "reason",
        "_headers",
        "_raw_headers",
        "content",
        "_history",
        "_released",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        for name in self._ATTRIBUTE_ORDER:
            object.__setattr__(self, name, getattr(cls, name, None))
        super().__init__(*args, **kwargs)


def compact_queues(response: aiohttp.ClientResponse) -> None:
    """Put a short list in place of the deque (0.74 KiB) in which a connection queues its
    responses (the protocol's ``_buffer``): a connection carries one response at a time.

    The response's body keeps two more deques (its pieces and chunk boundaries) that are
    left alone: under a burst they hold one entry per HTTP chunk of a socket read, hundreds,
    and a list's ``popleft`` would make reading them quadratic.
    """
    # The response's own reference: its connection is released (None) as soon as a body
    # that came whole with the headers is read.
    protocol = response._protocol
    if protocol is not None:  # kept by the pool: its queue may be a short one already
        queue: Any = protocol._buffer
        if not isinstance(queue, ShortQueue):
            protocol._buffer = ShortQueue(queue)  # type: ignore[assignment]
