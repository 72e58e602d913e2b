"""The fallback chain: one answer from whichever provider can give it.

The chain is the only retry loop (SDK retries are off). For one turn it walks
``llm.providers`` in order, skipping a provider whose circuit is open or whose Retry-After has
not passed, and for each provider it tries:

1. a streaming call, bounded by the first-token timeout, then the idle timeout between
   deltas, and always by the turn's deadline;
2. if the stream failed before any text and the failure suggests the provider itself is up
   (streaming refused, a 5xx, a malformed frame, a cut before the first text), the same
   provider without streaming; its answer is handed on in several pieces so the page still
   animates it;
3. otherwise the next provider.

A failure after text was sent is final (``upstream_interrupted``): repeating text the user
already read is worse than stopping, and the caller keeps the partial answer. When no
provider can answer the chain raises ``upstream_unavailable``; when the turn's deadline
passes, ``timeout``. Both are retryable.

Timeouts are applied around each ``__anext__`` only, never across a ``yield``: the consumer
runs in the same task, and a timer that fired while it was busy writing to a slow client
would cancel the wrong thing.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from server.contract import (
    AnswerError,
    AnswerResult,
    ErrorCode,
    FailureKind,
    GenerationParams,
    ImagePart,
    Message,
    Provider,
    ProviderError,
    ReasoningPart,
    Tool,
    ToolCall,
)
from server.llm.circuit import Circuit, CircuitState
from server.observability.tracing import ModelCallScope, Tracer

__all__ = ["AnswerStream", "ChainObserver", "LLMChain"]

log = logging.getLogger("sluice.llm")

STREAM = "stream"
NON_STREAM = "non-stream"

# A plain answer is handed on in pieces of about this many characters, cut after whitespace.
PLAIN_PIECE_CHARS = 24

# After a stream failure of these kinds, the same provider is asked again without streaming.
_PLAIN_WORTH_TRYING = frozenset(
    {FailureKind.STREAM_UNSUPPORTED, FailureKind.MALFORMED, FailureKind.UNAVAILABLE}
)


class ChainObserver:
    """Hooks for metrics; every method is a no-op here. Subclass and override what you need.

    Calls happen on the event loop, inline: keep them cheap and never raise.
    """

    def on_attempt(self, provider: str, mode: str) -> None:
        """A call to ``provider`` in ``mode`` ("stream" / "non-stream") starts."""

    def on_success(self, provider: str, mode: str, seconds: float) -> None:
        """The call answered completely, in ``seconds``."""

    def on_fallback(self, provider: str, reason: str) -> None:
        """The chain moves on from ``provider``: ``reason`` is a FailureKind value, or
        "circuit_open" / "empty" when it was skipped or answered nothing."""

    def on_interrupted(self, provider: str, reason: str) -> None:
        """The call failed after text was sent (``upstream_interrupted``)."""

    def on_circuit_change(self, provider: str, state: str) -> None:
        """The provider's circuit moved to ``state`` ("closed" / "open" / "half_open")."""


class _DeadlineExceeded(Exception):
    pass


@dataclass(slots=True)
class _Entry:
    provider: Provider
    circuit: Circuit
    # Until this instant streaming is known to be refused: go straight to a plain call.
    stream_refused_until: float = 0.0
    # Its stream() and complete() take ``tools``: one written before tools answers text.
    takes_tools: bool = True
    # Its model sees pictures (a provider says it does not with ``sees_images = False``).
    sees_images: bool = True


def _takes_tools(provider: Provider) -> bool:
    try:
        return all(
            "tools" in inspect.signature(method).parameters
            for method in (provider.stream, provider.complete)
        )
    except (TypeError, ValueError):  # no signature to read: do not risk a TypeError per turn
        return False


def _sees_images(provider: Provider) -> bool:
    return bool(getattr(provider, "sees_images", True))


def _without_images(messages: list[Message]) -> list[Message]:
    """The messages with their pictures left out, for a model that cannot see them."""
    return [
        replace(m, parts=tuple(p for p in m.parts if not isinstance(p, ImagePart)))
        if any(isinstance(p, ImagePart) for p in m.parts)
        else m
        for m in messages
    ]


