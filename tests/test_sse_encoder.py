"""The event-stream encoder (server/core/sse.py): framing, text surviving a round trip, and
the decoder beside it reading the encoder's own frames back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.contract import (
    ImagePart,
    Part,
    TextPart,
    ToolCall,
    ToolErrorKind,
    ToolResult,
    chunk,
    complete,
    event_from_dict,
    part_from_dict,
    part_to_dict,
    reasoning,
    status,
    tool_call,
    tool_result,
)
from server.core.sse import (
    answer_text,
    comment,
    decode_frame,
    encode_chunk,
    encode_data,
    encode_event,
    padding,
    retry_field,
)
from tests.support.sse import parse_frames


def test_frame_is_id_event_and_one_compact_data_line() -> None:
    frame = encode_event(7, "chunk", {"type": "chunk", "content": "Hel"})
    assert frame == b'id: 7\nevent: chunk\ndata: {"type":"chunk","content":"Hel"}\n\n'


@pytest.mark.parametrize("bad", ["chunk\nid: 99", "chunk\r", "a\rb", "x\x00"])
def test_event_name_cannot_smuggle_a_line(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_event(1, bad, {"type": "chunk"})


def test_comment_cannot_smuggle_a_line() -> None:
    with pytest.raises(ValueError):
        comment("ping\ndata: {}")


@pytest.mark.parametrize(
    "text",
    [
        "مرحبا بالعالم",
        "emoji 👩🏽‍💻🚀 and flags 🇯🇵",
        "line one\nline two\r\nthree\rfour",
        "separators \u2028 and \u2029",
        "next line \x85 here",
        "data: injected\n\nid: 99\n\n",
        "",
    ],
)
def test_text_survives_a_strict_parser(text: str) -> None:
    raw = encode_event(3, "chunk", {"type": "chunk", "content": text})
    assert raw.count(b"\n") == 4  # three fields and the blank line: nothing else
    [frame] = parse_frames(raw)
    assert frame.id == 3 and frame.event == "chunk"
    assert frame.data == {"type": "chunk", "content": text}


@given(st.text())
def test_any_text_round_trips(text: str) -> None:
    [frame] = parse_frames(encode_event(1, "chunk", {"type": "chunk", "content": text}))
    assert frame.data is not None and frame.data["content"] == text


def test_non_ascii_is_sent_as_utf8_not_escapes() -> None:
    assert "طوكيو" in encode_data({"content": "طوكيو"})


def test_retry_and_padding() -> None:
    assert retry_field(2000) == b"retry: 2000\n\n"
    assert padding(0) == b""
    pad = padding(2048)
    assert len(pad) == 2048 and pad.startswith(b":") and pad.endswith(b"\n\n")
    frames = parse_frames(retry_field(5) + pad)
    assert frames[0].retry == 5 and frames[1].data is None


def test_no_character_a_line_splitter_ends_lines_at_goes_out_raw() -> None:
    """``str.splitlines`` ends lines at U+0085, U+2028 and U+2029 as well as CR and LF: a
    client built on it (``sseclient``) cut frames at a raw U+0085."""
    text = "a\x85b\u2028c\u2029d\x1ce\x1df\x1eg\x0bh\x0ci"
    raw = encode_event(1, "chunk", {"type": "chunk", "content": text})
    decoded = raw.decode()
    assert len(decoded.splitlines()) == 4  # id, event, data, blank: none inside data
    assert json.loads(decoded.splitlines()[2].removeprefix("data: "))["content"] == text


@given(st.lists(st.text(), max_size=5))
def test_the_answer_text_of_a_log_is_its_chunks_joined(parts: list[str]) -> None:
    """The text a dead producer's clients were sent, read back from its frames (what the
    session stage keeps of a lost turn): chunks only, whatever their text, in order."""
    frames = [encode_event(1, "status", status("llm", "start", 80).as_dict())]
    frames += [encode_chunk(index + 2, part) for index, part in enumerate(parts)]
    done = complete(
        'event: chunk\ndata: {"content":"x"}',
        session_id="s",
        suggestions=[],
        provider="demo",
        model="demo",
        mode="stream",
        fallback=False,
        usage=None,
    )
    frames.append(encode_event(len(frames) + 1, "complete", done.as_dict()))
    assert answer_text(frames) == "".join(parts)


def test_a_chunk_frame_decodes_as_the_event_it_was() -> None:
    text = 'quote " \u2028 مرحبا'
    assert decode_frame(encode_chunk(12, text)) == chunk(text).as_dict()


def test_tool_and_reasoning_events_encode_as_the_contract_says() -> None:
    """``tool_call``, ``tool_result`` and ``reasoning`` frames carry exactly the fields of
    the wire contract, and read back into equal events."""
    events = [
        tool_call("call_1", "current_time", {"timezone": "Asia/Tokyo"}, approval="none"),
        tool_result(
            "call_1", "current_time", ok=True, content="2026-01-01T09:00:00+09:00", duration_ms=3
        ),
        tool_result(
            "call_2",
            "search",
            ok=False,
            content="Invalid arguments: q",
            error="invalid_arguments",
            duration_ms=0,
        ),
        reasoning("The user wants the time \u2028 in Tokyo."),
    ]
    raw = b"".join(encode_event(i + 1, e.type, e.as_dict()) for i, e in enumerate(events))
    frames = parse_frames(raw)
    assert [f.event for f in frames] == ["tool_call", "tool_result", "tool_result", "reasoning"]
    assert frames[0].data == {
        "type": "tool_call",
        "call_id": "call_1",
        "name": "current_time",
        "arguments": {"timezone": "Asia/Tokyo"},
        "approval": "none",
    }
    assert frames[1].data == {
        "type": "tool_result",
        "call_id": "call_1",
        "name": "current_time",
        "ok": True,
        "content": "2026-01-01T09:00:00+09:00",
        "duration_ms": 3,
    }
    assert frames[2].data is not None and frames[2].data["error"] == "invalid_arguments"
    assert frames[3].data == {
        "type": "reasoning",
        "content": "The user wants the time \u2028 in Tokyo.",
    }
    assert [event_from_dict(f.data or {}) for f in frames] == events
    assert events[2].get("error") == "invalid_arguments" and events[1].get("error") is None
    with pytest.raises(ValueError):
        tool_result("c", "t", ok=True, content="", error="failed", duration_ms=0)


@pytest.mark.parametrize(
    "part",
    [
        TextPart("héllo"),
        ImagePart(b"\x89PNG\r\n\x1a\n\x00", "image/png"),
        ToolCall("call_1", "search", {"q": "ramen", "limit": 3}),
        ToolResult("call_1", "search", False, "timed out", ToolErrorKind.TIMEOUT),
        ToolResult("call_2", "search", True, "[]"),
    ],
    ids=lambda part: type(part).__name__,
)
def test_message_parts_round_trip_through_json(part: Part) -> None:
    data = json.loads(json.dumps(part_to_dict(part)))
    assert part_from_dict(data) == part
