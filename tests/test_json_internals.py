"""The standard library's undocumented JSON names sluice encodes every frame with
(server/internals/json_internals.py): these tests fail when ``json`` changes under them, and when
the fast paths stop writing exactly what the documented encoder writes."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.core.sse import encode_chunk, encode_event
from server.internals import json_internals
from server.internals.json_internals import dumps, string_literal


def documented(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_the_kept_c_encoder_is_in_use() -> None:
    """On CPython the C encoder must be there and be what ``dumps`` runs: if ``json`` renames
    or drops it, this fails rather than the server silently falling back."""
    assert json_internals.C_ENCODER
    assert callable(json.encoder.c_make_encoder)
    assert string_literal is json.encoder.c_encode_basestring  # type: ignore[attr-defined]


TRICKY_TEXT = [
    "",
    'quote " backslash \\ slash /',
    "".join(chr(c) for c in range(0x20)) + "\x7f",
    "separators \u2028 \u2029 and next line \x85",
    "مرحبا 👩🏽‍💻 🇯🇵 日本語",
    "data: injected\n\nid: 99\n\n",
]


@pytest.mark.parametrize("text", TRICKY_TEXT)
def test_string_literal_is_the_documented_encoding(text: str) -> None:
    assert string_literal(text) == documented(text)


EVENT_LIKE = [
    {"type": "status", "stage": "llm", "state": "done", "progress": 100, "stream_id": "st_x"},
    {"type": "complete", "message": "é\u2028", "usage": None, "fallback": False, "n": [1, 2.5]},
    {"error": {"message": "x", "type": "server_error", "param": None, "code": None}},
    {"big": 2**70, "neg": -0.0, "tiny": 1e-300, "nested": [[{}], [], {"k": [True]}]},
    {1: "int key", 2.5: "float key", None: "null key", False: "bool key"},
    ["a list at the top"],
    "a string at the top",
    7,
    None,
]


@pytest.mark.parametrize("value", EVENT_LIKE)
def test_dumps_is_the_documented_encoding(value: object) -> None:
    assert dumps(value) == documented(value)


def test_dumps_refuses_what_json_refuses() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"when": object()})
    assert dumps([math.inf, math.nan]) == documented([math.inf, math.nan])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(json_values)
def test_any_value_encodes_as_documented(value: object) -> None:
    assert dumps(value) == documented(value)


@given(st.text())
def test_a_chunk_frame_is_the_frame_of_its_event(text: str) -> None:
    """The chunk encoder writes what the general one writes for the chunk's JSON object."""
    assert encode_chunk(42, text) == encode_event(42, "chunk", {"type": "chunk", "content": text})


@pytest.mark.parametrize("text", TRICKY_TEXT)
def test_a_chunk_frame_of_tricky_text_is_the_frame_of_its_event(text: str) -> None:
    assert encode_chunk(7, text) == encode_event(7, "chunk", {"type": "chunk", "content": text})
