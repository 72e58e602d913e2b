"""A test harness for plugin authors: run a stage, or a whole pipeline, in-process.

No server, no network, no configuration file. A pipeline runs on the real machinery (the
same run loop, event rules and fallback chain as the server), with a
:class:`ScriptedProvider` in place of a language model and sessions in a throw-away SQLite
file::

    from server.testing import ScriptedProvider, run_pipeline

    def test_my_filter():
        result = run_pipeline(
            ["my_filter", "llm"],
            provider=ScriptedProvider(["Hello ", "darn ", "world"]),
        )
        assert result.text == "Hello **** world"
        assert result.complete["message"] == result.text

Stages are named as in ``[pipeline] stages`` (installed entry points), or given as classes
(``WordFilter`` is then named ``word_filter``) or ``(name, class)`` pairs.
A tool runs as the server runs it with :func:`run_tool`. A provider that calls tools is
scripted by rounds, one per call the llm stage makes::

    provider = ScriptedProvider(rounds=[
        ["Let me look. ", ToolCall("call_1", "weather", {"city": "Oslo"})],
        ["Sunny in Oslo."],
    ])
    result = run_pipeline(["llm"], provider=provider, tools=[weather])
    assert result.of_type("tool_result")[0]["ok"]
Each function has an ``async`` twin (``run_pipeline_async``, ``run_stage_async``,
``run_tool_async``) for tests
that already run in an event loop.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from server.config import ToolSettings
from server.contract import (
    AnyStage,
    Completion,
    Event,
    GenerationParams,
    Message,
    ProviderContext,
    ProviderError,
    ProviderOptions,
    ReasoningPart,
    Rest,
    Services,
    Stage,
    Tool,
    ToolCall,
    ToolContext,
    ToolResult,
    Turn,
    Usage,
    WrapperStage,
)
from server.core.pipeline import Pipeline
from server.llm.chain import LLMChain
from server.llm.transport import provider_context as server_provider_context
from server.registry import STAGE_GROUP, installed
from server.stores.memory import MemoryRateLimitStore
from server.stores.rate_limits import ConfiguredRateLimiter
from server.stores.sqlite import SQLiteSessionStore
from server.tools.approvals import MemoryApprovals
from server.tools.runner import run_tool_call
from server.tools.service import ServerTools

__all__ = [
    "ScriptedProvider",
    "TurnResult",
    "make_services",
    "make_turn",
    "provider_context",
    "run_pipeline",
    "run_pipeline_async",
    "run_stage",
    "run_stage_async",
    "run_tool",
    "run_tool_async",
]

StageSpec = str | type[Stage] | type[WrapperStage] | tuple[str, type[Stage] | type[WrapperStage]]


class ScriptedProvider:
    """A provider that answers with the deltas it is given.

    ``rounds``, when given, scripts one answer per call (a round of a turn with tools): each
    a list of text deltas and :class:`ToolCall` s, the last one repeated when calls outrun
    them. ``fail`` (a :class:`ProviderError`) is raised before the first delta, or after
    ``fail_after`` deltas; ``prompts`` records every prompt it was given, ``tools`` the
    names of the tools each call offered.
    """

    name = "scripted"
    Options: ClassVar[type[ProviderOptions]] = ProviderOptions

    def __init__(
        self,
        deltas: Iterable[str] = ("Hello ", "world"),
        *,
        model: str = "scripted-1",
        fail: ProviderError | None = None,
        fail_after: int = 0,
        rounds: Iterable[Iterable[str | ToolCall | ReasoningPart]] | None = None,
    ) -> None:
        self.deltas: list[str | ToolCall | ReasoningPart] = list(deltas)
        self.rounds = [list(r) for r in rounds] if rounds is not None else None
        self.tools: list[list[str]] = []
        self.model = model
        self.fail = fail
        self.fail_after = fail_after
        self.prompts: list[list[Message]] = []
        # The sampling parameters each call was given (None: the client set none).
        self.params: list[GenerationParams | None] = []

    def missing_configuration(self) -> str | None:
        return None

    def _next(
        self, messages: list[Message], params: GenerationParams | None, tools: Sequence[Tool]
    ) -> list[str | ToolCall | ReasoningPart]:
        self.prompts.append(list(messages))
        self.params.append(params)
        self.tools.append([item.name for item in tools])
        if self.rounds is None:
            return self.deltas
        index = min(len(self.prompts) - 1, len(self.rounds) - 1)
        return self.rounds[index] if index >= 0 else []

    def stream(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
        tools: Sequence[Tool] = (),
    ) -> _ScriptedStream:
        return _ScriptedStream(self, self._next(messages, params, tools))

    async def complete(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
        tools: Sequence[Tool] = (),
    ) -> Completion:
        deltas = self._next(messages, params, tools)
        if self.fail is not None:
            raise self.fail
        text = "".join(d for d in deltas if isinstance(d, str))
        calls = tuple(d for d in deltas if isinstance(d, ToolCall))
        thoughts = tuple(d for d in deltas if isinstance(d, ReasoningPart))
        finish = "tool_calls" if calls else "stop"
        return Completion(
            text, Usage(1, len(deltas), None), finish, tool_calls=calls, reasoning=thoughts
        )

    async def aclose(self) -> None:
        return None


class _ScriptedStream:
    def __init__(
        self, provider: ScriptedProvider, deltas: list[str | ToolCall | ReasoningPart]
    ) -> None:
        self._provider = provider
        self._deltas = deltas
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    async def __aiter__(self) -> AsyncIterator[str | ToolCall | ReasoningPart]:
        provider = self._provider
        deltas = self._deltas
        for index, delta in enumerate(deltas):
            if provider.fail is not None and index == provider.fail_after:
                raise provider.fail
            yield delta
        if provider.fail is not None and provider.fail_after >= len(deltas):
            raise provider.fail
        self.usage = Usage(1, len(deltas), None)
        called = any(isinstance(delta, ToolCall) for delta in deltas)
        self.finish_reason = "tool_calls" if called else "stop"

    async def aclose(self) -> None:
        return None


@dataclass
class TurnResult:
    """What a turn sent: every event, in order, as the client would see it (as dicts)."""

    events: list[dict[str, Any]]
    turn: Turn
    services: Services = field(repr=False)

    @property
    def text(self) -> str:
        """Every chunk's content, joined."""
        return "".join(e["content"] for e in self.events if e["type"] == "chunk")

    @property
    def terminal(self) -> dict[str, Any]:
        return self.events[-1]

    @property
    def complete(self) -> dict[str, Any]:
        """The ``complete`` event (fails the test if the turn ended otherwise)."""
        assert self.terminal["type"] == "complete", self.terminal
        return self.terminal

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


