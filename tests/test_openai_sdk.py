"""The OpenAI-compatible API driven by OpenAI's own Python SDK (sync and async), against the
real server (``python -m server``) whose providers are fake OpenAI and Gemini upstreams.

What the SDK sees (its typed objects and exception classes) and what reached the upstream
(the fakes record every request) are both checked: a parameter that never reached the
provider, or a frame the SDK cannot read, fails here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.fakes.llm_upstreams import ARABIC_EMOJI, Reply
from tests.fakes.threaded import ThreadedFakes, openai_gemini_env
from tests.support import upstream_server
from tests.support.server import RunningServer
from tests.support.sse import bearer, events, json_request, request
from tests.test_identity_and_input import cookie_for

AUTH = bearer("tok-alice")
USER = [{"role": "user", "content": "Hello there"}]


# The fixtures of tests/support/upstream_server.py, named here so that pytest finds them.
upstreams = upstream_server.upstreams
server = upstream_server.server
fakes = upstream_server.fakes


def _env(fakes: ThreadedFakes, **extra: str) -> dict[str, str]:
    return openai_gemini_env(fakes, **{"SLUICE_LLM__FIRST_TOKEN_TIMEOUT_SECONDS": "5", **extra})


@pytest.fixture(scope="module")
def server_env(upstreams: ThreadedFakes) -> dict[str, str]:
    return _env(upstreams)


_CLIENTS: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def client(server: RunningServer, token: str = "tok-alice") -> openai.OpenAI:
    # No SDK retries: each test sees the first answer, as sluice sent it.
    made = openai.OpenAI(base_url=server.url + "/v1", api_key=token, max_retries=0)
    _CLIENTS.append(made)
    return made


def test_streaming_in_openais_format(server: RunningServer, fakes: ThreadedFakes) -> None:
    fakes.openai.default = Reply(text=ARABIC_EMOJI, split_utf8=True)
    raw = client(server).chat.completions.with_raw_response.create(
        model="sluice",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    stream_id = raw.headers["x-stream-id"]
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == f"chatcmpl-{stream_id}" for c in chunks)
    assert all(c.object == "chat.completion.chunk" and c.model == "sluice" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(ARABIC_EMOJI)
    finish, usage = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason == "stop" and not finish.choices[0].delta.content
    # The upstream's own figures (the fake reports 11 prompt tokens, one per text frame).
    assert usage.choices == [] and usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (11, 5)
    assert usage.usage.total_tokens == 16

    # The same answer in sluice's own format, from the stream log.
    resumed = request(server.url, "GET", f"/api/streams/{stream_id}", headers=AUTH)
    evs = events(resumed.read_all())
    assert evs[-1]["type"] == "complete" and evs[-1]["message"] == text
    assert evs[-1]["provider"] == "openai"


def test_the_stream_ends_with_done(server: RunningServer, fakes: ThreadedFakes) -> None:
    response = request(
        server.url,
        "POST",
        "/v1/chat/completions",
        body={"model": "sluice", "messages": USER, "stream": True},
        headers=AUTH,
    )
    raw = response.body().decode()
    blocks = [b for b in raw.split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks)
    assert blocks[-1] == "data: [DONE]"
    assert "usage" not in json.loads(blocks[-2][6:])  # not asked for


def test_not_streaming(server: RunningServer, fakes: ThreadedFakes) -> None:
    raw = client(server).chat.completions.with_raw_response.create(model="sluice", messages=USER)
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id == "chatcmpl-" + raw.headers["x-stream-id"]
    assert completion.choices[0].message.content == "Hello, world!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 3)
    assert raw.headers["x-sluice-provider"] == "openai"


def test_async_client_streams_and_completes(server: RunningServer, fakes: ThreadedFakes) -> None:
    async def run() -> tuple[str, str | None]:
        async with openai.AsyncOpenAI(
            base_url=server.url + "/v1", api_key="tok-alice", max_retries=0
        ) as aclient:
            stream = await aclient.chat.completions.create(
                model="openai", messages=USER, stream=True
            )
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            plain = await aclient.chat.completions.create(model="gpt-4o-mini", messages=USER)
            return "".join(parts), plain.choices[0].message.content

    assert asyncio.run(run()) == ("Hello, world!", "Hello, world!")


def test_messages_become_the_prompt(server: RunningServer, fakes: ThreadedFakes) -> None:
    client(server).chat.completions.create(
        model="sluice",
        messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ],
    )
    sent = fakes.openai.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "system", "user", "assistant", "user"]
    assert sent[0]["content"].startswith("You are a helpful assistant")  # the server's first
    assert [m["content"] for m in sent[1:]] == ["Answer in French.", "one", "two", "three"]
    # Without X-Session-Id nothing is stored: the client holds the conversation.
    status, listing, _ = json_request(server.url, "GET", "/api/sessions/alice", headers=AUTH)
    assert status == 200 and listing is not None
    assert not any(s["title"] == "three" for s in listing["sessions"])


def test_parameters_reach_openai(fakes: ThreadedFakes, start_server: Any) -> None:
    # Streaming refused once: the plain call that follows must carry them too. (A server of
    # its own: the refusal makes the provider skip streaming for a while.)
    fakes.openai.script(Reply(), Reply(refuse_stream=True), Reply())
    params: dict[str, Any] = {"temperature": 0.25, "top_p": 0.5, "stop": ["END", "FIN"]}
    sdk = client(start_server(_env(fakes)))
    sdk.chat.completions.create(model="openai", messages=USER, max_tokens=7, stream=True, **params)
    sdk.chat.completions.create(model="openai", messages=USER, max_completion_tokens=9, **params)
    bodies = [r.body for r in fakes.openai.requests]
    assert [r.stream for r in fakes.openai.requests] == [True, True, False]
    for body, limit in zip(bodies, (7, 9, 9), strict=True):
        # The fake is not api.openai.com: sluice sends the limit as max_tokens.
        assert body["max_tokens"] == limit
        assert (body["temperature"], body["top_p"], body["stop"]) == (0.25, 0.5, ["END", "FIN"])
    # Without parameters, none is sent: the upstream's defaults apply.
    sdk.chat.completions.create(model="openai", messages=USER)
    assert not {"temperature", "top_p", "stop"} & set(fakes.openai.requests[-1].body)
    assert fakes.openai.requests[-1].body["max_tokens"] == 1024  # llm.max_output_tokens


def test_parameters_reach_gemini(fakes: ThreadedFakes, start_server: Any) -> None:
    fakes.gemini.script(Reply(), Reply(refuse_stream=True), Reply())
    sdk = client(start_server(_env(fakes)))
    for stream in (True, False):
        answer = sdk.chat.completions.create(
            model="gemini",
            messages=USER,
            temperature=0.3,
            top_p=0.9,
            stop="END",
            max_tokens=5000,  # above llm.max_output_tokens: the configured limit holds
            stream=stream,
        )
        if stream:
            list(answer)  # type: ignore[call-overload]
    assert not fakes.openai.requests  # model "gemini": that provider alone
    assert [r.stream for r in fakes.gemini.requests] == [True, True, False]
    for recorded in fakes.gemini.requests:
        config = recorded.body["generationConfig"]
        assert config["temperature"] == 0.3 and config["topP"] == 0.9
        assert config["stopSequences"] == ["END"] and config["maxOutputTokens"] == 1024


def test_a_stored_session_with_x_session_id(server: RunningServer, fakes: ThreadedFakes) -> None:
    fakes.openai.script(Reply(text=["Try ", "Ginza."]), Reply(text=["Sushi ", "too."]))
    sdk = client(server)
    session = {"X-Session-Id": "s_sdk_session"}
    ask = [{"role": "user", "content": "Find me a restaurant in Tokyo"}]
    sdk.chat.completions.create(model="sluice", messages=ask, extra_headers=session)
    # The client sends only its new message: the history comes from the server.
    follow = [{"role": "user", "content": "What about sushi?"}]
    sdk.chat.completions.create(model="sluice", messages=follow, extra_headers=session)
    sent = fakes.openai.requests[-1].body["messages"]
    assert [m["content"] for m in sent[1:]] == [
        "Find me a restaurant in Tokyo",
        "Try Ginza.",
        "What about sushi?",
    ]
    assert "location: Tokyo" in sent[0]["content"]  # what the session remembers
    status, saved, _ = json_request(
        server.url, "GET", "/api/sessions/alice/s_sdk_session", headers=AUTH
    )
    assert status == 200 and saved is not None
    assert [(m["role"], m["content"], m["status"]) for m in saved["messages"]] == [
        ("user", "Find me a restaurant in Tokyo", "complete"),
        ("assistant", "Try Ginza.", "complete"),
        ("user", "What about sushi?", "complete"),
        ("assistant", "Sushi too.", "complete"),
    ]


def test_one_turn_at_a_time_in_a_session(server: RunningServer, fakes: ThreadedFakes) -> None:
    fakes.openai.script(Reply(text=["a", "b"], hang_at=1))
    sdk = client(server)
    session = {"X-Session-Id": "s_sdk_busy"}
    first = sdk.chat.completions.with_raw_response.create(
        model="sluice", messages=USER, stream=True, extra_headers=session
    )
    stream = first.parse()
    try:
        next(c for c in stream if c.choices and c.choices[0].delta.content)
        with pytest.raises(openai.ConflictError) as busy:
            sdk.chat.completions.create(model="sluice", messages=USER, extra_headers=session)
        assert busy.value.status_code == 409
        assert busy.value.code == "turn_in_progress"
        assert busy.value.response.headers["x-stream-id"] == first.headers["x-stream-id"]
    finally:
        stream.close()


def test_errors_are_the_sdks_own_classes(server: RunningServer, fakes: ThreadedFakes) -> None:
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        client(server, token="tok-nobody").chat.completions.create(model="sluice", messages=USER)
    assert unauthenticated.value.status_code == 401
    assert unauthenticated.value.type == "authentication_error"

    sdk = client(server)
    with pytest.raises(openai.NotFoundError) as unknown:
        sdk.chat.completions.create(model="gpt-17", messages=USER)
    assert unknown.value.code == "model_not_found" and unknown.value.param == "model"

    tools = [{"type": "function", "function": {"name": "current_time", "parameters": {}}}]
    for extra, param in (({"tools": tools}, "tools"), ({"n": 2}, "n")):
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(model="sluice", messages=USER, **extra)
        assert refused.value.param == param and param in refused.value.message
    # A server tool's name taken by a client tool (above), an image by address (here).
    image = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    with pytest.raises(openai.BadRequestError) as no_images:
        sdk.chat.completions.create(
            model="sluice",
            messages=[{"role": "user", "content": image}],  # type: ignore[list-item,misc]
        )
    assert no_images.value.param == "messages[0].content[0].image_url"
    assert "fetches nothing" in no_images.value.message
    assert not fakes.openai.requests  # nothing refused reached a provider


def test_no_provider_before_any_text_is_an_http_error(
    server: RunningServer, fakes: ThreadedFakes
) -> None:
    refused = Reply(status=401, message="bad key")
    fakes.openai.default = refused
    with pytest.raises(openai.APIStatusError) as failed:
        client(server).chat.completions.create(model="openai", messages=USER, stream=True)
    assert failed.value.status_code == 502
    assert failed.value.code == "upstream_unavailable"
    assert "sk-test" not in failed.value.message


def test_an_error_mid_stream_raises_api_error(server: RunningServer, fakes: ThreadedFakes) -> None:
    fakes.openai.script(Reply(text=["one ", "two ", "three"], cut_at=2))
    stream = client(server).chat.completions.create(model="openai", messages=USER, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as interrupted:
        for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "one two "
    assert interrupted.value.code == "upstream_interrupted"
    assert "interrupted" in interrupted.value.message


def test_a_client_that_leaves_cancels_the_turn(server: RunningServer, fakes: ThreadedFakes) -> None:
    """stream.on_disconnect is "continue" here (the default), and still the upstream request
    closes within a second of the client leaving."""
    fakes.openai.script(Reply(text=["first ", "never"], hang_at=1))
    stream = client(server).chat.completions.create(
        model="openai", messages=USER, stream=True, extra_headers={"X-Session-Id": "s_left"}
    )
    first = next(c for c in stream if c.choices and c.choices[0].delta.content)
    assert first.choices[0].delta.content == "first "
    stream.close()
    assert fakes.run(fakes.openai.wait_closed(1, within=1.0)) < 1.0
    status, saved, _ = json_request(server.url, "GET", "/api/sessions/alice/s_left", headers=AUTH)
    assert status == 200 and saved is not None
    assert saved["messages"][-1]["status"] == "incomplete"


def test_models_are_listed(server: RunningServer) -> None:
    models = client(server).models.list()
    names = [m.id for m in models.data]
    assert names == ["sluice", "openai", "gpt-4o-mini", "gemini", "gemini-2.5-flash"]
    assert client(server).models.retrieve("gemini").owned_by == "gemini"
    with pytest.raises(openai.AuthenticationError):
        client(server, token="nope").models.list()


def test_the_cookie_identity_and_its_origin_rule(server: RunningServer) -> None:
    cookie = cookie_for(server)
    body = {"model": "sluice", "messages": USER}
    same = {"Cookie": cookie, "Origin": server.url}
    status, answer, _ = json_request(
        server.url, "POST", "/v1/chat/completions", body=body, headers=same
    )
    assert status == 200 and answer is not None and answer["object"] == "chat.completion"
    other = {"Cookie": cookie, "Origin": "https://elsewhere.example"}
    status, refused, _ = json_request(
        server.url, "POST", "/v1/chat/completions", body=body, headers=other
    )
    assert status == 403 and refused is not None
    assert refused["error"]["type"] == "permission_error"
    assert set(refused["error"]) >= {"message", "type", "param", "code"}


def test_rate_limits_are_429_with_retry_after(upstreams: ThreadedFakes, start_server: Any) -> None:
    limited = start_server(
        _env(
            upstreams,
            SLUICE_RATE_LIMIT__BURST="1",
            SLUICE_RATE_LIMIT__REQUESTS_PER_MINUTE="1",
        )
    )
    sdk = client(limited)
    sdk.chat.completions.create(model="sluice", messages=USER)
    for stream in (False, True):
        with pytest.raises(openai.RateLimitError) as limit:
            sdk.chat.completions.create(model="sluice", messages=USER, stream=stream)
        assert limit.value.code == "rate_limited"
        assert int(limit.value.response.headers["retry-after"]) >= 1


def test_heartbeats_and_an_error_after_the_headers(fakes: ThreadedFakes, start_server: Any) -> None:
    """Headers wait for the first text only up to stream.heartbeat_seconds; an error after
    that ends the stream with an error frame and no [DONE]. Idle, the stream carries SSE
    comments."""
    fakes.openai.default = Reply(hang_before_headers=True)
    slow = start_server(
        _env(
            fakes,
            SLUICE_LLM__PROVIDERS="openai",
            SLUICE_STREAM__HEARTBEAT_SECONDS="0.3",
            SLUICE_LLM__FIRST_TOKEN_TIMEOUT_SECONDS="1.5",
        )
    )
    try:
        response = request(
            slow.url,
            "POST",
            "/v1/chat/completions",
            body={"model": "sluice", "messages": USER, "stream": True},
            headers=AUTH,
        )
        assert response.status == 200
        raw = response.body().decode()
    finally:
        fakes.openai.default = Reply()
    blocks = [b for b in raw.split("\n\n") if b]
    assert json.loads(blocks[0][6:])["choices"][0]["delta"]["role"] == "assistant"
    assert ": ping" in blocks
    last = json.loads(blocks[-1].removeprefix("data: "))
    assert last["error"]["code"] in ("upstream_unavailable", "timeout")
    assert "data: [DONE]" not in blocks


def test_too_many_streams_is_429(fakes: ThreadedFakes, start_server: Any) -> None:
    """The per-user cap of answers in progress: RateLimitError, code too_many_streams, with
    the same Retry-After as sluice's own JSON endpoint gives."""
    fakes.openai.script(Reply(text=["a", "b"], hang_at=1))
    capped = start_server(_env(fakes, SLUICE_LIMITS__MAX_STREAMS_PER_USER="1"))
    sdk = client(capped)
    running = sdk.chat.completions.create(model="openai", messages=USER, stream=True)
    try:
        next(c for c in running if c.choices and c.choices[0].delta.content)
        with pytest.raises(openai.RateLimitError) as capped_out:
            sdk.chat.completions.create(model="openai", messages=USER)
        assert capped_out.value.code == "too_many_streams"
        assert capped_out.value.response.headers["retry-after"] == "5"
    finally:
        running.close()
