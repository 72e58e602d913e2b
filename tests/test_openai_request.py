"""Checking an OpenAI Chat Completions body (server/http/openai_request.py)."""

from __future__ import annotations

from typing import Any

import pytest

from server.contract import GenerationParams, Message
from server.http.base import ApiError
from server.http.openai_request import parse_chat_request


def parse(**body: Any) -> Any:
    body.setdefault("model", "sluice")
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return parse_chat_request(body, max_message_chars=100)


def refused(**body: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(**body)
    return caught.value


def test_messages_become_instructions_history_and_the_message() -> None:
    request = parse(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "developer", "content": [{"type": "text", "text": "In French."}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "thr"}, {"type": "text", "text": "ee"}],
            },
        ],
        temperature=0.5,
        top_p=1,
        stop="END",
        max_completion_tokens=9,
        n=1,
        presence_penalty=0,
        user="someone",
        stream=True,
        stream_options={"include_usage": True},
    )
    assert request.message == "three"
    assert request.history == [Message("user", "one"), Message("assistant", "two")]
    assert request.instructions == ["Be brief.", "In French."]
    assert request.params == GenerationParams(
        temperature=0.5, top_p=1.0, stop=("END",), max_output_tokens=9
    )
    assert request.stream and request.include_usage


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"n": 2}, "n"),
        ({"n": True}, "n"),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"seed": 3}, "seed"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:,"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url",
        ),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages[0].role"),
    ],
)
def test_what_sluice_cannot_honour_is_refused_by_name(body: dict[str, Any], param: str) -> None:
    failure = refused(**body)
    assert failure.status_code == 400
    assert failure.extra["param"] == param
    assert param.split(".")[-1].split("[")[0] in failure.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "  "}]}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": -1}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_malformed_requests_name_the_parameter(body: dict[str, Any], param: str) -> None:
    failure = refused(**body)
    assert failure.status_code == 400
    assert failure.extra["param"] == param


def test_a_message_over_the_limit_is_413() -> None:
    assert refused(messages=[{"role": "user", "content": "x" * 101}]).status_code == 413
