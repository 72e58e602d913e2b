"""Anthropic's Claude, through the official ``anthropic`` SDK and its Messages API.

As for OpenAI: the SDK makes the request (the key, ``anthropic-version``, base URL, error
classes) on the server's pooled HTTP client; the streamed events are read as bytes
from ``with_streaming_response`` and parsed with ``jiter``, without the SDK's typed event
per frame (per-chunk SDK objects are the main cost of a relay: ``docs/providers.md`` has the
figures). Plain calls use the typed SDK result: one object per answer is cheap.

The stream is a sequence of events: ``message_start`` (the input usage),
``content_block_start`` / ``content_block_delta`` / ``content_block_stop`` per block,
``message_delta`` (stop reason, output usage), ``message_stop``; ``ping`` at any time, and an
``error`` event (``overloaded_error``…) that can come after text. Blocks, by their index:

* ``text``: ``text_delta`` pieces are the answer's text;
* ``thinking``: ``thinking_delta`` pieces are yielded as :class:`ReasoningPart` pieces as they
  come, the block's ``signature_delta`` as a part with that signature at the block's end;
* ``redacted_thinking``: its encrypted ``data`` as a part to send back as it came;
* ``tool_use``: the ``input_json_delta`` pieces are put together and the call yielded as a
  :class:`ToolCall` when the block stops (arguments that are not a JSON object give a call
  with ``arguments_error``).

SDK retries are off (``max_retries=0``): the fallback chain is the only retry loop.

The SDK is imported only by an instance that has a key: it takes several times as long to
import as the openai SDK (its many typed models), and a server start that builds every
installed provider to see which are configured should not pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import httpx2
from pydantic import Field

from server import (
    BodyReader,
    Completion,
    FailureKind,
    GenerationParams,
    JSONFrameStream,
    Message,
    ProviderContext,
    ProviderError,
    ProviderOptions,
    ReasoningPart,
    Tool,
    ToolCall,
    Usage,
    body_reader,
    error_from_status,
    parse_arguments,
    redact,
    retry_after_from_headers,
    unreachable_error,
)

from .anthropic_prompt import (
    SOURCE,
    in_tool_loop_without_thinking,
    mark_cache_breakpoints,
    to_anthropic,
    tools_to_anthropic,
)

if TYPE_CHECKING:
    import anthropic

__all__ = ["AnthropicOptions", "AnthropicProvider"]

# The host root: the SDK adds /v1/messages, as it does to ANTHROPIC_BASE_URL.
ANTHROPIC_BASE_URL = "https://api.anthropic.com"

# Anthropic's stop reasons in the vocabulary the rest of sluice uses (OpenAI's).
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicOptions(ProviderOptions):
    """``[llm.anthropic]``; ``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_MODEL`` override the first
    two."""

    model: str = "claude-haiku-4-5"
    base_url: str | None = None
    # cache_control marks on the tools, the system prompt and the conversation so far, so
    # that each turn reads the previous ones from Anthropic's prompt cache.
    prompt_caching: bool = True
    # Anthropic caches no prefix shorter than its model's minimum: 1,024 tokens on most
    # models, more on some. No mark is set before the prompt is estimated to reach this.
    cache_min_tokens: int = Field(1024, ge=1)
    # Extended thinking: the tokens Claude may think for before it answers (at least 1,024,
    # Anthropic's minimum). None: no thinking. The answer keeps max_output_tokens of its
    # own: max_tokens is sent as the budget plus that.
    thinking_budget_tokens: int | None = Field(None, ge=1024)
    # Extra request headers, e.g. an anthropic-beta flag.
    headers: dict[str, str] = Field(default_factory=dict)
    # The environment variable holding the key. Default: ANTHROPIC_API_KEY for the instance
    # named "anthropic"; none for other instances, so Anthropic's key is never sent elsewhere.
    api_key_env: str | None = None


def _finish_reason(raw: str | None) -> str | None:
    if not raw:
        return None
    return _FINISH_REASONS.get(raw, raw)


def _usage_of(raw: dict[str, Any]) -> Usage:
    """sluice's usage from Anthropic's: its ``input_tokens`` leave out the tokens read from
    and written to the cache, sluice's count every prompt token."""
    fresh = raw.get("input_tokens")
    written = raw.get("cache_creation_input_tokens")
    read = raw.get("cache_read_input_tokens")
    output = raw.get("output_tokens")
    prompt = None if fresh is None else fresh + (written or 0) + (read or 0)
    return Usage(
        input_tokens=prompt,
        output_tokens=output,
        total_tokens=None if prompt is None or output is None else prompt + output,
        cached_tokens=read,
        cache_creation_tokens=written,
    )


