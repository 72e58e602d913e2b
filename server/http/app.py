"""The Tornado application: every route, request logging, and compression that never
touches an event stream."""

from __future__ import annotations

import re
from typing import Any

import structlog
from tornado import web

from server.http.ai_sdk import ChatHandler, ChatStreamHandler
from server.http.check import CheckStreamHandler
from server.http.openai_api import ChatCompletionsHandler, ModelHandler, ModelsHandler
from server.http.ops import MetricsHandler, OpenAPIHandler
from server.http.pages import (
    WEB_DIR,
    HealthHandler,
    IndexHandler,
    MeHandler,
    NotFoundHandler,
    ReadyHandler,
    StaticHandler,
)
from server.http.sessions import (
    MessageImageHandler,
    SessionBranchHandler,
    SessionHandler,
    SessionListHandler,
)
from server.http.state import ServerState
from server.http.streams import (
    ConversationHandler,
    ConversationStreamHandler,
    StreamCancelHandler,
    StreamResumeHandler,
    ToolApprovalHandler,
)
from server.http.usage import UsageHandler, UsageListHandler
from server.internals.tornado_internals import GZipExceptEventStream

__all__ = ["ROUTES", "make_app"]

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
    ("/api/streams/{stream_id}/tools/{call_id}", ToolApprovalHandler),
    ("/api/sessions/{user_id}", SessionListHandler),
    ("/api/sessions/{user_id}/{session_id}", SessionHandler),
    ("/api/sessions/{user_id}/{session_id}/branch", SessionBranchHandler),
    (
        "/api/sessions/{user_id}/{session_id}/messages/{message_id}/images/{index}",
        MessageImageHandler,
    ),
    ("/api/check-stream", CheckStreamHandler),
    ("/api/chat", ChatHandler),
    ("/api/chat/{chat_id}/stream", ChatStreamHandler),
    ("/api/usage", UsageListHandler),
    ("/api/usage/{user_id}", UsageHandler),
    ("/v1/chat/completions", ChatCompletionsHandler),
    ("/v1/models", ModelsHandler),
    ("/v1/models/{model}", ModelHandler),
    ("/healthz", HealthHandler),
    ("/readyz", ReadyHandler),
    ("/metrics", MetricsHandler),
    ("/openapi.json", OpenAPIHandler),
]
_TEMPLATES = {handler: template for template, handler in ROUTES}
_TEMPLATES[StaticHandler] = "/static/{path}"
_QUIET_PATHS = ("/healthz", "/readyz", "/metrics")
# The routes a request span is made for (when traces are on): not probes and scrapes.
_TRACED = {handler: route for handler, route in _TEMPLATES.items() if route not in _QUIET_PATHS}


def _pattern(template: str) -> str:
    return re.sub(r"\{\w+\}", "([^/]+)", template)


def _log_request(handler: web.RequestHandler) -> None:
    status = handler.get_status()
    request = handler.request
    method = log.warning if status >= 500 else log.info
    if request.path in _QUIET_PATHS and status < 400:
        return
    # The route's template, never the path itself: paths carry user ids. An
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
        sluice_traced_routes=_TRACED,
        xsrf_cookies=False,  # cookie writes are checked by Origin instead (identity.py)
        **extra,
    )
    app.add_transform(GZipExceptEventStream)
    return app
