"""Why a turn was cancelled, and the ``error`` event each reason becomes.

A cancel arrives from outside the turn's task (a stop request, the deadline timer, a client
leaving, shutdown) as a task cancellation; the reason travels beside it in the turn's
:class:`Cancellation`, which the producer makes current for its task. Code that handles the
cancellation inside the task (the pipeline) reads it with :func:`current_reason`. Plugins'
scratch space (``turn.state``) is theirs alone.
"""

from __future__ import annotations

import contextvars

from server.contract import Error, ErrorCode, error

__all__ = ["CANCEL_REASONS", "Cancellation", "cancellation_event", "current_reason"]

# Why a turn was cancelled -> the error event the client gets.
CANCEL_REASONS: dict[str, tuple[ErrorCode, str, bool]] = {
    "cancelled": (ErrorCode.CANCELLED, "Stopped.", False),
    "disconnect": (ErrorCode.CANCELLED, "The client went away.", False),
    "deleted": (ErrorCode.CANCELLED, "The conversation was deleted.", False),
    "timeout": (ErrorCode.TIMEOUT, "The answer took too long and was stopped.", True),
    "shutdown": (ErrorCode.INTERNAL, "The server is restarting. Please try again.", True),
    # The turn's shared log is no longer this instance's to write (Redis lost it, or the
    # instance stalled past its lease and another one ended the turn).
    "lost": (ErrorCode.INTERNAL, "The answer was interrupted. Please try again.", True),
}


class Cancellation:
    """The cancel reason of one turn; the first reason given wins."""

    __slots__ = ("reason",)

    def __init__(self) -> None:
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def make_current(self) -> None:
        """Call from the turn's own task, first thing."""
        _CURRENT.set(self)


_CURRENT: contextvars.ContextVar[Cancellation | None] = contextvars.ContextVar(
    "sluice_cancellation", default=None
)


def current_reason() -> str | None:
    cancellation = _CURRENT.get()
    return None if cancellation is None else cancellation.reason


def cancellation_event(reason: str | None) -> Error:
    code, message, retryable = CANCEL_REASONS.get(
        reason or "cancelled", CANCEL_REASONS["cancelled"]
    )
    return error(code, message, retryable=retryable)
