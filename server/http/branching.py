"""Edits and regenerations: where in a conversation's tree a new turn starts.

The stream endpoints take ``edit_of`` (a user message: the new message goes beside it, a new
branch from the messages before it) or ``regenerate`` (an answer, or ``true`` for the current
branch's last one: a new variant of it, answering the same user message again, with no new
user message). Both name messages of the session the request names; anything else is a 400
before a turn starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.contract import SessionStore
from server.http.base import SESSION_ID, ApiCode, ApiError

__all__ = ["BranchAsk", "BranchPoint", "branch_ask", "branch_point", "session_of"]


@dataclass(frozen=True, slots=True)
class BranchAsk:
    """What the body asks for, its types checked (not yet against the session)."""

    edit_of: int | None = None
    regenerate: int | bool | None = None

    @property
    def regenerating(self) -> bool:
        return self.regenerate is not None and self.regenerate is not False


@dataclass(frozen=True, slots=True)
class BranchPoint:
    """The ask resolved against the session: the ``Turn`` fields of the same names, and
    for a regeneration the text of the user message answered again."""

    edit_of: int | None = None
    answer_again: int | None = None
    message: str | None = None


def _bad(message: str) -> ApiError:
    return ApiError(400, ApiCode.BAD_REQUEST, message)


def _message_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def branch_ask(data: dict[str, Any]) -> BranchAsk:
    edit_of = data.get("edit_of")
    regenerate = data.get("regenerate")
    if edit_of is not None and not _message_id(edit_of):
        raise _bad("'edit_of' must be the id of a message (a positive whole number).")
    if regenerate is not None and not (isinstance(regenerate, bool) or _message_id(regenerate)):
        raise _bad("'regenerate' must be true or the id of an answer (a positive whole number).")
    ask = BranchAsk(edit_of, regenerate)
    if edit_of is not None and ask.regenerating:
        raise _bad("Send 'edit_of' or 'regenerate', not both.")
    return ask


def session_of(data: dict[str, Any]) -> str:
    """The ``session_id`` a regeneration must name (it carries no message of its own)."""
    session_id = data.get("session_id")
    if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
        raise _bad("'regenerate' needs the 'session_id' of its conversation.")
    return session_id


async def branch_point(
    store: SessionStore, user_id: str, session_id: str | None, ask: BranchAsk
) -> BranchPoint:
    """Check ``ask`` against the session's messages (one read, only when it asks for
    something): 400 when it names no fitting message of this session."""
    if ask.edit_of is None and not ask.regenerating:
        return BranchPoint()
    if session_id is None:
        raise _bad("'edit_of' needs the 'session_id' of its conversation.")
    tree = await store.message_tree(user_id, session_id)
    if ask.edit_of is not None:
        edited = tree.get(ask.edit_of)
        if edited is None or edited.role != "user":
            raise _bad("'edit_of' names no message of yours in this conversation.")
        return BranchPoint(edit_of=edited.id)
    if ask.regenerate is True:
        branch = tree.branch()
        if not branch:
            raise _bad("This conversation has no answer to regenerate.")
        # The last answer, or a question left unanswered (its answer failed): answer it.
        last = branch[-1]
        question = last if last.role == "user" else tree.get(last.parent_id or 0)
    else:
        assert isinstance(ask.regenerate, int)
        answer = tree.get(ask.regenerate)
        if answer is None or answer.role != "assistant":
            raise _bad("'regenerate' names no answer in this conversation.")
        question = tree.get(answer.parent_id or 0)
    if question is None or question.role != "user":
        raise _bad("That answer follows no message of yours: there is nothing to answer again.")
    return BranchPoint(answer_again=question.id, message=question.content)
