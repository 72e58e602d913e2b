"""Structured logs through structlog: JSON lines in production, readable lines locally.

Request and stream ids are bound with ``structlog.contextvars`` so every line of a turn
carries them. Nothing here logs message text unless ``log.include_content`` is on.
"""

from __future__ import annotations

import logging
import sys

import structlog

from server.config import LogSettings

__all__ = ["configure_logging"]


def configure_logging(settings: LogSettings) -> None:
    level = getattr(logging, settings.level.upper())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    use_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    if use_json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.dict_tracebacks)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Tornado's own loggers: access lines are ours (see app.log_request), keep its errors.
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr, format="%(message)s")
    logging.getLogger("tornado.access").setLevel(logging.CRITICAL)