def make_turn(message: str = "Hello", **fields: Any) -> Turn:
    """A turn as the server would start it (``stream_id``, ``user_id``… may be given)."""
    values: dict[str, Any] = {
        "stream_id": "st_test",
        "user_id": "tester",
        "message": message,
        "client_ip": "127.0.0.1",
        "deadline": time.monotonic() + 60,
    }
    values.update(fields)
    return Turn(**values)


def make_services(
    provider: Any = None,
    *,
    data_dir: Path | None = None,
    requests_per_minute: float = 600,
    burst: int = 100,
    tool_options: Mapping[str, Any] | None = None,
) -> Services:
    """Services like the server's: sessions in SQLite under ``data_dir`` (a new temporary
    folder by default), in-process rate limits, an answer chain of ``provider``, and the
    tool service with the ``[tools]`` limits of ``tool_options`` (approvals in process)."""
    folder = data_dir or Path(tempfile.mkdtemp(prefix="sluice-test-"))
    chain = LLMChain(
        [provider or ScriptedProvider()],
        max_output_tokens=256,
        first_token_timeout=5,
        idle_timeout=5,
        circuit_failures=3,
        circuit_cooldown=30,
    )
    return Services(
        sessions=SQLiteSessionStore(folder / "sessions.sqlite3"),
        rate_limits=ConfiguredRateLimiter(
            MemoryRateLimitStore(), requests_per_minute=requests_per_minute, burst=burst
        ),
        llm=chain,
        tools=ServerTools(ToolSettings.model_validate(dict(tool_options or {})), MemoryApprovals()),
    )


