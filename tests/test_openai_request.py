"""Checking an OpenAI Chat Completions body (server/http/openai_request.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from server.contract import (
    GenerationParams,
    ImagePart,
    Message,
    ToolCall,
    ToolChoice,
    ToolResult,
)
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
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
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
        ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages[0].role"),
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
        (
            {"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]},
            "messages[0].tool_call_id",
        ),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
        ({"tool_choice": "always"}, "tool_choice"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ],
)
def test_malformed_requests_name_the_parameter(body: dict[str, Any], param: str) -> None:
    failure = refused(**body)
    assert failure.status_code == 400
    assert failure.extra["param"] == param


def test_a_message_over_the_limit_is_413() -> None:
    assert refused(messages=[{"role": "user", "content": "x" * 101}]).status_code == 413


def _assistant_calls(*calls: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in calls
        ],
    }


def test_tool_calls_and_results_are_history_and_the_turn_goes_on_from_the_results() -> None:
    request = parse(
        messages=[
            {"role": "user", "content": "weather in Paris and Rome?"},
            _assistant_calls(("c1", "weather", '{"city": "Paris"}'), ("c2", "weather", "{}")),
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "rain"}]},
        ],
        tools=[{"type": "function", "function": {"name": "weather", "parameters": {}}}],
        tool_choice={"type": "function", "function": {"name": "weather"}},
        parallel_tool_calls=False,
    )
    assert request.message == ""
    assert request.history == [
        Message("user", "weather in Paris and Rome?"),
        Message(
            "assistant",
            "",
            (ToolCall("c1", "weather", {"city": "Paris"}), ToolCall("c2", "weather", {})),
        ),
        Message(
            "tool",
            "",
            (ToolResult("c1", "weather", True, "sunny"), ToolResult("c2", "weather", True, "rain")),
        ),
    ]
    assert [tool.name for tool in request.tools] == ["weather"]
    assert all(tool.runs_on_client for tool in request.tools)
    assert request.params.tool_choice == ToolChoice("function", "weather")
    assert request.params.parallel_tool_calls is False
    # Without tools of its own, the client's parallel_tool_calls asks nothing.
    assert parse(parallel_tool_calls=False).params.parallel_tool_calls is None


def test_arguments_that_are_not_a_json_object_are_refused() -> None:
    failure = refused(
        messages=[
            {"role": "user", "content": "x"},
            _assistant_calls(("c1", "f", "[1]")),
            {"role": "tool", "tool_call_id": "c1", "content": "r"},
        ]
    )
    assert failure.extra["param"] == "messages[1].tool_calls[0].function.arguments"


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


def _image_message(url: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
            ],
        }
    ]


def _parse_images(url: str, **limits: int) -> Any:
    return parse_chat_request(
        {"model": "sluice", "messages": _image_message(url)},
        max_message_chars=100,
        max_image_bytes=limits.get("max_image_bytes", 1000),
        max_images=limits.get("max_images", 4),
    )


def test_a_data_url_image_is_an_image_part_of_the_message() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    request = _parse_images(url)
    assert request.message == "what is this?"
    assert request.images == [ImagePart(PNG, "image/png")]
    assert request.image_chars == len(url) - len("data:image/png;base64,")


@pytest.mark.parametrize(
    ("url", "limits", "status", "says"),
    [
        ("https://example.com/cat.png", {}, 400, "fetches nothing"),
        ("data:image/png," + "x" * 10, {}, 400, "base64"),
        ("data:image/tiff;base64," + base64.b64encode(PNG).decode(), {}, 415, "image/tiff"),
        ("data:image/jpeg;base64," + base64.b64encode(PNG).decode(), {}, 415, "not a image/jpeg"),
        (
            "data:image/png;base64," + base64.b64encode(PNG).decode(),
            {"max_image_bytes": 10},
            413,
            "over 10 bytes",
        ),
        (
            "data:image/png;base64," + base64.b64encode(PNG).decode(),
            {"max_images": 0},
            413,
            "At most 0",
        ),
        ("data:image/png;base64,%%%%", {}, 400, "base64"),
    ],
)
def test_images_refused_say_why(url: str, limits: dict[str, int], status: int, says: str) -> None:
    with pytest.raises(ApiError) as caught:
        _parse_images(url, **limits)
    assert caught.value.status_code == status
    assert says in caught.value.message
    assert caught.value.extra["param"] == "messages[0].content[1].image_url"
