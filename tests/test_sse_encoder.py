"""The event-stream encoder (server/core/sse.py): framing, text surviving a round trip, and
the decoder beside it reading the encoder's own frames back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.contract import chunk, complete, status
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