def _call_of(call_id: str, name: str, arguments: object) -> ToolCall:
    """A plain answer's ``tool_use`` block as a call: its ``input`` is parsed already."""
    if isinstance(arguments, dict):
        return ToolCall(call_id, name, arguments)
    return ToolCall(call_id, name, {}, "the arguments must be a JSON object")


class AnthropicProvider:
    name: str = "anthropic"
    Options: ClassVar[type[ProviderOptions]] = AnthropicOptions

    def __init__(self, options: ProviderOptions, context: ProviderContext) -> None:
        self.options = (
            options
            if isinstance(options, AnthropicOptions)
            else AnthropicOptions.model_validate(options.model_dump())
        )
        self.model = self.options.model or AnthropicOptions.model_fields["model"].default
        self.base_url = (self.options.base_url or ANTHROPIC_BASE_URL).rstrip("/")
        self.name = context.name or type(self).name
        self._key_env = self.options.api_key_env or (
            "ANTHROPIC_API_KEY" if self.name == "anthropic" else None
        )
        self._key_label = self._key_env or f"llm.{self.name}.api_key_env"
        key = context.environ.get(self._key_env, "").strip() if self._key_env else ""
        self._key = key or None
        self._client: anthropic.AsyncAnthropic | None = None
        if self._key is not None:
            import anthropic  # here, not at the top: see the module docstring

            # No network I/O here: the pool connects on the first request. The key and the
            # base URL are always given, so that the SDK reads neither from the process
            # environment nor from a credentials profile on disk.
            self._client = anthropic.AsyncAnthropic(
                api_key=self._key,
                base_url=self.base_url,
                max_retries=0,
                default_headers=self.options.headers or None,
                http_client=context.http_client(),
            )

    def missing_configuration(self) -> str | None:
        if self._key is None:
            return (
                f"{self._key_label} is not set: export it, or remove {self.name} from llm.providers"
            )
        return None

    def _require_client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            raise ProviderError(FailureKind.AUTH, self.missing_configuration() or "not configured")
        return self._client

    def _body(
        self,
        messages: list[Message],
        max_output_tokens: int,
        params: GenerationParams | None,
        tools: Sequence[Tool] = (),
    ) -> dict[str, Any]:
        system, turns = to_anthropic(messages)
        wire_tools = tools_to_anthropic(tools)
        if self.options.prompt_caching:
            mark_cache_breakpoints(
                system, turns, tools=wire_tools, min_tokens=self.options.cache_min_tokens
            )
        budget = self.options.thinking_budget_tokens
        if budget is not None and in_tool_loop_without_thinking(turns):
            budget = None  # see in_tool_loop_without_thinking
        # The Messages API wants max_tokens on every request; with thinking, it must exceed
        # the budget (thinking counts against it).
        body: dict[str, Any] = {
            "model": self.model,
            "messages": turns,
            "max_tokens": max_output_tokens + (budget or 0),
        }
        if system:
            body["system"] = system
        if wire_tools:
            body["tools"] = wire_tools
        if budget is not None:
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if params is not None:
            sampling: dict[str, float] = {}
            if params.temperature is not None:
                if params.temperature > 1:
                    # OpenAI's scale reaches 2, Anthropic's 1: refuse rather than change the
                    # meaning, so that the chain asks a provider that can honour it.
                    raise ProviderError(
                        FailureKind.BAD_REQUEST,
                        f"{self.name} takes a temperature between 0 and 1.",
                    )
                if budget is not None:
                    # Thinking takes no temperature: refused, not dropped (the contract).
                    raise ProviderError(
                        FailureKind.BAD_REQUEST,
                        f"{self.name} thinks before it answers and then takes no temperature.",
                    )
                sampling["temperature"] = params.temperature
            if params.top_p is not None:
                if budget is not None and params.top_p < 0.95:
                    raise ProviderError(
                        FailureKind.BAD_REQUEST,
                        f"{self.name} thinks before it answers and then takes a top_p of "
                        "0.95 to 1 only.",
                    )
                sampling["top_p"] = params.top_p
            if sampling:
                # The SDK's typed parameters no longer list temperature and top_p (recent
                # models fix their own sampling), so they go as the API's own fields: a
                # model that cannot honour them refuses the request (400), and the chain
                # asks another provider rather than answer without them.
                body["extra_body"] = sampling
            if params.stop:
                body["stop_sequences"] = list(params.stop)
            choice = self._tool_choice(params, thinking=budget is not None)
            if choice is not None and wire_tools:
                body["tool_choice"] = choice
        return body

    def _tool_choice(self, params: GenerationParams, *, thinking: bool) -> dict[str, Any] | None:
        """The client's ``tool_choice`` and ``parallel_tool_calls`` as the Messages API's
        ``tool_choice`` (None: the API's default): ``required`` is ``any``, a named function
        ``tool``, one call at a time ``disable_parallel_tool_use``. Thinking allows only
        ``auto`` and ``none``: a forced call is refused then, not dropped."""
        wanted = params.tool_choice
        if wanted is None and params.parallel_tool_calls is not False:
            return None
        mode = "auto" if wanted is None else wanted.mode
        if thinking and mode in ("required", "function"):
            raise ProviderError(
                FailureKind.BAD_REQUEST,
                f"{self.name} thinks before it answers and then cannot be made to call a tool.",
            )
        choice: dict[str, Any] = {
            "type": {"auto": "auto", "none": "none", "required": "any", "function": "tool"}[mode]
        }
        if mode == "function" and wanted is not None:
            choice["name"] = wanted.name
        if params.parallel_tool_calls is False and mode != "none":
            choice["disable_parallel_tool_use"] = True
        return choice

    def stream(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
        tools: Sequence[Tool] = (),
    ) -> _AnthropicStream:
        return _AnthropicStream(self, (messages, max_output_tokens, params, tools), timeout)

    async def complete(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
        tools: Sequence[Tool] = (),
    ) -> Completion:
        import anthropic

        client = self._require_client()
        body = self._body(messages, max_output_tokens, params, tools)
        try:
            response = await client.messages.create(**body, timeout=httpx2.Timeout(timeout))
        except anthropic.APIError as error:
            raise self.error_from_sdk(error) from None
        text: list[str] = []
        calls: list[ToolCall] = []
        reasoning: list[ReasoningPart] = []
        for block in response.content:
            if block.type == "text":
                text.append(block.text)
            elif block.type == "tool_use":
                calls.append(_call_of(block.id, block.name, block.input))
            elif block.type == "thinking":
                reasoning.append(ReasoningPart(block.thinking, block.signature, SOURCE))
            elif block.type == "redacted_thinking":
                reasoning.append(ReasoningPart("", source=SOURCE, redacted=block.data))
        return Completion(
            text="".join(text),
            usage=_usage_of(response.usage.model_dump()),
            finish_reason=_finish_reason(response.stop_reason),
            model=response.model or self.model,
            tool_calls=tuple(calls),
            reasoning=tuple(reasoning),
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    def error_from_sdk(self, error: anthropic.APIError) -> ProviderError:
        """One line a person can act on, from an SDK error; no key, no upstream body."""
        import anthropic

        if isinstance(error, anthropic.APIConnectionError):
            timed_out = isinstance(error, anthropic.APITimeoutError)
            return unreachable_error(self.name, self.base_url, error, timed_out=timed_out)
        if not isinstance(error, anthropic.APIStatusError):
            return ProviderError(
                FailureKind.MALFORMED,
                f"{self.name} answered something unexpected.",
                detail=redact(str(error), [self._key]),
            )
        kind = str(error.type or "")
        upstream = str(error.api_message or "")
        return error_from_status(
            self.name,
            error.status_code,
            detail=redact(f"{kind} {upstream}".strip(), [self._key]),
            key_label=self._key_label,
            model=self.model,
            model_hint="set ANTHROPIC_MODEL (or [llm.anthropic] model) and check that "
            "ANTHROPIC_BASE_URL is the host alone, without /v1.",
            retry_after=retry_after_from_headers(error.response.headers),
        )


_Request = tuple[list[Message], int, GenerationParams | None, Sequence[Tool]]


class _AnthropicStream(JSONFrameStream):
    """One streaming call to ``/v1/messages``: events read as bytes. The answer is whole at
    ``message_stop`` (or once ``message_delta`` gave the stop reason); a body that ends
    before either was cut short."""

    def __init__(self, provider: AnthropicProvider, request: _Request, timeout: float) -> None:
        super().__init__(provider.name, provider._key)
        self._provider = provider
        # The body is built when the stream opens: a parameter the upstream cannot take is
        # a ProviderError from the first __anext__, as the contract says.
        self._request: _Request | None = request
        self._timeout = timeout
        self._usage: dict[str, Any] = {}
        # index -> the open block's state: a tool_use's [id, name, input pieces, input at
        # its start], a thinking block's [signature]. Text blocks need none.
        self._blocks: dict[int, list[Any]] = {}

    async def _open(self) -> BodyReader:
        import anthropic

        provider = self._provider
        client = provider._require_client()
        assert self._request is not None
        body = provider._body(*self._request)
        self._request = None  # not kept (the whole prompt) while the answer streams
        # The wrapper creates the request coroutine at once: enter it right away so that it is
        # always awaited. Reads are timed by the chain (first-token, idle), not by httpx.
        context = client.messages.with_streaming_response.create(
            **body,
            stream=True,
            timeout=httpx2.Timeout(self._timeout, read=None),
            extra_headers={"Accept-Encoding": "identity"},
        )
        try:
            response = await context.__aenter__()
        except anthropic.APIError as error:
            raise provider.error_from_sdk(error) from None
        # Only the body reader is kept: the SDK's response, and httpx2's request (headers
        # and the whole prompt) and response, are let go of while the answer streams.
        return body_reader(response.http_response)

    def _text(self, frame: dict[str, Any]) -> str | None:
        kind = frame.get("type")
        if kind == "content_block_delta":
            delta = frame["delta"]
            what = delta.get("type")
            if what == "text_delta":
                return str(delta["text"])
            if what == "thinking_delta":
                if delta["thinking"]:
                    self._calls.append(ReasoningPart(str(delta["thinking"])))
            elif what == "input_json_delta":
                self._blocks[frame["index"]][2].append(str(delta["partial_json"]))
            elif what == "signature_delta":
                self._blocks[frame["index"]][0] = str(delta["signature"])
            return None  # citations and delta types added later: not answer text
        if kind == "content_block_start":
            return self._start(frame["index"], frame["content_block"])
        if kind == "content_block_stop":
            self._stop(frame["index"])
        elif kind == "message_start":
            self._count(frame["message"].get("usage"))
        elif kind == "message_delta":
            reason = frame["delta"].get("stop_reason")
            if reason:
                self.finish_reason = _finish_reason(reason)
            self._count(frame.get("usage"))
        elif kind == "message_stop":
            self._mark_whole()
        return None  # ping, and event types added later

    def _start(self, index: int, block: dict[str, Any]) -> str | None:
        kind = block.get("type")
        if kind == "text":
            return str(block["text"]) if block.get("text") else None
        if kind == "tool_use":
            # The input starts as {} and comes whole in the input_json_delta pieces; a
            # proxy that gives it whole at the start sends no pieces.
            self._blocks[index] = [str(block["id"]), str(block["name"]), [], block.get("input")]
        elif kind == "thinking":
            self._blocks[index] = [block.get("signature") or None]
            if block.get("thinking"):
                self._calls.append(ReasoningPart(str(block["thinking"])))
        elif kind == "redacted_thinking":
            self._calls.append(ReasoningPart("", source=SOURCE, redacted=str(block["data"])))
        return None

    def _stop(self, index: int) -> None:
        state = self._blocks.pop(index, None)
        if state is None:
            return
        if len(state) == 4:
            call_id, name, pieces, whole = state
            if pieces or not whole:
                self._calls.append(parse_arguments(call_id, name, "".join(pieces)))
            else:
                self._calls.append(_call_of(call_id, name, whole))
        elif state[0]:
            self._calls.append(ReasoningPart("", signature=state[0], source=SOURCE))

    def _count(self, raw: Any) -> None:
        """``message_start`` carries the input figures, ``message_delta`` the output so
        far (and, from newer API versions, the input again): the latest of each wins."""
        if isinstance(raw, dict):
            self._usage.update((k, v) for k, v in raw.items() if isinstance(v, int))
            self.usage = _usage_of(self._usage)
