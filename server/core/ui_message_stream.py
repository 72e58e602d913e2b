"""The Vercel AI SDK's UI message stream protocol (version 1), made from sluice's events.
Pure: no sockets.

A turn's stream log holds sluice's own frames (:mod:`server.core.sse`); ``POST /api/chat``
and its resume route read the same log and send each event as the AI SDK's ``useChat`` and
``readUIMessageStream`` expect it: SSE frames carrying only ``data: {json}``, one *UI message
chunk* each, and ``data: [DONE]`` at the end.

* ``status`` becomes a ``data-status`` part with the fixed id ``status``: the AI SDK keeps a
  data part of a given type and id once in the message and replaces its data, so the
  message holds the latest stage and progress (a page can show it, and a resumed reader
  sees it too);
* ``chunk`` becomes ``text-delta`` (inside ``text-start`` / ``text-end``), ``reasoning``
  becomes ``reasoning-delta`` (inside ``reasoning-start`` / ``reasoning-end``);
* ``tool_call`` becomes ``tool-input-start`` + ``tool-input-available`` (and
  ``tool-approval-request``, whose ``approvalId`` is the call id, when it waits for its
  owner); ``tool_result`` becomes ``tool-output-available``, ``tool-output-denied`` or
  ``tool-output-error``. The model's next round after the results is a new step
  (``finish-step`` then ``start-step``), as ``streamText`` makes one step per model call;
* ``context`` has no form in the protocol: dropped;
* ``complete`` closes the step and becomes ``finish`` with the provider, model, usage and
  session as ``messageMetadata``; ``error`` becomes ``error`` (``errorText``) with sluice's
  code in a ``message-metadata`` chunk before it, except a stop (``cancelled``), which is
  the protocol's ``abort``. ``[DONE]`` follows either.

Text deltas are made by splicing bytes, as :mod:`server.core.openai_format` does: the JSON
string literal of sluice's chunk frame goes between a prefix made once per text part (a batch
of chunk frames in one regular-expression pass). A status frame's chunk is made once per
distinct frame and kept: a turn's statuses are the same few every turn.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from server.core import sse

__all__ = ["DONE", "HEADER_NAME", "HEADER_VALUE", "UIMessageEncoder", "finish_reason"]

HEADER_NAME = "x-vercel-ai-ui-message-stream"
HEADER_VALUE = "v1"
DONE = b"data: [DONE]\n\n"
_CHUNK_MARK = sse.CHUNK_HEAD.encode()
_CHUNK_MARK_LENGTH = len(_CHUNK_MARK)
_CHUNK_SEARCH = 24 + _CHUNK_MARK_LENGTH  # "id: " and up to 20 digits come before the mark
_CHUNK_KIND = b"\nevent: chunk\n"
_CHUNK_HEADS = re.compile(b"id: [0-9]+" + re.escape(_CHUNK_MARK))
_DATA = b"\ndata: "

# sluice's (and the providers') finish reasons in the protocol's enumeration.
_FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "length": "length",
    "max_tokens": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
}


def finish_reason(reason: str | None) -> str:
    """The protocol's ``finishReason`` for sluice's: ``stop`` when none was said."""
    if reason is None:
        return "stop"
    return _FINISH_REASONS.get(reason, "other")


def _frame(chunk: dict[str, Any]) -> bytes:
    return b"data: " + sse.encode_data(chunk).encode() + b"\n\n"


# A status frame's chunk, by the frame's data: a turn's statuses are the same few (stage,
# state, progress) in every turn, about ten a turn, so each is decoded and encoded once.
_status_chunks: dict[bytes, bytes] = {}
_STATUS_CHUNKS_KEPT = 256  # a plugin's stages or progress figures could make more: bounded


def _status_chunk(frame: bytes) -> bytes:
    data = frame[frame.index(_DATA) :]
    found = _status_chunks.get(data)
    if found is None:
        status = sse.decode_frame(frame)
        found = _frame(
            {
                "type": "data-status",
                "id": "status",
                "data": {key: status[key] for key in ("stage", "state", "progress")},
            }
        )
        if b'"stream_id"' not in data:  # a turn's first status names its stream: not kept
            if len(_status_chunks) >= _STATUS_CHUNKS_KEPT:
                _status_chunks.clear()
            _status_chunks[data] = found
    return found


class UIMessageEncoder:
    """The UI message chunks of one response, from the start of a turn's log.

    It keeps which part is open (text or reasoning, by its id) and whether a step is, so it
    must see the log's frames in order and from the first; each response has its own."""

    __slots__ = (
        "_delta_prefix",
        "_metadata",
        "_open_kind",
        "_open_part",
        "_parts",
        "_results_in_step",
        "_step_open",
        "message_id",
    )

    def __init__(self, message_id: str, metadata: Mapping[str, Any]) -> None:
        self.message_id = message_id
        self._metadata = dict(metadata)
        self._parts = 0
        self._open_kind: str | None = None  # "text" or "reasoning"
        self._open_part = ""
        self._delta_prefix = b""
        self._step_open = False
        self._results_in_step = False

    def start(self) -> bytes:
        """The first chunk: the message's id and what a client needs before any text (the
        stream id, to stop it; the session, to come back to it)."""
        return _frame(
            {"type": "start", "messageId": self.message_id, "messageMetadata": self._metadata}
        )

    def frames(self, frames: list[bytes]) -> bytes:
        """sluice's frames, as UI message chunks."""
        if self._open_kind == "text":
            # Most batches are chunk frames only, inside an open text part: each frame's head
            # (its id up to the content's literal) becomes the delta's prefix, in one pass of
            # the regular expression engine over the batch instead of a Python step a frame.
            # A head cannot match inside a frame's JSON, which never holds a raw newline.
            batch = b"".join(frames)
            if batch.count(_CHUNK_KIND) == len(frames):
                return _CHUNK_HEADS.sub(self._delta_prefix, batch)
        out: list[bytes] = []
        append = out.append
        find = bytes.find
        # The open text part's delta prefix; None when none is open.
        prefix = self._delta_prefix if self._open_kind == "text" else None
        for frame in frames:
            # A chunk frame, as sse.chunk_content finds it, inlined: nearly every frame is one.
            at = find(frame, _CHUNK_MARK, 0, _CHUNK_SEARCH)
            if at >= 0:
                if prefix is None:
                    self._open("text", out)
                    prefix = self._delta_prefix
                # The literal with the frame's own end (sse.CHUNK_TAIL, "}\n\n"), which ends
                # a delta too: two pieces for the one join below.
                append(prefix)
                append(frame[at + _CHUNK_MARK_LENGTH :])
                continue
            kind = sse.frame_kind(frame)
            if kind == b"context":
                continue
            if kind == b"status":
                append(_status_chunk(frame))
                continue
            data = sse.decode_frame(frame)
            if kind == b"reasoning":
                if self._open_kind != "reasoning":
                    self._open("reasoning", out)
                delta = {"type": "reasoning-delta", "id": self._open_part, "delta": data["content"]}
                out.append(_frame(delta))
            elif kind == b"tool_call":
                self._tool_call(data, out)
            elif kind == b"tool_result":
                self._tool_result(data, out)
            elif kind == b"complete":
                self._end_step(out)
                metadata = {
                    "provider": data.get("provider"),
                    "model": data.get("model"),
                    "usage": data.get("usage"),
                    "fallback": bool(data.get("fallback")),
                    "sessionId": data.get("session_id"),
                    "suggestions": data.get("suggestions") or [],
                }
                reason = finish_reason(data.get("finish_reason"))
                out.append(
                    _frame({"type": "finish", "finishReason": reason, "messageMetadata": metadata})
                )
                out.append(DONE)
            elif kind == b"error":
                self._end_step(out)
                out.extend(_error_chunks(data))
                out.append(DONE)
            prefix = self._delta_prefix if self._open_kind == "text" else None
        return b"".join(out)

    # -- inside --------------------------------------------------------------------------

    def _begin_step(self, out: list[bytes]) -> None:
        """Before the model's output: a step is open, and a new one once tools have answered
        (their results went back to the model, whose next call this is)."""
        if self._step_open and self._results_in_step:
            self._end_step(out)
        if not self._step_open:
            out.append(b'data: {"type":"start-step"}\n\n')
            self._step_open = True
            self._results_in_step = False

    def _end_step(self, out: list[bytes]) -> None:
        self._close_part(out)
        if self._step_open:
            out.append(b'data: {"type":"finish-step"}\n\n')
            self._step_open = False

    def _open(self, kind: str, out: list[bytes]) -> None:
        self._begin_step(out)
        self._close_part(out)
        self._parts += 1
        part = f"{kind}-{self._parts}"
        self._open_kind, self._open_part = kind, part
        out.append(_frame({"type": f"{kind}-start", "id": part}))
        if kind == "text":
            self._delta_prefix = f'data: {{"type":"text-delta","id":"{part}","delta":'.encode()

    def _close_part(self, out: list[bytes]) -> None:
        if self._open_kind is not None:
            out.append(_frame({"type": f"{self._open_kind}-end", "id": self._open_part}))
            self._open_kind = None

    def _tool_call(self, data: Mapping[str, Any], out: list[bytes]) -> None:
        self._begin_step(out)
        self._close_part(out)
        call_id, name = data["call_id"], data["name"]
        out.append(_frame({"type": "tool-input-start", "toolCallId": call_id, "toolName": name}))
        out.append(
            _frame(
                {
                    "type": "tool-input-available",
                    "toolCallId": call_id,
                    "toolName": name,
                    "input": data["arguments"],
                }
            )
        )
        if data.get("approval") == "required":
            # Decided at POST /api/streams/{stream_id}/tools/{call_id}: the approval's id is
            # the call's.
            request = {"type": "tool-approval-request", "approvalId": call_id}
            out.append(_frame(request | {"toolCallId": call_id}))

    def _tool_result(self, data: Mapping[str, Any], out: list[bytes]) -> None:
        self._close_part(out)
        self._results_in_step = True
        call_id = data["call_id"]
        if data.get("ok"):
            output = {"type": "tool-output-available", "toolCallId": call_id}
            out.append(_frame(output | {"output": data["content"]}))
        elif data.get("error") == "denied":
            out.append(_frame({"type": "tool-output-denied", "toolCallId": call_id}))
        else:
            text = data.get("content") or data.get("error") or "failed"
            out.append(
                _frame({"type": "tool-output-error", "toolCallId": call_id, "errorText": text})
            )


def _error_chunks(data: Mapping[str, Any]) -> list[bytes]:
    """How a turn that failed, or was stopped, ends."""
    if data.get("code") == "cancelled":
        return [_frame({"type": "abort", "reason": "cancelled"})]
    error = {"code": data.get("code"), "retryable": bool(data.get("retryable"))}
    if data.get("retry_after") is not None:
        error["retryAfter"] = data["retry_after"]
    # sluice's code first, as metadata: the protocol's error chunk carries only a text.
    return [
        _frame({"type": "message-metadata", "messageMetadata": {"error": error}}),
        _frame({"type": "error", "errorText": str(data.get("message", ""))}),
    ]
