"""OpenAI, and anything that speaks its Chat Completions API (OpenRouter, vLLM, Ollama,
llama.cpp), through the official ``openai`` SDK.

The SDK makes the request (auth, base URL, headers, error classes); the streamed frames are
read as bytes from the unread response and parsed with ``jiter``, without building a
``ChatCompletionChunk`` per frame: that object costs several times the rest of the path
(``bench/provider_cpu.py`` measures both). Plain calls use the typed SDK
result: one object per answer is cheap.

SDK retries are off (``max_retries=0``): the fallback chain is the only retry loop.

Reasoning: the ``reasoning_content`` (DeepSeek, vLLM, llama.cpp) or ``reasoning`` (OpenRouter,
some vLLM versions) of a delta or a plain call's message is handed on as
:class:`ReasoningPart` pieces, and so is a ``<think>…</think>`` block that opens the content
(``think_tags``, see :mod:`plugins.providers.think_tags`). Reasoning is never sent back: these
servers either ignore it or refuse a message that carries it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx2
import openai
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
    Usage,
    body_reader,
    error_from_status,
    parse_arguments,
    redact,
    retry_after_from_headers,
    unreachable_error,
)

from .openai_internals import StreamRequests
from .think_tags import ThinkSplitter, split_whole

__all__ = ["OpenAIOptions", "OpenAIProvider", "to_openai", "tools_to_openai"]

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Sent as the bearer when a self-hosted server (Ollama, llama.cpp, vLLM) needs no key.
NO_KEY = "no-key"


class OpenAIOptions(ProviderOptions):
    """``[llm.openai]``; ``OPENAI_BASE_URL`` and ``OPENAI_MODEL`` override the first two."""

    model: str = "gpt-4o-mini"
    base_url: str | None = None
    # OpenAI's own API wants max_completion_tokens (reasoning models refuse max_tokens);
    # most compatible servers know only max_tokens. "auto" picks by the base URL.
    max_tokens_field: Literal["auto", "max_tokens", "max_completion_tokens"] = "auto"
    # Ask for usage in the last frame (stream_options.include_usage); turn off for a server
    # that refuses unknown fields.
    stream_usage: bool = True
    # Extra request headers, e.g. OpenRouter's HTTP-Referer and X-Title.
    headers: dict[str, str] = Field(default_factory=dict)
    # The environment variable holding the key. Default: OPENAI_API_KEY for the instance
    # named "openai"; none for other instances, so OpenAI's key is never sent elsewhere.
    api_key_env: str | None = None
    # A <think>…</think> block opening the answer's content is the model's reasoning, not its
    # answer: split it off (as reasoning events). Off hands the content on as it comes.
    think_tags: bool = True


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens_details")
    details = raw.get("completion_tokens_details")
    return Usage(
        input_tokens=raw.get("prompt_tokens"),
        output_tokens=raw.get("completion_tokens"),
        total_tokens=raw.get("total_tokens"),
        cached_tokens=prompt.get("cached_tokens") if isinstance(prompt, dict) else None,
        reasoning_tokens=details.get("reasoning_tokens") if isinstance(details, dict) else None,
    )


def _reasoning_of(fields: dict[str, Any]) -> str | None:
    """The reasoning a delta or message carries, under either name servers use for it."""
    thought = fields.get("reasoning_content") or fields.get("reasoning")
    return thought if isinstance(thought, str) and thought else None


def to_openai(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages in Chat Completions' vocabulary: an assistant message's tool calls become its
    ``tool_calls`` (arguments as JSON text), a ``tool`` message one ``role: "tool"`` message
    per result, a user message's images ``image_url`` content parts (data URLs). Reasoning
    parts are left out (DeepSeek refuses a message that carries its reasoning back)."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        if not message.parts:
            wire.append({"role": message.role, "content": message.content})
        elif message.role == "tool":
            for result in message.tool_results:
                wire.append(
                    {"role": "tool", "tool_call_id": result.call_id, "content": result.content}
                )
        elif message.role == "assistant":
            item: dict[str, Any] = {"role": "assistant", "content": message.content or None}
            calls = message.tool_calls
            if calls:
                item["tool_calls"] = [
                    {
                        "id": call.call_id,
                        "type": "function",
                        "function": {
                            "name": call.name,
                            "arguments": json.dumps(dict(call.arguments), ensure_ascii=False),
                        },
                    }
                    for call in calls
                ]
            wire.append(item)
        else:
            content: list[dict[str, Any]] = []
            if message.content:
                content.append({"type": "text", "text": message.content})
            for image in message.images:
                data = base64.b64encode(image.data).decode("ascii")
                url = f"data:{image.media_type};base64,{data}"
                content.append({"type": "image_url", "image_url": {"url": url}})
            wire.append({"role": message.role, "content": content or message.content})
    return wire


def tools_to_openai(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """Tools as Chat Completions' ``tools`` (function tools)."""
    return [
        {
            "type": "function",
            "function": {
                "name": item.name,
                "description": item.description,
                "parameters": dict(item.input_schema),
            },
        }
        for item in tools
    ]


