"""The events a stage can emit, as immutable values, and the error codes.

Every event is a frozen dataclass. Read it by attribute (``event.content``) or, like the JSON
the client receives, by key (``event["content"]``, ``event.get("retry_after")``). To change
one, make a new one: ``dataclasses.replace(event, content=event.content.upper())``. Nothing a
stage holds can then change under another stage that already saw it.

The constructors :func:`status`, :func:`context`, :func:`chunk`, :func:`complete`,
:func:`error`, :func:`tool_call`, :func:`tool_result` and :func:`reasoning` are the short way
to make them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from server.contract.parts import ToolErrorKind

__all__ = [
    "TERMINAL_TYPES",
    "Chunk",
    "Complete",
    "Context",
    "Error",
    "ErrorCode",
    "Event",
    "EventBase",
    "Reasoning",
    "Status",
    "ToolCallEvent",
    "ToolResultEvent",
    "chunk",
    "complete",
    "context",
    "error",
    "event_from_dict",
    "reasoning",
    "status",
    "tool_call",
    "tool_result",
]


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` event: what went wrong, in the client's vocabulary."""

    RATE_LIMITED = "rate_limited"
    """Too many turns from this user or address; ``retry_after`` says when to try again."""
    BUDGET_EXHAUSTED = "budget_exhausted"
    """The user's budget for the period is spent (``[budgets]``); not retryable before
    ``retry_after``, the seconds to the period's reset."""
    TOO_MANY_STREAMS = "too_many_streams"
    """The user has ``limits.max_streams_per_user`` answers in progress already."""
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    """No provider could answer."""
    UPSTREAM_INTERRUPTED = "upstream_interrupted"
    """The provider failed after text was sent; the partial answer is kept."""
    TIMEOUT = "timeout"
    """The turn ran past its deadline."""
    CANCELLED = "cancelled"
    """Stopped by the user (or the client left, with ``on_disconnect = "cancel"``)."""
    INTERNAL = "internal"
    """A fault on the server's side, including the instance producing the answer dying."""


class EventBase:
    """What every event shares: a ``type`` and read access by key, like its JSON."""

    __slots__ = ()
    type: ClassVar[str]
    # Keys left out of the JSON while their value is None.
    _optional: ClassVar[frozenset[str]] = frozenset()

    def __getitem__(self, key: str) -> Any:
        if key == "type":
            return self.type
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None and key in self._optional else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.as_dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        """The event as the JSON object sent in ``data:`` (``type`` first)."""
        data: dict[str, Any] = {"type": self.type}
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if value is None and item.name in self._optional:
                continue
            data[item.name] = value
        return data


@dataclass(frozen=True, slots=True)
class Status(EventBase):
    """A stage started or finished. The pipeline makes these; stages never need to."""

    type: ClassVar[str] = "status"
    _optional: ClassVar[frozenset[str]] = frozenset({"stream_id"})
    stage: str
    state: Literal["start", "done"]
    progress: int
    stream_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = {
            "type": "status",
            "stage": self.stage,
            "state": self.state,
            "progress": self.progress,
        }
        if self.stream_id is not None:
            data["stream_id"] = self.stream_id
        return data


@dataclass(frozen=True, slots=True)
class Context(EventBase):
    """What the turn is about: the session, the intent found, what the session remembers."""

    type: ClassVar[str] = "context"
    session_id: str
    intent: Mapping[str, Any]
    context: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Chunk(EventBase):
    """The next piece of the answer."""

    type: ClassVar[str] = "chunk"
    content: str

    def as_dict(self) -> dict[str, Any]:
        return {"type": "chunk", "content": self.content}


@dataclass(frozen=True, slots=True)
class Complete(EventBase):
    """The answer is whole. ``message`` equals every chunk's ``content`` joined: the pipeline
    sees to that when a wrapper changes chunks."""

    type: ClassVar[str] = "complete"
    message: str
    session_id: str | None
    suggestions: tuple[str, ...]
    provider: str
    model: str
    mode: str
    fallback: bool
    usage: Mapping[str, Any] | None
    # Why the answer ended, as the provider said ("stop", "length", ...), or "length" when
    # the local cap (llm.max_answer_chars) ended it; None when nobody said.
    finish_reason: str | None = None
    # How many tool calls ran in the turn (section 11).
    tool_calls: int = 0
    # The calls of the last round to tools the API client runs itself (``Tool.runs_on_client``):
    # each ``{"call_id", "name", "arguments"}``; sent only when there are some (finish_reason
    # is then "tool_calls"). sluice ran none of them: they have no ``tool_call`` event.
    client_tool_calls: tuple[Mapping[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "complete",
            "message": self.message,
            "session_id": self.session_id,
            "suggestions": list(self.suggestions),
            "provider": self.provider,
            "model": self.model,
            "mode": self.mode,
            "fallback": self.fallback,
            "usage": None if self.usage is None else dict(self.usage),
            "finish_reason": self.finish_reason,
            "tool_calls": self.tool_calls,
        }
        if self.client_tool_calls:
            data["client_tool_calls"] = [dict(call) for call in self.client_tool_calls]
        return data


@dataclass(frozen=True, slots=True)
class Error(EventBase):
    """The turn failed. ``message`` is read by a person: no internals, no stack traces."""

    type: ClassVar[str] = "error"
    _optional: ClassVar[frozenset[str]] = frozenset({"retry_after"})
    code: ErrorCode
    message: str
    retryable: bool
    retry_after: int | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "error",
            "code": str(self.code),
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        return data


@dataclass(frozen=True, slots=True)
class ToolCallEvent(EventBase):
    """The model called a tool. ``approval`` is ``"required"`` when the call waits for its
    owner's decision, ``"none"`` when it runs at once. Exactly one :class:`ToolResultEvent`
    with the same ``call_id`` follows before the turn ends."""

    type: ClassVar[str] = "tool_call"
    call_id: str
    name: str
    arguments: Mapping[str, Any]
    approval: Literal["required", "none"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": "tool_call",
            "call_id": self.call_id,
            "name": self.name,
            "arguments": dict(self.arguments),
            "approval": self.approval,
        }


@dataclass(frozen=True, slots=True)
class ToolResultEvent(EventBase):
    """What a tool call came to. ``content`` is what the model was given (cut to
    ``tools.max_result_chars``); ``error`` is absent when ``ok``."""

    type: ClassVar[str] = "tool_result"
    _optional: ClassVar[frozenset[str]] = frozenset({"error"})
    call_id: str
    name: str
    ok: bool
    content: str
    error: ToolErrorKind | None
    duration_ms: int

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "tool_result",
            "call_id": self.call_id,
            "name": self.name,
            "ok": self.ok,
            "content": self.content,
        }
        if self.error is not None:
            data["error"] = str(self.error)
        data["duration_ms"] = self.duration_ms
        return data


