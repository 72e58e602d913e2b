"""The base of every handler: identity, JSON errors, bounded JSON bodies, safe headers."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import structlog
from tornado import web

from server.contract import ImagePart, StoreUnavailable
from server.http.errors import DEFAULT_CODES, ApiCode, ApiError, unavailable
from server.http.identity import (
    Identity,
    InvalidCredentials,
    new_user_id,
    same_origin,
    valid_user_id,
)
from server.http.images import ImageReader
from server.http.state import ServerState
from server.observability.tracing import RequestScope

__all__ = ["DEFAULT_CODES", "ApiCode", "ApiError", "BaseHandler", "JsonBodyHandler"]

log = structlog.get_logger("sluice.http")

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
CHARSET = re.compile(r"charset\s*=\s*\"?([\w-]+)", re.IGNORECASE)
# An X-Request-ID from a trusted proxy is kept when it looks like an id; else one is made.
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")

# API responses are data, never a document: nothing may load or frame them.
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
# CORS (server.cors_origins): what a listed origin may send and read.
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID, X-Session-Id"
CORS_EXPOSE_HEADERS = "X-Stream-Id, X-Request-Id, Retry-After, X-Heartbeat-Seconds"
CORS_MAX_AGE = "600"


class _ForwardedWarning:
    """Requests that came through a proxy while ``server.trust_proxy`` is off: every client
    then has the proxy's address, and shares one per-address rate-limit bucket and one
    per-address connection cap. Said once per process, at the first such request."""

    HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")

    def __init__(self) -> None:
        self.given = False

    def check(self, headers: Any) -> None:
        found = next((name for name in self.HEADERS if name in headers), None)
        if found is None:
            return
        self.given = True
        log.warning(
            "forwarded_headers_ignored",
            header=found,
            hint="requests come through a proxy, but server.trust_proxy is off: every client"
            " shares the proxy's address (one rate-limit bucket and connection cap for all)."
            " Behind your own proxy or a PaaS router, set SLUICE_SERVER__TRUST_PROXY=true.",
        )


_forwarded_warning = _ForwardedWarning()


class BaseHandler(web.RequestHandler):
    def initialize(self) -> None:
        # Every attribute a handler will ever set is set here first, always in one order:
        # then CPython keeps all instances' attribute dicts sharing one key table (~300
        # bytes each). Set in varying orders, each became a dict of its own, 1.5 KiB for
        # every open stream (docs/performance.md).
        self._identity: Identity | None = None
        self._identity_resolved = False
        self._trace: RequestScope | None = None  # this request's span, when traces are on

    @property
    def state(self) -> ServerState:
        state: ServerState = self.application.settings["sluice"]
        return state

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Content-Security-Policy", API_CONTENT_SECURITY_POLICY)
        self.set_header("Cache-Control", "no-store")
        self._set_cors_headers()

    def prepare(self) -> None:
        tracer = self.state.tracer
        if tracer is not None:
            # The request's span is current in the request's own task from here on, so the
            # turn it starts (and every line it logs) joins the client's trace.
            route = self.settings["sluice_traced_routes"].get(type(self))
            if route is not None:
                scheme = "https" if self.request_is_https() else "http"
                method = self.request.method or "GET"
                self._trace = tracer.request(method, route, scheme, self.request.headers)
        if not _forwarded_warning.given and not self.state.settings.server.trust_proxy:
            _forwarded_warning.check(self.request.headers)
        # Bound in this request's own task (Tornado runs each request as one): every line
        # logged while handling it, and by a turn it starts, carries the id.
        rid = self.request.headers.get("X-Request-ID", "")
        if not (self.state.settings.server.trust_proxy and REQUEST_ID.fullmatch(rid)):
            rid = secrets.token_hex(8)
        self.set_header("X-Request-Id", rid)
        structlog.contextvars.bind_contextvars(request_id=rid)

    def on_finish(self) -> None:
        # After the request's log line (Tornado logs, then calls this): it has the trace id.
        span = self._trace
        if span is not None:
            self._trace = None
            span.responded(self.get_status())
            span.end()

    # -- CORS (off unless server.cors_origins lists origins) -------------------------------

    def _cors_origin(self) -> str | None:
        """The request's Origin when it is listed in ``server.cors_origins``."""
        allowed = self.state.settings.server.cors_origins
        if not allowed:
            return None
        origin = self.request.headers.get("Origin")
        if origin is not None and origin in allowed:
            return origin
        return None

    def _set_cors_headers(self) -> None:
        if not self.state.settings.server.cors_origins:
            return
        # The answer depends on Origin whenever CORS is on: caches must keep them apart.
        self.set_header("Vary", "Origin")
        origin = self._cors_origin()
        if origin is not None:
            # No Allow-Credentials: another site calls with a bearer token, never the cookie.
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS)

    def options(self, *args: str) -> None:
        """A CORS preflight from a listed origin: 204 with what it may send; else 405."""
        if self._cors_origin() is None:
            raise web.HTTPError(405)
        methods = [
            name.upper()
            for name in ("get", "post", "patch", "delete")
            if getattr(type(self), name) is not getattr(web.RequestHandler, name)
        ]
        self.set_header("Access-Control-Allow-Methods", ", ".join(methods))
        self.set_header("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS)
        self.set_header("Access-Control-Max-Age", CORS_MAX_AGE)
        self.set_status(204)
        self.finish()

    # -- identity ------------------------------------------------------------------------

    def identity(self) -> Identity | None:
        """The caller, or None. Raises 401 for a bearer token that does not check out."""
        if self._identity_resolved:
            return self._identity
        self._identity_resolved = True
        self._identity = None
        header = self.request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, ApiCode.UNAUTHORIZED, "Use 'Authorization: Bearer <token>'.")
            try:
                self._identity = self.state.tokens.authenticate(token.strip())
            except InvalidCredentials as error:
                raise ApiError(401, ApiCode.UNAUTHORIZED, str(error)) from None
            return self._identity
        raw = self.get_signed_cookie(
            self.state.settings.auth.cookie_name,
            max_age_days=self.state.settings.auth.cookie_max_age_days,
        )
        if raw is not None:
            user_id = raw.decode("ascii", "replace")
            if valid_user_id(user_id):
                self._identity = Identity(user_id, "cookie")
        return self._identity

    def ensure_cookie_identity(self) -> Identity:
        """The caller, setting a fresh identity cookie for a first-time browser."""
        identity = self.identity()
        if identity is None:
            identity = Identity(new_user_id(), "cookie")
            self.set_signed_cookie(
                self.state.settings.auth.cookie_name,
                identity.user_id,
                expires_days=self.state.settings.auth.cookie_max_age_days,
                httponly=True,
                samesite="Lax",
                secure=self.request_is_https(),
                path="/",
            )
            self._identity = identity
        return identity

    def request_is_https(self) -> bool:
        if self.request.protocol == "https":
            return True
        if self.state.settings.server.trust_proxy:
            forwarded = self.request.headers.get("X-Forwarded-Proto", "")
            return forwarded.split(",")[0].strip().lower() == "https"
        return False

    def require_user(self, user_id: str) -> Identity:
        """The caller, who must be ``user_id``: 401 without identity, 403 for someone else."""
        identity = self.identity()
        if identity is None:
            raise ApiError(401, ApiCode.UNAUTHORIZED, DEFAULT_CODES[401][1])
        if identity.user_id != user_id:
            raise ApiError(403, ApiCode.FORBIDDEN, "That user id is not yours.")
        self.check_cookie_origin(identity)
        return identity

    def check_cookie_origin(self, identity: Identity) -> None:
        """Cookie-authenticated writes must come from this site (cross-site request forgery)."""
        if identity.method != "cookie" or self.request.method in ("GET", "HEAD", "OPTIONS"):
            return
        source = self.request.headers.get("Origin") or self.request.headers.get("Referer")
        if not source or not same_origin(source, self.request.host):
            raise ApiError(403, ApiCode.FORBIDDEN, "Cross-site requests are not allowed.")

    # -- errors --------------------------------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        extra: dict[str, Any] = {}
        code: str
        if isinstance(exc, StoreUnavailable):
            exc = unavailable(exc)
            self.set_status(exc.status_code)
        if isinstance(exc, ApiError):
            code, message, retry_after = exc.code, exc.message, exc.retry_after
            extra = exc.extra
            for name, value in exc.headers.items():
                self.set_header(name, value)
        else:
            code, message = DEFAULT_CODES.get(
                status_code, (ApiCode.INTERNAL, "Something went wrong on our side.")
            )
            retry_after = None
        body: dict[str, Any] = {"code": code, "message": message, **extra}
        if retry_after is not None:
            body["retry_after"] = retry_after
            self.set_header("Retry-After", str(int(retry_after)))
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": body}, ensure_ascii=False))

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Client mistakes are warnings without tracebacks; anything else is an error with one.
        if isinstance(value, web.HTTPError):
            log.info("request_refused", status=value.status_code, reason=value.log_message)
        elif isinstance(value, StoreUnavailable):
            # An outage, not a bug: one line naming it, no traceback.
            log.warning("store_unavailable", status=503, reason=value.reason)
            self.state.telemetry.store_unavailable(getattr(value, "store", "sessions"))
        else:
            log.error("request_failed", exc_info=(typ, value, tb))


