"""The Vercel AI SDK's chat routes: ``POST /api/chat`` and ``GET /api/chat/{chat_id}/stream``.

A React or Next.js page built on ``useChat`` (its ``DefaultChatTransport``) talks to these as
it would to its own ``streamText`` route. A chat is an ordinary turn: the same identities,
limits, pipeline and history as ``POST /api/conversation-stream``, produced into a stream log
that these handlers read in the AI SDK's UI message stream protocol
(:mod:`server.core.ui_message_stream`). So an answer can also be followed, resumed on any
instance, and stopped with sluice's own routes: the ``start`` chunk's ``messageMetadata``
names its ``streamId``.

What the AI SDK sends that sluice reads, and what it does not:

* ``id``, the chat, is the session's id *under the caller*: two users' equal chat ids are two
  sessions, and a session the server made (``s_...``) is continued under its own id;
* of ``messages`` only the last user message's text is read: sluice keeps the conversation,
  as for its own routes, so history is the server's whatever the client sends;
* ``trigger: "regenerate-message"`` asks the last user message again (history keeps both
  answers).
"""

from __future__ import annotations

from typing import Any

from server.core.streamlog import StreamLog
from server.core.ui_message_stream import HEADER_NAME, HEADER_VALUE, UIMessageEncoder
from server.http.base import SESSION_ID, ApiCode, ApiError, BaseHandler, JsonBodyHandler
from server.http.identity import Identity
from server.http.streams import EventStreamMixin, begin_turn

__all__ = ["ChatHandler", "ChatStreamHandler", "chat_message"]

_TRIGGERS = ("submit-message", "regenerate-message")


def _caller(handler: BaseHandler) -> Identity:
    identity = handler.identity()
    if identity is None:
        raise ApiError(401, ApiCode.UNAUTHORIZED, "Sign in first (the cookie, or a bearer token).")
    return identity


def chat_message(handler: JsonBodyHandler, body: dict[str, Any]) -> tuple[str, str]:
    """``(chat_id, message)`` from the body ``DefaultChatTransport`` sends: 400 when it is not
    one, 413 when the message is over ``limits.max_message_chars``."""
    chat_id = body.get("id")
    if not isinstance(chat_id, str) or not SESSION_ID.fullmatch(chat_id):
        raise ApiError(
            400, ApiCode.BAD_REQUEST, "'id' (the chat) must be 1-64 letters, digits, '_' or '-'."
        )
    trigger = body.get("trigger", "submit-message")
    if trigger not in _TRIGGERS:
        raise ApiError(
            400, ApiCode.BAD_REQUEST, "'trigger' must be 'submit-message' or 'regenerate-message'."
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, ApiCode.BAD_REQUEST, "'messages' must be a non-empty list.")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        # An AI SDK page sends an assistant message last to answer a tool's approval
        # request in its own protocol; a sluice turn waits for the decision instead.
        raise ApiError(
            400,
            ApiCode.BAD_REQUEST,
            "The last message must be the user's. Approve or deny a tool call with"
            " POST /api/streams/{stream_id}/tools/{call_id}.",
        )
    parts = last.get("parts")
    if not isinstance(parts, list):
        raise ApiError(400, ApiCode.BAD_REQUEST, "The last message's 'parts' must be a list.")
    texts: list[str] = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "file":
            # Never silently dropped: the model would answer as if it had seen the file.
            raise ApiError(
                415, ApiCode.UNSUPPORTED_MEDIA_TYPE, "File parts are not accepted at /api/chat."
            )
    message = handler.checked_message("\n".join(texts), "The last user message's text")
    return chat_id, message


async def _send(
    handler: EventStreamMixin, stream_log: StreamLog, stream_id: str, chat_id: str, kind: str
) -> None:
    """The answer in ``stream_log``, from its start, as UI message chunks."""
    encoder = UIMessageEncoder(stream_id, {"streamId": stream_id, "sessionId": chat_id})
    events = handler.open_stream(stream_id)
    handler.set_header(HEADER_NAME, HEADER_VALUE)
    handler.write(encoder.start())
    state = handler.state
    await events.send(
        handler,
        stream_log,
        0,
        kind,
        state.settings.stream,
        state.telemetry,
        transform=encoder.frames,
    )


class ChatHandler(JsonBodyHandler, EventStreamMixin):
    """``POST /api/chat``: start a turn in the chat ``id`` and stream it."""

    def initialize(self) -> None:
        super().initialize()
        self._stream_id: str | None = None

    def body_limit(self) -> int:
        return self.state.settings.limits.max_chat_body_bytes

    def prepare(self) -> None:
        super().prepare()
        # Who is calling is known from the headers: refused before a byte of body is read.
        if self.request.method == "POST":
            self.check_cookie_origin(_caller(self))

    async def post(self) -> None:
        identity = _caller(self)
        chat_id, message = chat_message(self, self.json_body())
        turn, stream_log = await begin_turn(self, identity, message, chat_id)
        self._stream_id = turn.stream_id
        await _send(self, stream_log, turn.stream_id, chat_id, "new")

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if self._stream_id is not None and self.state.settings.stream.on_disconnect == "cancel":
            self.state.runner.cancel_local(self._stream_id, "disconnect")


class ChatStreamHandler(EventStreamMixin):
    """``GET /api/chat/{chat_id}/stream``: the answer being written in the chat, from its
    start; 204 when there is none (the AI SDK's ``reconnectToStream`` then resumes nothing).

    Any instance answers: with shared stores the chat's active turn and its log are seen by
    every instance."""

    async def get(self, chat_id: str) -> None:
        identity = _caller(self)
        active = None
        if SESSION_ID.fullmatch(chat_id):
            active = await self.state.runner.active_turn(identity.user_id, chat_id)
        stream_log = None if active is None else await self.state.logs.open(active.stream_id)
        if stream_log is not None and stream_log.user_id != identity.user_id:
            self.state.logs.release(stream_log)
            stream_log = None
        if active is None or stream_log is None:  # no answer, or its log just expired
            self.set_status(204)
            self.finish()
            return
        try:
            await _send(self, stream_log, active.stream_id, chat_id, "resume")
        finally:
            self.state.logs.release(stream_log)
