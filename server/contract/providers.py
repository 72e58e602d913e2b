"""The provider contract: what an LLM backend offers the fallback chain.

A provider turns a list of chat messages into text, either as a stream of text deltas or in
one plain call. It knows nothing about fallback, circuits or the event stream: the chain in
:mod:`server.llm.chain` owns those. Providers register through the ``sluice.providers`` entry
point group, exactly like third-party ones; the built-ins live in ``plugins/providers``.

A provider *type* (the entry point: ``openai``, ``gemini``, ``demo``) can be configured as
several *instances*, each a ``[llm.<name>]`` table with ``type = "<entry point>"`` (the type
defaults to the name): say OpenRouter and a local Ollama, both of type ``openai``. The
loader sets each instance's ``name`` to its configured name, which is what ``status``,
``complete.provider``, metrics and logs show.

Usage and finish reason travel *beside* the text (on the stream object once it is exhausted,
or on :class:`Completion`), never inside it, so that nothing but answer text reaches ``chunk``
events.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from server.contract.parts import ImagePart, Part, ReasoningPart, ToolCall, ToolResult

if TYPE_CHECKING:
    import httpx2

    from server.contract.tools import Tool

__all__ = [
    "Completion",
    "FailureKind",
    "GenerationParams",
    "Message",
    "Provider",
    "ProviderContext",
    "ProviderError",
    "ProviderOptions",
    "ProviderStream",
    "ToolChoice",
    "Usage",
]

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message in the prompt, in OpenAI's role vocabulary.

    ``content`` is the message's text; ``parts`` the rest of it: an ``assistant`` message's
    :class:`ToolCall` parts (the calls it made after its text), a ``"tool"`` message's
    :class:`ToolResult` parts (one per call of the assistant message before it), a ``user``
    message's :class:`ImagePart` parts. Providers map roles and parts to their own wire
    format (Gemini has no ``system`` role in contents: it becomes the system instruction,
    ``assistant`` becomes ``model``, tool calls ``functionCall`` and results
    ``functionResponse``), so the message list of a turn with tool rounds can go to any of
    them.
    """

    role: Role
    content: str
    parts: tuple[Part, ...] = ()

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [part for part in self.parts if isinstance(part, ToolCall)]

    @property
    def tool_results(self) -> list[ToolResult]:
        return [part for part in self.parts if isinstance(part, ToolResult)]

    @property
    def images(self) -> list[ImagePart]:
        return [part for part in self.parts if isinstance(part, ImagePart)]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """Whether and which tool the model must call, as an OpenAI client asked (``tool_choice``).

    ``mode`` is ``"auto"`` (the model decides), ``"none"`` (no call), ``"required"`` (at
    least one call) or ``"function"``: a call to the tool ``name``. Gemini says ``AUTO``,
    ``NONE``, ``ANY`` (with ``allowedFunctionNames`` for one tool); Anthropic ``auto``,
    ``none``, ``any``, ``tool``.
    """

    mode: Literal["auto", "none", "required", "function"]
    name: str | None = None


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """How the model should sample, as a client asked (OpenAI's names and meanings).

    ``None`` (or an empty ``stop``) leaves the provider's default. ``max_output_tokens`` is the
    client's own limit; the chain passes providers the smaller of it and
    ``llm.max_output_tokens`` as their ``max_output_tokens`` argument, so a provider need
    not read it here. A provider maps the rest to its own request fields (Gemini:
    ``temperature``, ``topP``, ``stopSequences`` in ``generationConfig``) and must not
    silently drop one it was given: if its upstream cannot honour it, fail with
    ``FailureKind.BAD_REQUEST``.

    ``tool_choice`` and ``parallel_tool_calls`` (None: the provider's default) concern the
    ``tools`` of the call; a provider reads them only when it is given tools. The llm stage
    passes a ``"required"`` or ``"function"`` choice to a turn's first round only: once the
    model has called, later rounds of the same turn are ``"auto"``, or it would call forever.
    """

    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    max_output_tokens: int | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None

    def is_default(self) -> bool:
        return self == DEFAULT_PARAMS


DEFAULT_PARAMS = GenerationParams()
"""The parameters of a client that asked for nothing: every provider's defaults."""