class OpenAIProvider:
    name: str = "openai"
    Options: ClassVar[type[ProviderOptions]] = OpenAIOptions

    def __init__(self, options: ProviderOptions, context: ProviderContext) -> None:
        self.options = (
            options
            if isinstance(options, OpenAIOptions)
            else OpenAIOptions.model_validate(options.model_dump())
        )
        self.model = self.options.model or OpenAIOptions.model_fields["model"].default
        self.base_url = (self.options.base_url or OPENAI_BASE_URL).rstrip("/")
        self.host = urlsplit(self.base_url).netloc or self.base_url
        self._is_openai = self.host == "api.openai.com"
        self.name = context.name or type(self).name
        self._key_env = self.options.api_key_env or (
            "OPENAI_API_KEY" if self.name == "openai" else None
        )
        self._key_label = self._key_env or "the API key"
        key = context.environ.get(self._key_env, "").strip() if self._key_env else ""
        self._key = key or None
        field = self.options.max_tokens_field
        if field == "auto":
            field = "max_completion_tokens" if self._is_openai else "max_tokens"
        self._max_tokens_field = field
        self._client: openai.AsyncOpenAI | None = None
        self._streams: StreamRequests | None = None
        if self.missing_configuration() is None:
            # No network I/O here: the pool connects on the first request.
            self._client = openai.AsyncOpenAI(
                api_key=self._key or NO_KEY,
                base_url=self.base_url,
                organization=None,
                project=None,
                max_retries=0,
                default_headers=self.options.headers or None,
                http_client=context.http_client(),
            )
            self._streams = StreamRequests(self._client)

    def missing_configuration(self) -> str | None:
        # A self-hosted server usually needs no key; OpenAI itself always does.
        if self._key is None and self._is_openai:
            env = self._key_env or f"llm.{self.name}.api_key_env"
            return f"{env} is not set: export it, or remove {self.name} from llm.providers"
        return None

    def _require_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            raise ProviderError(FailureKind.AUTH, self.missing_configuration() or "not configured")
        return self._client

    def _body(
        self,
        messages: list[Message],
        max_output_tokens: int,
        params: GenerationParams | None = None,
        tools: Sequence[Tool] = (),
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai(messages),
            self._max_tokens_field: max_output_tokens,
        }
        if tools:
            body["tools"] = tools_to_openai(tools)
            if params is not None and params.tool_choice is not None:
                choice = params.tool_choice
                body["tool_choice"] = (
                    {"type": "function", "function": {"name": choice.name}}
                    if choice.mode == "function"
                    else choice.mode
                )
            if params is not None and params.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = params.parallel_tool_calls
        if params is not None:
            if params.temperature is not None:
                body["temperature"] = params.temperature
            if params.top_p is not None:
                body["top_p"] = params.top_p
            if params.stop:
                body["stop"] = list(params.stop)
        return body

    def stream(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
        tools: Sequence[Tool] = (),
    ) -> _OpenAIStream:
        body = self._body(messages, max_output_tokens, params, tools)
        return _OpenAIStream(self, body, timeout)

    async def complete(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
        tools: Sequence[Tool] = (),
    ) -> Completion:
        client = self._require_client()
        body = self._body(messages, max_output_tokens, params, tools)
        try:
            response = await client.chat.completions.create(
                **body, stream=False, timeout=httpx2.Timeout(timeout)
            )
        except openai.APIError as error:
            raise self.error_from_sdk(error, streaming=False) from None
        if not response.choices:
            raise ProviderError(
                FailureKind.MALFORMED, f"{self.name} answered without a choice.", status=200
            )
        choice = response.choices[0]
        usage = None
        if response.usage is not None:
            usage = _usage(response.usage.model_dump())
        calls = tuple(
            parse_arguments(call.id, call.function.name, call.function.arguments)
            for call in choice.message.tool_calls or ()
            if call.type == "function"
        )
        text = choice.message.content or ""
        thought = _reasoning_of(choice.message.model_extra or {}) or ""
        if self.options.think_tags and not thought:
            thought, text = split_whole(text)
        return Completion(
            text=text,
            usage=usage,
            finish_reason=choice.finish_reason,
            model=response.model or self.model,
            tool_calls=calls,
            reasoning=(ReasoningPart(thought),) if thought else (),
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    def error_from_sdk(self, error: openai.APIError, *, streaming: bool) -> ProviderError:
        """One line a person can act on, from an SDK error; no key, no upstream body."""
        if isinstance(error, openai.APIConnectionError):
            timed_out = isinstance(error, openai.APITimeoutError)
            return unreachable_error(self.name, self.base_url, error, timed_out=timed_out)
        if not isinstance(error, openai.APIStatusError):
            return ProviderError(
                FailureKind.MALFORMED,
                f"{self.name} answered something unexpected.",
                detail=redact(str(error), [self._key]),
            )
        body = error.body if isinstance(error.body, dict) else {}
        code = str(body.get("code") or "")
        param = str(body.get("param") or "")
        upstream = str(body.get("message") or error.message or "")
        return error_from_status(
            self.name,
            error.status_code,
            detail=redact(f"{code} {upstream}".strip(), [self._key]),
            key_label=self._key_label,
            model=self.model,
            model_hint="set OPENAI_MODEL (or [llm.openai] model) and check OPENAI_BASE_URL ends "
            "in /v1.",
            retry_after=retry_after_from_headers(error.response.headers),
            stream_refused=streaming and (param == "stream" or "stream" in upstream.lower()),
        )


class _OpenAIStream(JSONFrameStream):
    """One streaming call: ``chat.completion.chunk`` frames read as bytes, ending in
    ``data: [DONE]``. A body that ends without ``[DONE]`` or a finish reason was cut short.

    Tool calls arrive as ``delta.tool_calls`` pieces keyed by ``index`` (several calls at
    once are interleaved by it): the first piece of a call has its ``id`` and name, the
    arguments' JSON text comes split over any number of frames. They are put together per
    index and handed on, in index order, when the finish reason (or ``[DONE]``) comes.

    Reasoning comes as ``delta.reasoning_content`` or ``delta.reasoning``, or as a
    ``<think>`` block opening ``delta.content`` (split off by a :class:`ThinkSplitter` until
    the content shows it has none, then no longer consulted)."""

    def __init__(self, provider: OpenAIProvider, body: dict[str, Any], timeout: float) -> None:
        super().__init__(provider.name, provider._key)
        self._provider = provider
        self._request_body: dict[str, Any] | None = body
        self._timeout = timeout
        # index -> [id, name, argument pieces] of the calls being streamed
        self._building: dict[int, list[Any]] = {}
        self._think: ThinkSplitter | None = ThinkSplitter() if provider.options.think_tags else None

    async def _open(self) -> BodyReader:
        provider = self._provider
        provider._require_client()  # a provider without its key says so
        streams = provider._streams
        assert streams is not None  # made with the client
        body = self._request_body or {}
        self._request_body = None  # not kept (the whole prompt) while the answer streams
        body["stream"] = True
        if provider.options.stream_usage:
            body["stream_options"] = {"include_usage": True}
        # The SDK's own request without its per-request machinery (``openai_internals``, one
        # of the few modules that reach into a library's private names). Reads are timed by
        # the chain (first-token, idle), not by httpx.
        try:
            response = await streams.send(body, self._timeout)
        except openai.APIError as error:
            raise provider.error_from_sdk(error, streaming=True) from None
        # Only the body reader is kept: httpx2's request (headers and the whole prompt) and
        # response are let go of while the answer streams.
        return body_reader(response)

    def _marker(self, data: bytes) -> bool:
        if data == b"[DONE]":
            self._end_think()
            self._hand_on_calls()
            return True
        return False

    def _split(self, content: str) -> str | None:
        """The answer text of a content piece, its reasoning handed on before it."""
        splitter = self._think
        assert splitter is not None
        thought, text = splitter.feed(content)
        if splitter.passing:
            self._think = None  # an ordinary answer, or the block is over: text as it comes
        if not thought:
            return text or None
        self._calls.append(ReasoningPart(thought))
        if text:
            self._calls.append(text)  # after the reasoning, as it came
        return None

    def _end_think(self) -> None:
        """At the answer's end: what the splitter still held (a partial tag)."""
        splitter, self._think = self._think, None
        if splitter is None:
            return
        thought, text = splitter.finish()
        if thought:
            self._calls.append(ReasoningPart(thought))
        if text:
            self._calls.append(text)

    def _add_call_pieces(self, pieces: list[dict[str, Any]]) -> None:
        building = self._building
        for piece in pieces:
            index = piece.get("index", len(building))
            entry = building.get(index)
            if entry is None:
                entry = building[index] = ["", "", []]
            if piece.get("id"):
                entry[0] = piece["id"]
            function = piece.get("function") or {}
            if function.get("name"):
                entry[1] += function["name"]
            arguments = function.get("arguments")
            if arguments:
                entry[2].append(arguments)

    def _hand_on_calls(self) -> None:
        building, self._building = self._building, {}
        for index in sorted(building):
            call_id, name, pieces = building[index]
            self._calls.append(parse_arguments(call_id, name, "".join(pieces)))

    def _text(self, frame: dict[str, Any]) -> str | None:
        usage = frame.get("usage")
        if usage:
            self.usage = _usage(usage)
        choices = frame.get("choices")
        if not choices:
            return None
        choice = choices[0]
        delta = choice.get("delta")
        text = None
        if delta:
            content = delta.get("content")
            if content:
                text = str(content) if self._think is None else self._split(str(content))
            elif "reasoning_content" in delta or "reasoning" in delta:
                thought = _reasoning_of(delta)
                if thought:
                    self._calls.append(ReasoningPart(thought))
            pieces = delta.get("tool_calls")
            if pieces:
                self._add_call_pieces(pieces)
        reason = choice.get("finish_reason")
        if reason:
            self.finish_reason = reason
            if self._think is not None:
                if text:  # the finish reason came with the last text: keep them in order
                    self._calls.append(text)
                    text = None
                self._end_think()
            if self._building:
                self._hand_on_calls()
        return text
