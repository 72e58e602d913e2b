"""Structured logs through structlog: JSON lines in production, readable lines locally.

Request and stream ids are bound with ``structlog.contextvars`` so every line of a request
or a turn carries them (``server.http.base``, ``server.observability.turnlog``). Lines from the
standard library's loggers (Tornado's, the fallback chain's) go through the same renderer,
so a log collector sees one format.

With traces on, every line logged while a span is current carries its ``trace_id`` and
``span_id`` (``trace_ids=True``); off, the processor is not there at all.

Tracebacks stay server-side and carry no local variables: locals would put tokens, cookies
and message text into the log.
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from server.config import LogSettings

__all__ = ["configure_logging"]


def configure_logging(settings: LogSettings, *, trace_ids: bool = False) -> None:
    level = getattr(logging, settings.level.upper())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if trace_ids:
        from server.observability.otel import add_trace_ids  # the SDK: only with traces on

        shared.insert(1, add_trace_ids)
    renderer: structlog.types.Processor
    use_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    if use_json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # The standard library's records (Tornado, the chain): same processors, same renderer.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            *shared,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.WARNING))
    for name in ("sluice",):
        logging.getLogger(name).setLevel(level)
    # Access lines are ours (app._log_request); keep Tornado's errors.
    logging.getLogger("tornado.access").setLevel(logging.CRITICAL)