def _stage_class(spec: StageSpec) -> tuple[str, Any]:
    """A stage's name and class: an installed stage by name, a class (named like its class,
    in snake case: ``WordFilter`` is ``word_filter``), or a ``(name, class)`` pair."""
    if isinstance(spec, tuple):
        return spec
    if isinstance(spec, str):
        point = installed(STAGE_GROUP).get(spec)
        if point is None:
            raise LookupError(f"no installed stage is called {spec!r}")
        return spec, point.load()
    return re.sub(r"(?<!^)(?=[A-Z])", "_", spec.__name__).lower(), spec


def _build(spec: StageSpec, options: Mapping[str, Any] | None, services: Services) -> AnyStage:
    name, cls = _stage_class(spec)
    stage: AnyStage = cls(cls.Options.model_validate(dict(options or {})), services)
    stage.name = name
    return stage


async def run_pipeline_async(
    stages: Sequence[StageSpec],
    *,
    message: str = "Hello",
    provider: Any = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    services: Services | None = None,
    turn: Turn | None = None,
    tools: Iterable[Tool] = (),
) -> TurnResult:
    """Run ``stages`` (names or classes, in order) on one message; ``options`` maps a
    stage's name to its ``[stages.<name>]`` table. ``tools`` are the turn's tools."""
    services = services or make_services(provider)
    built = [_build(spec, (options or {}).get(_stage_class(spec)[0]), services) for spec in stages]
    for stage in built:
        await stage.startup()
    turn = turn or make_turn(message)
    for item in tools:
        turn.tools.add(item)
    try:
        events = [event.as_dict() async for event in Pipeline(built).run(turn)]
    finally:
        for stage in built:
            await stage.shutdown()
    return TurnResult(events, turn, services)


def run_pipeline(stages: Sequence[StageSpec], **kwargs: Any) -> TurnResult:
    """:func:`run_pipeline_async` in an event loop of its own."""
    return asyncio.run(run_pipeline_async(stages, **kwargs))


async def run_stage_async(
    stage: StageSpec,
    *,
    message: str = "Hello",
    options: Mapping[str, Any] | None = None,
    rest: Iterable[Event] = (),
    services: Services | None = None,
    turn: Turn | None = None,
) -> TurnResult:
    """Run one stage alone. A wrapper's ``rest`` yields the events of ``rest``; the result
    holds the stage's own events (no ``status`` events: there is no pipeline around it)."""
    services = services or make_services()
    built = _build(stage, options, services)
    turn = turn or make_turn(message)
    inner = list(rest)

    async def rest_events(_: Turn) -> AsyncIterator[Event]:
        for event in inner:
            yield event

    given: Rest = rest_events
    events: AsyncIterator[Event] = (
        built.wrap(turn, given) if isinstance(built, WrapperStage) else built.run(turn)
    )
    return TurnResult([event.as_dict() async for event in events], turn, services)


def run_stage(stage: StageSpec, **kwargs: Any) -> TurnResult:
    """:func:`run_stage_async` in an event loop of its own."""
    return asyncio.run(run_stage_async(stage, **kwargs))


def provider_context(environ: Mapping[str, str] | None = None, name: str = "") -> ProviderContext:
    """A :class:`ProviderContext` for testing a provider plugin, with the server's pooled
    HTTP client behind ``http_client()``."""
    return server_provider_context(environ or {}, name=name)


async def run_tool_async(
    target: Tool,
    arguments: Mapping[str, Any],
    *,
    user_id: str = "test-user",
    session_id: str | None = None,
    timeout: float = 30.0,
    max_result_chars: int = 16000,
) -> ToolResult:
    """Call a tool as the server does (arguments validated first, a failure or timeout
    turned into a result, the text cut to ``max_result_chars``) and return what the model
    would be given."""
    context = ToolContext(user_id=user_id, session_id=session_id, call_id="test-call")
    run = await run_tool_call(
        target,
        ToolCall("test-call", target.name, dict(arguments)),
        context,
        timeout=timeout,
        max_result_chars=max_result_chars,
    )
    return run.result


def run_tool(target: Tool, arguments: Mapping[str, Any], **kwargs: Any) -> ToolResult:
    """:func:`run_tool_async` in an event loop of its own."""
    return asyncio.run(run_tool_async(target, arguments, **kwargs))
