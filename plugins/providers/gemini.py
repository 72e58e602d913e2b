"""Google Gemini through ``google-genai``, with the system prompt and roles mapped.

Gemini has no ``system`` role in ``contents``: system messages become ``systemInstruction``,
``assistant`` becomes ``model``, and consecutive messages of one role are merged (the API
wants turns to alternate).

Measured (``bench/provider_cpu.py``): the SDK's streaming path parses each
frame with ``json.loads``, dumps it again, loads it again and validates a
``GenerateContentResponse`` — several times the cost of the rest of our path. So:

* plain calls go through the SDK (``client.aio.models.generate_content``): one typed object
  per answer is cheap, and the SDK owns the request and its errors;
* streaming posts to ``…:streamGenerateContent?alt=sse`` on the same pooled ``httpx2`` client
  the SDK uses, with the same key header and base URL, reads the frames as bytes and parses
  them with ``jiter``; an error status is turned into the SDK's own error classes
  (``google.genai.errors.APIError.raise_for_async_response``) and mapped like a plain call's.

SDK retries stay off (no ``retry_options``): the fallback chain is the only retry loop.

Reasoning: with ``include_thoughts`` the request asks for thought summaries
(``thinkingConfig.includeThoughts``); parts marked ``thought: true`` are handed on as
:class:`ReasoningPart` pieces, never as answer text, and ``thoughtsTokenCount`` is reported as
``reasoning_tokens`` (and counted in ``output_tokens``, as the other providers count it).
Reasoning is not sent back: Gemini takes no thought text in ``contents``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import httpx2

from server import (
    BodyReader,
    Completion,
    FailureKind,
    GenerationParams,
    ImagePart,
    JSONFrameStream,
    Message,
    ProviderContext,
    ProviderError,
    ProviderOptions,
    ReasoningPart,
    Tool,
    ToolCall,
    ToolResult,
    Usage,
    body_reader,
    error_from_status,
    redact,
    retry_after_from_headers,
    transport_error,
)

if TYPE_CHECKING:
    from google import genai
    from google.genai import errors as genai_errors

# ``google.genai`` costs about 0.7 s of CPU to import: it is imported by an instance that has a
# key (it builds its client then), not by every server start that merely has the provider
# installed.

__all__ = [
    "GeminiOptions",
    "GeminiProvider",
    "to_gemini",
    "tool_config_to_gemini",
    "tools_to_gemini",
]

GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"

_FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}
_RETRY_DELAY = re.compile(r'"retryDelay"\s*:\s*"([0-9.]+)s"')


class GeminiOptions(ProviderOptions):
    """``[llm.gemini]``; ``GEMINI_BASE_URL`` and ``GEMINI_MODEL`` override the first two."""

    model: str = "gemini-2.5-flash"
    base_url: str | None = None
    api_version: str = "v1beta"
    # Thinking models count thoughts against maxOutputTokens; 0 turns thinking off on models
    # that allow it. None sends nothing (the model's default).
    thinking_budget: int | None = None
    # Ask for the model's thought summaries (thinkingConfig.includeThoughts), streamed as
    # reasoning events. Off by default: Gemini sends none unless asked.
    include_thoughts: bool = False
    # The environment variable holding the key. Default: GEMINI_API_KEY (or GOOGLE_API_KEY)
    # for the instance named "gemini"; none for other instances.
    api_key_env: str | None = None


def _gemini_parts(message: Message) -> list[dict[str, Any]]:
    """A message's parts in Gemini's vocabulary. Gemini pairs a ``functionResponse`` with its
    ``functionCall`` by order and name, not by id: sluice's call ids stay on this side."""
    parts: list[dict[str, Any]] = []
    if message.content or not message.parts:
        parts.append({"text": message.content})
    for part in message.parts:
        if isinstance(part, ToolCall):
            parts.append({"functionCall": {"name": part.name, "args": dict(part.arguments)}})
        elif isinstance(part, ToolResult):
            outcome = "output" if part.ok else "error"
            parts.append(
                {"functionResponse": {"name": part.name, "response": {outcome: part.content}}}
            )
        elif isinstance(part, ImagePart):
            data = base64.b64encode(part.data).decode("ascii")
            parts.append({"inlineData": {"mimeType": part.media_type, "data": data}})
    return parts


