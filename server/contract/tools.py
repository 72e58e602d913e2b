"""The tool contract: what a tool author writes, and what the server calls.

A tool is a typed function. :func:`tool` (or :meth:`Tool.from_function`) reads the JSON schema
of its arguments from the type hints — or from its one pydantic-model parameter — and its
description from the docstring, as ``llm``'s tools and the ``mcp`` SDK's ``MCPServer.tool()``
do::

    @tool
    async def weather(city: str, ctx: ToolContext) -> str:
        '''Today's weather in a city.'''
        return f"Sunny in {city} (asked by {ctx.user_id})"

A parameter annotated :class:`ToolContext` is not an argument for the model: it receives the
call's context (user, session, the turn's cancellation signal). Arguments are validated
before the call; the server turns the return value into text for the model (``str`` as is,
anything else as JSON). Raise :class:`ToolError` to give the model a message of your choosing;
any other exception is a failed result too, never a crash of the turn.

Tools reach the server through the ``sluice.tools`` entry point group (a :class:`Tool`, an
``async def`` to be made into one, or a list of either) and ``[tools] enabled`` in config.toml.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, overload

import pydantic

if TYPE_CHECKING:
    from server.contract.events import ToolResultEvent
    from server.contract.parts import ToolCall

__all__ = [
    "Tool",
    "ToolArgumentsError",
    "ToolContext",
    "ToolError",
    "ToolService",
    "tool",
]


class ToolError(Exception):
    """Raised by a tool to fail with ``message`` given to the model as it is (so say what
    went wrong and what would work instead: "no city called 'Pariss'; check the spelling")."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ToolArgumentsError(Exception):
    """The model's arguments do not fit the tool's schema; ``message`` says how, for the model."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ToolContext:
    """What a tool knows about the call besides its arguments.

    ``cancelled`` is set when the turn is stopped. The server then cancels an ``async`` tool's
    task as well (a ``CancelledError`` at its next ``await``); a tool that works in a thread
    or polls something slow should check ``cancelled.is_set()`` between steps.
    """

    user_id: str
    session_id: str | None = None
    call_id: str = ""
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


Validator = Callable[[Mapping[str, Any]], Any]
"""Checks the model's arguments, returning what the tool's call takes; raises
:class:`ToolArgumentsError`."""
Invoker = Callable[[Any, ToolContext], Awaitable[Any]]
"""Runs the tool on validated arguments."""


@dataclass(frozen=True)
class Tool:
    """A tool the model may call: its name, description and argument schema as the model
    sees them, and how to validate and run a call.

    Make one with :func:`tool` / :meth:`from_function` from a typed function, or with
    :meth:`from_schema` from a JSON schema you already have (an MCP server's tools are made
    that way). ``requires_approval`` makes every call wait for its owner's decision.
    ``source`` says where it came from, for listings and logs (``"mcp:<server>"``, a package).

    ``runs_on_client`` marks a tool the API client declared and runs itself (an OpenAI
    client's ``tools``; make one with :meth:`for_client`): the model is offered it like any
    other, but sluice never runs it. A round in which the model calls one ends the turn with
    ``finish_reason`` ``"tool_calls"`` and those calls in ``complete.client_tool_calls``, for
    the client to run and answer in its next request.
    """

    name: str
    description: str
    input_schema: Mapping[str, Any]
    validate: Validator = field(repr=False)
    invoke: Invoker = field(repr=False)
    requires_approval: bool = False
    source: str = ""
    runs_on_client: bool = False

    @classmethod
    def for_client(cls, name: str, description: str, input_schema: Mapping[str, Any]) -> Tool:
        """A tool the client runs: offered to the model, never run by sluice (its calls end
        the turn). Its arguments are not checked here: the client checks its own."""

        def validate(raw: Mapping[str, Any]) -> Any:
            return raw

        async def invoke(validated: Any, context: ToolContext) -> Any:
            raise ToolError(f"{name!r} is run by the client, not by the server")

        return cls(
            name, description, input_schema, validate, invoke, source="client", runs_on_client=True
        )

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        requires_approval: bool = False,
    ) -> Tool:
        """A tool from a typed function (``async def``; a plain ``def`` runs in a thread).

        The schema comes from the parameters' type hints (``Annotated[str,
        Field(description=...)]`` describes one), or, for a function whose one argument is
        a pydantic model, from that model. The description is the docstring unless given.
        """
        if not callable(function):
            raise TypeError(f"a tool must be made from a function, not {function!r}")
        tool_name = name or getattr(function, "__name__", "")
        if not tool_name or tool_name == "<lambda>":
            raise ValueError("a tool needs a name: pass name= for a function without one")
        hints = typing.get_type_hints(function, include_extras=True)
        parameters = list(inspect.signature(function).parameters.values())
        context_names = [p.name for p in parameters if hints.get(p.name) is ToolContext]
        arguments = [p for p in parameters if p.name not in context_names]
        for parameter in arguments:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(f"tool {tool_name!r}: *args and **kwargs cannot be described")
            if parameter.name not in hints:
                raise TypeError(
                    f"tool {tool_name!r}: parameter {parameter.name!r} needs a type hint"
                    " (the model is told its type from it)"
                )
        single_model = _single_model(arguments, hints)
        model = single_model or pydantic.create_model(  # type: ignore[call-overload]
            f"{tool_name}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid"),
            **{
                p.name: (hints[p.name], ... if p.default is p.empty else p.default)
                for p in arguments
            },
        )
        schema = model.model_json_schema()
        schema.pop("title", None)
        is_async = inspect.iscoroutinefunction(function)

        def validate(raw: Mapping[str, Any]) -> Any:
            try:
                return model.model_validate(dict(raw))
            except pydantic.ValidationError as error:
                raise ToolArgumentsError(_describe(error)) from None

        async def invoke(validated: Any, context: ToolContext) -> Any:
            if single_model is not None:
                kwargs = {arguments[0].name: validated}
            else:
                kwargs = {p.name: getattr(validated, p.name) for p in arguments}
            kwargs.update(dict.fromkeys(context_names, context))
            if is_async:
                return await function(**kwargs)
            return await asyncio.to_thread(function, **kwargs)

        return cls(
            tool_name,
            description if description is not None else inspect.getdoc(function) or "",
            schema,
            validate,
            invoke,
            requires_approval,
            getattr(function, "__module__", "") or "",
        )

    @classmethod
    def from_schema(
        cls,
        name: str,
        description: str,
        input_schema: Mapping[str, Any],
        invoke: Callable[[dict[str, Any], ToolContext], Awaitable[Any]],
        *,
        requires_approval: bool = False,
        source: str = "",
    ) -> Tool:
        """A tool whose arguments are checked against ``input_schema`` (JSON Schema) and
        handed to ``invoke`` as a plain dict."""
        # Imported here: it takes half a second, and only MCP servers' tools need it.
        import jsonschema

        schema = dict(input_schema)
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)  # jsonschema.SchemaError: no use to the model
        checker = validator_class(schema)

        def validate(raw: Mapping[str, Any]) -> dict[str, Any]:
            arguments = dict(raw)
            problem = jsonschema.exceptions.best_match(checker.iter_errors(arguments))
            if problem is not None:
                where = "/".join(str(part) for part in problem.absolute_path)
                raise ToolArgumentsError(
                    f"{where}: {problem.message}" if where else problem.message
                )
            return arguments

        return cls(name, description, input_schema, validate, invoke, requires_approval, source)

    def schema(self) -> dict[str, Any]:
        """The tool as providers describe it: ``{"name", "description", "input_schema"}``."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": dict(self.input_schema),
        }


