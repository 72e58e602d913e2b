"""The OpenAI-compatible API: ``POST /v1/chat/completions`` and ``GET /v1/models``.

A chat completion is an ordinary turn: it runs every stage of the pipeline, is produced into
a stream log like any other, and this handler is one more *reader* of that log, writing
OpenAI's wire format (:mod:`server.core.openai_format`) instead of sluice's. So the same
answer can be followed in sluice's own format at ``GET /api/streams/{id}`` (the response's
``X-Stream-Id``), and limits, fallback and history behave as they do for the page.

Differences from sluice's own stream endpoint, each because an OpenAI client expects it:

* Errors are OpenAI's error objects with OpenAI's status codes, so each SDK raises its usual
  exception class. To give an error that happens before any text (rate limited, no provider
  could answer) its status code, the response headers wait for the first text, or the end,
  for at most ``stream.heartbeat_seconds``; after that they leave anyway, so that a proxy
  does not drop a response that is slow to start, and a later error ends the stream with an
  ``error`` frame and no ``[DONE]``, as OpenAI does.
* A client that disconnects cancels the turn whatever ``stream.on_disconnect`` says: an
  OpenAI client that went away cannot resume, and wants no more tokens.
"""

from __future__ import annotations

from typing import Any

import structlog

from server.contract import ErrorCode, StoreUnavailable, ToolSet, Turn
from server.core import openai_format as wire
from server.core import sse
from server.core.coordination import TurnInProgress
from server.core.runner import new_stream_id
from server.core.streamlog import StreamLog
from server.http.base import SESSION_ID, BaseHandler, JsonBodyHandler
from server.http.errors import (
    DEFAULT_CODES,
    EVENT_STATUS,
    ApiCode,
    ApiError,
    retry_after_for,
    unavailable,
)
from server.http.models import CHAIN_MODEL, provider_for
from server.http.openai_request import ChatRequest, parse_chat_request
from server.http.streams import EventStreamMixin

__all__ = ["ChatCompletionsHandler", "ModelHandler", "ModelsHandler"]

log = structlog.get_logger("sluice.openai")

_SESSION_HEADER = "X-Session-Id"

# A turn's terminal error as an HTTP status: the JSON endpoint's map; anything else is 500.
_STATUS = {**EVENT_STATUS, ErrorCode.INTERNAL: 500}
# sluice's codes that OpenAI names otherwise: a spent budget is OpenAI's spent quota, which
# every OpenAI client already tells apart from a rate limit.
_OPENAI_CODES: dict[str, str] = {ErrorCode.BUDGET_EXHAUSTED: "insufficient_quota"}


def _openai_code(code: str) -> str:
    return _OPENAI_CODES.get(code, code)


class OpenAIErrorsMixin(BaseHandler):
    """Every error as OpenAI's ``{"error": {"message", "type", "param", "code"}}``."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        extra: dict[str, Any] = {}
        retry_after: float | None = None
        code: str
        if isinstance(exc, StoreUnavailable):  # history unreachable: 503, try again later
            exc = unavailable(exc)
            self.set_status(exc.status_code)
            status_code = exc.status_code
        if isinstance(exc, ApiError):
            code, message, retry_after = exc.code, exc.message, exc.retry_after
            extra = dict(exc.extra)
            for name, value in exc.headers.items():
                self.set_header(name, value)
        else:
            code, message = DEFAULT_CODES.get(
                status_code, (ApiCode.INTERNAL, "Something went wrong on our side.")
            )
        param = extra.pop("param", None)
        if retry_after is not None:
            seconds = max(1, round(retry_after + 0.499))
            extra["retry_after"] = seconds
            self.set_header("Retry-After", str(seconds))
        code = _openai_code(str(code))
        kind = code if code == "insufficient_quota" else wire.error_type(status_code)
        body = wire.error_object(message, type=kind, code=code, param=param, **extra)
        self.write_json(body, status_code)


def _model_list(handler: BaseHandler) -> list[dict[str, Any]]:
    seen = {CHAIN_MODEL}
    models = [{"id": CHAIN_MODEL, "object": "model", "created": 0, "owned_by": "sluice"}]
    for provider in handler.state.chain.providers:
        for name in (provider.name, provider.model):
            if name and name not in seen:
                seen.add(name)
                models.append(
                    {"id": name, "object": "model", "created": 0, "owned_by": provider.name}
                )
    return models


class ModelsHandler(OpenAIErrorsMixin):
    """``GET /v1/models``: ``sluice`` (the fallback chain), then each configured provider
    instance and its model, in OpenAI's list shape."""

    def get(self) -> None:
        if self.identity() is None:
            raise ApiError(401, ApiCode.UNAUTHORIZED, "Send 'Authorization: Bearer <token>'.")
        self.write_json({"object": "list", "data": _model_list(self)})


