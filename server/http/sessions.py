"""``/api/sessions/{user_id}[/{session_id}]``: a user's conversations and their history,
found by words (``?q=``), renamed, deleted; the pictures sent with a message, to their owner."""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import quote

from server.contract import ImagePart
from server.http.base import SESSION_ID, ApiCode, ApiError, BaseHandler, JsonBodyHandler
from server.stores.search import query_words

__all__ = ["MessageImageHandler", "SessionHandler", "SessionListHandler"]

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
        messages = await store.messages(user_id, session_id)
        active = await self.state.runner.active_turn(user_id, session_id)
        last = messages[-1] if messages else None
        if active is not None and last and (last.role, last.status) == ("assistant", "incomplete"):
            # The answer being written is saved as it streams; a client follows it through
            # active_turn (the stream log, from its start), so it is not listed twice.
            messages = messages[:-1]
        self.write_json(
            {
                "session_id": session_id,
                "title": record.title,
                "messages": [
                    _with_image_urls(message.as_json(), user_id, session_id) for message in messages
                ],
                "context": record.memory,
                "active_turn": active.as_json() if active is not None else None,
            }
        )

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
        messages = await self.state.sessions.messages(user_id, session_id)
        wanted = int(message_id)
        found = next((m for m in messages if m.id == wanted), None)
        images = [p for p in found.parts if isinstance(p, ImagePart)] if found else []
        if int(index) >= len(images):
            raise ApiError(404, ApiCode.NOT_FOUND, "No such picture.")
        image = images[int(index)]
        self.set_header("Content-Type", image.media_type)
        # The picture is one person's: a shared cache (a proxy, a CDN) must not keep it. It
        # never changes under its address, so the browser may keep it for a day.
        self.set_header("Cache-Control", "private, max-age=86400")
        self.finish(image.data)
