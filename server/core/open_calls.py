"""Tool calls announced in a stream and not answered yet: what the end of a turn must close.

Every ``tool_call`` gets exactly one ``tool_result`` before the stream's terminal event. The
``llm`` stage keeps that itself when it is stopped inside a round, but a turn can also end
somewhere else while a call is open: a stop landing in another stage (a wrapper saving the
answer between two events), in the producer's own loop, a store failing mid-round, or the
producer's process dying. Whoever writes the terminal event then closes the open calls
first, each with a ``cancelled`` result: the call did not run to its end because its turn did
not.
"""

from __future__ import annotations

from collections.abc import Iterable

from server.contract import Event, ToolCallEvent, ToolErrorKind, ToolResultEvent, tool_result
from server.core.sse import decode_frame, frame_kind

__all__ = ["TOOL_EVENT_TYPES", "OpenToolCalls", "cancelled_result"]

TOOL_EVENT_TYPES = frozenset({"tool_call", "tool_result"})
_TOOL_FRAME_KINDS = frozenset({b"tool_call", b"tool_result"})


def cancelled_result(call_id: str, name: str) -> ToolResultEvent:
    """The result of a call whose turn was stopped before the call ended."""
    return tool_result(
        call_id,
        name,
        ok=False,
        content="The call was cancelled.",
        error=ToolErrorKind.CANCELLED,
        duration_ms=0,
    )


class OpenToolCalls:
    """The calls of one stream seen announced and not yet answered, in announcement order."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: dict[str, str] = {}  # call id -> tool name

    def __bool__(self) -> bool:
        return bool(self._open)

    def see(self, event: Event) -> None:
        """Take note of an event about to be appended (only tool events matter)."""
        if isinstance(event, ToolCallEvent):
            self._open[event.call_id] = event.name
        elif isinstance(event, ToolResultEvent):
            self._open.pop(event.call_id, None)

    def see_frames(self, frames: Iterable[bytes]) -> None:
        """Take note of a log's frames, as read back from a store."""
        for frame in frames:
            if frame_kind(frame) in _TOOL_FRAME_KINDS:
                data = decode_frame(frame)
                if data["type"] == "tool_call":
                    self._open[data["call_id"]] = data["name"]
                else:
                    self._open.pop(data["call_id"], None)

    def close_all(self) -> list[ToolResultEvent]:
        """A ``cancelled`` result for each open call; none is open afterwards."""
        results = [cancelled_result(call_id, name) for call_id, name in self._open.items()]
        self._open.clear()
        return results
