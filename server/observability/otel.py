"""The OpenTelemetry side of :mod:`server.observability.tracing`: imported only when traces
are on, so everything here may import the SDK.

Configuration is the SDK's own: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``),
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_PROPAGATORS`` are read by the SDK as it documents them.
``OTEL_TRACES_EXPORTER`` chooses ``otlp`` (OTLP over HTTP/protobuf, the one transport the extra
installs) and/or ``console``; ``OTEL_SERVICE_NAME`` defaults to ``sluice``.

The spans of one turn, all in one trace::

    POST /api/conversation-stream/{user_id}   server; continues the client's traceparent;
                                              the turn's root (its stream id, conversation
                                              id and outcome): a turn has no span of its own
      stage rate_limit / stage session ...    one per stage, but quiet ones (``usage``);
                                              a wrapper holds the later ones
        stage llm
          chat gpt-4o-mini                    client; GenAI attributes; traceparent upstream
          execute_tool current_time           one per tool call run
          chat gpt-4o-mini                    the round after the tools

Each span costs the SDK about as much to make on the event loop as the exporter's thread
then takes to encode it (tens of microseconds each), so a turn makes only these: a short
answer is seven spans.

A provider call that fails and falls back is a ``chat`` span marked failed, followed by the
next one. Attribute names follow the GenAI semantic conventions (``gen_ai.*``); both
``gen_ai.provider.name`` (current) and ``gen_ai.system`` (1.36 and before) are set, so
backends on either version group the calls. No message or answer text is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from importlib import metadata
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from structlog.types import EventDict, WrappedLogger
from yarl import URL

from server.contract import AnswerResult, Event, Provider, Tool, ToolCall, ToolResult, Turn

__all__ = ["OtelTracer", "add_trace_ids"]

log = logging.getLogger("sluice.tracing")

# gen_ai.provider.name's well-known values, by provider type (the entry point's name).
_GENAI_PROVIDERS = {"openai": "openai", "gemini": "gcp.gemini", "anthropic": "anthropic"}


def add_trace_ids(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: ``trace_id`` and ``span_id`` of the current span, when there is
    one, so a log line leads to its trace and back."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict["trace_id"] = trace.format_trace_id(span_context.trace_id)
        event_dict["span_id"] = trace.format_span_id(span_context.span_id)
    return event_dict


class _Unrecorded:
    """The scope of a stage, call or tool in a turn whose root the sampler did not record:
    no span at all. Its children would not be recorded either (a parent-based sampler
    follows the parent; a ratio sampler decides again on the same trace id), so such a turn
    draws no ids, asks no sampler and switches no context per stage, call or tool. The
    request's span stays current: log lines keep the trace id, and the ``traceparent`` sent
    upstream continues the trace, unsampled."""

    __slots__ = ()

    def failed(self, error_type: str, description: str | None = None) -> None:
        pass

    def end(self) -> None:
        pass

    def answered(self, result: AnswerResult) -> None:
        pass

    def finished(self, result: ToolResult) -> None:
        pass


_UNRECORDED = _Unrecorded()


def _unrecorded_turn() -> bool:
    """Whether the current span is a turn's that the sampler left unrecorded."""
    span = trace.get_current_span()
    return not span.is_recording() and span.get_span_context().is_valid


class _Scope:
    """A span made current; :meth:`end` ends it and makes the span before it current again.

    The previous context is set back rather than detached by token: a generator closed late
    may run its ``finally`` in another context, where resetting a token would fail."""

    __slots__ = ("_ended", "_previous", "span")

    def __init__(
        self, span: Span, previous: context.Context, base: context.Context | None = None
    ) -> None:
        self.span = span
        self._previous = previous
        self._ended = False
        context.attach(trace.set_span_in_context(span, previous if base is None else base))

    def failed(self, error_type: str, description: str | None = None) -> None:
        self.span.set_attribute("error.type", error_type)
        self.span.set_status(Status(StatusCode.ERROR, description))

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self.span.end()
        context.attach(self._previous)