# An image's base64 in a JSON body: a long run of base64 characters (no JSON escapes).
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{4096,}={0,2}")


@web.stream_request_body
class JsonBodyHandler(BaseHandler):
    """Reads a JSON object body of at most ``limits.max_body_bytes``, refusing early.

    The body is streamed so that an oversized one is refused from its Content-Length (or as
    soon as it grows past the limit) instead of being buffered first.
    """

    # An endpoint that takes images sets this: its bodies may be larger than
    # limits.max_body_bytes by the images' allowance (see :meth:`check_text_size`).
    takes_images = False

    def initialize(self) -> None:
        super().initialize()
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False

    def body_limit(self) -> int:
        """The largest body this route reads: ``limits.max_body_bytes`` unless it says, and
        more by the images' allowance when it takes images."""
        limits = self.state.settings.limits
        if self.takes_images:
            return limits.max_body_bytes + limits.image_allowance_bytes()
        return limits.max_body_bytes

    def check_text_size(self, image_chars: int) -> None:
        """413 when the body without its images' base64 (``image_chars`` characters) is
        over ``limits.max_body_bytes``: images may make a body large, text may not."""
        limit = self.state.settings.limits.max_body_bytes
        if self._size - image_chars > limit:
            raise ApiError(
                413, ApiCode.TOO_LARGE, f"The body is over {limit} bytes, its images aside."
            )

    def prepare(self) -> None:
        super().prepare()
        limit = self.body_limit()
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            # Answered with 413 once the body has been read (and dropped, never buffered):
            # refusing before reading would reset the connection under a sending client,
            # which then never sees the error. The server's max_body_size still caps it.
            self._too_large = True

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.body_limit():
            self._too_large = True
            self._chunks = []
        elif not self._too_large:
            self._chunks.append(chunk)

    def json_body(self) -> dict[str, Any]:
        limit = self.body_limit()
        if self._too_large:
            raise ApiError(413, ApiCode.TOO_LARGE, f"The body is over {limit} bytes.")
        content_type = self.request.headers.get("Content-Type", "")
        mime, _, params = content_type.partition(";")
        if mime.strip().lower() != "application/json":
            raise ApiError(
                415, ApiCode.UNSUPPORTED_MEDIA_TYPE, "Send the body as application/json."
            )
        charset = CHARSET.search(params)
        if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
            raise ApiError(415, ApiCode.UNSUPPORTED_MEDIA_TYPE, "The body must be UTF-8.")
        raw = b"".join(self._chunks)
        self._chunks = []  # not kept for as long as the response (a stream) lasts
        if self.takes_images and len(raw) > self.state.settings.limits.max_body_bytes:
            # Only an endpoint that takes images gets here. Before paying for parsing a body
            # up to the images' allowance, a cheap look: what is not a long base64 run (an
            # image) must fit the text limit. The exact count follows the parse.
            self.check_text_size(sum(len(run) for run in _BASE64_RUN.findall(raw)))
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ApiError(400, ApiCode.BAD_REQUEST, "The body is not valid UTF-8.") from None
        except (ValueError, RecursionError):
            raise ApiError(400, ApiCode.BAD_REQUEST, "The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ApiError(400, ApiCode.BAD_REQUEST, "The body must be a JSON object.")
        return data

    def chat_request(
        self, data: dict[str, Any] | None = None
    ) -> tuple[str, str | None, list[ImagePart]]:
        """``(message, session_id, images)`` from the body (or ``data``, the body read
        already), checked against the contract's limits. ``images`` is ``[{"data": base64,
        "media_type"}]`` (:mod:`server.http.images`); a message with images may have no text."""
        data = self.json_body() if data is None else data
        images = self._images(data.get("images"))
        message = self.checked_message(data.get("message"), "'message'", empty=bool(images))
        session_id = data.get("session_id")
        if session_id is not None and (
            not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id)
        ):
            raise ApiError(
                400, ApiCode.BAD_REQUEST, "'session_id' must be 1-64 letters, digits, '_' or '-'."
            )
        return message, session_id, images

    def checked_message(self, message: object, name: str, *, empty: bool = False) -> str:
        """The user's message, checked against the contract's limits; ``name`` says where in
        the body it was, in the refusal. ``empty``: it may be blank (images carry it)."""
        if not isinstance(message, str) or not (message.strip() or empty):
            raise ApiError(400, ApiCode.BAD_REQUEST, f"{name} must be a non-empty string.")
        limit = self.state.settings.limits.max_message_chars
        if len(message) > limit:
            raise ApiError(413, ApiCode.TOO_LARGE, f"The message is over {limit} characters.")
        if "\x00" in message:
            raise ApiError(400, ApiCode.BAD_REQUEST, "The message contains a NUL character.")
        try:
            message.encode("utf-8")
        except UnicodeEncodeError:
            # JSON's "\ud800" escapes decode to lone surrogates, which no store can keep.
            raise ApiError(400, ApiCode.BAD_REQUEST, "The message is not valid Unicode.") from None
        return message

    def _images(self, value: Any) -> list[ImagePart]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ApiError(400, ApiCode.BAD_REQUEST, "'images' must be a list.")
        limits = self.state.settings.limits
        reader = ImageReader(limits.max_image_bytes, limits.max_images)
        images: list[ImagePart] = []
        for index, item in enumerate(value):
            where = f"images[{index}]"
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("data"), str)
                or not isinstance(item.get("media_type"), str)
            ):
                raise ApiError(
                    400, ApiCode.BAD_REQUEST, f'\'{where}\' must be {{"data", "media_type"}}.'
                )
            images.append(reader.read(item["data"], item["media_type"], where))
        self.check_text_size(reader.base64_chars)
        return images
