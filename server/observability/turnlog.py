"""The log lines of a turn: started, provider attempts and fallbacks, finished.

One JSON line per event of note. The producer task calls :meth:`TurnLog.turn_started` first
thing, so the stream id and the hashed user bound there with ``structlog.contextvars`` stay
on every line logged during the turn (the pipeline's, the stages', the chain's). Stage
timings are gathered into the ``turn_finished`` line rather than a line per stage.

What never appears: the raw user id (a keyed hash instead), tokens, cookies, and — unless
``log.include_content = true`` — the message or answer text.
"""

from __future__ import annotations

import contextvars
import hashlib
from dataclasses import dataclass, field
from typing import Any

import structlog

from server.config import Settings
from server.contract import Event, Turn
from server.observability.telemetry import Telemetry

__all__ = ["TurnLog", "TurnRecord", "current_turn", "hash_user"]

log = structlog.get_logger("sluice.turn")


@dataclass(slots=True)
class TurnRecord:
    """What the hooks of one running turn gather; lives in the producer task's context."""

    stream_id: str
    provider: str | None = None
    stages_ms: dict[str, float] = field(default_factory=dict)


_CURRENT: contextvars.ContextVar[TurnRecord | None] = contextvars.ContextVar(
    "sluice_turn", default=None
)


def current_turn() -> TurnRecord | None:
    """The record of the turn whose producer task is running, or None outside one."""
    return _CURRENT.get()


def hash_user(secret: str, user_id: str) -> str:
    """A stable pseudonym for ``user_id``: lines of one user can be grouped, but the id
    cannot be read back or guessed from a list of ids without the signing key."""
    return hashlib.sha256(f"{secret}\x00{user_id}".encode()).hexdigest()[:12]


class TurnLog(Telemetry):
    def __init__(self, settings: Settings) -> None:
        # The signing key is read when needed: build_state fills it in after construction.
        self._auth = settings.auth
        self._log_settings = settings.log

    def user_hash(self, user_id: str) -> str:
        return hash_user(self._auth.secret_key, user_id)

    # -- turns -------------------------------------------------------------------------------

    def turn_started(self, turn: Turn) -> None:
        _CURRENT.set(TurnRecord(turn.stream_id))
        structlog.contextvars.bind_contextvars(
            stream_id=turn.stream_id, user=self.user_hash(turn.user_id)
        )
        fields: dict[str, Any] = {
            "session_id": turn.session_id,
            "message_chars": len(turn.message),
        }
        if self._log_settings.include_content:
            fields["message"] = turn.message
        log.info("turn_started", **fields)

    def turn_ended(
        self, turn: Turn, terminal: Event, seconds: float, first_chunk_seconds: float | None
    ) -> None:
        record = _CURRENT.get()
        if record is not None and record.stream_id != turn.stream_id:
            record = None
        complete = terminal["type"] == "complete"
        ttft = first_chunk_seconds
        fields: dict[str, Any] = {
            "stream_id": turn.stream_id,
            "user": self.user_hash(turn.user_id),
            "outcome": "complete" if complete else terminal.get("code", "internal"),
            "duration_ms": round(seconds * 1000, 1),
            "ttft_ms": None if ttft is None else round(ttft * 1000, 1),
            "provider": terminal.get("provider") or (record.provider if record else None),
        }
        if complete:
            message = terminal.get("message") or ""
            fields.update(
                answer_chars=len(message),
                model=terminal.get("model"),
                mode=terminal.get("mode"),
                fallback=bool(terminal.get("fallback")),
                session_id=terminal.get("session_id"),
            )
            if self._log_settings.include_content:
                fields["answer"] = message
        if record is not None:
            fields["stages_ms"] = record.stages_ms
        log.info("turn_finished", **fields)

    def stage_done(self, stage: str, seconds: float) -> None:
        record = _CURRENT.get()
        if record is not None:
            record.stages_ms[stage] = round(seconds * 1000, 2)

    # -- the fallback chain ------------------------------------------------------------------

    def on_attempt(self, provider: str, mode: str) -> None:
        record = _CURRENT.get()
        if record is not None:
            record.provider = provider
        log.info("provider_attempt", provider=provider, mode=mode)

    def on_success(self, provider: str, mode: str, seconds: float) -> None:
        log.info("provider_answered", provider=provider, mode=mode, seconds=round(seconds, 3))

    def on_fallback(self, provider: str, reason: str) -> None:
        log.warning("provider_fallback", provider=provider, reason=reason)

    def on_interrupted(self, provider: str, reason: str) -> None:
        log.warning("provider_interrupted", provider=provider, reason=reason)

    def on_circuit_change(self, provider: str, state: str) -> None:
        log.warning("circuit_changed", provider=provider, state=state)