class ModelHandler(OpenAIErrorsMixin):
    """``GET /v1/models/{model}``: one of the list, or 404."""

    def get(self, model: str) -> None:
        if self.identity() is None:
            raise ApiError(401, ApiCode.UNAUTHORIZED, "Send 'Authorization: Bearer <token>'.")
        for item in _model_list(self):
            if item["id"] == model:
                self.write_json(item)
                return
        raise ApiError(404, ApiCode.MODEL_NOT_FOUND, f"The model '{model}' does not exist here.")


class ChatCompletionsHandler(OpenAIErrorsMixin, JsonBodyHandler, EventStreamMixin):
    """``POST /v1/chat/completions``: a turn, answered in OpenAI's format."""

    takes_images = True

    def initialize(self) -> None:
        super().initialize()
        self._stream_id: str | None = None
        self._encoder: wire.ChunkEncoder | None = None
        self._turn: Turn | None = None

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if self._stream_id is not None:
            self.state.runner.cancel_local(self._stream_id, "disconnect")

    def prepare(self) -> None:
        super().prepare()
        # Who is calling is known from the headers: refused before a byte of body is read.
        if self.request.method == "POST":
            identity = self.identity()
            if identity is None:
                raise ApiError(401, ApiCode.UNAUTHORIZED, "Send 'Authorization: Bearer <token>'.")
            self.check_cookie_origin(identity)

    async def post(self) -> None:
        identity = self.identity()
        if identity is None:
            raise ApiError(401, ApiCode.UNAUTHORIZED, "Send 'Authorization: Bearer <token>'.")
        self.check_cookie_origin(identity)
        limits = self.state.settings.limits
        request = parse_chat_request(
            self.json_body(),
            max_message_chars=limits.max_message_chars,
            max_image_bytes=limits.max_image_bytes,
            max_images=limits.max_images,
        )
        self.check_text_size(request.image_chars)
        provider = provider_for(self.state.chain.providers, request.model)
        session_id = self.request.headers.get(_SESSION_HEADER)
        if session_id is not None and not SESSION_ID.fullmatch(session_id):
            raise ApiError(
                400,
                ApiCode.BAD_REQUEST,
                f"{_SESSION_HEADER} must be 1-64 letters, digits, '_' or '-'.",
            )
        if session_id is not None and (request.tools or not request.message):
            # A stored session's history is the server's: it has no place for the client's
            # tools' calls and results, which the client would have to send back anyway.
            raise ApiError(
                400,
                ApiCode.BAD_REQUEST,
                f"The client's own tools need the conversation kept by the client: send it"
                f" all in 'messages', without {_SESSION_HEADER}.",
                extra={"param": "tools"},
            )
        client_tools = self._client_tools(request)
        if session_id is not None:
            # A stored session needs history reachable before the stream starts (503 with
            # Retry-After otherwise, as for sluice's own endpoints). A conversation the
            # client holds needs no store, and is answered while history is down.
            await self.state.sessions.ping()
        turn = Turn(
            stream_id=new_stream_id(),
            user_id=identity.user_id,
            message=request.message,
            client_ip=self.request.remote_ip or "",
            session_id=session_id,
            claims=identity.claims,
            # A stored session keeps its own history; otherwise the client's is the history.
            client_history=None if session_id is not None else request.history,
            instructions=request.instructions,
            params=request.params,
            provider=provider,
            tools=client_tools,
            images=request.images,
        )
        try:
            stream_log = await self.state.runner.start(turn)
        except TurnInProgress as busy:
            raise ApiError(
                409,
                ApiCode.TURN_IN_PROGRESS,
                "An answer is being written in this session. Wait for it to finish before"
                " sending the next message.",
                extra={"stream_id": busy.active.stream_id},
                headers={"X-Stream-Id": busy.active.stream_id},
            ) from None
        self._stream_id = turn.stream_id
        self._turn = turn
        if self._events.client_gone:  # left while the turn was being admitted
            self.state.runner.cancel_local(turn.stream_id, "disconnect")
            return
        self.set_header("X-Stream-Id", turn.stream_id)
        if request.stream:
            await self._stream(turn, stream_log, request)
        else:
            await self._complete(turn, stream_log, request)

    def _client_tools(self, request: ChatRequest) -> ToolSet:
        """The client's tools, refused when one is named like a server tool (the model could
        not tell them apart), and ``tool_choice`` checked against all the turn's tools."""
        make_tools = self.state.runner.tools
        server_names = make_tools().names() if make_tools is not None else []
        taken = [item.name for item in request.tools if item.name in server_names]
        if taken:
            raise ApiError(
                400,
                ApiCode.BAD_REQUEST,
                f"The tool '{taken[0]}' is one of the server's own: rename yours in 'tools'.",
                extra={"param": "tools"},
            )
        choice = request.params.tool_choice
        names = [*server_names, *(item.name for item in request.tools)]
        if choice is not None and choice.mode in ("required", "function") and not names:
            raise ApiError(
                400,
                ApiCode.BAD_REQUEST,
                f"'tool_choice' is '{choice.mode}', but there are no tools to call.",
                extra={"param": "tool_choice"},
            )
        if choice is not None and choice.mode == "function" and choice.name not in names:
            raise ApiError(
                400,
                ApiCode.BAD_REQUEST,
                f"'tool_choice' names '{choice.name}', which is not one of the tools.",
                extra={"param": "tool_choice"},
            )
        return ToolSet(request.tools)

    # -- waiting on the log ---------------------------------------------------------------

    async def _wait(self, stream_log: StreamLog, until: float | None) -> bool:
        """Wait for the next append; False when the client left."""
        return await self._events.wait(stream_log, until)

    def _refusal(self, stream_log: StreamLog) -> ApiError | None:
        """The HTTP error for a turn that ended in ``error`` before any text, else None."""
        terminal = stream_log.terminal_event()
        if terminal is None or terminal.type != "error":
            return None
        if any(sse.chunk_content(frame) for frame in stream_log.frames_after(0)):
            return None
        code = ErrorCode(terminal["code"])
        status = _STATUS.get(code, 503 if terminal["retryable"] else 500)
        retry_after = retry_after_for(status, terminal.get("retry_after"))
        return ApiError(status, code, terminal["message"], retry_after=retry_after)

    # -- streaming ------------------------------------------------------------------------

    async def _stream(self, turn: Turn, stream_log: StreamLog, request: ChatRequest) -> None:
        loop = self._events.loop
        until = loop.time() + self.state.settings.stream.heartbeat_seconds
        while not stream_log.finished and loop.time() < until:
            frames = stream_log.frames_after(0)
            if frames and (
                sse.chunk_content(frames[-1]) is not None
                or sse.frame_kind(frames[-1]) == b"reasoning"
            ):
                break  # text or reasoning: the answer has started
            if not await self._wait(stream_log, until):
                return
        refusal = self._refusal(stream_log)
        if refusal is not None:
            raise refusal
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache, no-transform")
        self.set_header("X-Accel-Buffering", "no")
        encoder = wire.ChunkEncoder(
            "chatcmpl-" + turn.stream_id, int(turn.started_at), request.model, request.include_usage
        )
        self._encoder = encoder
        self.write(encoder.role())
        state = self.state
        await self._events.send(
            self,
            stream_log,
            0,
            "openai",
            state.settings.stream,
            state.telemetry,
            transform=self._openai_frames,
        )

    def _openai_frames(self, frames: list[bytes]) -> bytes:
        # sluice's frames, as OpenAI's: see server.core.openai_format.
        encoder = self._encoder
        assert encoder is not None and self._turn is not None
        out: list[bytes] = []
        for frame in frames:
            literal = sse.chunk_content(frame)
            if literal is not None:
                out.append(encoder.content(literal))
                continue
            kind = sse.frame_kind(frame)
            if kind == b"reasoning":
                out.append(encoder.reasoning(str(sse.decode_frame(frame).get("content", ""))))
            elif kind == b"complete":
                out.append(encoder.end(sse.decode_frame(frame), self._turn.finish_reason))
            elif kind == b"error":
                data = sse.decode_frame(frame)
                code = str(data.get("code", "internal"))
                status = _STATUS.get(code, 500)
                extra = {"retry_after": data["retry_after"]} if "retry_after" in data else {}
                body = wire.error_object(
                    str(data.get("message", "")),
                    type=wire.error_type(status),
                    code=_openai_code(code),
                    **extra,
                )
                out.append(wire.error_frame(body))
        return b"".join(out)

    # -- not streaming --------------------------------------------------------------------

    async def _complete(self, turn: Turn, stream_log: StreamLog, request: ChatRequest) -> None:
        while stream_log.terminal_event() is None:
            if not await self._wait(stream_log, None):
                return
        refusal = self._refusal(stream_log)
        if refusal is not None:
            raise refusal
        terminal = stream_log.terminal_event()
        assert terminal is not None
        if terminal.type == "error":  # failed after text: no whole answer to give
            code = ErrorCode(terminal["code"])
            raise ApiError(
                _STATUS.get(code, 500),
                code,
                terminal["message"],
                retry_after=terminal.get("retry_after"),
            )
        self.set_header("X-Sluice-Provider", str(terminal["provider"]))
        self.set_header("X-Sluice-Model", str(terminal["model"]))
        self.write_json(
            wire.completion_object(
                "chatcmpl-" + turn.stream_id,
                int(turn.started_at),
                request.model,
                terminal.as_dict(),
                turn.finish_reason,
                reasoning="".join(
                    str(sse.decode_frame(frame).get("content", ""))
                    for frame in stream_log.frames_after(0)
                    if sse.frame_kind(frame) == b"reasoning"
                ),
            )
        )
