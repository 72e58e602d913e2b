"""OpenAI's wire format made from sluice's frames (server/core/openai_format.py), pure.

The chunk frames are spliced from sluice's own encoded frames without decoding them; these
tests fail if sluice's frame layout (``encode_event``, ``Chunk.as_dict``) changes under that
shortcut, or if a spliced frame is not the JSON an OpenAI client expects.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.contract import chunk, complete, error
from server.core import openai_format as wire
from server.core import sse
from server.core.sse import encode_event

TRICKY = [
    "",
    "plain",
    'quote " and \\ backslash',
    "line\nbreak\r\n",
    "\u2028\u2029\u0085",
    "مرحبا 👋🏽",
]


def frame_of(event: object, event_id: int = 7) -> bytes:
    return encode_event(event_id, event.type, event.as_dict())  # type: ignore[attr-defined]


def data_of(frame: bytes) -> dict[str, object]:
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    body = frame[6:-2]
    assert b"\n" not in body and b"\r" not in body
    decoded: dict[str, object] = json.loads(body)
    return decoded


@pytest.mark.parametrize("text", TRICKY)
@pytest.mark.parametrize("event_id", [1, 99, 10**12])
def test_chunk_content_is_the_json_string_of_the_content(text: str, event_id: int) -> None:
    literal = sse.chunk_content(frame_of(chunk(text), event_id))
    assert literal is not None
    assert json.loads(literal) == text


@given(st.text())
def test_any_text_survives_the_splice(text: str) -> None:
    encoder = wire.ChunkEncoder("chatcmpl-st_x", 1, "sluice", include_usage=False)
    literal = sse.chunk_content(frame_of(chunk(text)))
    assert literal is not None
    data = data_of(encoder.content(literal))
    assert data["choices"] == [
        {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}
    ]


def test_other_events_are_not_chunks() -> None:
    done = complete(
        '"content":"x"',
        session_id="s",
        suggestions=[],
        provider="p",
        model="m",
        mode="stream",
        fallback=False,
        usage=None,
    )
    for event in (done, error("internal", "event: chunk", retryable=True)):
        frame = frame_of(event)
        assert sse.chunk_content(frame) is None
        assert sse.frame_kind(frame) == event.type.encode()
        assert sse.decode_frame(frame) == event.as_dict()


def test_a_stream_reads_as_openai_sends_it() -> None:
    encoder = wire.ChunkEncoder("chatcmpl-st_1", 1700000000, 'model "x"', include_usage=True)
    role = data_of(encoder.role())
    assert role == {
        "id": "chatcmpl-st_1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": 'model "x"',
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        "usage": None,
    }
    end = encoder.end({"usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}}, None)
    *frames, done = end.split(b"\n\n")[:-1]
    assert done == b"data: [DONE]"
    finish, usage = (data_of(f + b"\n\n") for f in frames)
    assert finish["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
    assert finish["choices"][0]["delta"] == {}  # type: ignore[index]
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_without_include_usage_there_is_no_usage_member() -> None:
    encoder = wire.ChunkEncoder("chatcmpl-st_1", 1, "sluice", include_usage=False)
    assert "usage" not in data_of(encoder.text("hi"))
    end = encoder.end({"usage": {"input_tokens": 1}}, "length")
    frames = end.split(b"\n\n")[:-1]
    assert len(frames) == 2 and frames[1] == b"data: [DONE]"
    assert data_of(frames[0] + b"\n\n")["choices"][0]["finish_reason"] == "length"  # type: ignore[index]


def test_error_frame_and_completion_object() -> None:
    body = wire.error_object("gone", type="server_error", code="upstream_interrupted")
    assert data_of(wire.error_frame(body)) == {
        "error": {
            "message": "gone",
            "type": "server_error",
            "param": None,
            "code": "upstream_interrupted",
        }
    }
    made = wire.completion_object(
        "chatcmpl-st_1", 5, "sluice", {"message": "Hi", "usage": None}, None
    )
    assert made["object"] == "chat.completion"
    assert made["choices"][0]["message"] == {"role": "assistant", "content": "Hi", "refusal": None}
    assert made["choices"][0]["finish_reason"] == "stop"
    assert made["usage"] is None


def test_usage_in_openai_s_names_with_the_reasoning_and_cache_details_only_when_given() -> None:
    assert wire.openai_usage({"input_tokens": 5, "output_tokens": 9, "total_tokens": 14}) == {
        "prompt_tokens": 5,
        "completion_tokens": 9,
        "total_tokens": 14,
    }
    figures = wire.openai_usage(
        {"input_tokens": 5, "output_tokens": 9, "total_tokens": 14, "reasoning_tokens": 6}
    )
    assert figures is not None
    assert figures["completion_tokens_details"] == {"reasoning_tokens": 6}
    assert wire.openai_usage(None) is None
