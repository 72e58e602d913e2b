"""``/api/sessions/{user_id}[/{session_id}[/branch]]``: a user's conversations and their
history, found by words (``?q=``), renamed, deleted, which branch of a conversation's tree
is the current one; the pictures sent with a message, to their owner."""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import quote

from server.contract import ImagePart, MessageTree, SessionRecord
from server.core.coordination import ActiveTurn
from server.http.base import SESSION_ID, ApiCode, ApiError, BaseHandler, JsonBodyHandler
from server.stores.search import query_words

__all__ = ["MessageImageHandler", "SessionBranchHandler", "SessionHandler", "SessionListHandler"]

# A search answers with at most this many conversations, newest first.
SEARCH_LIMIT = 50
# A title a person gives: room for a sentence, not for a document.
MAX_TITLE_CHARS = 200


class SessionListHandler(BaseHandler):
    async def get(self, user_id: str) -> None:
        self.require_user(user_id)
        words = query_words(self.get_query_argument("q", ""))
        if words:
            # A search: each session with the few words around its newest match.
            found = await self.state.sessions.search_sessions(user_id, words, limit=SEARCH_LIMIT)
            self.write_json(
                {
                    "sessions": [
                        {
                            "session_id": s.session_id,
                            "title": s.title,
                            "updated_at": s.updated_at,
                            "snippet": s.snippet,
                        }
                        for s in found
                    ]
                }
            )
            return
        sessions = await self.state.sessions.list_sessions(user_id)
        self.write_json(
            {
                "sessions": [
                    {"session_id": s.session_id, "title": s.title, "updated_at": s.updated_at}
                    for s in sessions
                ]
            }
        )


class SessionHandler(JsonBodyHandler):
    def _check(self, user_id: str, session_id: str) -> None:
        self.require_user(user_id)
        if not SESSION_ID.fullmatch(session_id):
            raise ApiError(404, ApiCode.NOT_FOUND, "No such session.")

    async def get(self, user_id: str, session_id: str) -> None:
        self._check(user_id, session_id)
        store = self.state.sessions
        record = await store.get_session(user_id, session_id)
        if record is None:
            raise ApiError(404, ApiCode.NOT_FOUND, "No such session.")
        tree = await store.message_tree(user_id, session_id)
        active = await self.state.runner.active_turn(user_id, session_id)
        alternatives = self.get_query_argument("alternatives", "") in ("1", "true")
        self.write_json(_session_json(user_id, record, tree, active, alternatives=alternatives))

    async def patch(self, user_id: str, session_id: str) -> None:
        """``{"title": str}``: rename the conversation (its owner only: the path's user)."""
        self._check(user_id, session_id)
        title = self.json_body().get("title")
        if not isinstance(title, str):
            raise ApiError(400, ApiCode.BAD_REQUEST, "'title' must be a string.")
        # One line, as the list shows it: runs of spaces, tabs and line breaks become one.
        title = " ".join(title.split())
        if not title or len(title) > MAX_TITLE_CHARS:
            raise ApiError(
                400, ApiCode.BAD_REQUEST, f"'title' must be 1-{MAX_TITLE_CHARS} characters."
            )
        if any(unicodedata.category(c) == "Cc" for c in title):
            raise ApiError(400, ApiCode.BAD_REQUEST, "'title' holds a control character.")
        if not await self.state.sessions.rename_session(user_id, session_id, title):
            raise ApiError(404, ApiCode.NOT_FOUND, "No such session.")
        self.write_json({"session_id": session_id, "title": title})

    async def delete(self, user_id: str, session_id: str) -> None:
        self._check(user_id, session_id)
        # An answer still being written would save itself into the deleted session (and
        # bring it back): stop it, and delete once it has ended.
        await self.state.runner.stop_session(user_id, session_id, "deleted")
        if not await self.state.sessions.delete_session(user_id, session_id):
            raise ApiError(404, ApiCode.NOT_FOUND, "No such session.")
        self.set_status(204)
        self.finish()


