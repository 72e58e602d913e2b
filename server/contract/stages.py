"""Stages: the turn they work on, the two kinds of stage, and the services they may call.

A stage is a class registered in the ``sluice.stages`` entry point group and named in
``[pipeline] stages``. There are two kinds, modelled on pytest's plain hooks and wrappers:

* :class:`Stage` — ``async def run(self, turn)`` yields events, then the next stage runs.
* :class:`WrapperStage` — ``async def wrap(self, turn, rest)`` iterates ``rest(turn)`` (all
  the stages after it) and yields what the client should see: it can transform events
  (redact a chunk), act before and after the rest (save the answer), or not call ``rest``.

Yielding a terminal event (``complete`` or ``error``) ends the turn: no later stage runs. A
stage whose class sets ``ends_turn = True`` (like ``llm``) always does, so nothing may be
placed after it. Options come from ``[stages.<name>]`` and are validated at start-up by the
stage's ``Options`` model (unknown keys refused).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from server.contract.answers import AnswerResult, AnswerService
from server.contract.events import Event
from server.contract.parts import ImagePart
from server.contract.providers import DEFAULT_PARAMS, GenerationParams, Message, Usage
from server.contract.stores import RateLimiter, SessionStore
from server.contract.tools import ToolService
from server.contract.toolset import ToolSet
from server.contract.usage import UsageService

__all__ = [
    "AnyStage",
    "LostTurn",
    "Rest",
    "Services",
    "Stage",
    "StageOptions",
    "Turn",
    "WrapperStage",
]


@dataclass(eq=False, slots=True)
class Turn:
    """One user message on its way through the pipeline. Stages read and change it.

    Its fields are all there is (slots: every open stream has one, and a slotted object is
    half the size): a stage keeps its own data in ``state``."""

    stream_id: str
    user_id: str
    # The user's new message. Empty when the turn continues a conversation the client keeps
    # whose last messages are its tools' results (``client_history`` then ends with them):
    # the prompt ends with the history, and no user message is added.
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
    # Free space for plugins; use your stage name as a key prefix. The server keeps
    # nothing of its own here.
    state: dict[str, Any] = field(default_factory=dict)
    # Set by the API that started the turn. An API client that keeps the conversation itself
    # (OpenAI's Chat Completions: every request carries the whole of it) sends it here,
    # oldest first: when this is not None the session stage neither loads nor saves
    # history, and uses this as ``history``. None: a stored session (the usual case).
    client_history: list[Message] | None = None
    # Set by the API for a stored session: the user message this one replaces (it starts a
    # new branch beside it, from the same earlier messages), or the user message to answer
    # again (a new variant of its answer; no user message is saved). None: carry on.
    edit_of: int | None = None
    answer_again: int | None = None
    # The client's own instructions (OpenAI "system" / "developer" messages): the context
    # stage places them after the server's system prompt, never in its place.
    instructions: list[str] = field(default_factory=list)
    # The client's sampling parameters, for the answer service.
    params: GenerationParams = DEFAULT_PARAMS
    # One configured provider (by its name) to answer alone, or None for the fallback chain.
    provider: str | None = None
    # Filled by the llm stage: why the model stopped ("stop", "length", ...), when it said.
    finish_reason: str | None = None
    # Filled by the llm stage: who wrote the answer, also when it was interrupted or
    # stopped half-way (None when no provider sent any text).
    answered_by: AnswerResult | None = None
    # The tools the model may call in this turn: a copy of the server's (``[tools]``
    # plugins and MCP servers' tools) made as the turn starts, so a stage before ``llm``
    # may add or remove tools for this turn alone (``turn.tools.remove("shell")``).
    tools: ToolSet = field(default_factory=ToolSet)
    # The images sent with ``message`` (the stream endpoint's ``images``, an OpenAI client's
    # ``image_url`` parts): the context stage gives them to the model with the message, and
    # the session stage stores them with it.
    images: list[ImagePart] = field(default_factory=list)
    # The caller's verified JWT claims (empty for a cookie or a static token): a stage may
    # read its own claims here (the usage stage: ``budget_group``).
    claims: Mapping[str, Any] = field(default_factory=dict)
    # Filled by the llm stage: the tokens of every model call of the turn so far, summed,
    # as the providers counted them; None once a call ended without its figures (stopped,
    # or a provider that sends none), so that whoever records usage knows to estimate.
    usage: Usage | None = None
    # Filled by the llm stage as each model call ends (stopped ones too): the characters the
    # models sent in this turn (answer, reasoning, tool calls' arguments), from which whoever
    # records usage estimates the output tokens a provider did not count.
    output_chars: int = 0


@dataclass(frozen=True, slots=True)
class LostTurn:
    """A turn whose producer died mid-answer (its process killed), as another instance
    found it (shared stores only): the user's ``message`` and the ``partial`` answer its
    clients were sent (``""`` when none), for :meth:`Stage.turn_lost`."""

    stream_id: str
    user_id: str
    session_id: str
    message: str
    partial: str


Rest = Callable[[Turn], AsyncIterator[Event]]
"""``rest(turn)``: the events of every stage after a wrapper, already status-announced."""


class StageOptions(BaseModel):
    """Base for a stage's ``[stages.<name>]`` options; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class Services:
    """What the server lends to stages: the stores and the answer service.

    ``sessions`` keeps conversations (SQLite, or PostgreSQL with ``DATABASE_URL``);
    ``rate_limits`` takes tokens from the configured buckets (``[rate_limit]``);
    ``llm`` answers a prompt through the provider fallback chain; ``tools`` runs tool calls
    under the ``[tools]`` limits and waits for approvals (None: the turn offers no tools);
    ``usage`` keeps the usage ledger and the budgets (``[budgets]``, ``[pricing]``).
    """

    sessions: SessionStore
    rate_limits: RateLimiter
    llm: AnswerService
    tools: ToolService | None = None
    usage: UsageService | None = None


