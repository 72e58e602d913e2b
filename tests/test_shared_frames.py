"""The status-frame interning (server/core/shared_frames.py)."""

from __future__ import annotations

import pytest

from server.core import shared_frames
from server.core.shared_frames import MAX_SHARED, shared_count, shared_frame
from server.core.sse import encode_event


def test_equal_frames_become_one_object() -> None:
    data = {"type": "status", "stage": "intent", "state": "start", "progress": 40}
    first = encode_event(5, "status", data)
    second = encode_event(5, "status", dict(data))
    assert first == second and first is not second
    assert shared_frame(first) is shared_frame(second) is first


def test_the_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_frames, "_FRAMES", {})
    for index in range(MAX_SHARED + 10):
        shared_frame(f"id: {index}\n".encode())
    assert shared_count() == MAX_SHARED
    late = f"id: {MAX_SHARED + 99}\n".encode()
    assert shared_frame(late) is late  # past the bound: returned as is, not kept
    assert shared_count() == MAX_SHARED
