"""The OpenAI SDK's private names the OpenAI provider relies on for CPU
(plugins/providers/openai_internals.py): these tests fail when the SDK changes under them."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from plugins.providers.openai_internals import StreamRequests
from tests.fakes.llm_upstreams import FakeOpenAI, Reply, refused_url

pytestmark = pytest.mark.anyio

BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}


def client(base_url: str, **options: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-test",
        base_url=base_url,
        max_retries=0,
        **options,  # type: ignore[arg-type]
    )


async def test_a_request_carries_what_the_sdk_own_call_carries(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply(text=["a"]), Reply(text=["b"]))
    sdk = client(fake_openai.base_url, default_headers={"X-Team": "blue"})
    try:
        own = await sdk.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        async for _ in own:
            pass
        response = await StreamRequests(sdk).send(dict(BODY), timeout=5)
        await response.aread()
        await response.aclose()
    finally:
        await sdk.close()
    own_request, ours = fake_openai.requests
    assert ours.path == own_request.path == "/v1/chat/completions"
    assert json.loads(json.dumps(ours.body)) == BODY
    # What differs on purpose: no read timeout on a stream (the chain times its reads), an
    # uncompressed body, and the length of a body the SDK wrote differently.
    differ = {"content-length", "accept-encoding", "x-stainless-read-timeout"}
    own_headers = {k.lower(): v for k, v in own_request.headers.items() if k.lower() not in differ}
    our_headers = {k.lower(): v for k, v in ours.headers.items() if k.lower() not in differ}
    assert our_headers == own_headers
    assert own_headers["authorization"] == "Bearer sk-test" and own_headers["x-team"] == "blue"
    assert ours.headers["Accept-Encoding"] == "identity"


async def test_failures_are_the_sdk_own_error_classes(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply(status=429, message="slow down"))
    sdk = client(fake_openai.base_url)
    try:
        with pytest.raises(openai.RateLimitError) as limited:
            await StreamRequests(sdk).send(dict(BODY), timeout=5)
        assert "slow down" in str(limited.value)
    finally:
        await sdk.close()
    unreachable = client(refused_url())
    try:
        with pytest.raises(openai.APIConnectionError) as refused:
            await StreamRequests(unreachable).send(dict(BODY), timeout=5)
        assert isinstance(refused.value.__cause__, httpx2.ConnectError)
    finally:
        await unreachable.close()