def to_gemini(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """(system instruction, contents) in Gemini's vocabulary. Tool results are the user's
    turn (Gemini has no tool role)."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            system.append(message.content)
            continue
        role = "model" if message.role == "assistant" else "user"
        parts = _gemini_parts(message)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return ("\n\n".join(system) if system else None), contents


def tools_to_gemini(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """Tools as Gemini's ``functionDeclarations``, their schemas given as JSON Schema
    (``parametersJsonSchema``: ``parameters`` takes only an OpenAPI subset)."""
    return [
        {
            "functionDeclarations": [
                {
                    "name": item.name,
                    "description": item.description,
                    "parametersJsonSchema": dict(item.input_schema),
                }
                for item in tools
            ]
        }
    ]


_GEMINI_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}


def tool_config_to_gemini(name: str, params: GenerationParams | None) -> dict[str, Any] | None:
    """The client's ``tool_choice`` as Gemini's ``toolConfig`` (None: Gemini's default).
    Gemini cannot be told to make one call at a time: ``parallel_tool_calls: false`` is
    refused rather than dropped."""
    if params is None:
        return None
    if params.parallel_tool_calls is False:
        raise ProviderError(
            FailureKind.BAD_REQUEST,
            f"{name} cannot be kept to one tool call at a time (parallel_tool_calls: false).",
        )
    choice = params.tool_choice
    if choice is None:
        return None
    config: dict[str, Any] = {"mode": _GEMINI_MODES[choice.mode]}
    if choice.mode == "function" and choice.name:
        config["allowedFunctionNames"] = [choice.name]
    return {"functionCallingConfig": config}


def _call(raw: dict[str, Any]) -> ToolCall:
    """A ``functionCall`` part as a call, with an id of ours when Gemini gave none."""
    args = raw.get("args")
    call_id = str(raw.get("id") or "call_" + secrets.token_hex(6))
    name = str(raw.get("name") or "")
    if args is None:
        return ToolCall(call_id, name, {})
    if not isinstance(args, dict):
        return ToolCall(call_id, name, {}, "the arguments must be a JSON object")
    return ToolCall(call_id, name, args)


def _finish_reason(raw: str | None) -> str | None:
    if not raw:
        return None
    return _FINISH_REASONS.get(raw, raw.lower())


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return _counted(
        raw.get("promptTokenCount"),
        raw.get("candidatesTokenCount"),
        raw.get("totalTokenCount"),
        raw.get("thoughtsTokenCount"),
    )


def _counted(
    prompt: int | None, answer: int | None, total: int | None, thoughts: int | None
) -> Usage:
    """Gemini counts thoughts apart from the candidates' tokens; they are output all the
    same (billed as output, and inside ``totalTokenCount``), as OpenAI and Anthropic count."""
    output = answer
    if thoughts:
        output = (answer or 0) + thoughts
    return Usage(
        input_tokens=prompt, output_tokens=output, total_tokens=total, reasoning_tokens=thoughts
    )


def _thinking_config(options: GeminiOptions) -> dict[str, Any] | None:
    config: dict[str, Any] = {}
    if options.thinking_budget is not None:
        config["thinkingBudget"] = options.thinking_budget
    if options.include_thoughts:
        config["includeThoughts"] = True
    return config or None


class GeminiProvider:
    name: str = "gemini"
    Options: ClassVar[type[ProviderOptions]] = GeminiOptions

    def __init__(self, options: ProviderOptions, context: ProviderContext) -> None:
        self.options = (
            options
            if isinstance(options, GeminiOptions)
            else GeminiOptions.model_validate(options.model_dump())
        )
        self.model = self.options.model or GeminiOptions.model_fields["model"].default
        self.base_url = (self.options.base_url or GEMINI_BASE_URL).rstrip("/")
        environ = context.environ
        self.name = context.name or type(self).name
        self._key_names: tuple[str, ...]
        if self.options.api_key_env:
            self._key_names = (self.options.api_key_env,)
        elif self.name == "gemini":
            self._key_names = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
        else:
            self._key_names = ()
        self._key_label = " (or ".join(self._key_names) + (")" if len(self._key_names) > 1 else "")
        self._key_label = self._key_label or f"llm.{self.name}.api_key_env"
        key = next((environ[k] for k in self._key_names if environ.get(k, "").strip()), "").strip()
        self._key = key or None
        model_path = (
            self.model
            if self.model.startswith(("models/", "tunedModels/"))
            else f"models/{self.model}"
        )
        self._stream_url = (
            f"{self.base_url}/{self.options.api_version}/{model_path}:streamGenerateContent?alt=sse"
        )
        self._http: httpx2.AsyncClient | None = None
        self._client: genai.Client | None = None
        if self._key is not None:
            from google import genai
            from google.genai import types as genai_types

            # No network I/O here: the pool connects on the first request.
            self._http = context.http_client()
            self._client = genai.Client(
                vertexai=False,
                api_key=self._key,
                http_options=genai_types.HttpOptions(
                    base_url=self.base_url + "/",
                    api_version=self.options.api_version,
                    httpx_async_client=self._http,
                ),
            )

    def missing_configuration(self) -> str | None:
        if self._key is None:
            return (
                f"{self._key_label} is not set: export it, or remove {self.name} from llm.providers"
            )
        return None

    def _require(self) -> tuple[genai.Client, httpx2.AsyncClient]:
        if self._client is None or self._http is None:
            raise ProviderError(FailureKind.AUTH, self.missing_configuration() or "not configured")
        return self._client, self._http

    def _stream_body(
        self,
        messages: list[Message],
        max_output_tokens: int,
        params: GenerationParams | None,
        tools: Sequence[Tool] = (),
    ) -> bytes:
        system, contents = to_gemini(messages)
        generation: dict[str, Any] = {"maxOutputTokens": max_output_tokens}
        if params is not None:
            if params.temperature is not None:
                generation["temperature"] = params.temperature
            if params.top_p is not None:
                generation["topP"] = params.top_p
            if params.stop:
                generation["stopSequences"] = list(params.stop)
        thinking = _thinking_config(self.options)
        if thinking is not None:
            generation["thinkingConfig"] = thinking
        body: dict[str, Any] = {"contents": contents, "generationConfig": generation}
        if tools:
            body["tools"] = tools_to_gemini(tools)
            tool_config = tool_config_to_gemini(self.name, params)
            if tool_config is not None:
                body["toolConfig"] = tool_config
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        return json.dumps(body, ensure_ascii=False).encode()

    def stream(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
        tools: Sequence[Tool] = (),
    ) -> _GeminiStream:
        body = self._stream_body(messages, max_output_tokens, params, tools)
        return _GeminiStream(self, body, timeout)

    async def complete(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
        tools: Sequence[Tool] = (),
    ) -> Completion:
        from google.genai import errors as genai_errors
        from google.genai import types as genai_types

        client, _ = self._require()
        system, contents = to_gemini(messages)
        config = genai_types.GenerateContentConfig(
            system_instruction=system,
            max_output_tokens=max_output_tokens,
            http_options=genai_types.HttpOptions(timeout=max(1, int(timeout * 1000))),
        )
        if tools:
            config.tools = [
                genai_types.Tool.model_validate(declared) for declared in tools_to_gemini(tools)
            ]
            tool_config = tool_config_to_gemini(self.name, params)
            if tool_config is not None:
                config.tool_config = genai_types.ToolConfig.model_validate(tool_config)
        if params is not None:
            config.temperature = params.temperature
            config.top_p = params.top_p
            config.stop_sequences = list(params.stop) or None
        thinking = _thinking_config(self.options)
        if thinking is not None:
            config.thinking_config = genai_types.ThinkingConfig.model_validate(thinking)
        try:
            response = await client.aio.models.generate_content(
                model=self.model,
                contents=contents,
                config=config,
            )
        except genai_errors.APIError as error:
            raise self.error_from_sdk(error, streaming=False) from None
        except genai_errors.UnknownApiResponseError:
            raise ProviderError(
                FailureKind.MALFORMED, f"{self.name} answered something that is not JSON."
            ) from None
        except httpx2.TransportError as error:
            raise transport_error(self.name, error, status=None) from None
        text = ""
        thought = ""
        finish = None
        calls: list[ToolCall] = []
        if response.candidates:
            candidate = response.candidates[0]
            if candidate.content and candidate.content.parts:
                text = "".join(
                    part.text for part in candidate.content.parts if part.text and not part.thought
                )
                thought = "".join(
                    part.text for part in candidate.content.parts if part.text and part.thought
                )
                calls = [
                    _call(part.function_call.model_dump(exclude_none=True))
                    for part in candidate.content.parts
                    if part.function_call is not None
                ]
            if candidate.finish_reason is not None:
                finish = _finish_reason(str(candidate.finish_reason.value))
        usage = None
        meta = response.usage_metadata
        if meta is not None:
            usage = _counted(
                meta.prompt_token_count,
                meta.candidates_token_count,
                meta.total_token_count,
                meta.thoughts_token_count,
            )
        return Completion(
            text=text,
            usage=usage,
            finish_reason="tool_calls" if calls else finish,
            model=response.model_version or self.model,
            tool_calls=tuple(calls),
            reasoning=(ReasoningPart(thought),) if thought else (),
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()
            self._client.close()
        if self._http is not None:
            await self._http.aclose()

    def error_from_sdk(self, error: genai_errors.APIError, *, streaming: bool) -> ProviderError:
        """One line a person can act on, from an SDK error; no key, no upstream body."""
        name = self.name
        status = int(error.code) if error.code else 0
        message = str(error.message or "")
        details = json.dumps(error.details, default=str)
        detail = redact(f"{error.status or ''} {message}".strip(), [self._key])
        headers: Any = getattr(error.response, "headers", None) or {}
        if status in (401, 403) or "API_KEY_INVALID" in details or "API key not valid" in message:
            return ProviderError(
                FailureKind.AUTH,
                f"{name} refused the API key ({status}): the server's operator must set a "
                f"valid {self._key_label}.",
                status=status,
                detail=detail,
            )
        retry_after = retry_after_from_headers(headers)
        if status == 429 and retry_after is None and (match := _RETRY_DELAY.search(details)):
            retry_after = float(match.group(1))
        return error_from_status(
            name,
            status,
            detail=detail,
            key_label=self._key_label,
            model=self.model,
            model_hint="set GEMINI_MODEL (or [llm.gemini] model) and check GEMINI_BASE_URL.",
            retry_after=retry_after,
            stream_refused=streaming and "stream" in message.lower(),
        )


class _GeminiStream(JSONFrameStream):
    """One ``streamGenerateContent?alt=sse`` call. Gemini ends the body after the frame that
    carries ``finishReason``; a body that ends without one was cut short. A part marked
    ``thought`` is a piece of the model's thought summary: handed on as reasoning, before the
    frame's text."""

    def __init__(self, provider: GeminiProvider, body: bytes, timeout: float) -> None:
        super().__init__(provider.name, provider._key)
        self._provider = provider
        self._request_body: bytes | None = body
        self._timeout = timeout
        self._called = False

    async def _open(self) -> BodyReader:
        from google import genai
        from google.genai import errors as genai_errors

        provider = self._provider
        _, http = provider._require()
        request = http.build_request(
            "POST",
            provider._stream_url,
            content=self._request_body or b"",
            headers={
                "content-type": "application/json",
                "x-goog-api-key": provider._key or "",
                "accept-encoding": "identity",
                "user-agent": f"sluice google-genai/{genai.__version__}",
            },
            # Reads are timed by the chain (first-token, idle), not by httpx.
            timeout=httpx2.Timeout(self._timeout, read=None),
        )
        self._request_body = None  # the request holds it now: not kept while it streams
        try:
            response = await http.send(request, stream=True)
        except httpx2.TransportError as error:
            raise transport_error(provider.name, error, status=None) from None
        if response.status_code != 200:
            try:
                await genai_errors.APIError.raise_for_async_response(response)
            except genai_errors.APIError as error:
                raise provider.error_from_sdk(error, streaming=True) from None
            except (httpx2.TransportError, ValueError):
                raise ProviderError(
                    FailureKind.UNAVAILABLE,
                    f"{provider.name} is unavailable ({response.status_code}).",
                    status=response.status_code,
                ) from None
            finally:
                await response.aclose()
        return body_reader(response)

    def _text(self, frame: dict[str, Any]) -> str | None:
        usage = frame.get("usageMetadata")
        if usage:
            self.usage = _usage(usage)
        candidates = frame.get("candidates")
        if not candidates:
            return None
        candidate = candidates[0]
        reason = candidate.get("finishReason")
        if reason:
            self.finish_reason = "tool_calls" if self._called else _finish_reason(reason)
        content = candidate.get("content")
        if not content:
            return None
        parts = content.get("parts")
        if not parts:
            return None
        if len(parts) == 1:
            part = parts[0]
            if "functionCall" in part:
                self._add_call(part["functionCall"], reason)
                return None
            if part.get("thought"):
                self._add_thought(part)
                return None
            text: str | None = part.get("text")
            return text
        if any(p.get("thought") for p in parts):
            # Thoughts and text in one frame: everything handed on in the parts' order.
            for part in parts:
                if "functionCall" in part:
                    self._add_call(part["functionCall"], reason)
                elif part.get("thought"):
                    self._add_thought(part)
                elif part.get("text"):
                    self._calls.append(str(part["text"]))
            return None
        for part in parts:
            if "functionCall" in part:
                self._add_call(part["functionCall"], reason)
        return "".join(p.get("text", "") for p in parts) or None

    def _add_thought(self, part: dict[str, Any]) -> None:
        thought = part.get("text")
        if thought:
            self._calls.append(ReasoningPart(str(thought)))

    def _add_call(self, raw: dict[str, Any], reason: str | None) -> None:
        # Gemini sends each call whole, in one part: hand it on as it comes.
        self._calls.append(_call(raw))
        self._called = True
        if reason:
            self.finish_reason = "tool_calls"
