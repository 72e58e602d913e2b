"""Stream endpoints: start a turn, resume it, stop it, or wait for it as JSON.

Every response here is a *reader* of a turn's log: the handlers find
or start the turn and hand its log to :class:`~server.http.event_stream.EventStream`, which
owns everything about sending it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from server.contract import ErrorCode, ImagePart, Turn
from server.core.coordination import TurnInProgress
from server.core.runner import new_stream_id
from server.core.streamlog import StreamLog, wait_for_terminal
from server.http.base import ApiCode, ApiError, BaseHandler, JsonBodyHandler
from server.http.branching import branch_ask, branch_point, session_of
from server.http.errors import EVENT_STATUS, retry_after_for
from server.http.event_stream import EventStream
from server.http.identity import Identity
from server.http.models import provider_for
from server.internals.tornado_internals import drop_template_namespace
from server.tools.approvals import Decision

__all__ = [
    "ConversationHandler",
    "ConversationStreamHandler",
    "EventStreamMixin",
    "StreamCancelHandler",
    "StreamResumeHandler",
    "ToolApprovalHandler",
    "begin_turn",
    "owned_stream",
]

log = structlog.get_logger("sluice.stream")

# A Last-Event-ID with more digits than this is past the end of every log (ids are at most
# stream.max_log_events): it is read as _PAST_EVERY_END rather than converted, since int()
# refuses more than 4,300 digits (a ValueError) and a long one costs time to convert.
_MAX_ID_DIGITS = 18
_PAST_EVERY_END = 10**_MAX_ID_DIGITS


class EventStreamMixin(BaseHandler):
    """A handler whose response is an :class:`EventStream`."""

    def initialize(self) -> None:
        super().initialize()
        self._events = EventStream()
        # No templates are rendered here: drop Tornado's template namespace (and the
        # reference cycle it makes with the handler) now rather than when the stream ends.
        drop_template_namespace(self)

    def on_connection_close(self) -> None:
        self._events.connection_closed()

    def open_stream(self, stream_id: str) -> EventStream:
        """Headers and the opening ``retry:``; the caller then awaits ``send`` itself (not
        through a coroutine of this handler's: one more suspended frame per open stream)."""
        self._events.open(self, stream_id, self.state.settings.stream)
        return self._events


class _TurnStarter(JsonBodyHandler):
    takes_images = True

    def initialize(self) -> None:
        super().initialize()
        self._body: dict[str, Any] | None = None

    def json_body(self) -> dict[str, Any]:
        # Read once, then asked again for the fields beyond message and session_id.
        if self._body is None:
            self._body = super().json_body()
        return self._body

    def chosen_provider(self) -> str | None:
        """The provider the body's optional ``model`` names (as ``GET /v1/models`` lists
        them), or None for the configured fallback chain."""
        model = self.json_body().get("model")
        if model is None:
            return None
        if not isinstance(model, str) or not model:
            raise ApiError(400, ApiCode.BAD_REQUEST, "'model' must be a model's name.")
        return provider_for(self.state.chain.providers, model)

    def prepare(self) -> None:
        super().prepare()
        # Who is calling is known from the headers: a caller without identity (or someone
        # else's) is refused before a byte of the body is read.
        if self.request.method == "POST":
            self.require_user(self.path_args[0])

    async def start_turn(self, user_id: str) -> tuple[Turn, StreamLog]:
        identity: Identity = self.require_user(user_id)
        data = self.json_body()
        ask = branch_ask(data)
        session_id: str | None
        images: list[ImagePart] = []
        if ask.regenerating:  # the message is the one answered again
            message, session_id = "", session_of(data)
        else:
            message, session_id, images = self.chat_request(data)
        provider = self.chosen_provider()
        point = await branch_point(self.state.sessions, identity.user_id, session_id, ask)
        return await begin_turn(
            self,
            identity,
            point.message if point.message is not None else message,
            session_id,
            provider=provider,
            images=images,
            edit_of=point.edit_of,
            answer_again=point.answer_again,
        )


async def begin_turn(
    handler: BaseHandler,
    identity: Identity,
    message: str,
    session_id: str | None,
    *,
    provider: str | None = None,
    images: Sequence[ImagePart] = (),
    edit_of: int | None = None,
    answer_again: int | None = None,
) -> tuple[Turn, StreamLog]:
    """Start ``identity``'s turn: the one way every route of sluice's (and the AI SDK's)
    starts one. 503 when history is down; 409 ``turn_in_progress`` when the session already
    has an answer being written. ``provider`` is the one the client chose (None: the chain),
    ``images`` the pictures sent with the message; ``edit_of`` / ``answer_again`` the message
    a new branch starts beside, or whose answer is asked again (``server.http.branching``)."""
    # History must be reachable before the stream starts: the session stage saves the
    # user's message before any model is called, and a turn that could not would only
    # end in an error event. Down, it is a 503 with Retry-After instead; the check is
    # bounded by the store's timeout.
    await handler.state.sessions.ping()
    turn = Turn(
        stream_id=new_stream_id(),
        user_id=identity.user_id,
        message=message,
        client_ip=handler.request.remote_ip or "",
        session_id=session_id,
        provider=provider,
        images=list(images),
        claims=identity.claims,
        edit_of=edit_of,
        answer_again=answer_again,
    )
    try:
        stream_log = await handler.state.runner.start(turn)
    except TurnInProgress as busy:
        stream_id = busy.active.stream_id
        raise ApiError(
            409,
            ApiCode.TURN_IN_PROGRESS,
            "An answer is being written in this conversation. Follow it, or wait for it"
            " to finish before sending the next message.",
            extra={"stream_id": stream_id},
            headers={"X-Stream-Id": stream_id},
        ) from None
    return turn, stream_log


class ConversationStreamHandler(_TurnStarter, EventStreamMixin):
    """``POST /api/conversation-stream/{user_id}``: start a turn and stream it."""

    def initialize(self) -> None:
        super().initialize()
        self._stream_id: str | None = None

    async def post(self, user_id: str) -> None:
        turn, stream_log = await self.start_turn(user_id)
        self._stream_id = turn.stream_id
        state = self.state
        await self.open_stream(turn.stream_id).send(
            self, stream_log, 0, "new", state.settings.stream, state.telemetry
        )

    def on_connection_close(self) -> None:
        super().on_connection_close()
        settings = self.state.settings.stream
        if self._stream_id is not None and settings.on_disconnect == "cancel":
            self.state.runner.cancel_local(self._stream_id, "disconnect")


async def owned_stream(handler: BaseHandler, stream_id: str) -> tuple[Identity, StreamLog]:
    """The caller and the log of their stream, which the caller must hand back to
    ``state.logs.release``: 401 without identity; 404 when the stream is unknown, expired, or
    someone else's (indistinguishable on purpose); 503 when the log store is down."""
    identity = handler.identity()
    if identity is None:
        raise ApiError(401, ApiCode.UNAUTHORIZED, "Sign in first.")
    logs = handler.state.logs
    stream_log = await logs.open(stream_id)  # StoreUnavailable: a 503 (base.write_error)
    if stream_log is not None and stream_log.user_id != identity.user_id:
        logs.release(stream_log)
        stream_log = None
    if stream_log is None:
        raise ApiError(404, ApiCode.NOT_FOUND, "No such stream (it may have expired).")
    return identity, stream_log


def _last_event_id(handler: BaseHandler) -> int:
    """Last-Event-ID (header, or ``?last_event_id=``) as a number: 400 unless it is ASCII
    digits (``str.isdigit`` also takes "²" and other digits ``int`` refuses; a sign or a
    point is no event id). A whole number of any length is one: past the log's end, it is
    answered as any id past the end is."""
    raw = handler.request.headers.get("Last-Event-ID") or handler.get_query_argument(
        "last_event_id", "0"
    )
    raw = raw.strip() or "0"
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(
            400, ApiCode.BAD_REQUEST, "Last-Event-ID must be an event id: digits 0-9 only."
        )
    digits = raw.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_ID_DIGITS else _PAST_EVERY_END


class StreamResumeHandler(EventStreamMixin):
    """``GET /api/streams/{stream_id}``: replay after Last-Event-ID, then follow live."""

    async def get(self, stream_id: str) -> None:
        _, stream_log = await owned_stream(self, stream_id)
        try:
            after_id = _last_event_id(self)
            if stream_log.finished and after_id >= stream_log.last_id:
                # Nothing will ever follow: 204 is how a server tells EventSource to stop
                # reconnecting (WHATWG HTML, "server-sent events", processing model).
                self.set_status(204)
                self.finish()
                return
            state = self.state
            await self.open_stream(stream_id).send(
                self, stream_log, after_id, "resume", state.settings.stream, state.telemetry
            )
        finally:
            self.state.logs.release(stream_log)


class StreamCancelHandler(BaseHandler):
    """``POST /api/streams/{stream_id}/cancel``: stop generation, keep the partial answer.

    The turn may run on another instance: the cancel then travels through the registry."""

    async def post(self, stream_id: str) -> None:
        identity, stream_log = await owned_stream(self, stream_id)
        self.state.logs.release(stream_log)
        self.check_cookie_origin(identity)
        cancelled = await self.state.runner.cancel(stream_id, "cancelled")
        self.write_json({"stream_id": stream_id, "cancelled": cancelled})


class ToolApprovalHandler(JsonBodyHandler):
    """``POST /api/streams/{stream_id}/tools/{call_id}`` ``{"approve": bool}``: the stream's
    owner decides a tool call waiting for approval. 204 recorded; 404 an unknown (or someone
    else's) stream or call; 409 decided already (or expired, or the turn was stopped).

    The decision is kept in the approval store, where the producing instance, whichever it
    is, finds it: no need to reach that instance."""

    async def post(self, stream_id: str, call_id: str) -> None:
        identity, stream_log = await owned_stream(self, stream_id)
        self.state.logs.release(stream_log)
        self.check_cookie_origin(identity)
        approve = self.json_body().get("approve")
        if not isinstance(approve, bool):
            raise ApiError(400, ApiCode.BAD_REQUEST, "'approve' must be true or false.")
        decision = await self.state.approvals.decide(stream_id, call_id, approve)
        if decision is Decision.UNKNOWN:
            raise ApiError(404, ApiCode.NOT_FOUND, "No tool call of that id waits in this stream.")
        if decision is Decision.ALREADY:
            raise ApiError(409, ApiCode.ALREADY_DECIDED, "That tool call was decided already.")
        self.set_status(204)
        self.finish()


class ConversationHandler(_TurnStarter):
    """``POST /api/conversation/{user_id}``: the same turn, answered as JSON at its end.

    A client that leaves while it waits is a reader gone like any other: with
    ``stream.on_disconnect = "cancel"`` its turn is stopped (and the upstream request closed).
    """

    def initialize(self) -> None:
        super().initialize()
        self._stream_id: str | None = None

    def on_connection_close(self) -> None:
        if self._stream_id is not None and self.state.settings.stream.on_disconnect == "cancel":
            self.state.runner.cancel_local(self._stream_id, "disconnect")

    async def post(self, user_id: str) -> None:
        turn, stream_log = await self.start_turn(user_id)
        self._stream_id = turn.stream_id
        self.set_header("X-Stream-Id", turn.stream_id)
        terminal = await wait_for_terminal(stream_log)
        if terminal["type"] == "complete":
            self.write_json(
                {
                    key: terminal.get(key)
                    for key in ("message", "suggestions", "session_id", "provider", "model")
                }
                | {
                    "fallback": bool(terminal.get("fallback")),
                    "finish_reason": terminal.get("finish_reason"),
                }
            )
            return
        code = ErrorCode(terminal.get("code", ErrorCode.INTERNAL))
        status = EVENT_STATUS.get(code, 503 if terminal.get("retryable") else 500)
        retry_after = retry_after_for(status, terminal.get("retry_after"))
        raise ApiError(status, code, terminal.get("message", ""), retry_after=retry_after)
