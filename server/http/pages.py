"""The chat page, its static files, ``/api/me`` and the health endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tornado import web

from server.contract import StoreUnavailable
from server.http.base import DEFAULT_CODES, ApiCode, ApiError, BaseHandler
from server.http.images import IMAGE_TYPES

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "HealthHandler",
    "IndexHandler",
    "MeHandler",
    "NotFoundHandler",
    "ReadyHandler",
    "StaticHandler",
]

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"

# No inline script or style anywhere (docs/api.md): model output cannot become code.
# blob: images are the pictures the person picked, shown from their own bytes before sending.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


class IndexHandler(BaseHandler):
    """``GET /``: the page. The first visit gets the identity cookie."""

    def get(self) -> None:
        self.ensure_cookie_identity()
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        index = WEB_DIR / "index.html"
        if not index.is_file():
            raise ApiError(404, ApiCode.NOT_FOUND, "The chat page is not installed.")
        self.finish(index.read_bytes())


class StaticHandler(web.StaticFileHandler):
    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("X-Frame-Options", "DENY")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        code, message = DEFAULT_CODES.get(
            status_code, ("internal", "Something went wrong on our side.")
        )
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish({"error": {"code": code, "message": message}})


class MeHandler(BaseHandler):
    """``GET /api/me``: who the caller is, and the limits a picture is held to; a browser
    without the cookie gets one."""

    def get(self) -> None:
        identity = self.identity()
        if identity is None:
            identity = self.ensure_cookie_identity()
        limits = self.state.settings.limits
        # The picture limits, so that the page says and checks the ones this server holds.
        pictures = {
            "max_image_bytes": limits.max_image_bytes,
            "max_images": limits.max_images,
            "image_types": list(IMAGE_TYPES),
        }
        self.write_json({"user_id": identity.user_id, "limits": pictures})


class HealthHandler(BaseHandler):
    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    """Ready when the stores answer and a provider is configured; 503 with reasons if not."""

    async def get(self) -> None:
        reasons: list[str] = []
        state = self.state
        try:
            await state.sessions.ping()
        except StoreUnavailable as failure:  # names the backend and where it is
            reasons.append(f"sessions store: {failure.reason}")
        except Exception as error:  # any failure means "not ready", with its reason
            backend = state.sessions.backend
            reasons.append(f"sessions store ({backend}) unreachable: {type(error).__name__}")
        registry = state.runner.registry
        # Embedded: the rate-limit buckets. Shared: the one store (Redis) that holds stream
        # logs, limits, caps and leases, named as such.
        name, store = (
            ("rate_limits", state.rate_limit_store)
            if registry.kind == "memory"
            else (registry.kind, registry)
        )
        try:
            await store.ping()
        except StoreUnavailable as failure:
            reasons.append(f"{name} store unreachable: {failure.reason}")
        except Exception as error:
            reasons.append(f"{name} store unreachable: {type(error).__name__}")
        providers = state.chain.providers
        if not providers:
            reasons.append("no LLM provider is configured")
        if not self.state.runner.accepting:
            reasons.append("shutting down")
        # An MCP server that cannot start leaves its tools out, not the turns: it is named
        # here (and in the logs) without making the instance unready.
        mcp = [{"name": h.name, "ready": h.ready, "problem": h.problem} for h in state.mcp.health()]
        extra = {"mcp": mcp} if mcp else {}
        if reasons:
            self.write_json({"status": "unavailable", "reasons": reasons, **extra}, status=503)
        else:
            self.write_json({"status": "ready", "providers": [p.name for p in providers], **extra})


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        super().prepare()
        raise ApiError(404, ApiCode.NOT_FOUND, "There is nothing here.")
