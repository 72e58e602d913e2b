"""Where the OpenAI provider reaches into the ``openai`` SDK for CPU, and nowhere else.

A streamed chat completion is the SDK's own request — its URL, auth and headers, worked out
by the SDK itself once per client — sent on the SDK's own HTTP client, and its failures are
the SDK's own error classes, built by the SDK's own function. What it leaves out is the SDK's
per-request machinery (its options copied twice, its headers merged again, the response
wrapped), which cost a streamed turn ~0.4 ms of CPU before the request left, about as much as
the rest of the request (docs/performance.md, "Second pass: counted in instructions").

It uses five private names: ``FinalRequestOptions``, ``AsyncOpenAI._build_headers``,
``_prepare_url``, ``_client`` and ``_make_status_error_from_response``.
``tests/test_openai_internals.py`` fails when the SDK changes under any of them.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
from openai._models import FinalRequestOptions

__all__ = ["StreamRequests"]


class StreamRequests:
    """Sends streamed ``POST /chat/completions`` requests for one SDK client."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._client = client
        self._target: tuple[str, list[tuple[str, str]]] | None = None

    def _url_and_headers(self) -> tuple[str, list[tuple[str, str]]]:
        # The same for every request (no per-request headers, no idempotency key on a
        # stream), so asked of the SDK once.
        if self._target is None:
            options = FinalRequestOptions.construct(
                method="post",
                url="/chat/completions",
                headers={"Accept-Encoding": "identity"},
                # No read timeout, as each stream's own (the fallback chain times reads): the
                # SDK then sends no X-Stainless-Read-Timeout.
                timeout=httpx2.Timeout(60.0, read=None),
            )
            headers = self._client._build_headers(options)
            url = str(self._client._prepare_url(options.url))
            self._target = (url, list(headers.multi_items()))
        return self._target

    async def send(self, body: dict[str, Any], timeout: float) -> httpx2.Response:
        """The response, its body unread; raises the SDK's ``APIError`` subclasses as the
        SDK's own call would (``APITimeoutError``, ``APIConnectionError``, a status error)."""
        url, headers = self._url_and_headers()
        http = self._client._client
        request = http.build_request(
            "POST",
            url,
            headers=headers,
            content=_json_body(body),
            timeout=httpx2.Timeout(timeout, read=None),
        )
        try:
            response = await http.send(request, stream=True)
        except httpx2.TimeoutException as failure:
            raise openai.APITimeoutError(request=request) from failure
        except httpx2.RequestError as failure:
            raise openai.APIConnectionError(request=request) from failure
        if response.status_code >= 400:
            await response.aread()  # the error's message is in the body
            raise self._client._make_status_error_from_response(response)
        return response


def _json_body(body: dict[str, Any]) -> bytes:
    """The body as the SDK serialises it (compact, UTF-8, no NaN)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