class SessionBranchHandler(JsonBodyHandler):
    """``POST /api/sessions/{user_id}/{session_id}/branch`` ``{"message_id"}``: make the
    branch through that message the current one (the ``‹ 1/2 ›`` arrows). The branch goes
    on to the newest message under it, where that branch was last written; the answer is
    the session as ``GET`` gives it. 409 while an answer is being written: it would join
    its own branch when saved, not the one switched to."""

    async def post(self, user_id: str, session_id: str) -> None:
        self.require_user(user_id)
        if not SESSION_ID.fullmatch(session_id):
            raise ApiError(404, ApiCode.NOT_FOUND, "No such session.")
        message_id = self.json_body().get("message_id")
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            raise ApiError(400, ApiCode.BAD_REQUEST, "'message_id' must be a message's id.")
        store = self.state.sessions
        record = await store.get_session(user_id, session_id)
        if record is None:
            raise ApiError(404, ApiCode.NOT_FOUND, "No such session.")
        active = await self.state.runner.active_turn(user_id, session_id)
        if active is not None:
            raise ApiError(
                409,
                ApiCode.TURN_IN_PROGRESS,
                "An answer is being written in this conversation: switch once it is done.",
                extra={"stream_id": active.stream_id},
                headers={"X-Stream-Id": active.stream_id},
            )
        tree = await store.message_tree(user_id, session_id)
        if tree.get(message_id) is None:
            raise ApiError(400, ApiCode.BAD_REQUEST, "No message of that id in this session.")
        await store.set_leaf(user_id, session_id, tree.latest_leaf(message_id))
        tree = await store.message_tree(user_id, session_id)
        self.write_json(_session_json(user_id, record, tree, None, alternatives=False))


def _session_json(
    user_id: str,
    record: SessionRecord,
    tree: MessageTree,
    active: ActiveTurn | None,
    *,
    alternatives: bool,
) -> dict[str, Any]:
    """The session as the API shows it: the current branch as ``messages``, each with where
    it stands among its alternatives, and (asked for) every message off the branch."""
    branch = tree.branch()
    last = branch[-1] if branch else None
    if active is not None and last and (last.role, last.status) == ("assistant", "incomplete"):
        # The answer being written is saved as it streams; a client follows it through
        # active_turn (the stream log, from its start), so it is not listed twice.
        branch = branch[:-1]
    messages = []
    for message in branch:
        siblings = [sibling.id for sibling in tree.siblings(message)]
        messages.append(
            _with_image_urls(message.as_json(), user_id, record.session_id)
            | {
                "siblings": {
                    "index": siblings.index(message.id) + 1,
                    "count": len(siblings),
                    "ids": siblings,
                }
            }
        )
    data: dict[str, Any] = {
        "session_id": record.session_id,
        "title": record.title,
        "messages": messages,
        "context": record.memory,
        "active_turn": active.as_json() if active is not None else None,
    }
    if alternatives:
        on_branch = {message.id for message in tree.branch()}
        data["alternatives"] = [
            _with_image_urls(m.as_json(), user_id, record.session_id)
            for m in tree.messages
            if m.id not in on_branch
        ]
    return data


def _with_image_urls(message: dict[str, Any], user_id: str, session_id: str) -> dict[str, Any]:
    """The message with each picture's bytes replaced by the address that serves them: a
    conversation with a few photos stays a small JSON document, and the browser caches each
    picture on its own (privately: see :class:`MessageImageHandler`)."""
    base = f"/api/sessions/{quote(user_id, safe='')}/{session_id}/messages/{message['id']}/images"
    index = 0
    parts: list[dict[str, Any]] = []
    for part in message["parts"]:
        if part["type"] == "image":
            part = {"type": "image", "media_type": part["media_type"], "url": f"{base}/{index}"}
            index += 1
        parts.append(part)
    message["parts"] = parts
    return message


class MessageImageHandler(BaseHandler):
    """``GET .../messages/{message_id}/images/{index}``: the ``index``-th picture of a message,
    its bytes with their own type, to the conversation's owner only (403 for another's user
    id, 404 for what is not theirs)."""

    async def get(self, user_id: str, session_id: str, message_id: str, index: str) -> None:
        self.require_user(user_id)
        if not (SESSION_ID.fullmatch(session_id) and message_id.isdigit() and index.isdigit()):
            raise ApiError(404, ApiCode.NOT_FOUND, "No such picture.")
        # Any message of the conversation's tree: a picture on another branch is still theirs.
        tree = await self.state.sessions.message_tree(user_id, session_id)
        found = tree.get(int(message_id))
        images = [p for p in found.parts if isinstance(p, ImagePart)] if found else []
        if int(index) >= len(images):
            raise ApiError(404, ApiCode.NOT_FOUND, "No such picture.")
        image = images[int(index)]
        self.set_header("Content-Type", image.media_type)
        # The picture is one person's: a shared cache (a proxy, a CDN) must not keep it. It
        # never changes under its address, so the browser may keep it for a day.
        self.set_header("Cache-Control", "private, max-age=86400")
        self.finish(image.data)