def _single_model(
    arguments: list[inspect.Parameter], hints: Mapping[str, Any]
) -> type[pydantic.BaseModel] | None:
    if len(arguments) != 1:
        return None
    hint = hints[arguments[0].name]
    if isinstance(hint, type) and issubclass(hint, pydantic.BaseModel):
        return hint
    return None


def _describe(error: pydantic.ValidationError) -> str:
    """The validation problems in a line or two the model can act on (no pydantic URLs)."""
    problems = []
    for item in error.errors(include_url=False)[:5]:
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a typed function a :class:`Tool`: ``@tool`` or ``@tool(name=..., ...)``."""

    def make(target: Callable[..., Any]) -> Tool:
        return Tool.from_function(
            target, name=name, description=description, requires_approval=requires_approval
        )

    return make if function is None else make(function)


class ToolService(Protocol):
    """What the server lends the stage that runs tool rounds (``services.tools``): the
    ``[tools]`` limits, the owner's approval, and running a call as section 11 says.

    Whatever a tool does, ``run`` returns its ``tool_result`` event (a failure, a timeout,
    invalid arguments are results for the model); only the caller's own cancellation leaves
    it, after the tool has been stopped.
    """

    max_rounds: int

    async def ask(self, stream_id: str, call: ToolCall) -> None:
        """Record ``call`` as waiting for its owner's decision: call it before the
        ``tool_call`` event leaves, so that a decision posted as soon as it is seen is taken."""
        ...

    async def approve(self, stream_id: str, call: ToolCall) -> bool:
        """Wait for the owner's decision on ``call`` (asked before; ``POST
        /api/streams/{stream_id}/tools/{call_id}``, through any instance): True when it was
        approved; False when refused, or undecided after ``tools.approval_timeout_seconds``.
        Cancelling the wait (a stop) settles the call as cancelled: a later decision is 409."""
        ...

    async def run(
        self, tool: Tool | None, call: ToolCall, context: ToolContext, *, deadline: float
    ) -> ToolResultEvent:
        """Run ``call`` (``tool`` None: no such tool) within ``tools.timeout_seconds`` and
        the turn's ``deadline`` (a ``time.monotonic()`` instant), its result cut to
        ``tools.max_result_chars``."""
        ...
