"""Traces of every turn, when the OpenTelemetry SDK's own variables ask for them.

The SDK is an optional extra (``pip install 'sluice[otel]'``). This module never imports it:
:func:`start_tracing` reads the environment and only then imports
:mod:`server.observability.otel`, which does. Off (no variables, or the extra not installed),
every caller holds ``None`` instead of a :class:`Tracer`, and its only cost is that ``None``
test: no span objects, no context variables, no header work per request.

The names a caller needs are here, as protocols; the spans, their names and their
attributes (the GenAI semantic conventions' for model and tool calls) are in ``otel.py``.
Each ``Tracer`` method starts a span and makes it the current one; the scope it returns
ends it and puts back the span that was current before, so spans started meanwhile (and
log lines, and the ``traceparent`` sent upstream) belong to it. In a turn the sampler
left unrecorded, the stage, model-call and tool-call scopes are empty: no span, nothing made
current; the request's unrecorded span still carries the trace id to the logs and upstream.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, MutableMapping
from typing import Protocol

import structlog

from server.contract import AnswerResult, Event, Provider, Tool, ToolCall, ToolResult, Turn

__all__ = [
    "ModelCallScope",
    "RequestScope",
    "SpanScope",
    "ToolScope",
    "Tracer",
    "TurnScope",
    "start_tracing",
    "tracing_requested",
    "tracing_wanted",
]

log = structlog.get_logger("sluice.tracing")

_TRUE = frozenset({"true", "1", "yes", "on"})


class SpanScope(Protocol):
    def failed(self, error_type: str, description: str | None = None) -> None:
        """Mark the span failed: ``error.type`` and an error status."""

    def end(self) -> None:
        """End the span (once; later calls do nothing) and restore the span before it."""


class RequestScope(SpanScope, Protocol):
    def responded(self, status: int) -> None:
        """The response's status code; 5xx marks the span failed."""


class TurnScope(SpanScope, Protocol):
    def ended(self, terminal: Event) -> None:
        """The turn's terminal event: its outcome, and an error status unless complete."""


class ModelCallScope(SpanScope, Protocol):
    def answered(self, result: AnswerResult) -> None:
        """The response model, token usage and finish reason of a call that answered."""


class ToolScope(SpanScope, Protocol):
    def finished(self, result: ToolResult) -> None:
        """The call's outcome; a failed one sets ``error.type`` to its error kind."""


class Tracer(Protocol):
    def request(
        self, method: str, route: str, scheme: str, headers: Mapping[str, str]
    ) -> RequestScope:
        """A server span for one HTTP request, continuing the client's ``traceparent``."""

    def turn(self, turn: Turn) -> TurnScope:
        """One turn, from its producer's start to its terminal event: the span of the
        request that started it takes the turn's attributes (a turn outside any request
        gets a ``turn`` span of its own)."""

    def stage(self, name: str) -> SpanScope:
        """One pipeline stage (a wrapper's span holds the stages after it); the pipeline
        asks for none for a quiet stage."""

    def model_call(self, provider: Provider, mode: str, max_output_tokens: int) -> ModelCallScope:
        """One call to a provider ("stream" or "non-stream"); a fallback is another call."""

    def tool_call(self, tool: Tool | None, call: ToolCall) -> ToolScope:
        """One tool call being run."""

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Add ``traceparent`` (and ``tracestate``) for the current span to ``headers``."""

    def shutdown(self) -> None:
        """Export what is still buffered and stop (blocks: run it in a thread)."""


def tracing_requested(environ: Mapping[str, str]) -> bool:
    """Whether the standard variables ask for traces: an OTLP endpoint, or a traces exporter
    other than ``none``; ``OTEL_SDK_DISABLED=true`` wins over both."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def tracing_wanted(environ: Mapping[str, str]) -> bool:
    """Requested, and the SDK installed (looked up without importing it)."""
    return tracing_requested(environ) and _sdk_installed()


def _sdk_installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.sdk.trace") is not None
    except ModuleNotFoundError:  # no opentelemetry package at all
        return False


def start_tracing(environ: Mapping[str, str]) -> Tracer | None:
    """The process's tracer, or None when traces are off. Call once per process, after any
    fork: the SDK's batch exporter runs a thread of its own."""
    if not tracing_requested(environ):
        return None
    if not _sdk_installed():
        log.warning(
            "tracing_unavailable",
            hint="OTEL_* variables ask for traces, but the OpenTelemetry SDK is not installed:"
            " pip install 'sluice[otel]'. Serving without traces.",
        )
        return None
    from server.observability.otel import OtelTracer

    return OtelTracer.from_environ(environ)
