"""A turn whose producer died: what its history gets.

The instance that finds the lapsed lease (``server/stores/redis/registry.py``) saves the
user's message, if the producer had not saved it yet, and the partial answer read back from
the log, marked ``incomplete`` (``error`` when no text had been sent), through the session
store protocol: the history may live in another process or machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from server.contract import SessionStore

__all__ = ["LostTurn", "partial_answer", "save_lost_turn"]

_CHUNK = b"\nevent: chunk\n"


@dataclass(frozen=True, slots=True)
class LostTurn:
    stream_id: str
    user_id: str
    session_id: str
    message: str
    partial: str


def partial_answer(frames: Iterable[bytes]) -> str:
    """The text the client was sent: every ``chunk`` frame's content, joined."""
    parts = []
    for frame in frames:
        if _CHUNK in frame:
            data = json.loads(frame[frame.index(b"\ndata: ") + 7 :])
            parts.append(data["content"])
    return "".join(parts)


async def save_lost_turn(sessions: SessionStore, lost: LostTurn, *, title_chars: int = 60) -> None:
    title = " ".join(lost.message.split())[:title_chars]
    await sessions.open_session(lost.user_id, lost.session_id, title)
    stored = await sessions.messages(lost.user_id, lost.session_id)
    # The question is saved before any model is asked, unless the producer died first.
    question = next(
        (m for m in reversed(stored) if m.role == "user" and m.content == lost.message), None
    )
    if question is None:
        asked = await sessions.add_message(
            lost.user_id, lost.session_id, "user", lost.message, "complete"
        )
    else:
        asked = question.id
    status = "incomplete" if lost.partial else "error"
    # The producer saved the answer as it streamed, up to one save interval behind the log:
    # bring that draft up to what the log holds rather than add a second answer.
    draft = next(
        (m for m in reversed(stored) if m.role == "assistant" and m.reply_to == asked), None
    )
    if draft is None:
        await sessions.add_message(
            lost.user_id, lost.session_id, "assistant", lost.partial, status, reply_to=asked
        )
    elif draft.status == "incomplete" and len(lost.partial) >= len(draft.content):
        await sessions.update_message(lost.user_id, lost.session_id, draft.id, lost.partial, status)