class _BaseStage:
    # Set by the loader to the name the stage is registered and configured under.
    name: str = ""
    Options: ClassVar[type[StageOptions]] = StageOptions
    # True for a stage that always yields a terminal event (the answer): nothing may follow.
    ends_turn: ClassVar[bool] = False
    # True for a stage whose work a client need not watch (the usage ledger): the pipeline
    # sends no ``status`` events for it, which saves two events a turn.
    quiet: ClassVar[bool] = False

    def __init__(self, options: Any, services: Services) -> None:
        self.options = options
        self.services = services

    async def startup(self) -> None:
        """Called once before the server accepts requests."""

    async def shutdown(self) -> None:
        """Called once when the server stops."""

    async def turn_ended(self, turn: Turn, end: Event | None) -> None:
        """Called once the turn has ended, for a stage whose ``run`` (or ``wrap``) began:
        ``end`` is the terminal event the client was given, or None when the turn was torn
        down before one. Stages that override it are found once, when the pipeline is built,
        and called innermost first; the others cost nothing. For work at the end of every
        turn (the usage stage settles the turn's budget and ledger entry here) without
        another layer around the stream; what it raises is logged, never sent."""

    async def turn_lost(self, lost: LostTurn) -> None:
        """Called, in the instance that found it, for a turn whose producer died before the
        turn ended (its ``wrap`` never resumed): a stage that keeps something at the end of
        a turn (the session stage: the answer) keeps what it can of this one here."""


class Stage(_BaseStage):
    """A plain stage: does its work, yields its events, and hands over to the next.

    ``run`` must be an async generator (``async def`` with ``yield``); a stage with nothing
    to say still needs one ``yield`` in its body, or ``return; yield``.
    """

    def run(self, turn: Turn) -> AsyncIterator[Event]:
        raise NotImplementedError


class WrapperStage(_BaseStage):
    """A stage around the rest of the pipeline (see the module docstring).

    ``wrap(self, turn, rest)`` must be an async generator. When it changes, drops or adds
    chunks, the ``complete`` it yields is given the text it let through as ``message``.
    """

    def wrap(self, turn: Turn, rest: Rest) -> AsyncIterator[Event]:
        raise NotImplementedError


AnyStage = Stage | WrapperStage
