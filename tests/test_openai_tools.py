"""The client's own tools on /v1, driven by OpenAI's Python SDK (sync and async, streaming
and not) against the real server, with fake OpenAI and Gemini upstreams that record what
reached them.

What holds: ``tools``, ``tool_choice`` and ``parallel_tool_calls`` reach the provider in its
own wire format; the model's calls to client tools come back as OpenAI's ``tool_calls``
(the SDK's own stream accumulator puts them together), sluice never runs them, and the
client's results go to the model as history; server tools still run inside the turn; a
round mixing both returns the client's calls alone; reasoning is ``reasoning_content``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest

from tests.fakes.llm_upstreams import Reply, ThinkingReply
from tests.fakes.threaded import ThreadedFakes, openai_gemini_env
from tests.support import upstream_server
from tests.support.server import RunningServer
from tests.support.sse import bearer, events, request

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Today's weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


# The fixtures of tests/support/upstream_server.py, named here so that pytest finds them.
upstreams = upstream_server.upstreams
server = upstream_server.server
fakes = upstream_server.fakes
sdk = upstream_server.sdk


@pytest.fixture(scope="module")
def server_env(upstreams: ThreadedFakes) -> dict[str, str]:
    return openai_gemini_env(upstreams, SLUICE_LLM__FIRST_TOKEN_TIMEOUT_SECONDS="5")


def _tool_names(body: dict[str, Any]) -> list[str]:
    return [item["function"]["name"] for item in body.get("tools", [])]


def test_a_streamed_tool_round_through_the_sdk(sdk: openai.OpenAI, fakes: ThreadedFakes) -> None:
    fakes.openai.script(
        Reply(
            text=["Let me look. "],
            tool_calls=[
                ("call_p", "get_weather", '{"city": "Paris"}'),
                ("call_r", "get_weather", '{"city": "Rome"}'),
            ],
        ),
        Reply(text=["Sunny in Paris, ", "rain in Rome."]),
    )
    with sdk.chat.completions.stream(
        model="openai",
        messages=ASK,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="auto",
        parallel_tool_calls=True,
    ) as stream:
        first = stream.get_final_completion()
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me look. "
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("call_p", "get_weather", {"city": "Paris"}),
        ("call_r", "get_weather", {"city": "Rome"}),
    ]
    sent = fakes.openai.requests[0].body
    # The client's tool beside the server's own (current_time); its choices as given.
    assert _tool_names(sent) == ["current_time", "get_weather"]
    assert sent["tools"][1]["function"]["parameters"] == WEATHER["function"]["parameters"]  # type: ignore[index]
    assert sent["tool_choice"] == "auto" and sent["parallel_tool_calls"] is True
    assert len(fakes.openai.requests) == 1  # sluice ran nothing, asked nothing more

    # The client runs its tool and sends the results: the model answers from them.
    history = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "call_p", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_r", "content": "rain"},
    ]
    answer = sdk.chat.completions.create(
        model="openai",
        messages=history,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in answer if chunk.choices)
    assert text == "Sunny in Paris, rain in Rome."
    given = fakes.openai.requests[1].body["messages"]
    assert given[-3]["role"] == "assistant" and given[-3]["content"] == "Let me look. "
    assert [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in given[-3]["tool_calls"]
    ] == [("call_p", "get_weather", {"city": "Paris"}), ("call_r", "get_weather", {"city": "Rome"})]
    assert given[-2:] == [
        {"role": "tool", "tool_call_id": "call_p", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_r", "content": "rain"},
    ]


def test_the_wire_is_openais_delta_tool_calls(server: RunningServer, fakes: ThreadedFakes) -> None:
    fakes.openai.script(Reply(text=[], tool_calls=[("call_1", "get_weather", '{"city": "Oslo"}')]))
    body = {"model": "openai", "messages": ASK, "tools": [WEATHER], "stream": True}
    raw = request(
        server.url, "POST", "/v1/chat/completions", body=body, headers=bearer("tok-alice")
    ).body()
    frames = [line[6:] for line in raw.decode().split("\n\n") if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    pieces = [delta["tool_calls"] for delta in deltas if "tool_calls" in delta]
    assert pieces == [
        [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ],
        [{"index": 0, "function": {"arguments": '{"city": "Oslo"}'}}],
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert not any("content" in delta and delta["content"] for delta in deltas)


def test_a_non_streamed_round_with_gemini_through_the_async_sdk(
    server: RunningServer, fakes: ThreadedFakes
) -> None:
    fakes.gemini.script(
        # The fake puts the calls in the last text frame: one empty text piece.
        Reply(text=[""], tool_calls=[("", "get_weather", '{"city": "Lima"}')]),
        Reply(text=["Foggy in Lima."]),
    )

    async def round_trip() -> tuple[Any, Any]:
        async with openai.AsyncOpenAI(
            base_url=server.url + "/v1", api_key="tok-alice", max_retries=0
        ) as client:
            first = await client.chat.completions.create(
                model="gemini",
                messages=ASK,  # type: ignore[arg-type]
                tools=[WEATHER],  # type: ignore[list-item]
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
            )
            message = first.choices[0].message
            call = (message.tool_calls or [])[0]
            second = await client.chat.completions.create(
                model="gemini",
                messages=[  # type: ignore[list-item]
                    *ASK,
                    message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": call.id, "content": "fog"},
                ],
                tools=[WEATHER],  # type: ignore[list-item]
            )
            return first, second

    first, second = asyncio.run(round_trip())
    assert first.choices[0].finish_reason == "tool_calls"
    assert first.choices[0].message.content is None
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "city": "Lima"
    }
    assert second.choices[0].message.content == "Foggy in Lima."
    asked = fakes.gemini.requests[0].body
    declared = [d["name"] for d in asked["tools"][0]["functionDeclarations"]]
    assert declared == ["current_time", "get_weather"]
    assert asked["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    # The client's call and result, in Gemini's words.
    contents = fakes.gemini.requests[1].body["contents"]
    assert contents[-2]["role"] == "model"
    assert {"functionCall": {"name": "get_weather", "args": {"city": "Lima"}}} in contents[-2][
        "parts"
    ]
    assert contents[-1] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "fog"}}}],
    }
    # A forced choice holds for the first round only: the second is the model's own.
    assert "toolConfig" not in fakes.gemini.requests[1].body


@pytest.mark.parametrize(
    ("choice", "openai_sent", "gemini_mode"),
    [("none", "none", "NONE"), ("required", "required", "ANY"), ("auto", "auto", "AUTO")],
)
def test_tool_choice_reaches_each_provider(
    sdk: openai.OpenAI, fakes: ThreadedFakes, choice: str, openai_sent: str, gemini_mode: str
) -> None:
    for model in ("openai", "gemini"):
        sdk.chat.completions.create(
            model=model,
            messages=ASK,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice=choice,  # type: ignore[arg-type]
        )
    assert fakes.openai.requests[0].body["tool_choice"] == openai_sent
    assert fakes.gemini.requests[0].body["toolConfig"] == {
        "functionCallingConfig": {"mode": gemini_mode}
    }


def test_what_gemini_cannot_honour_is_refused_not_dropped(
    sdk: openai.OpenAI, fakes: ThreadedFakes
) -> None:
    with pytest.raises(openai.APIStatusError) as refused:
        sdk.chat.completions.create(
            model="gemini",
            messages=ASK,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
            parallel_tool_calls=False,
        )
    assert "parallel_tool_calls" in refused.value.message
    assert not fakes.gemini.requests


def test_a_tool_choice_naming_no_tool_is_400(sdk: openai.OpenAI, fakes: ThreadedFakes) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(
            model="openai",
            messages=ASK,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
    assert refused.value.param == "tool_choice" and "get_time" in refused.value.message
    assert not fakes.openai.requests


def test_server_tools_run_inside_the_turn_and_a_client_call_ends_it(
    server: RunningServer, sdk: openai.OpenAI, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(
        Reply(text=[], tool_calls=[("srv_1", "current_time", '{"timezone": "Europe/Oslo"}')]),
        Reply(text=["It is day. "], tool_calls=[("call_w", "get_weather", '{"city": "Oslo"}')]),
    )
    raw = sdk.chat.completions.with_raw_response.create(
        model="openai",
        messages=ASK,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
    )
    answer = raw.parse()
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "tool_calls"
    assert message.content == "It is day. "
    assert [c.function.name for c in message.tool_calls or []] == ["get_weather"]  # type: ignore[union-attr]
    # The server's tool ran between the two rounds; its result went to the model.
    assert len(fakes.openai.requests) == 2
    second = fakes.openai.requests[1].body["messages"]
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "srv_1"
    # In sluice's own format, the same turn shows the server's call, its result, and the
    # client's calls on complete.
    stream_id = raw.headers["X-Stream-Id"]
    seen = events(
        request(
            server.url, "GET", f"/api/streams/{stream_id}", headers=bearer("tok-alice")
        ).read_all()
    )
    assert [e["name"] for e in seen if e["type"] == "tool_call"] == ["current_time"]
    assert [e["ok"] for e in seen if e["type"] == "tool_result"] == [True]
    complete = seen[-1]
    assert complete["type"] == "complete" and complete["finish_reason"] == "tool_calls"
    assert complete["client_tool_calls"] == [
        {"call_id": "call_w", "name": "get_weather", "arguments": {"city": "Oslo"}}
    ]


def test_a_mixed_round_returns_the_client_calls_and_runs_nothing(
    sdk: openai.OpenAI, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(
        Reply(
            text=[],
            tool_calls=[
                ("srv_1", "current_time", '{"timezone": "UTC"}'),
                ("call_w", "get_weather", '{"city": "Oslo"}'),
            ],
        )
    )
    answer = sdk.chat.completions.create(
        model="openai",
        messages=ASK,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
    )
    calls = answer.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [("call_w", "get_weather")]  # type: ignore[union-attr]
    assert len(fakes.openai.requests) == 1


def test_reasoning_is_reasoning_content_never_content(
    sdk: openai.OpenAI, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = ThinkingReply(reasoning=["The user ", "greets me."], text=["Hello!"])
    chunks = list(
        sdk.chat.completions.create(
            model="openai",
            messages=ASK,  # type: ignore[arg-type]
            stream=True,
        )
    )
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    thoughts = [(d.model_extra or {}).get("reasoning_content") for d in deltas]
    assert [t for t in thoughts if t] == ["The user ", "greets me."]
    assert "".join(d.content or "" for d in deltas) == "Hello!"

    whole = sdk.chat.completions.create(model="openai", messages=ASK)  # type: ignore[arg-type]
    message = whole.choices[0].message
    assert message.content == "Hello!"
    assert (message.model_extra or {}).get("reasoning_content") == "The user greets me."
