"""``session``: creates or resumes the conversation, and keeps what was said.

A wrapper: before the rest of the pipeline it loads the session's history and memory and
saves the user's message (so it survives whatever the model does next); after, it saves the
answer the client saw with its status — ``complete``, ``incomplete`` (interrupted, stopped,
timed out with text) or ``error`` — its facts (provider, model, mode, fallback, tokens, time
to first token, duration, the user message it replies to) and what the session now
remembers.

History that cannot be reached (a shared database down) ends the turn before any model is
asked, with a retryable error: an answer the server could not keep would be lost history.

A turn whose client keeps the conversation itself (``turn.client_history`` is set: the
OpenAI-compatible API without ``X-Session-Id``) is not stored: its history is what the client
sent, and nothing is saved. Such a client sends the whole conversation again with every
request; storing each request would make one new session per call, each repeating the last.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import AsyncIterator

import structlog

from server import (
    AnswerFacts,
    Chunk,
    Complete,
    Error,
    ErrorCode,
    Event,
    Message,
    Rest,
    StageOptions,
    StoreUnavailable,
    Turn,
    WrapperStage,
    error,
)

__all__ = ["SessionStage"]

log = structlog.get_logger("sluice.session")


# Errors that end a turn before any model is asked.
_NO_ANSWER = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.TOO_MANY_STREAMS})


class SessionOptions(StageOptions):
    # How many earlier messages to load for the prompt (the context stage trims further).
    history_messages: int = 40
    title_chars: int = 60


class SessionStage(WrapperStage):
    Options = SessionOptions
    options: SessionOptions

    async def wrap(self, turn: Turn, rest: Rest) -> AsyncIterator[Event]:
        if turn.client_history is not None:
            turn.history = turn.client_history[-self.options.history_messages :]
            async for event in rest(turn):
                yield event
            return
        try:
            session_id, asked = await self._open(turn)
        except StoreUnavailable as failure:
            log.warning("history_unavailable", reason=failure.reason)
            yield error(
                ErrorCode.INTERNAL,
                "Conversation history is unavailable right now. Please try again shortly.",
                retryable=True,
                retry_after=failure.retry_after,
            )
            return
        parts: list[str] = []
        terminal: Event | None = None
        first_text: float | None = None
        try:
            async for event in rest(turn):
                if isinstance(event, Chunk):
                    if first_text is None:
                        first_text = time.time()
                    parts.append(event.content)
                elif isinstance(event, Complete):
                    event = dataclasses.replace(event, session_id=session_id)
                    terminal = event
                elif isinstance(event, Error):
                    terminal = event
                if terminal is not None:
                    await self._save(turn, session_id, asked, parts, terminal, first_text)
                yield event
        finally:
            if terminal is None:  # the turn was torn down around us: keep what was sent
                await self._save(turn, session_id, asked, parts, None, first_text)

    async def _open(self, turn: Turn) -> tuple[str, int]:
        """Open (or create) the session, load its memory and recent history into ``turn``,
        and save the user's message; the session id and the message's id. A method of its
        own so that the session's stored messages are not kept, in ``wrap``'s frame, for as
        long as the answer streams."""
        store = self.services.sessions
        session_id = turn.session_id or "s_" + secrets.token_urlsafe(9)
        title = " ".join(turn.message.split())[: self.options.title_chars]
        record = await store.open_session(turn.user_id, session_id, title)
        turn.session_id = record.session_id
        turn.memory = dict(record.memory)
        earlier = await store.messages(turn.user_id, session_id)
        turn.history = [
            Message("user" if m.role == "user" else "assistant", m.content)
            for m in earlier[-self.options.history_messages :]
            if m.content and m.role in ("user", "assistant")
        ]
        # Saved before any model is called: whatever happens next, the user's words are kept.
        asked = await store.add_message(turn.user_id, session_id, "user", turn.message, "complete")
        return session_id, asked

    async def _save(
        self,
        turn: Turn,
        session_id: str,
        asked: int,
        parts: list[str],
        terminal: Event | None,
        first_text: float | None,
    ) -> None:
        store = self.services.sessions
        answer = "".join(parts)
        if isinstance(terminal, Complete):
            answer, status = terminal.message, "complete"
        elif isinstance(terminal, Error) and terminal.code in _NO_ANSWER:
            return  # no model was asked: there is no answer to record
        else:
            status = "incomplete" if answer else "error"
        facts = _facts(turn, terminal, first_text)
        try:
            await store.add_message(
                turn.user_id, session_id, "assistant", answer, status, reply_to=asked, facts=facts
            )
            await store.save_memory(turn.user_id, session_id, turn.memory)
        except StoreUnavailable as failure:
            # The client has the answer already; the history lacks it. Say so in the log.
            log.warning("answer_not_saved", reason=failure.reason, status=status)


def _facts(turn: Turn, terminal: Event | None, first_text: float | None) -> AnswerFacts:
    """What the ``complete`` event tells (an error tells no provider), and the times as the
    user saw them: from the request to the first text, and to the end."""
    now = time.time()
    ended = terminal if isinstance(terminal, Complete) else None
    usage = (ended.usage if ended is not None else None) or {}
    return AnswerFacts(
        provider=ended.provider if ended is not None else None,
        model=ended.model if ended is not None else None,
        mode=ended.mode if ended is not None else None,
        fallback=ended.fallback if ended is not None else None,
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
        time_to_first_token_ms=(
            None if first_text is None else round((first_text - turn.started_at) * 1000, 1)
        ),
        duration_ms=round((now - turn.started_at) * 1000, 1),
    )
