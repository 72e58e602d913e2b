"""The error codes of the HTTP API, defined once, and the exception that carries one.

Outside a stream an error is ``{"error": {"code", "message", "retry_after"?}}`` with the
status of its code. Inside a stream, errors are events whose codes are the contract's
``ErrorCode``; the JSON endpoint answers those with the statuses of :data:`EVENT_STATUS`.
"""

from __future__ import annotations

import enum
from typing import Any

from tornado import web

from server.contract import ErrorCode, StoreUnavailable

__all__ = ["DEFAULT_CODES", "EVENT_STATUS", "ApiCode", "ApiError", "unavailable"]


class ApiCode(enum.StrEnum):
    """The ``code`` of an error answered before (or instead of) a stream."""

    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TIMEOUT = "request_timeout"
    TURN_IN_PROGRESS = "turn_in_progress"
    ALREADY_DECIDED = "already_decided"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    HEADERS_TOO_LARGE = "headers_too_large"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    # The OpenAI-compatible API's own (its errors follow OpenAI's shape, see openai_api.py).
    MODEL_NOT_FOUND = "model_not_found"
    UNSUPPORTED_PARAMETER = "unsupported_parameter"


# The code and message of an error raised without one (Tornado's own 404, 405…).
DEFAULT_CODES: dict[int, tuple[str, str]] = {
    400: (ApiCode.BAD_REQUEST, "The request is malformed."),
    401: (ApiCode.UNAUTHORIZED, "Sign in first: send a bearer token or the identity cookie."),
    403: (ApiCode.FORBIDDEN, "You may not do that."),
    404: (ApiCode.NOT_FOUND, "There is nothing here."),
    405: (ApiCode.METHOD_NOT_ALLOWED, "That method is not allowed here."),
    408: (ApiCode.REQUEST_TIMEOUT, "The request did not arrive in time."),
    413: (ApiCode.TOO_LARGE, "The request is too large."),
    415: (ApiCode.UNSUPPORTED_MEDIA_TYPE, "Send the body as application/json."),
    429: (ErrorCode.RATE_LIMITED, "Too many requests."),
    431: (ApiCode.HEADERS_TOO_LARGE, "The request's headers are too large."),
    503: (ApiCode.UNAVAILABLE, "The service is unavailable right now. Please try again."),
}

# A stream's terminal error -> the status the JSON endpoint answers it with.
EVENT_STATUS: dict[str, int] = {
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.BUDGET_EXHAUSTED: 429,
    ErrorCode.TOO_MANY_STREAMS: 429,
    ErrorCode.UPSTREAM_UNAVAILABLE: 502,
    ErrorCode.UPSTREAM_INTERRUPTED: 502,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.CANCELLED: 503,
}


# Seconds a 429 whose wait is not known (too_many_streams: a slot frees when an answer in
# progress ends, which nobody can know) tells the client to wait: a guess beats clients
# retrying in a tight loop, and every 429 then says when to come back.
BUSY_RETRY_AFTER_SECONDS = 5


def retry_after_for(status: int, retry_after: float | None) -> float | None:
    """``retry_after``, or for a 429 without one the busy guess."""
    if status == 429 and retry_after is None:
        return BUSY_RETRY_AFTER_SECONDS
    return retry_after


class ApiError(web.HTTPError):
    """An error with a contract code, written as ``{"error": {...}}``."""

    def __init__(
        self,
        status: int,
        code: ApiCode | ErrorCode,
        message: str,
        *,
        retry_after: float | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, reason=None, log_message=f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after
        # More members of the error object, e.g. the stream id of turn_in_progress.
        self.extra = extra or {}
        # Response headers of the error (X-Stream-Id of turn_in_progress): set in
        # write_error, since send_error clears any set before the raise.
        self.headers = headers or {}


def unavailable(failure: StoreUnavailable) -> ApiError:
    """The 503 a client gets while a store is down: no internals, and when to try again."""
    return ApiError(
        503,
        ApiCode.UNAVAILABLE,
        "The service cannot reach its storage right now. Please try again shortly.",
        retry_after=failure.retry_after,
    )
