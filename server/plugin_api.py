"""Everything a stage plugin needs, in one module (the way ``datasette/hookspecs.py`` is).

A stage is a class registered in the ``sluice.stages`` entry point group and named in
``[pipeline] stages``. There are two kinds, modelled on pytest's plain hooks and wrappers:

* :class:`Stage` — ``async def run(self, turn)`` yields events, then the next stage runs.
* :class:`WrapperStage` — ``async def wrap(self, turn, rest)`` iterates ``rest(turn)`` (all
  the stages after it) and yields what the client should see: it can transform events
  (redact a chunk), act before and after the rest (save the answer), or not call ``rest``.

Yielding a terminal event (``complete`` or ``error``) ends the turn: no later stage runs.
Options come from ``[stages.<name>]`` and are validated at start-up by the stage's
``Options`` model (unknown keys refused). The built-in stages in ``plugins/`` use nothing
but this module.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from server.providers import Message

if TYPE_CHECKING:
    from server.config import Settings
    from server.llm_chain import LLMChain
    from server.stores import RateLimitStore, SessionStore

__all__ = [
    "TERMINAL_TYPES",
    "Event",
    "Message",
    "Rest",
    "Services",
    "Stage",
    "StageOptions",
    "Turn",
    "WrapperStage",
    "chunk",
    "complete",
    "context",
    "error",
    "status",
]

Event = dict[str, Any]
"""An event is a JSON-ready dict whose ``type`` is one of the five event types."""

TERMINAL_TYPES = frozenset({"complete", "error"})


def status(stage: str, state: str, progress: int) -> Event:
    return {"type": "status", "stage": stage, "state": state, "progress": progress}


def context(session_id: str, intent: dict[str, Any], remembered: dict[str, Any]) -> Event:
    return {"type": "context", "session_id": session_id, "intent": intent, "context": remembered}


def chunk(content: str) -> Event:
    return {"type": "chunk", "content": content}


def complete(
    message: str,
    *,
    session_id: str | None,
    suggestions: list[str],
    provider: str,
    model: str,
    mode: str,
    fallback: bool,
    usage: dict[str, Any] | None,
) -> Event:
    return {
        "type": "complete",
        "message": message,
        "session_id": session_id,
        "suggestions": suggestions,
        "provider": provider,
        "model": model,
        "mode": mode,
        "fallback": fallback,
        "usage": usage,
    }


def error(code: str, message: str, *, retryable: bool, retry_after: float | None = None) -> Event:
    """An ``error`` event. ``message`` is read by a person: no internals, no stack traces."""
    event: Event = {"type": "error", "code": code, "message": message, "retryable": retryable}
    if retry_after is not None:
        event["retry_after"] = max(0, round(retry_after + 0.499))  # whole seconds, rounded up
    return event


@dataclass(eq=False)
class Turn:
    """One user message on its way through the pipeline. Stages read and change it."""

    stream_id: str
    user_id: str
    message: str
    client_ip: str
    session_id: str | None = None
    # Filled by the session stage: earlier messages of this session, oldest first.
    history: list[Message] = field(default_factory=list)
    # What the session remembers across turns (entities such as a location).
    memory: dict[str, Any] = field(default_factory=dict)
    # Filled by the intent stage: {"name", "confidence", "entities"}.
    intent: dict[str, Any] | None = None
    suggestions: list[str] = field(default_factory=list)
    # Filled by the context stage: the messages the model is given.
    prompt: list[Message] = field(default_factory=list)
    # Monotonic instant by which the turn must end (stream.max_duration_seconds).
    deadline: float = 0.0
    started_at: float = field(default_factory=time.time)
    # Free space for plugins; use your stage name as a key prefix.
    state: dict[str, Any] = field(default_factory=dict)


Rest = Callable[[Turn], AsyncIterator[Event]]
"""``rest(turn)``: the events of every stage after a wrapper, already status-announced."""


class StageOptions(BaseModel):
    """Base for a stage's ``[stages.<name>]`` options; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class Services:
    """What the server lends to stages: settings and the shared stores."""

    settings: Settings
    sessions: SessionStore
    rate_limits: RateLimitStore
    llm: LLMChain


class _BaseStage:
    # Set by the loader to the name the stage is registered and configured under.
    name: str = ""
    Options: ClassVar[type[StageOptions]] = StageOptions

    def __init__(self, options: Any, services: Services) -> None:
        self.options = options
        self.services = services

    async def startup(self) -> None:
        """Called once before the server accepts requests."""

    async def shutdown(self) -> None:
        """Called once when the server stops."""


class Stage(_BaseStage):
    """A plain stage: does its work, yields its events, and hands over to the next."""

    def run(self, turn: Turn) -> AsyncIterator[Event]:
        raise NotImplementedError


class WrapperStage(_BaseStage):
    """A stage around the rest of the pipeline (see the module docstring)."""

    def wrap(self, turn: Turn, rest: Rest) -> AsyncIterator[Event]:
        raise NotImplementedError


AnyStage = Stage | WrapperStage
