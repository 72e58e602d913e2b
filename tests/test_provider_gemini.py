"""The gemini provider against a fake Gemini server on loopback, with the real SDK."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plugins.providers.gemini import GeminiOptions, GeminiProvider, to_gemini
from server.contract import FailureKind, Message, ProviderError
from server.llm.transport import provider_context
from tests.fakes.llm_upstreams import ARABIC_EMOJI, FakeGemini, Reply, refused_url

pytestmark = pytest.mark.anyio

KEY = "AIzaSyTEST0123456789abcdefghijklmnop"
PROMPT = [
    Message("system", "Be brief."),
    Message("user", "Hi"),
    Message("assistant", "Hello."),
    Message("system", "Answer in French."),
    Message("user", "How are you?"),
    Message("user", "And the weather?"),
]
EXPECTED_CONTENTS = [
    {"role": "user", "parts": [{"text": "Hi"}]},
    {"role": "model", "parts": [{"text": "Hello."}]},
    {"role": "user", "parts": [{"text": "How are you?"}, {"text": "And the weather?"}]},
]
EXPECTED_SYSTEM = "Be brief.\n\nAnswer in French."


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as server:
        yield server  # type: ignore[misc]


def make(base_url: str, environ: dict[str, str] | None = None, **options: object) -> GeminiProvider:
    return GeminiProvider(
        GeminiOptions(base_url=base_url, **options),  # type: ignore[arg-type]
        provider_context({"GEMINI_API_KEY": KEY} if environ is None else environ),
    )


async def failure(provider: GeminiProvider) -> tuple[list[str], ProviderError]:
    stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
    deltas: list[str] = []
    try:
        with pytest.raises(ProviderError) as caught:
            async for delta in stream:
                deltas.append(delta)
    finally:
        await stream.aclose()
    return deltas, caught.value


def test_roles_and_system_prompt_mapping() -> None:
    system, contents = to_gemini(PROMPT)
    assert system == EXPECTED_SYSTEM
    assert contents == EXPECTED_CONTENTS


async def test_streams_with_roles_mapped(fake: FakeGemini) -> None:
    provider = make(fake.url)
    try:
        stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
        deltas = [d async for d in stream]
        await stream.aclose()
    finally:
        await provider.aclose()
    assert deltas == ["Hello", ", wor", "ld!"]
    assert stream.finish_reason == "stop"
    assert stream.usage is not None and stream.usage.input_tokens == 9
    (request,) = fake.requests
    assert request.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert request.headers["X-Goog-Api-Key"] == KEY
    assert request.body["contents"] == EXPECTED_CONTENTS
    assert request.body["systemInstruction"] == {"parts": [{"text": EXPECTED_SYSTEM}]}
    assert request.body["generationConfig"]["maxOutputTokens"] == 64


async def test_plain_call_through_the_sdk(fake: FakeGemini) -> None:
    fake.script(Reply(text=["Bonjour ", "!"]))
    provider = make(fake.url, {"GOOGLE_API_KEY": KEY}, model="gemini-2.0-flash")
    try:
        completion = await provider.complete(PROMPT, max_output_tokens=64, timeout=5)
    finally:
        await provider.aclose()
    assert completion.text == "Bonjour !"
    assert completion.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 11
    (request,) = fake.requests
    assert request.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert request.headers["X-Goog-Api-Key"] == KEY  # GOOGLE_API_KEY works too
    assert request.body["contents"] == EXPECTED_CONTENTS
    assert request.body["systemInstruction"]["parts"] == [{"text": EXPECTED_SYSTEM}]
    assert request.body["generationConfig"]["maxOutputTokens"] == 64


async def test_utf8_split_across_writes(fake: FakeGemini) -> None:
    fake.script(Reply(text=ARABIC_EMOJI, split_utf8=True))
    provider = make(fake.url)
    try:
        stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
        deltas = [d async for d in stream]
        await stream.aclose()
    finally:
        await provider.aclose()
    assert deltas == ARABIC_EMOJI
    assert "\ufffd" not in "".join(deltas)


async def test_500_is_unavailable_and_not_retried(fake: FakeGemini) -> None:
    fake.script(Reply(status=500))
    provider = make(fake.url)
    try:
        _, error = await failure(provider)
        with pytest.raises(ProviderError) as plain:
            fake.script(Reply(status=503))
            await provider.complete(PROMPT, max_output_tokens=8, timeout=5)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.UNAVAILABLE and error.status == 500
    assert plain.value.kind is FailureKind.UNAVAILABLE and plain.value.status == 503
    assert len(fake.requests) == 2  # one each: no SDK retries


async def test_429_carries_retry_after(fake: FakeGemini) -> None:
    fake.script(Reply(status=429, headers={"Retry-After": "12"}))
    provider = make(fake.url)
    try:
        _, error = await failure(provider)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.RATE_LIMITED and error.retry_after == 12.0


async def test_connection_refused() -> None:
    provider = make(refused_url())
    try:
        _, error = await failure(provider)
        with pytest.raises(ProviderError) as plain:
            await provider.complete(PROMPT, max_output_tokens=8, timeout=5)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.UNAVAILABLE and error.status is None
    assert plain.value.kind is FailureKind.UNAVAILABLE


async def test_cut_mid_stream(fake: FakeGemini) -> None:
    fake.script(Reply(text=["a", "b", "c"], cut_at=2))
    provider = make(fake.url)
    try:
        deltas, error = await failure(provider)
    finally:
        await provider.aclose()
    assert deltas == ["a", "b"]
    assert error.kind is FailureKind.UNAVAILABLE and error.status == 200


async def test_malformed_frame(fake: FakeGemini) -> None:
    fake.script(Reply(text=["a", "b"], malformed_at=1))
    provider = make(fake.url)
    try:
        deltas, error = await failure(provider)
    finally:
        await provider.aclose()
    assert deltas == ["a"]
    assert error.kind is FailureKind.MALFORMED


async def test_streaming_refused_but_plain_works(fake: FakeGemini) -> None:
    fake.default = Reply(text=["plain"], refuse_stream=True)
    provider = make(fake.url)
    try:
        _, error = await failure(provider)
        completion = await provider.complete(PROMPT, max_output_tokens=8, timeout=5)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.STREAM_UNSUPPORTED
    assert completion.text == "plain"


async def test_refused_key_says_what_to_fix_without_the_key(fake: FakeGemini) -> None:
    fake.script(
        Reply(
            status=400,
            message="API key not valid. Please pass a valid API key.",
            error_code="API_KEY_INVALID",
        ),
        Reply(status=400, message="API key not valid.", error_code="API_KEY_INVALID"),
    )
    provider = make(fake.url)
    try:
        _, error = await failure(provider)
        with pytest.raises(ProviderError) as plain:
            await provider.complete(PROMPT, max_output_tokens=8, timeout=5)
    finally:
        await provider.aclose()
    for err in (error, plain.value):
        assert err.kind is FailureKind.AUTH
        assert "GEMINI_API_KEY" in err.message
        assert KEY not in err.message and KEY not in (err.detail or "")
        assert "operator" in err.message and str(fake.port) not in err.message


async def test_unknown_model_says_what_to_fix(fake: FakeGemini) -> None:
    fake.script(Reply(status=404, message="models/gemini-9 is not found"))
    provider = make(fake.url, model="gemini-9")
    try:
        _, error = await failure(provider)
    finally:
        await provider.aclose()
    assert error.kind is FailureKind.BAD_REQUEST
    assert "'gemini-9'" in error.message and "GEMINI_MODEL" in error.message
    assert "operator" in error.message and str(fake.port) not in error.message


async def test_missing_key() -> None:
    provider = GeminiProvider(GeminiOptions(), provider_context({}))
    try:
        assert provider.missing_configuration() == (
            "GEMINI_API_KEY (or GOOGLE_API_KEY) is not set: export it, or remove gemini "
            "from llm.providers"
        )
        with pytest.raises(ProviderError) as caught:
            await provider.complete(PROMPT, max_output_tokens=8, timeout=1)
        assert caught.value.kind is FailureKind.AUTH
    finally:
        await provider.aclose()


async def test_cancelled_read_closes_the_upstream_connection(fake: FakeGemini) -> None:
    fake.script(Reply(text=["a", "b"], hang_at=1))
    provider = make(fake.url)
    try:
        stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
        assert await stream.__anext__() == "a"
        pending = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert await fake.wait_closed(1, within=1.0) < 1.0
        await stream.aclose()
    finally:
        await provider.aclose()


async def test_aclose_closes_the_upstream_connection(fake: FakeGemini) -> None:
    fake.script(Reply(text=["a", "b"], hang_at=1))
    provider = make(fake.url)
    try:
        stream = provider.stream(PROMPT, max_output_tokens=64, timeout=5)
        assert await stream.__anext__() == "a"
        await stream.aclose()
        assert await fake.wait_closed(1, within=1.0) < 1.0
    finally:
        await provider.aclose()


def test_a_server_without_a_gemini_key_never_imports_its_sdk(tmp_path: Path) -> None:
    """``google.genai`` took 0.7 s of CPU at every server start, key or not; it is imported
    only by an instance that has a key."""
    probe = (
        "import sys\n"
        "from server.app import build_state\n"
        "from server.config import load_settings\n"
        "build_state(load_settings({}))\n"
        "print('google.genai' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "False"