@dataclass(slots=True)
class Usage:
    """Tokens an answer took, as the provider counted them (None when it did not say).

    ``input_tokens`` counts every prompt token, those read from or written to a prompt cache
    included; ``cached_tokens`` is the part of them read from the cache, and
    ``cache_creation_tokens`` the part written to it (Anthropic bills both apart from the
    rest of the input). A provider without a prompt cache leaves both None.
    ``reasoning_tokens`` is the part of ``output_tokens`` the model spent reasoning, when the
    provider says (OpenAI's ``completion_tokens_details.reasoning_tokens``, Gemini's
    ``thoughtsTokenCount``): reasoning is output, billed as output, though never answer text.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        """The figures for ``complete.usage``; the cache's and the reasoning's only when the
        provider gave them."""
        figures = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens is not None:
            figures["cached_tokens"] = self.cached_tokens
        if self.cache_creation_tokens is not None:
            figures["cache_creation_tokens"] = self.cache_creation_tokens
        if self.reasoning_tokens is not None:
            figures["reasoning_tokens"] = self.reasoning_tokens
        return figures


@dataclass(slots=True)
class Completion:
    """The result of a plain (non-streaming) call."""

    text: str
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None
    # The tools the model called after its text (finish_reason "tool_calls").
    tool_calls: tuple[ToolCall, ...] = ()
    # The model's reasoning before its text, one part per block (signature included).
    reasoning: tuple[ReasoningPart, ...] = ()


class FailureKind(enum.Enum):
    """Why a provider call failed; the chain decides what each means for fallback."""

    UNAVAILABLE = "unavailable"  # 5xx, connection refused/reset, DNS: try elsewhere
    RATE_LIMITED = "rate_limited"  # 429: skip this provider until retry_after
    TIMEOUT = "timeout"  # first-token or idle timeout
    AUTH = "auth"  # 401/403: the key is wrong; fix the configuration
    BAD_REQUEST = "bad_request"  # 400/404/422: unknown model, prompt refused…
    MALFORMED = "malformed"  # the upstream spoke something we could not parse
    STREAM_UNSUPPORTED = "stream_unsupported"  # streaming refused; a plain call may work


class ProviderError(Exception):
    """A failure the chain understands. ``message`` is safe to show a person.

    Never put API keys, raw upstream bodies or tracebacks in ``message``: it may reach the
    client in an ``error`` event. ``detail`` is for server-side logs only (still no keys).
    """

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        self.status = status
        self.detail = detail


@runtime_checkable
class ProviderStream(Protocol):
    """An async iterator of text deltas with usage and finish reason beside it.

    Text is yielded as plain ``str`` (no wrapper object per delta: that is the hot path). A
    call given ``tools`` may also yield a :class:`ToolCall`, once that call's arguments are
    complete; the stream then usually ends with ``finish_reason`` ``"tool_calls"``. A model
    that reasons visibly yields :class:`ReasoningPart` pieces (before its text, as a rule),
    which never count as answer text.
    ``usage`` and ``finish_reason`` are filled in by the time iteration ends. ``aclose()`` must
    close the upstream HTTP response at once (the upstream sees its connection close), and is
    safe to call more than once or after the end.
    """

    usage: Usage | None
    finish_reason: str | None

    def __aiter__(self) -> AsyncIterator[str | ToolCall | ReasoningPart]: ...

    async def aclose(self) -> None: ...


class ProviderOptions(BaseModel):
    """Base for a provider's ``[llm.<name>]`` options. Unknown keys are refused at start-up."""

    model_config = ConfigDict(extra="forbid")

    model: str = ""
    base_url: str | None = None
    # False: this instance's model cannot see pictures. A turn whose message carries some
    # skips it (the chain asks the next provider) and its history is given without them.
    vision: bool = True


class Provider(Protocol):
    """What the chain needs of a provider.

    Construction is ``ProviderClass(options, context)``: the validated ``[llm.<name>]`` options
    and a :class:`ProviderContext` (its configured name, the environment for key names, an
    HTTP client factory); it must not do network I/O. ``missing_configuration()`` says, in one
    line a person can act on, why the provider cannot run (no key set…), or None when it can.
    """

    name: str  # the configured name; the loader sets it on each instance
    Options: ClassVar[type[ProviderOptions]]
    model: str

    def missing_configuration(self) -> str | None: ...

    def stream(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
        tools: Sequence[Tool] = (),
    ) -> ProviderStream:
        """Start a streaming call. Errors before the first delta raise ProviderError from
        the first ``__anext__``; errors later raise ProviderError mid-iteration.
        ``timeout`` bounds connecting and the wait for response headers. ``params`` are the
        client's sampling parameters (temperature, top_p, stop), None when it gave none.
        ``tools`` are what the model may call (name, description, ``input_schema``); the
        chain passes the keyword only when there are some, so a provider that knows no
        tools still answers text turns. A call whose arguments are not a JSON object is
        yielded with ``arguments_error`` set: the model is told, the turn goes on."""
        ...

    async def complete(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
        tools: Sequence[Tool] = (),
    ) -> Completion: ...

    async def aclose(self) -> None:
        """Release the HTTP client and its pool at shutdown."""
        ...


def _no_http_client() -> httpx2.AsyncClient:
    raise RuntimeError("this ProviderContext was made without an http_client factory")


@dataclass
class ProviderContext:
    """What a provider receives besides its options.

    ``http_client()`` makes the pooled upstream HTTP client the server tunes for streaming
    (hand it to your SDK, or use it directly): an ``httpx2.AsyncClient`` whose streamed
    responses can be read with :func:`server.provider_kit.body_reader`.
    """

    environ: Mapping[str, str] = field(default_factory=dict)
    # Upper bound of concurrent upstream requests the server will make: size pools to it.
    max_connections: int = 256
    # The instance's configured name (``[llm.<name>]``), for messages and key lookup.
    name: str = ""
    http_client: Callable[[], httpx2.AsyncClient] = _no_http_client
    extra: dict[str, Any] = field(default_factory=dict)
