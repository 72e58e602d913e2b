"""Anthropic in the fallback chain, end to end: the real server (``python -m server``) with
the real SDKs talking to fake Anthropic and OpenAI upstreams on loopback, configured by the
well-known names (``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``, ``SLUICE_PROVIDERS``)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from prometheus_client.parser import text_string_to_metric_families

from server.http.ops import openapi_spec
from tests.conftest import StartServer
from tests.fakes.llm_upstreams import ARABIC_EMOJI, Reply
from tests.fakes.threaded import ThreadedFakes
from tests.support.server import RunningServer
from tests.support.sse import bearer, events, json_request, request, start_stream

ANTHROPIC_KEY = "sk-ant-api03-E2ESECRET0123456789abcdef"
OPENAI_KEY = "sk-e2e-secret-0123456789abcdef"
AUTH = bearer("tok-alice")
SPEC = openapi_spec()


def start(start_server: StartServer, fakes: ThreadedFakes, **env: str) -> RunningServer:
    base = {
        "SLUICE_PROVIDERS": "anthropic,openai",
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": fakes.anthropic.url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": fakes.openai.base_url,
        "SLUICE_LLM__FIRST_TOKEN_TIMEOUT_SECONDS": "2",
        "SLUICE_LLM__IDLE_TIMEOUT_SECONDS": "2",
    }
    base.update(env)
    return start_server(base)


def ask(server: RunningServer, message: str = "Hello there", **body: Any) -> list[dict[str, Any]]:
    stream = start_stream(server.url, message, **body)
    assert stream.status == 200
    return events(stream.read_all())


def text_of(evs: list[dict[str, Any]]) -> str:
    return "".join(e["content"] for e in evs if e["type"] == "chunk")


def terminal(evs: list[dict[str, Any]]) -> dict[str, Any]:
    assert sum(e["type"] in ("complete", "error") for e in evs) == 1
    assert evs[-1]["type"] in ("complete", "error")
    return evs[-1]


def saved(server: RunningServer, session_id: str) -> list[dict[str, Any]]:
    status, data, _ = json_request(
        server.url, "GET", f"/api/sessions/alice/{session_id}", headers=AUTH
    )
    assert status == 200 and data is not None
    return [{k: m[k] for k in ("role", "content", "status")} for m in data["messages"]]


def no_secrets(server: RunningServer, evs: list[dict[str, Any]]) -> None:
    blob = json.dumps(evs) + server.output()
    assert ANTHROPIC_KEY not in blob and OPENAI_KEY not in blob
    assert "Traceback" not in json.dumps(evs)


def test_streams_from_anthropic_with_cached_usage_and_moving_cache_marks(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """Three turns of one session: the answer streams from Anthropic, ``complete.usage``
    counts the cached prompt tokens, and the cache marks follow the conversation as the
    server rebuilds it from history (the prefix written by one turn is read by the next)."""
    fakes.anthropic.default = Reply(text=ARABIC_EMOJI, split_utf8=True)
    fakes.anthropic.usage = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 1200,
    }
    # The default system prompt is short: a minimum of one token lets every mark show.
    server = start(start_server, fakes, SLUICE_LLM__ANTHROPIC__CACHE_MIN_TOKENS="1")
    session: dict[str, str] = {}
    for turn in range(3):
        evs = ask(server, f"Question {turn}", **session)
        end = terminal(evs)
        assert end["type"] == "complete"
        assert text_of(evs) == end["message"] == "".join(ARABIC_EMOJI)
        assert (end["provider"], end["model"], end["mode"], end["fallback"]) == (
            "anthropic",
            "claude-haiku-4-5",
            "stream",
            False,
        )
        assert end["usage"] == {
            "input_tokens": 1242,
            "output_tokens": len(ARABIC_EMOJI),
            "total_tokens": 1242 + len(ARABIC_EMOJI),
            "cached_tokens": 1200,
            "cache_creation_tokens": 30,
        }
        session = {"session_id": end["session_id"]}
        no_secrets(server, evs)
    assert fakes.openai.requests == []
    bodies = [request.body for request in fakes.anthropic.requests]
    assert len(bodies) == 3
    for turn, body in enumerate(bodies):
        assert body["system"][0]["text"].startswith("You are a helpful assistant")
        assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
        assert [m["role"] for m in body["messages"]] == ["user", "assistant"] * turn + ["user"]
        marked = [i for i, m in enumerate(body["messages"]) if "cache_control" in m["content"][-1]]
        assert marked == ([2 * turn - 2] if turn else []) + [2 * turn]
        assert body["max_tokens"] == 1024 and body["model"] == "claude-haiku-4-5"


def test_overloaded_anthropic_falls_back_to_openai(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.anthropic.default = Reply(status=529, message="Overloaded")
    server = start(start_server, fakes)
    evs = ask(server)
    end = terminal(evs)
    assert end["type"] == "complete" and text_of(evs) == "Hello, world!"
    assert (end["provider"], end["mode"], end["fallback"]) == ("openai", "stream", True)
    # A 5xx: the same provider once without streaming, then the next one; no SDK retries.
    assert [r.stream for r in fakes.anthropic.requests] == [True, False]
    no_secrets(server, evs)


def test_429_with_retry_after_skips_anthropic_until_then(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.anthropic.default = Reply(status=429, headers={"Retry-After": "30"})
    server = start(start_server, fakes)
    first = terminal(ask(server))
    assert (first["provider"], first["fallback"]) == ("openai", True)
    second = terminal(ask(server))
    assert (second["provider"], second["fallback"]) == ("openai", True)
    assert len(fakes.anthropic.requests) == 1  # skipped until Retry-After has passed


def test_hang_before_the_first_token_moves_on(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.anthropic.script(Reply(hang_at=0))
    # The first-token timeout also bounds the wait for the response headers: half a second
    # could pass on a loaded machine before the fake even reads the request, and then there
    # would be no upstream connection to see closed.
    server = start(start_server, fakes)
    evs = ask(server)
    end = terminal(evs)
    assert end["type"] == "complete" and end["provider"] == "openai"
    assert text_of(evs) == "Hello, world!"
    fakes.run(fakes.anthropic.wait_closed(1, within=1.0))


def test_an_error_event_after_text_is_interrupted_and_saved_incomplete(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.anthropic.default = Reply(text=["Partial ", "answer ", "lost"], error_event_at=2)
    server = start(start_server, fakes)
    evs = ask(server, "Tell me")
    end = terminal(evs)
    assert end["type"] == "error"
    assert end["code"] == "upstream_interrupted" and end["retryable"] is True
    assert text_of(evs) == "Partial answer "
    assert fakes.openai.requests == []  # text was sent: no second answer
    session_id = next(e["session_id"] for e in evs if e["type"] == "context")
    assert saved(server, session_id) == [
        {"role": "user", "content": "Tell me", "status": "complete"},
        {"role": "assistant", "content": "Partial answer ", "status": "incomplete"},
    ]
    no_secrets(server, evs)


def test_models_lists_anthropic(start_server: StartServer, fakes: ThreadedFakes) -> None:
    server = start(start_server, fakes, ANTHROPIC_MODEL="claude-sonnet-4-6")
    status, data, _ = json_request(server.url, "GET", "/v1/models", headers=AUTH)
    assert status == 200 and data is not None
    owned = {(m["id"], m["owned_by"]) for m in data["data"]}
    assert {("anthropic", "anthropic"), ("claude-sonnet-4-6", "anthropic")} <= owned
    fakes.anthropic.usage = {"input_tokens": 4, "cache_read_input_tokens": 2000}
    status, completion, _ = json_request(
        server.url,
        "POST",
        "/v1/chat/completions",
        body={"model": "anthropic", "messages": [{"role": "user", "content": "Hi"}]},
        headers=AUTH,
    )
    assert status == 200 and completion is not None
    schema = SPEC["components"]["schemas"]["ChatCompletion"]
    jsonschema.validate(completion, {**schema, "components": SPEC["components"]})
    assert completion["choices"][0]["message"]["content"] == "Hello, world!"
    # The cached part of the prompt where OpenAI's clients look for it.
    assert completion["usage"]["prompt_tokens"] == 2004
    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 2000}
    assert fakes.anthropic.requests[-1].body["model"] == "claude-sonnet-4-6"
    assert fakes.openai.requests == []


def test_readyz_and_metrics_name_anthropic(start_server: StartServer, fakes: ThreadedFakes) -> None:
    """One turn falls back from an overloaded Claude, one is answered and one interrupted by
    it: /readyz lists the instance in chain order, and every provider metric carries its
    name."""
    fakes.anthropic.script(
        Reply(status=529, message="Overloaded"),
        Reply(status=529, message="Overloaded"),
        Reply(text=["Claude ", "here."]),
        Reply(text=["Partial ", "answer ", "lost"], error_event_at=2),
    )
    server = start(start_server, fakes)
    status, ready, _ = json_request(server.url, "GET", "/readyz")
    assert status == 200 and ready is not None
    assert ready["providers"] == ["anthropic", "openai"]
    assert terminal(ask(server))["provider"] == "openai"
    assert terminal(ask(server))["provider"] == "anthropic"
    assert terminal(ask(server))["code"] == "upstream_interrupted"

    response = request(server.url, "GET", "/metrics")
    text = response.body().decode()
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    assert value("sluice_llm_attempts_total", provider="anthropic", mode="stream") == 3
    assert value("sluice_llm_attempts_total", provider="anthropic", mode="non-stream") == 1
    assert value("sluice_llm_fallbacks_total", provider="anthropic", reason="unavailable") == 1
    assert value("sluice_llm_interruptions_total", provider="anthropic", reason="unavailable") == 1
    assert value("sluice_llm_call_duration_seconds_count", provider="anthropic", mode="stream")
    assert value("sluice_time_to_first_chunk_seconds_count", provider="anthropic") == 2
    assert ("sluice_provider_circuit_state", frozenset({("provider", "anthropic")})) in samples
    assert ANTHROPIC_KEY not in text


def test_claude_is_given_the_clients_tools_and_pictures(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """A /v1 request with the client's own tools, or a picture, is answered by Claude (first
    in the chain) with them in the Messages API's shape: a tool with its schema, an image
    block of the picture's bytes."""
    server = start(start_server, fakes)
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    png = "data:image/png;base64,iVBORw0KGgoAAAAA"
    picture = [{"type": "image_url", "image_url": {"url": png}}, {"type": "text", "text": "?"}]
    for extra in ({"tools": [weather]}, {"messages": [{"role": "user", "content": picture}]}):
        body = {"model": "sluice", "messages": [{"role": "user", "content": "Hi"}], **extra}
        status, answer, headers = json_request(
            server.url, "POST", "/v1/chat/completions", body=body, headers=AUTH
        )
        assert status == 200 and answer is not None, answer
        assert headers["X-Sluice-Provider"] == "anthropic"
    assert not fakes.openai.requests
    # The client's tool beside the server's own (current_time): both offered to Claude.
    assert "get_weather" in [tool["name"] for tool in fakes.anthropic.requests[0].body["tools"]]
    blocks = fakes.anthropic.requests[1].body["messages"][-1]["content"]
    image = next(block for block in blocks if block["type"] == "image")
    assert image["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": "iVBORw0KGgoAAAAA",
    }
