"""One copy of each status frame, shared by every stream log of the process.

The runner's status frames are the same bytes in every turn of a pipeline (same id, stage,
state and progress): each distinct one is kept once and shared by every log, rather than
~1.2 KiB of copies in every open stream (docs/performance.md). The table is bounded, so a
pipeline whose status frames vary (a stage putting a counter in one) cannot grow it without
end; past the bound, frames are simply not shared.
"""

from __future__ import annotations

__all__ = ["MAX_SHARED", "shared_count", "shared_frame"]

MAX_SHARED = 4096

_FRAMES: dict[bytes, bytes] = {}


def shared_frame(frame: bytes) -> bytes:
    """The process's one copy of ``frame`` (equal bytes), keeping this one if it is new."""
    shared = _FRAMES.get(frame)
    if shared is not None:
        return shared
    if len(_FRAMES) < MAX_SHARED:
        _FRAMES[frame] = frame
    return frame


def shared_count() -> int:
    """How many distinct frames are shared now (for tests and stats)."""
    return len(_FRAMES)
