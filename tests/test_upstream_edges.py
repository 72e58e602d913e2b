"""Upstream edge cases and the endpoints' small promises, end to end: the real server, the
real OpenAI SDK, a fake upstream on loopback. One test per way it broke."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import sseclient  # type: ignore[import-untyped]

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes, openai_env
from tests.support.server import RunningServer
from tests.support.sse import bearer, events, json_request, start_stream

AUTH = bearer("tok-alice")


def ask(server: RunningServer, message: str = "Hello", timeout: float = 30.0) -> list[Any]:
    from tests.support.sse import request

    stream = request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": message},
        headers=AUTH,
        timeout=timeout,
    )
    assert stream.status == 200
    return events(stream.read_all())


def history(server: RunningServer, session_id: str) -> list[dict[str, Any]]:
    status, data, _ = json_request(
        server.url, "GET", f"/api/sessions/alice/{session_id}", headers=AUTH
    )
    assert status == 200 and data is not None
    return list(data["messages"])


def test_done_with_the_body_kept_open_ends_the_answer(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """An upstream that sent ``data: [DONE]`` but kept its body open turned a finished
    answer into ``upstream_interrupted`` when the idle timeout (30 s) fired."""
    fakes.openai.default = Reply(text=["All ", "done."], hold_after_done=True)
    server = start_server(openai_env(fakes))
    started = time.monotonic()
    evs = ask(server, timeout=10)
    assert time.monotonic() - started < 5
    end = evs[-1]
    assert end["type"] == "complete" and end["message"] == "All done."
    assert end["finish_reason"] == "stop"
    assert history(server, end["session_id"])[-1]["status"] == "complete"


def test_idle_timeout_applies_after_the_first_token(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """With the idle timeout at 1 s, an upstream silent after its first text was only cut
    when the 20 s first-token timeout came round."""
    fakes.openai.default = Reply(text=["First words", " never come"], hang_at=1)
    server = start_server(
        openai_env(
            fakes,
            SLUICE_LLM__FIRST_TOKEN_TIMEOUT_SECONDS="20",
            SLUICE_LLM__IDLE_TIMEOUT_SECONDS="1",
        )
    )
    started = time.monotonic()
    evs = ask(server, timeout=15)
    took = time.monotonic() - started
    assert evs[-1]["type"] == "error" and evs[-1]["code"] == "upstream_interrupted"
    assert 0.9 < took < 5, took


def test_choices_as_a_string_is_a_malformed_frame(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """``"choices": "oops"`` raised AttributeError inside the provider: the user got
    ``internal``. Before any text it is a malformed frame (the plain call answers); after
    text, the answer was interrupted."""
    bad = b'data: {"choices": "oops"}\n\n'
    fakes.openai.script(Reply(text=["x"], raw_at={0: bad}), Reply(text=["A plain ", "answer."]))
    server = start_server(openai_env(fakes))
    end = ask(server)[-1]
    assert end["type"] == "complete" and end["message"] == "A plain answer."
    assert (end["mode"], end["fallback"]) == ("non-stream", True)

    fakes.openai.script(Reply(text=["Some text", "x"], raw_at={1: bad}))
    end = ask(server)[-1]
    assert end["type"] == "error" and end["code"] == "upstream_interrupted"
    assert "AttributeError" not in server.output()


def test_answer_length_is_capped_locally(start_server: StartServer, fakes: ThreadedFakes) -> None:
    """An upstream that ignored max_tokens produced an answer without bound (19 million
    characters, saved whole). ``llm.max_answer_chars`` ends it: ``complete`` with
    ``finish_reason`` ``length``, the upstream request closed, exactly the cap saved."""
    fakes.openai.default = Reply(text=["0123456789"] * 200, interval=0.005)
    server = start_server(openai_env(fakes, SLUICE_LLM__MAX_ANSWER_CHARS="55"))
    evs = ask(server)
    end = evs[-1]
    assert end["type"] == "complete"
    assert end["message"] == ("0123456789" * 6)[:55]
    assert "".join(e["content"] for e in evs if e["type"] == "chunk") == end["message"]
    assert end["finish_reason"] == "length"
    fakes.run(fakes.openai.wait_closed(1, within=2))
    saved = history(server, end["session_id"])[-1]
    assert (saved["content"], saved["status"]) == (end["message"], "complete")


def test_nel_is_escaped_for_line_splitting_clients(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """U+0085 went out raw in ``data:``; ``sseclient`` (which splits lines with
    ``str.splitlines``) cut the frame there and could not parse the event."""
    text = ["Next\x85line ", "and\u2028more\u2029end"]
    fakes.openai.default = Reply(text=text)
    server = start_server(openai_env(fakes))
    stream = start_stream(server.url, "Go")
    stream_id = stream.headers["X-Stream-Id"]
    assert events(stream.read_all())[-1]["type"] == "complete"
    client = sseclient.SSEClient(
        f"{server.url}/api/streams/{stream_id}?last_event_id=0", headers=AUTH, timeout=10
    )
    received = []
    for message in client:
        if not message.data:
            continue  # the opening "retry:" frame
        data = json.loads(message.data)
        assert data["type"] == message.event
        received.append(data)
        if data["type"] in ("complete", "error"):
            break
    client.resp.close()
    assert received[-1]["type"] == "complete"
    assert "".join(e["content"] for e in received if e["type"] == "chunk") == "".join(text)


def test_json_client_leaving_cancels_with_on_disconnect_cancel(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """``stream.on_disconnect = "cancel"`` stopped the upstream when a stream client left,
    but not when a client of ``POST /api/conversation`` did."""
    fakes.openai.default = Reply(text=["Slow", " answer"] * 50, interval=0.2)
    server = start_server(openai_env(fakes, SLUICE_STREAM__ON_DISCONNECT="cancel"))
    body = json.dumps({"message": "Hi"}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/conversation/alice HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer tok-alice\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        fakes.run(fakes.openai.wait_requests(1))
    fakes.run(fakes.openai.wait_closed(1, within=2))


def test_json_endpoint_too_many_streams_says_when_to_retry(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """The JSON endpoint's 429 ``too_many_streams`` came without ``Retry-After``."""
    fakes.openai.default = Reply(text=["Busy"], hang_at=0)
    server = start_server(openai_env(fakes, SLUICE_LIMITS__MAX_STREAMS_PER_USER="1"))
    first = start_stream(server.url, "One")
    first.until(lambda f: f.event == "status" and f.data and f.data["stage"] == "llm")
    status, data, headers = json_request(
        server.url, "POST", "/api/conversation/alice", body={"message": "Two"}, headers=AUTH
    )
    assert status == 429 and data is not None
    assert data["error"]["code"] == "too_many_streams"
    assert int(headers["Retry-After"]) > 0
    assert data["error"]["retry_after"] == int(headers["Retry-After"])
    first.close()
