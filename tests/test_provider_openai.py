"""The openai provider against a fake OpenAI server on loopback, with the real SDK."""

from __future__ import annotations

import asyncio
import gc

import pytest

from plugins.providers.openai import OpenAIOptions, OpenAIProvider
from server.contract import FailureKind, Message, ProviderError
from server.llm.transport import provider_context
from tests.fakes.llm_upstreams import ARABIC_EMOJI, FakeOpenAI, Reply, refused_url

pytestmark = pytest.mark.anyio

KEY = "sk-test-0123456789abcdefSECRET"
PROMPT = [Message("system", "Be brief."), Message("user", "Hi")]


def make(base_url: str, key: str | None = KEY, **options: object) -> OpenAIProvider:
    environ = {"OPENAI_API_KEY": key} if key else {}
    return OpenAIProvider(
        OpenAIOptions(base_url=base_url, **options),  # type: ignore[arg-type]
        provider_context(environ, max_connections=8),
    )


async def collect(provider: OpenAIProvider) -> list[str]:
    stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
    deltas: list[str] = []
    try:
        async for delta in stream:
            deltas.append(delta)
    finally:
        await stream.aclose()
    return deltas


async def failure(provider: OpenAIProvider) -> tuple[list[str], ProviderError]:
    stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
    deltas: list[str] = []
    try:
        with pytest.raises(ProviderError) as caught:
            async for delta in stream:
                deltas.append(delta)
    finally:
        await stream.aclose()
    return deltas, caught.value


async def test_streams_deltas_usage_and_finish_reason(fake_openai: FakeOpenAI) -> None:
    provider = make(fake_openai.base_url)
    try:
        stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
        deltas = [d async for d in stream]
        await stream.aclose()
    finally:
        await provider.aclose()
    assert deltas == ["Hello", ", wor", "ld!"]
    assert stream.finish_reason == "stop"
    assert stream.usage is not None and stream.usage.output_tokens == 3
    (request,) = fake_openai.requests
    assert request.stream is True
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["max_tokens"] == 64  # a compatible server: max_tokens
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.headers["Authorization"] == f"Bearer {KEY}"


async def test_plain_call(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply(text=["one ", "two"]))
    provider = make(fake_openai.base_url, model="llama3")
    try:
        completion = await provider.complete(PROMPT, max_output_tokens=64, timeout=5)
    finally:
        await provider.aclose()
    assert completion.text == "one two"
    assert completion.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 16
    assert fake_openai.requests[0].stream is False
    assert fake_openai.requests[0].body["model"] == "llama3"


async def test_a_stream_is_sent_with_the_headers_the_sdk_sends(fake_openai: FakeOpenAI) -> None:
    """A stream's request is built from the SDK's URL and headers, not by the SDK at each
    call: it carries what the SDK's own call carries (auth, the SDK's headers, the
    configured ones), for every request, not only the first."""
    fake_openai.script(Reply(text=["a"]), Reply(text=["b"]), Reply(text=["c"]))
    provider = make(fake_openai.base_url, headers={"X-Team": "blue"})
    try:
        await provider.complete(PROMPT, max_output_tokens=64, timeout=5)
        assert await collect(provider) == ["b"]
        assert await collect(provider) == ["c"]
    finally:
        await provider.aclose()
    plain, first, second = fake_openai.requests
    assert [r.path for r in (plain, first, second)] == ["/v1/chat/completions"] * 3
    # A stream has no read timeout (the chain times its reads): no read-timeout header.
    differ = {"Content-Length", "Accept-Encoding", "X-Stainless-Read-Timeout"}
    sdk = {k: v for k, v in plain.headers.items() if k not in differ}
    assert sdk["Authorization"] == f"Bearer {KEY}" and sdk["X-Team"] == "blue"
    assert sdk["User-Agent"].startswith("AsyncOpenAI/Python")
    for streamed in (first, second):
        assert {k: v for k, v in streamed.headers.items() if k not in differ} == sdk
        assert streamed.headers["Accept-Encoding"] == "identity"
        assert "X-Stainless-Read-Timeout" not in streamed.headers


async def test_utf8_split_across_writes(fake_openai: FakeOpenAI) -> None:
    """Arabic and emoji whose bytes arrive in separate writes come out whole."""
    fake_openai.script(Reply(text=ARABIC_EMOJI, split_utf8=True))
    provider = make(fake_openai.base_url)
    try:
        deltas = await collect(provider)
    finally:
        await provider.aclose()
    assert deltas == ARABIC_EMOJI
    assert "\ufffd" not in "".join(deltas)


async def test_500_is_unavailable_and_not_retried_by_the_sdk(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply(status=500, message="boom"))
    provider = make(fake_openai.base_url)
    try:
        deltas, error = await failure(provider)
    finally:
        await provider.aclose()
    assert deltas == []
    assert error.kind is FailureKind.UNAVAILABLE and error.status == 500
    assert len(fake_openai.requests) == 1  # max_retries=0: the chain is the only retry loop


async def test_429_carries_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply(status=429, headers={"Retry-After": "7"}))
    provider = make(fake_openai.base_url)
    try:
        _, error = await failure(provider)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.RATE_LIMITED
    assert error.retry_after == 7.0
    assert len(fake_openai.requests) == 1


async def test_connection_refused() -> None:
    provider = make(refused_url() + "/v1")
    try:
        _, error = await failure(provider)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.UNAVAILABLE
    assert error.status is None  # nothing answered: not worth a plain call
    assert "could not be reached" in error.message  # not "did not answer in time"


