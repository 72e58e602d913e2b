"""``session``: creates or resumes the conversation, and keeps what was said.

A wrapper: before the rest of the pipeline it loads the session's history and memory and
saves the user's message (so it survives whatever the model does next); after, it saves the
answer the client saw with its status — ``complete``, ``incomplete`` (interrupted, stopped,
timed out with text) or ``error`` — and what the session now remembers.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator

from server import (
    Chunk,
    Complete,
    Error,
    ErrorCode,
    Event,
    Message,
    Rest,
    StageOptions,
    Turn,
    WrapperStage,
)

__all__ = ["SessionStage"]


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
        session_id = await self._open(turn)
        parts: list[str] = []
        terminal: Event | None = None
        try:
            async for event in rest(turn):
                if isinstance(event, Chunk):
                    parts.append(event.content)
                elif isinstance(event, Complete):
                    event = dataclasses.replace(event, session_id=session_id)
                    terminal = event
                elif isinstance(event, Error):
                    terminal = event
                if terminal is not None:
                    await self._save(turn, session_id, parts, terminal)
                yield event
        finally:
            if terminal is None:  # the turn was torn down around us: keep what was sent
                await self._save(turn, session_id, parts, None)

    async def _open(self, turn: Turn) -> str:
        """Open (or create) the session, load its memory and recent history into ``turn``,
        and save the user's message. A method of its own so that the session's stored
        messages are not kept, in ``wrap``'s frame, for as long as the answer streams."""
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
        await store.add_message(turn.user_id, session_id, "user", turn.message, "complete")
        return session_id

    async def _save(
        self, turn: Turn, session_id: str, parts: list[str], terminal: Event | None
    ) -> None:
        store = self.services.sessions
        answer = "".join(parts)
        if isinstance(terminal, Complete):
            answer, status = terminal.message, "complete"
        elif isinstance(terminal, Error) and terminal.code in _NO_ANSWER:
            return  # no model was asked: there is no answer to record
        else:
            status = "incomplete" if answer else "error"
        await store.add_message(turn.user_id, session_id, "assistant", answer, status)
        await store.save_memory(turn.user_id, session_id, turn.memory)