def _pieces(text: str, size: int = PLAIN_PIECE_CHARS) -> list[str]:
    """Cut ``text`` into pieces of about ``size`` characters, after whitespace when it can.

    Joined, the pieces equal ``text`` exactly."""
    pieces: list[str] = []
    start = 0
    n = len(text)
    while start < n:
        end = start + size
        if end >= n:
            pieces.append(text[start:])
            break
        cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
        end = cut + 1 if cut > start else end
        pieces.append(text[start:end])
        start = end
    return pieces


class _Watchdog:
    """Cancels ``task`` when a wait on the upstream outlasts its limit.

    ``arm`` before each read only stores a deadline; the one timer re-arms itself when it
    fires early, and does nothing while no read is waiting (the consumer was busy, not the
    upstream). A stream of thousands of chunks costs a handful of timers, not one each: an
    ``asyncio.timeout`` per chunk cost ~8% of a paced stream's CPU here.
    """

    __slots__ = ("_handle", "_loop", "_task", "deadline", "fired", "limit", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self._loop = loop
        self._task = task
        self._handle: asyncio.TimerHandle | None = None
        self.limit = 0.0
        self.deadline = 0.0
        self.fired = False
        self.waiting = False

    def arm(self, limit: float) -> None:
        self.limit = limit
        self.deadline = self._loop.time() + limit
        self.waiting = True
        handle = self._handle
        if handle is not None and handle.when() > self.deadline:
            # A shorter limit than the one the timer was set for (the idle timeout after a
            # longer first-token one): the timer must fire at the new deadline, not the old.
            handle.cancel()
            handle = None
        if handle is None:
            self._handle = self._loop.call_at(self.deadline, self._check)

    def _check(self) -> None:
        self._handle = None
        if not self.waiting:
            return  # arm() starts a timer again for the next wait
        if self._loop.time() >= self.deadline:
            self.fired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(self.deadline, self._check)

    def stop(self) -> None:
        self.waiting = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class AnswerStream:
    """Async iterator of text deltas (``str``), when given tools the model's
    :class:`ToolCall` s, and its :class:`ReasoningPart` pieces; ``result`` is set once
    iteration ends normally.

    Call ``aclose()`` when you stop early (or were cancelled): it closes the upstream request.
    ``text_sent`` tells whether any delta or call was handed out: after that, a failure is
    final (a round whose tool call was seen is not asked again elsewhere).
    """

    def __init__(
        self,
        chain: LLMChain,
        messages: list[Message],
        deadline: float,
        params: GenerationParams | None = None,
        entries: list[_Entry] | None = None,
        tools: Sequence[Tool] = (),
    ) -> None:
        self._chain = chain
        self._messages = messages
        self._deadline = deadline
        self._params = params
        # Passed to providers only when there are some, and only to those that take them:
        # one that knows no tools still answers text.
        self._extra: dict[str, Any] = {"tools": tools} if tools else {}
        self._extra_for_tools = self._extra
        # The API client's own tools: a provider that knows no tools cannot offer them, and
        # an answer without them is not what the client asked for, so it is refused there.
        self._client_tools = any(item.runs_on_client for item in tools)
        # The pictures of the turn's own message: a provider that cannot see them is not
        # asked (it would answer without them); earlier turns' pictures are left out for it.
        asked = next((m for m in reversed(messages) if m.role == "user"), None)
        self._turn_images = asked is not None and any(isinstance(p, ImagePart) for p in asked.parts)
        self._given = messages
        self._entries = chain.entries if entries is None else entries
        limit = params.max_output_tokens if params is not None else None
        # The client's limit can lower the configured one, never raise it.
        self._max_output_tokens = (
            chain.max_output_tokens if limit is None else min(limit, chain.max_output_tokens)
        )
        self.result: AnswerResult | None = None
        self.writer: AnswerResult | None = None
        self.text_sent = False
        self.capped = False  # llm.max_answer_chars ended the answer
        self._chars = 0
        self._gen: AsyncGenerator[str | ToolCall | ReasoningPart, None] = self._run()

    def __aiter__(self) -> AsyncIterator[str | ToolCall | ReasoningPart]:
        # The generator itself, not a coroutine wrapping each step: one object fewer kept
        # suspended for the whole of every open stream.
        return self._gen

    def __anext__(self) -> Awaitable[str | ToolCall | ReasoningPart]:
        return self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()

    def _remaining(self) -> float:
        return self._deadline - self._chain.clock()

    async def _run(self) -> AsyncGenerator[str | ToolCall | ReasoningPart, None]:
        chain = self._chain
        failures: list[tuple[str, ProviderError]] = []
        for index, entry in enumerate(self._entries):
            provider = entry.provider
            if self._turn_images and not entry.sees_images:
                # Not the provider's failure: its circuit is left alone.
                refusal = ProviderError(
                    FailureKind.BAD_REQUEST, f"{provider.name} cannot see pictures."
                )
                failures.append((provider.name, refusal))
                chain.observer.on_fallback(provider.name, refusal.kind.value)
                continue
            if not entry.circuit.acquire():
                chain.observer.on_fallback(provider.name, "circuit_open")
                continue
            verdict: bool | None = None  # True: answered; False: failed; None: no verdict
            last: ProviderError | None = None
            try:
                modes = [STREAM, NON_STREAM]
                if entry.stream_refused_until > chain.clock():
                    modes = [NON_STREAM]
                for mode in modes:
                    if self._remaining() <= 0:
                        raise _DeadlineExceeded
                    # Anything but the first provider, streaming, is a fallback answer.
                    fallback = index > 0 or mode != STREAM
                    self._extra = self._extra_for_tools if entry.takes_tools else {}
                    self._given = (
                        self._messages if entry.sees_images else _without_images(self._messages)
                    )
                    chain.observer.on_attempt(provider.name, mode)
                    started = chain.clock()
                    deltas = (
                        self._stream(provider, fallback)
                        if mode == STREAM
                        else self._plain(provider, fallback)
                    )
                    # The call's span is current while it runs: the request upstream carries
                    # its traceparent. Inline rather than a wrapping generator: nothing per delta.
                    span: ModelCallScope | None = None
                    if chain.tracer is not None:
                        span = chain.tracer.model_call(provider, mode, self._max_output_tokens)
                    try:
                        if self._client_tools and not entry.takes_tools:
                            raise ProviderError(
                                FailureKind.BAD_REQUEST,
                                f"{provider.name} cannot be offered the client's tools.",
                            )
                        async for delta in deltas:
                            yield delta
                    except ProviderError as error:
                        if span is not None:
                            span.failed(error.kind.value, error.message)
                        last = error
                        _log_failure(provider, mode, error)
                        if self.text_sent:
                            verdict = False
                            chain.observer.on_interrupted(provider.name, error.kind.value)
                            raise AnswerError(
                                ErrorCode.UPSTREAM_INTERRUPTED,
                                "The answer was interrupted. Please try again.",
                                retryable=True,
                            ) from None
                        if error.kind is FailureKind.STREAM_UNSUPPORTED:
                            entry.stream_refused_until = chain.clock() + chain.circuit_cooldown
                        # Connection-level failures (status None) and everything that is not
                        # about streaming itself go straight to the next provider.
                        plain_next = (
                            mode == STREAM
                            and error.kind in _PLAIN_WORTH_TRYING
                            and (
                                error.kind is not FailureKind.UNAVAILABLE
                                or error.status is not None
                            )
                        )
                        if plain_next:
                            continue
                        break
                    except BaseException as error:  # the deadline, a cancel, a close
                        if span is not None:
                            span.failed(_error_type(error))
                        raise
                    else:
                        if span is not None and self.result is not None:
                            span.answered(self.result)
                    finally:
                        if span is not None:
                            span.end()
                    if self.result is None:  # the call ended without a word
                        verdict = True
                        last = None
                        log.warning("provider %s (%s) answered nothing", provider.name, mode)
                        chain.observer.on_fallback(provider.name, "empty")
                        break
                    verdict = True
                    chain.observer.on_success(provider.name, mode, chain.clock() - started)
                    return
                if verdict is None and last is not None:
                    verdict = False
            except _DeadlineExceeded:
                verdict = None if not self.text_sent else False
                raise AnswerError(
                    ErrorCode.TIMEOUT, "The answer took too long. Please try again.", retryable=True
                ) from None
            finally:
                if verdict is True:
                    entry.circuit.record_success()
                elif verdict is False:
                    entry.circuit.record_failure(last.retry_after if last else None)
                else:
                    entry.circuit.release()
            if last is not None:
                failures.append((provider.name, last))
                chain.observer.on_fallback(provider.name, last.kind.value)
        raise self._unavailable(failures)

    async def _stream(
        self, provider: Provider, fallback: bool
    ) -> AsyncGenerator[str | ToolCall | ReasoningPart, None]:
        chain = self._chain
        remaining = self._remaining()
        timeout = max(0.001, min(remaining, chain.first_token_timeout))
        stream = provider.stream(
            self._given,
            max_output_tokens=self._max_output_tokens,
            timeout=timeout,
            params=self._params,
            **self._extra,
        )
        iterator = stream.__aiter__()
        got_text = False
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        watchdog = _Watchdog(loop, task)
        try:
            while True:
                remaining = self._remaining()
                if remaining <= 0:
                    raise _DeadlineExceeded
                limit = chain.idle_timeout if got_text else chain.first_token_timeout
                watchdog.arm(min(limit, remaining))
                try:
                    delta = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except asyncio.CancelledError:
                    if not watchdog.fired:
                        raise  # a real cancellation: stop, client gone, shutdown
                    task.uncancel()
                    if watchdog.limit >= remaining:
                        raise _DeadlineExceeded from None
                    what = "idle" if got_text else "first-token"
                    raise ProviderError(
                        FailureKind.TIMEOUT,
                        f"{provider.name} sent nothing for {watchdog.limit:g} s ({what} timeout).",
                    ) from None
                watchdog.waiting = False
                # A tool call or a reasoning piece (rare: text is the hot path). Either is
                # shown to the client, so it commits the answer to this provider like text.
                if delta.__class__ is not str:
                    if not got_text:
                        self.writer = AnswerResult(
                            provider.name, provider.model, STREAM, fallback, None
                        )
                    got_text = True
                    self.text_sent = True
                    yield delta
                    continue
                if delta:
                    if not got_text:
                        self.writer = AnswerResult(
                            provider.name, provider.model, STREAM, fallback, None
                        )
                    got_text = True
                    self.text_sent = True
                    self._chars += len(delta)
                    if self._chars < chain.max_answer_chars:
                        yield delta
                        continue
                    delta = self._cut_at_cap(delta)
                    if delta:
                        yield delta
                    break  # capped: the finally closes the upstream request
        finally:
            watchdog.stop()
            await stream.aclose()
        if got_text:
            self.result = self.writer = AnswerResult(
                provider=provider.name,
                model=provider.model,
                mode=STREAM,
                fallback=fallback,
                usage=stream.usage,
                finish_reason="length" if self.capped else stream.finish_reason,
            )

    def _cut_at_cap(self, delta: str) -> str:
        """``delta`` (already counted) cut to what ``llm.max_answer_chars`` allows: an
        upstream that ignores ``max_tokens`` cannot grow an answer (and the memory and
        history it takes) without bound."""
        self.capped = True
        over = self._chars - self._chain.max_answer_chars
        self._chars -= over
        return delta[: len(delta) - over]

    async def _plain(
        self, provider: Provider, fallback: bool
    ) -> AsyncGenerator[str | ToolCall | ReasoningPart, None]:
        remaining = self._remaining()
        try:
            async with asyncio.timeout(remaining) as timer:
                completion = await provider.complete(
                    self._given,
                    max_output_tokens=self._max_output_tokens,
                    timeout=remaining,
                    params=self._params,
                    **self._extra,
                )
        except TimeoutError:
            if timer.expired():
                raise _DeadlineExceeded from None
            raise
        if not completion.text and not completion.tool_calls and not completion.reasoning:
            return
        text = completion.text
        self._chars += len(text)
        if self._chars >= self._chain.max_answer_chars:
            text = self._cut_at_cap(text)
        self.result = self.writer = AnswerResult(
            provider=provider.name,
            model=completion.model or provider.model,
            mode=NON_STREAM,
            fallback=fallback,
            usage=completion.usage,
            finish_reason="length" if self.capped else completion.finish_reason,
        )
        for thought in completion.reasoning:
            self.text_sent = True
            yield thought
        for piece in _pieces(text):
            self.text_sent = True
            yield piece
        for call in completion.tool_calls:
            self.text_sent = True
            yield call

    def _unavailable(self, failures: list[tuple[str, ProviderError]]) -> AnswerError:
        message = "No language model could answer right now. Please try again shortly."
        # A refused key or an unknown model will not fix itself: say what to fix.
        fixes = [
            error.message
            for _, error in failures
            if error.kind in (FailureKind.AUTH, FailureKind.BAD_REQUEST)
        ]
        if fixes:
            message = "No language model could answer. " + " ".join(fixes)
        # Only an operator can fix a refused key or an unknown model: a Retry button
        # cannot help when every provider failed that way.
        config_only = bool(failures) and all(
            error.kind in (FailureKind.AUTH, FailureKind.BAD_REQUEST) for _, error in failures
        )
        waits = [w for w in (e.circuit.available_in() for e in self._entries) if w > 0]
        # Only when every provider is known to be blocked is there a time worth telling.
        blocked = bool(waits) and len(waits) == len(self._entries)
        retry_after = round(min(waits), 3) if blocked else None
        return AnswerError(
            ErrorCode.UPSTREAM_UNAVAILABLE,
            message,
            retryable=not config_only,
            retry_after=retry_after,
        )


def _error_type(error: BaseException) -> str:
    """A span's ``error.type`` for what ended a provider call other than its own failure."""
    if isinstance(error, _DeadlineExceeded):
        return "timeout"
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    return type(error).__qualname__


def _log_failure(provider: Provider, mode: str, error: ProviderError) -> None:
    # The operator's view: which provider, at which address. The client's message names
    # neither (a person cannot act on an internal host, and it is not theirs to know).
    url = getattr(provider, "base_url", None)
    log.warning(
        "provider %s%s (%s) failed: %s%s%s",
        provider.name,
        f" at {url}" if url else "",
        mode,
        error.kind.value,
        f" status={error.status}" if error.status is not None else "",
        f" ({error.detail})" if error.detail else "",
    )


class _CircuitObserverAdapter:
    def __init__(self, observer: ChainObserver) -> None:
        self._observer = observer

    def __call__(self, name: str, state: CircuitState) -> None:
        log.warning("provider %s circuit %s", name, state.value)
        self._observer.on_circuit_change(name, state.value)


class LLMChain:
    """Providers in fallback order, each with its circuit. One per server process."""

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        max_output_tokens: int,
        max_answer_chars: int = 100_000,
        first_token_timeout: float,
        idle_timeout: float,
        circuit_failures: int,
        circuit_cooldown: float,
        clock: Callable[[], float] = time.monotonic,
        observer: ChainObserver | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.providers = list(providers)
        self.tracer = tracer
        self.max_output_tokens = max_output_tokens
        self.max_answer_chars = max_answer_chars
        self.first_token_timeout = first_token_timeout
        self.idle_timeout = idle_timeout
        self.circuit_failures = circuit_failures
        self.circuit_cooldown = circuit_cooldown
        self.clock = clock
        self.observer = observer or ChainObserver()
        on_change = _CircuitObserverAdapter(self.observer)
        self.entries = [
            _Entry(
                provider,
                Circuit(
                    provider.name,
                    failures=circuit_failures,
                    cooldown=circuit_cooldown,
                    clock=clock,
                    on_change=on_change,
                ),
                takes_tools=_takes_tools(provider),
                sees_images=_sees_images(provider),
            )
            for provider in self.providers
        ]

    def circuit(self, name: str) -> Circuit:
        """The circuit of the provider called ``name`` (for readiness and metrics)."""
        for entry in self.entries:
            if entry.provider.name == name:
                return entry.circuit
        raise KeyError(name)

    def answer(
        self,
        messages: list[Message],
        *,
        deadline: float,
        params: GenerationParams | None = None,
        provider: str | None = None,
        tools: Sequence[Tool] = (),
    ) -> AnswerStream:
        """Stream one answer; ``deadline`` is an instant on ``clock`` (``time.monotonic()``).

        ``params`` reach whichever provider answers; ``provider`` (a configured name) answers
        from that provider alone, its circuit and both modes still applying. ``tools`` are
        offered to the model; one chain call is one round of a turn with tools, so the next
        round may be answered by another provider."""
        entries = None
        if provider is not None:
            entries = [entry for entry in self.entries if entry.provider.name == provider]
            if not entries:
                raise KeyError(provider)
        if params is not None and params.is_default():
            params = None
        return AnswerStream(self, messages, deadline, params, entries, tools)

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()
