"""The UI message stream encoder on its own: the exact chunks, in order, for a log of sluice's
frames (tests/test_ai_sdk_node.py reads the same output with the AI SDK itself)."""

from __future__ import annotations

import json
from typing import Any

from server.core.sse import encode_chunk, encode_event
from server.core.ui_message_stream import DONE, UIMessageEncoder, finish_reason


def frames_of(events: list[dict[str, Any]]) -> list[bytes]:
    out = []
    for number, event in enumerate(events, start=1):
        if event["type"] == "chunk":
            out.append(encode_chunk(number, event["content"]))
        else:
            out.append(encode_event(number, event["type"], event))
    return out


def chunks(body: bytes) -> list[Any]:
    """Each ``data:`` frame's JSON (``[DONE]`` as the string); every frame is one line."""
    out: list[Any] = []
    for block in body.decode().split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, block
        data = block.removeprefix("data: ")
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


COMPLETE = {
    "type": "complete",
    "message": "",
    "session_id": "s1",
    "suggestions": ["More?"],
    "provider": "openai",
    "model": "gpt",
    "mode": "stream",
    "fallback": False,
    "usage": {"input_tokens": 3, "output_tokens": 4},
}


def test_a_tool_round_is_two_steps_and_text_is_spliced_unchanged() -> None:
    events = [
        {"type": "status", "stage": "llm", "state": "start", "progress": 50, "stream_id": "st"},
        {"type": "chunk", "content": 'A "quoted"\u2028line '},
        {"type": "tool_call", "call_id": "c1", "name": "echo", "arguments": {"t": 1}},
        {"type": "tool_result", "call_id": "c1", "name": "echo", "ok": True, "content": "1"},
        {"type": "chunk", "content": "Done."},
        COMPLETE | {"finish_reason": "length"},
    ]
    encoder = UIMessageEncoder("st", {"streamId": "st", "sessionId": "s1"})
    # In two batches, as a reader may get them: the open text part carries over.
    log = frames_of(events)
    body = encoder.start() + encoder.frames(log[:2]) + encoder.frames(log[2:])
    assert body.endswith(DONE)
    # Escaped, as in every frame: some line splitters end a line there.
    assert "\u2028".encode() not in body
    call = {"toolCallId": "c1", "toolName": "echo"}
    opened = {"streamId": "st", "sessionId": "s1"}
    status = {"stage": "llm", "state": "start", "progress": 50}
    assert chunks(body) == [
        {"type": "start", "messageId": "st", "messageMetadata": opened},
        {"type": "data-status", "id": "status", "data": status},
        {"type": "start-step"},
        {"type": "text-start", "id": "text-1"},
        {"type": "text-delta", "id": "text-1", "delta": 'A "quoted"\u2028line '},
        {"type": "text-end", "id": "text-1"},
        {"type": "tool-input-start"} | call,
        {"type": "tool-input-available"} | call | {"input": {"t": 1}},
        {"type": "tool-output-available", "toolCallId": "c1", "output": "1"},
        {"type": "finish-step"},
        {"type": "start-step"},
        {"type": "text-start", "id": "text-2"},
        {"type": "text-delta", "id": "text-2", "delta": "Done."},
        {"type": "text-end", "id": "text-2"},
        {"type": "finish-step"},
        {
            "type": "finish",
            "finishReason": "length",
            "messageMetadata": {
                "provider": "openai",
                "model": "gpt",
                "usage": {"input_tokens": 3, "output_tokens": 4},
                "fallback": False,
                "sessionId": "s1",
                "suggestions": ["More?"],
            },
        },
        "[DONE]",
    ]


def test_a_stop_is_abort_and_a_failure_is_an_error_with_its_code() -> None:
    stopped = UIMessageEncoder("st", {})
    cancelled = {"type": "error", "code": "cancelled", "message": "Stopped.", "retryable": False}
    body = stopped.frames(frames_of([{"type": "chunk", "content": "Hi"}, cancelled]))
    assert chunks(body)[-4:] == [
        {"type": "text-end", "id": "text-1"},
        {"type": "finish-step"},
        {"type": "abort", "reason": "cancelled"},
        "[DONE]",
    ]
    failed = UIMessageEncoder("st", {})
    error = {"type": "error", "code": "upstream_unavailable", "message": "No.", "retryable": True}
    assert chunks(failed.frames(frames_of([error]))) == [
        {
            "type": "message-metadata",
            "messageMetadata": {"error": {"code": "upstream_unavailable", "retryable": True}},
        },
        {"type": "error", "errorText": "No."},
        "[DONE]",
    ]


def test_finish_reasons_in_the_protocols_words() -> None:
    assert [finish_reason(r) for r in (None, "stop", "length", "tool_calls", "odd")] == [
        "stop",
        "stop",
        "length",
        "tool-calls",
        "other",
    ]


def test_each_status_is_its_own_chunk_in_every_response() -> None:
    # Statuses are translated once and kept: what is kept must still be each frame's own.
    def statuses(progress: list[int], first_id: int) -> list[bytes]:
        return [
            encode_event(first_id + n, "status", {"stage": "llm", "state": "done", "progress": p})
            for n, p in enumerate(progress)
        ]

    first = UIMessageEncoder("a", {}).frames(statuses([60, 70], 1))
    again = UIMessageEncoder("b", {}).frames(statuses([70, 60, 60], 7))
    assert [c["data"]["progress"] for c in chunks(first)] == [60, 70]
    assert [c["data"]["progress"] for c in chunks(again)] == [70, 60, 60]
    assert {c["type"] for c in chunks(first + again)} == {"data-status"}


def test_a_batch_of_chunks_in_an_open_text_part_keeps_every_delta_as_it_was() -> None:
    # Texts that look like the frames around them: a batch of chunks is rewritten in one
    # pass over its bytes, which must touch the frames' heads and nothing inside their JSON.
    texts = [
        "first",
        'id: 7\nevent: chunk\ndata: {"type":"chunk","content":"x"}\n\n',
        '\\ back\\slash \\\\ and a "quote"',
        "id: 9",
        "\u2028\u2029\x85 ⟨1:2⟩",
    ]
    encoder = UIMessageEncoder("st", {})
    log = frames_of([{"type": "chunk", "content": text} for text in texts])
    body = encoder.frames(log[:1]) + encoder.frames(log[1:3]) + encoder.frames(log[3:])
    deltas = [c for c in chunks(body) if c["type"] == "text-delta"]
    assert [d["delta"] for d in deltas] == texts
    assert {d["id"] for d in deltas} == {"text-1"}
    assert [c["type"] for c in chunks(body)] == ["start-step", "text-start"] + ["text-delta"] * 5