class _RequestScope(_Scope):
    __slots__ = ()

    def responded(self, status: int) -> None:
        self.span.set_attribute("http.response.status_code", status)
        if status >= 500:
            # A server span is failed by a 5xx only: a 4xx is the client's (semconv HTTP).
            self.failed(str(status))


class _TurnScope(_Scope):
    """A turn started outside any request's span (no HTTP request: a test's, a command's):
    a ``turn`` span of its own, the root of the turn's trace."""

    __slots__ = ()

    def ended(self, terminal: Event) -> None:
        _outcome(self.span, terminal)


class _TurnOnRequest:
    """A turn started by a request: its request's span is the root of the turn's trace, and
    takes the turn's attributes, so that a turn costs no span of its own. The stages' spans
    may outlive it (the client left, the turn went on): the outcome is then on the span of
    the stage that ended the turn."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def ended(self, terminal: Event) -> None:
        if self.span.is_recording():
            _outcome(self.span, terminal)

    def failed(self, error_type: str, description: str | None = None) -> None:
        if self.span.is_recording():
            self.span.set_attribute("error.type", error_type)
            self.span.set_status(Status(StatusCode.ERROR, description))

    def end(self) -> None:
        """The request's own handler ends its span."""


def _outcome(span: Span, terminal: Event) -> None:
    outcome = str(
        "complete" if terminal["type"] == "complete" else terminal.get("code") or "internal"
    )
    if outcome == "complete":
        span.set_attribute("sluice.outcome", outcome)
    else:
        span.set_attributes({"sluice.outcome": outcome, "error.type": outcome})
        span.set_status(Status(StatusCode.ERROR, terminal.get("message")))