@dataclass(frozen=True, slots=True)
class Reasoning(EventBase):
    """The next piece of the model's visible reasoning; never part of ``complete.message``."""

    type: ClassVar[str] = "reasoning"
    content: str

    def as_dict(self) -> dict[str, Any]:
        return {"type": "reasoning", "content": self.content}


Event = Status | Context | Chunk | Complete | Error | ToolCallEvent | ToolResultEvent | Reasoning
"""Any of the events."""

TERMINAL_TYPES = frozenset({"complete", "error"})
"""The ``type`` of the events that end a turn: exactly one of them ends every stream."""


def status(stage: str, state: Literal["start", "done"], progress: int) -> Status:
    """A ``status`` event (the pipeline makes these for every stage)."""
    return Status(stage, state, progress)


def context(session_id: str, intent: Mapping[str, Any], remembered: Mapping[str, Any]) -> Context:
    """A ``context`` event: the session, the intent found, and what the session remembers."""
    return Context(session_id, intent, remembered)


def chunk(content: str) -> Chunk:
    """A ``chunk`` event: the next piece of the answer."""
    return Chunk(content)


def complete(
    message: str,
    *,
    session_id: str | None,
    suggestions: list[str] | tuple[str, ...],
    provider: str,
    model: str,
    mode: str,
    fallback: bool,
    usage: Mapping[str, Any] | None,
    finish_reason: str | None = None,
    tool_calls: int = 0,
    client_tool_calls: tuple[Mapping[str, Any], ...] = (),
) -> Complete:
    """The ``complete`` event that ends a turn with its answer."""
    return Complete(
        message,
        session_id,
        tuple(suggestions),
        provider,
        model,
        mode,
        fallback,
        usage,
        finish_reason,
        tool_calls,
        tuple(client_tool_calls),
    )


def error(
    code: ErrorCode | str, message: str, *, retryable: bool, retry_after: float | None = None
) -> Error:
    """An ``error`` event; ``retry_after`` is rounded up to whole seconds."""
    seconds = None if retry_after is None else max(0, round(retry_after + 0.499))
    return Error(ErrorCode(code), message, retryable, seconds)


def tool_call(
    call_id: str,
    name: str,
    arguments: Mapping[str, Any],
    *,
    approval: Literal["required", "none"],
) -> ToolCallEvent:
    """A ``tool_call`` event: the model called ``name`` with ``arguments``."""
    return ToolCallEvent(call_id, name, arguments, approval)


def tool_result(
    call_id: str,
    name: str,
    *,
    ok: bool,
    content: str,
    error: ToolErrorKind | str | None = None,
    duration_ms: int,
) -> ToolResultEvent:
    """A ``tool_result`` event: what the call ``call_id`` came to."""
    if ok != (error is None):
        raise ValueError("a tool result has an error exactly when it is not ok")
    kind = None if error is None else ToolErrorKind(error)
    return ToolResultEvent(call_id, name, ok, content, kind, duration_ms)


def reasoning(content: str) -> Reasoning:
    """A ``reasoning`` event: the next piece of the model's visible reasoning."""
    return Reasoning(content)


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """The event whose JSON is ``data`` (as read back from a stream log)."""
    kind = data.get("type")
    if kind == "chunk":
        return Chunk(data["content"])
    if kind == "status":
        return Status(data["stage"], data["state"], data["progress"], data.get("stream_id"))
    if kind == "context":
        return Context(data["session_id"], data["intent"], data["context"])
    if kind == "complete":
        return Complete(
            data["message"],
            data.get("session_id"),
            tuple(data.get("suggestions") or ()),
            data.get("provider", ""),
            data.get("model", ""),
            data.get("mode", ""),
            bool(data.get("fallback")),
            data.get("usage"),
            data.get("finish_reason"),
            int(data.get("tool_calls") or 0),
            tuple(data.get("client_tool_calls") or ()),
        )
    if kind == "error":
        return Error(
            ErrorCode(data["code"]),
            data.get("message", ""),
            bool(data.get("retryable")),
            data.get("retry_after"),
        )
    if kind == "tool_call":
        return ToolCallEvent(data["call_id"], data["name"], data["arguments"], data["approval"])
    if kind == "tool_result":
        error = data.get("error")
        return ToolResultEvent(
            data["call_id"],
            data["name"],
            bool(data["ok"]),
            data["content"],
            None if error is None else ToolErrorKind(error),
            int(data.get("duration_ms", 0)),
        )
    if kind == "reasoning":
        return Reasoning(data["content"])
    raise ValueError(f"not an event type: {kind!r}")
