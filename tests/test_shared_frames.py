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


@pytest.mark.gen_test
async def test_a_status_is_encoded_once_per_id_and_never_for_another_id() -> None:
    """Logs share a status's frame at the same id; at another id it is encoded anew (its
    id is in the frame), and a status naming its stream is its own."""
    from server.contract import Status
    from server.core import streamlog
    from server.core.streamlog import StreamLog

    status = Status("cache-check", "start", 10)
    logs = [StreamLog(f"st_{n}", "u", 100) for n in range(3)]
    await logs[0].append(status)
    await logs[1].append(status)
    await logs[2].append(Status("cache-check", "done", 20))
    await logs[2].append(status)
    (first,), (second,) = logs[0].frames_after(0), logs[1].frames_after(0)
    assert first is second
    assert first == encode_event(1, "status", status.as_dict())
    assert logs[2].frames_after(1) == [encode_event(2, "status", status.as_dict())]
    named = Status("cache-check", "start", 10, stream_id="st_own")
    await StreamLog("st_own", "u", 100).append(named)
    assert (1, named) not in streamlog._STATUS_FRAMES