class _ModelCallScope(_Scope):
    __slots__ = ()

    def answered(self, result: AnswerResult) -> None:
        # Set at once: each set_attribute takes the span's lock and checks its value.
        attributes: dict[str, Any] = {"gen_ai.response.model": result.model}
        if result.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = (result.finish_reason,)
        usage = result.usage
        if usage is not None:
            for name, value in (
                ("gen_ai.usage.input_tokens", usage.input_tokens),
                ("gen_ai.usage.output_tokens", usage.output_tokens),
                ("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens),
                ("gen_ai.usage.cache_creation.input_tokens", usage.cache_creation_tokens),
            ):
                if value is not None:
                    attributes[name] = value
        self.span.set_attributes(attributes)


class _ToolScope(_Scope):
    __slots__ = ()

    def finished(self, result: ToolResult) -> None:
        if not result.ok:
            self.failed(str(result.error or "failed"))


class OtelTracer:
    """The :class:`~server.observability.tracing.Tracer` on the OpenTelemetry SDK."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("sluice", _version())
        # A provider's span name and fixed attributes, made at its first call: the same
        # for every call but the max_tokens and mode, and not worth making again per turn.
        self._calls: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        # A stage's span name and attributes, likewise (the SDK copies the attributes).
        self._stages: dict[str, tuple[str, dict[str, Any]]] = {}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> OtelTracer:
        resource = Resource.create({SERVICE_VERSION: _version()})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "sluice"}))
        provider = TracerProvider(resource=resource)
        for exporter in _exporters(environ):
            provider.add_span_processor(BatchSpanProcessor(exporter))
        # Global too: a plugin's own spans (trace.get_tracer) join the turn's trace.
        trace.set_tracer_provider(provider)
        return cls(provider)

    def _start(self, name: str, kind: SpanKind, attributes: dict[str, Any]) -> tuple[Span, Any]:
        previous = context.get_current()
        span = self._tracer.start_span(name, previous, kind, attributes)
        return span, previous

    def request(
        self, method: str, route: str, scheme: str, headers: Mapping[str, str]
    ) -> _RequestScope:
        parent = propagate.extract(headers)
        span = self._tracer.start_span(
            f"{method} {route}",
            parent,
            SpanKind.SERVER,
            {"http.request.method": method, "http.route": route, "url.scheme": scheme},
        )
        # Based on the extracted context, so the client's baggage stays with the request.
        return _RequestScope(span, context.get_current(), parent)

    def turn(self, turn: Turn) -> _TurnScope | _TurnOnRequest:
        attributes: dict[str, Any] = {"sluice.stream_id": turn.stream_id}
        if turn.session_id is not None:
            attributes["gen_ai.conversation.id"] = turn.session_id
        request = trace.get_current_span()
        if request.get_span_context().is_valid:
            if request.is_recording():
                request.set_attributes(attributes)
            return _TurnOnRequest(request)
        return _TurnScope(*self._start("turn", SpanKind.INTERNAL, attributes))

    def stage(self, name: str) -> _Scope | _Unrecorded:
        if _unrecorded_turn():
            return _UNRECORDED
        known = self._stages.get(name)
        if known is None:
            known = self._stages[name] = (f"stage {name}", {"sluice.stage": name})
        return _Scope(*self._start(known[0], SpanKind.INTERNAL, known[1]))

    def model_call(
        self, provider: Provider, mode: str, max_output_tokens: int
    ) -> _ModelCallScope | _Unrecorded:
        if _unrecorded_turn():
            return _UNRECORDED
        known = self._calls.get((provider.name, provider.model))
        if known is None:
            known = self._calls[provider.name, provider.model] = _call_attributes(provider)
        name, fixed = known
        attributes = {
            **fixed,
            "gen_ai.request.max_tokens": max_output_tokens,
            "sluice.mode": mode,
        }
        return _ModelCallScope(*self._start(name, SpanKind.CLIENT, attributes))

    def tool_call(self, tool: Tool | None, call: ToolCall) -> _ToolScope | _Unrecorded:
        if _unrecorded_turn():
            return _UNRECORDED
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.call_id,
            "gen_ai.tool.type": "function",
        }
        if tool is not None and tool.source:
            attributes["sluice.tool.source"] = tool.source
        return _ToolScope(*self._start(f"execute_tool {call.name}", SpanKind.INTERNAL, attributes))

    def inject(self, headers: MutableMapping[str, str]) -> None:
        propagate.inject(headers)

    def shutdown(self) -> None:
        self._provider.shutdown()


def _call_attributes(provider: Provider) -> tuple[str, dict[str, Any]]:
    """A provider call span's name and the attributes that are the same on every call."""
    kind = str(getattr(type(provider), "name", "") or provider.name)
    system = _GENAI_PROVIDERS.get(kind, kind)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": system,
        "gen_ai.system": system,
        "gen_ai.request.model": provider.model,
        "sluice.provider": provider.name,
    }
    base_url = getattr(provider, "base_url", None)
    if isinstance(base_url, str) and base_url:
        url = URL(base_url)
        if url.host:
            attributes["server.address"] = url.host
            if url.port is not None:
                attributes["server.port"] = url.port
    return (f"chat {provider.model}" if provider.model else "chat"), attributes


def _exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    names = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    exporters: list[SpanExporter] = []
    for name in (part.strip() for part in names.split(",")):
        if name == "otlp":
            protocol = environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ).strip()
            if protocol != "http/protobuf":
                log.warning(
                    "OTEL_EXPORTER_OTLP_PROTOCOL=%s: sluice[otel] installs the OTLP/HTTP"
                    " exporter only; sending http/protobuf (a collector's port 4318)",
                    protocol,
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name and name != "none":
            log.warning("OTEL_TRACES_EXPORTER: unknown exporter %r ignored", name)
    return exporters


def _version() -> str:
    try:
        return metadata.version("sluice")
    except metadata.PackageNotFoundError:
        return "0"