async def test_streams_ask_for_an_uncompressed_body(fake_openai: FakeOpenAI) -> None:
    provider = make(fake_openai.base_url)
    try:
        assert await collect(provider) == ["Hello", ", wor", "ld!"]
    finally:
        await provider.aclose()
    assert fake_openai.requests[0].headers["Accept-Encoding"] == "identity"


async def test_a_compressed_stream_is_decoded_anyway(fake_openai: FakeOpenAI) -> None:
    """An upstream that gzips the stream although identity was asked for: the slow path."""
    fake_openai.script(Reply(text=ARABIC_EMOJI, gzip=True))
    provider = make(fake_openai.base_url)
    try:
        assert "".join(await collect(provider)) == "".join(ARABIC_EMOJI)
    finally:
        await provider.aclose()


async def test_an_open_stream_keeps_no_sdk_response(fake_openai: FakeOpenAI) -> None:
    """While an answer streams, only aiohttp's body reader is kept: the SDK's response and
    httpx2's request (headers, the whole prompt) and response are gone (memory per stream)."""
    fake_openai.script(Reply(text=["a", "b"], hang_at=1))
    provider = make(fake_openai.base_url)
    stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
    try:
        assert await stream.__anext__() == "a"
        gc.collect()
        held = {"Request", "Response", "AsyncAPIResponse"}
        assert not held & {type(o).__name__ for o in gc.get_objects()}
    finally:
        await stream.aclose()
        await provider.aclose()


async def test_cut_mid_stream_after_text(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply(text=["a", "b", "c", "d"], cut_at=2))
    provider = make(fake_openai.base_url)
    try:
        deltas, error = await failure(provider)
    finally:
        await provider.aclose()
    assert deltas == ["a", "b"]
    assert error.kind is FailureKind.UNAVAILABLE and error.status == 200


async def test_malformed_frame(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply(text=["a", "b"], malformed_at=1))
    provider = make(fake_openai.base_url)
    try:
        deltas, error = await failure(provider)
    finally:
        await provider.aclose()
    assert deltas == ["a"]
    assert error.kind is FailureKind.MALFORMED


async def test_streaming_refused_but_plain_works(fake_openai: FakeOpenAI) -> None:
    fake_openai.default = Reply(text=["plain ", "answer"], refuse_stream=True)
    provider = make(fake_openai.base_url)
    try:
        _, error = await failure(provider)
        completion = await provider.complete(PROMPT, max_output_tokens=64, timeout=5)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.STREAM_UNSUPPORTED
    assert completion.text == "plain answer"


async def test_refused_key_says_what_to_fix_without_the_key(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply(status=401, message=f"Incorrect API key provided: {KEY}"))
    provider = make(fake_openai.base_url)
    try:
        _, error = await failure(provider)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.AUTH
    assert "OPENAI_API_KEY" in error.message
    assert KEY not in error.message and KEY not in (error.detail or "")
    assert "\n" not in error.message
    # It reaches the person chatting: it says whose to fix, and names no internal address.
    assert "operator" in error.message
    assert str(fake_openai.port) not in error.message


async def test_unknown_model_says_what_to_fix(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(
        Reply(status=404, message="The model `gpt-9` does not exist", error_code="model_not_found")
    )
    provider = make(fake_openai.base_url, model="gpt-9")
    try:
        _, error = await failure(provider)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.BAD_REQUEST
    assert "'gpt-9'" in error.message and "OPENAI_MODEL" in error.message
    assert "operator" in error.message
    assert "127.0.0.1" not in error.message and str(fake_openai.port) not in error.message


async def test_missing_key() -> None:
    official = OpenAIProvider(OpenAIOptions(), provider_context({}))
    local = make("http://127.0.0.1:11434/v1", key=None)
    try:
        assert official.missing_configuration() == (
            "OPENAI_API_KEY is not set: export it, or remove openai from llm.providers"
        )
        with pytest.raises(ProviderError) as caught:
            await official.complete(PROMPT, max_output_tokens=8, timeout=1)
        assert caught.value.kind is FailureKind.AUTH
        # A self-hosted server (Ollama, llama.cpp) needs no key.
        assert local.missing_configuration() is None
    finally:
        await official.aclose()
        await local.aclose()


async def test_openai_itself_gets_max_completion_tokens() -> None:
    provider = OpenAIProvider(OpenAIOptions(), provider_context({"OPENAI_API_KEY": KEY}))
    try:
        assert "max_completion_tokens" in provider._body(PROMPT, 10)
    finally:
        await provider.aclose()


async def test_cancelled_read_closes_the_upstream_connection(fake_openai: FakeOpenAI) -> None:
    """The turn is cancelled while waiting for the next delta: the upstream sees its
    connection close within 1 s."""
    fake_openai.script(Reply(text=["a", "b"], hang_at=1))
    provider = make(fake_openai.base_url)
    try:
        stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
        assert await stream.__anext__() == "a"
        pending = asyncio.ensure_future(stream.__anext__())
        await fake_openai.wait_requests(1)
        await asyncio.sleep(0)  # the read is now waiting on the socket
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert await fake_openai.wait_closed(1, within=1.0) < 1.0
        await stream.aclose()
    finally:
        await provider.aclose()


async def test_aclose_closes_the_upstream_connection(fake_openai: FakeOpenAI) -> None:
    """The consumer stops between deltas (client left): aclose() ends the upstream request."""
    fake_openai.script(Reply(text=["a", "b"], hang_at=1))
    provider = make(fake_openai.base_url)
    try:
        stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
        assert await stream.__anext__() == "a"
        await stream.aclose()
        assert await fake_openai.wait_closed(1, within=1.0) < 1.0
        await stream.aclose()  # safe twice
        assert [d async for d in stream] == []
    finally:
        await provider.aclose()
