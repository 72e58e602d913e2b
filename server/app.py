"""Assembling the server: settings -> stores, providers, stages -> pipeline -> application."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import structlog
from tornado import web
from tornado.web import GZipContentEncoding

from server.config import ConfigError, Settings
from server.handlers.ops import MetricsHandler, OpenAPIHandler
from server.handlers.pages import (
    WEB_DIR,
    HealthHandler,
    IndexHandler,
    MeHandler,
    NotFoundHandler,
    ReadyHandler,
    StaticHandler,
)
from server.handlers.sessions import SessionHandler, SessionListHandler
from server.handlers.streams import (
    ConversationHandler,
    ConversationStreamHandler,
    StreamCancelHandler,
    StreamResumeHandler,
)
from server.identity import TokenAuthenticator, load_or_create_secret
from server.llm_chain import LLMChain
from server.metrics import PrometheusTelemetry
from server.pipeline import Pipeline
from server.plugin_api import Services
from server.providers import ProviderContext
from server.registry import load_providers, load_stages
from server.state import ServerState
from server.stores.memory import MemoryRateLimitStore
from server.stores.sqlite import SQLiteSessionStore
from server.streamlog import MemoryStreamLogStore
from server.telemetry import Telemetry
from server.turns import TurnRunner

__all__ = ["ROUTES", "build_state", "make_app"]

log = structlog.get_logger("sluice.app")

# Every route, as the template docs/operations.md and /openapi.json use; ``{name}`` matches
# one path segment. Request log lines name the template, not the path: paths hold user ids.
ROUTES: list[tuple[str, type[web.RequestHandler]]] = [
    ("/", IndexHandler),
    ("/api/me", MeHandler),
    ("/api/conversation-stream/{user_id}", ConversationStreamHandler),
    ("/api/conversation/{user_id}", ConversationHandler),
    ("/api/streams/{stream_id}", StreamResumeHandler),
    ("/api/streams/{stream_id}/cancel", StreamCancelHandler),
    ("/api/sessions/{user_id}", SessionListHandler),
    ("/api/sessions/{user_id}/{session_id}", SessionHandler),
    ("/healthz", HealthHandler),
    ("/readyz", ReadyHandler),
    ("/metrics", MetricsHandler),
    ("/openapi.json", OpenAPIHandler),
]
_TEMPLATES = {handler: template for template, handler in ROUTES}
_TEMPLATES[StaticHandler] = "/static/{path}"
_QUIET_PATHS = ("/healthz", "/readyz", "/metrics")


def _pattern(template: str) -> str:
    return re.sub(r"\{\w+\}", "([^/]+)", template)


class _GZipExceptEventStream(GZipContentEncoding):
    """Compress what is worth it, never an event stream: gzip buffers, and a buffered event
    arrives late (DESIGN.md section 4)."""

    def _compressible_type(self, ctype: str) -> bool:
        return not ctype.startswith("text/event-stream") and super()._compressible_type(ctype)


def check_deployment(settings: Settings) -> None:
    if settings.server.workers > 1:
        raise ConfigError(
            f"config error: server.workers = {settings.server.workers}: more than one worker"
            " needs shared stores, and this build has only embedded ones (sessions in SQLite,"
            " stream logs and rate limits in memory); run one worker per process"
        )


def build_state(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    telemetry: Telemetry | None = None,
) -> ServerState:
    environ = os.environ if environ is None else environ
    if telemetry is None:
        telemetry = PrometheusTelemetry(settings)
    check_deployment(settings)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    context = ProviderContext(
        environ=dict(environ),
        # Every admitted stream may hold one upstream connection (DESIGN.md section 8).
        max_connections=max(64, settings.limits.max_streams_per_user * 64),
    )
    providers, problems = load_providers(settings, context)
    names = [provider.name for provider in providers]
    if isinstance(telemetry, PrometheusTelemetry):
        telemetry.providers_configured(names)
    if names == ["demo"] and settings.env == "production" and not settings.llm.allow_demo:
        raise ConfigError(
            "config error: SLUICE_ENV = 'production' with only the demo provider: set"
            " OPENAI_API_KEY or GEMINI_API_KEY (or llm.allow_demo = true to serve the demo)"
        )
    llm = settings.llm
    chain = LLMChain(
        providers,
        max_output_tokens=llm.max_output_tokens,
        first_token_timeout=llm.first_token_timeout_seconds,
        idle_timeout=llm.idle_timeout_seconds,
        circuit_failures=llm.circuit_failures,
        circuit_cooldown=llm.circuit_cooldown_seconds,
        observer=telemetry,
    )
    services = Services(
        settings=settings,
        sessions=SQLiteSessionStore(data_dir / settings.store.sqlite_file),
        rate_limits=MemoryRateLimitStore(),
        llm=chain,
    )
    stages = load_stages(settings, services)
    logs = MemoryStreamLogStore(
        ttl_seconds=settings.stream.log_ttl_seconds, max_events=settings.stream.max_log_events
    )
    runner = TurnRunner(Pipeline(stages, telemetry=telemetry), logs, settings, telemetry=telemetry)
    settings.auth.secret_key = load_or_create_secret(settings.auth.secret_key, data_dir)
    return ServerState(
        settings=settings,
        services=services,
        logs=logs,
        runner=runner,
        tokens=TokenAuthenticator(settings.auth),
        provider_problems=problems,
        stages=stages,
        telemetry=telemetry,
    )


def _log_request(handler: web.RequestHandler) -> None:
    status = handler.get_status()
    request = handler.request
    method = log.warning if status >= 500 else log.info
    if request.path in _QUIET_PATHS and status < 400:
        return
    # The route's template, never the path itself: paths carry user ids (issue 6). An
    # unmatched path is shown cut short, since the client chose it.
    route = _TEMPLATES.get(type(handler)) or request.path[:80]
    method(
        "request",
        method=request.method,
        route=route,
        status=status,
        duration_ms=round(request.request_time() * 1000, 1),
    )


def make_app(state: ServerState, **extra: Any) -> web.Application:
    routes: list[Any] = [(_pattern(template), handler) for template, handler in ROUTES]
    routes.append((r"/static/(.*)", StaticHandler, {"path": str(WEB_DIR)}))
    app = web.Application(
        routes,
        sluice=state,
        cookie_secret=state.settings.auth.secret_key,
        default_handler_class=NotFoundHandler,
        log_function=_log_request,
        xsrf_cookies=False,  # cookie writes are checked by Origin instead (identity.py)
        **extra,
    )
    app.add_transform(_GZipExceptEventStream)
    return app
