"""Resume, reload and the disconnect policy."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes, openai_env
from tests.support.server import RunningServer
from tests.support.sse import Frame, bearer, json_request, parse_frames, request, start_stream

ALICE = bearer("tok-alice")


def resume(server: RunningServer, stream_id: str, last_id: int, *, header: bool = True):  # type: ignore[no-untyped-def]
    if header:
        return request(
            server.url,
            "GET",
            f"/api/streams/{stream_id}",
            headers={**ALICE, "Last-Event-ID": str(last_id)},
        )
    return request(
        server.url, "GET", f"/api/streams/{stream_id}?last_event_id={last_id}", headers=ALICE
    )


def data_frames(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.data is not None]


def assert_whole_answer(frames: list[Frame]) -> None:
    """Ids 1..n with no gap or repeat, one terminal at the end, chunks adding up."""
    ids = [f.id for f in frames]
    assert ids == list(range(1, len(frames) + 1))
    assert frames[-1].event == "complete"
    text = "".join(f.data["content"] for f in frames if f.event == "chunk")  # type: ignore[index]
    assert text == frames[-1].data["message"]  # type: ignore[index]


@pytest.mark.parametrize("via_header", [True, False])
def test_drop_after_k_events_and_resume_mid_answer(
    start_server: StartServer, via_header: bool
) -> None:
    server = start_server({"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "20"})
    first = start_stream(server.url, "Tell me a story")
    stream_id = first.headers["X-Stream-Id"]
    seen: list[Frame] = []
    for frame in first:
        if frame.data is not None:
            seen.append(frame)
        if len(seen) == 14:  # a few chunks in: the answer is still being written
            break
    assert seen[-1].event == "chunk"
    first.close()

    second = resume(server, stream_id, seen[-1].id or 0, header=via_header)
    assert second.status == 200 and second.headers["X-Stream-Id"] == stream_id
    rest = second.read_all()
    assert rest[0].retry == 2000  # a resumed stream opens like any other
    assert_whole_answer(seen + data_frames(rest))


def test_resume_after_the_answer_finished_replays_the_same_bytes(
    demo_server: RunningServer,
) -> None:
    original = start_stream(demo_server.url, "Tell me a story")
    stream_id = original.headers["X-Stream-Id"]
    raw = original.body()
    frames = data_frames(parse_frames(raw))
    assert_whole_answer(frames)
    replay = resume(demo_server, stream_id, 5, header=False).body()
    assert replay.startswith(b"retry: 2000\n\n")
    tail = raw[raw.index(b"id: 6\n") :]
    assert replay.removeprefix(b"retry: 2000\n\n") == tail


def test_resume_from_the_end_tells_eventsource_to_stop(demo_server: RunningServer) -> None:
    stream = start_stream(demo_server.url, "Tell me a story")
    frames = data_frames(stream.read_all())
    stream_id = frames[0].data["stream_id"]  # type: ignore[index]
    response = resume(demo_server, stream_id, frames[-1].id or 0)
    assert response.status == 204 and response.body() == b""


def test_unknown_foreign_and_expired_streams_are_404(start_server: StartServer) -> None:
    server = start_server({"SLUICE_STREAM__LOG_TTL_SECONDS": "1"})
    stream = start_stream(server.url, "Tell me a story")
    stream_id = stream.headers["X-Stream-Id"]
    stream.read_all()
    bob = bearer("tok-bob")
    for path, headers in (
        ("/api/streams/st_nope", ALICE),
        (f"/api/streams/{stream_id}", bob),
        (f"/api/streams/{stream_id}/cancel", bob),
    ):
        method = "POST" if path.endswith("cancel") else "GET"
        status, body, _ = json_request(server.url, method, path, headers=headers)
        assert status == 404 and body is not None and body["error"]["code"] == "not_found"
    status, _, _ = json_request(server.url, "GET", f"/api/streams/{stream_id}", headers={})
    assert status == 401
    # The log expires log_ttl_seconds after the end: wait for that, bounded.
    deadline = time.monotonic() + 10
    while True:
        probe = resume(server, stream_id, 1)
        probe.body()
        if probe.status == 404:
            break
        assert probe.status == 200 and time.monotonic() < deadline, "the log never expired"
        time.sleep(0.1)


def wait_for_saved_answer(server: RunningServer, session_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _, data, _ = json_request(
            server.url, "GET", f"/api/sessions/alice/{session_id}", headers=ALICE
        )
        messages = data["messages"] if data else []
        if len(messages) == 2:
            return messages[1]  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError("the answer was never saved")


def test_reload_during_an_answer_shows_the_full_answer(start_server: StartServer) -> None:
    """on_disconnect = "continue" (the default): leaving does not stop the answer."""
    server = start_server({"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "20"})
    stream = start_stream(server.url, "Tell me a story", session_id="reload")
    stream_id = stream.headers["X-Stream-Id"]
    stream.until(lambda f: f.event == "chunk")
    stream.close()  # the tab is reloaded mid-answer
    saved = wait_for_saved_answer(server, "reload")
    assert saved["status"] == "complete"
    # The reloaded page can also pick the stream up from the start.
    replay = data_frames(resume(server, stream_id, 0).read_all())
    assert_whole_answer(replay)
    assert saved["content"] == replay[-1].data["message"]  # type: ignore[index]


def openai_server(start_server: StartServer, fakes: ThreadedFakes, **env: str) -> RunningServer:
    return start_server(openai_env(fakes, **env))


def test_cancel_on_disconnect_closes_the_upstream(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(text=["Once ", "upon"], hang_at=1)
    server = openai_server(start_server, fakes, SLUICE_STREAM__ON_DISCONNECT="cancel")
    stream = start_stream(server.url, "Tell me a story", session_id="leave")
    stream.until(lambda f: f.event == "chunk")
    left_at = time.monotonic()
    stream.close()
    fakes.run(fakes.openai.wait_closed(1, within=1.0))
    assert time.monotonic() - left_at < 1.5
    saved = wait_for_saved_answer(server, "leave")
    assert saved == {**saved, "content": "Once ", "status": "incomplete"}


def test_continue_on_disconnect_keeps_the_upstream(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(text=["Once ", "upon ", "a ", "time"], interval=0.2)
    server = openai_server(start_server, fakes)
    stream = start_stream(server.url, "Tell me a story", session_id="stay")
    stream.until(lambda f: f.event == "chunk")
    stream.close()
    saved = wait_for_saved_answer(server, "stay")
    assert saved["content"] == "Once upon a time" and saved["status"] == "complete"
    assert fakes.openai.closed == 0


def test_resume_past_the_end_of_a_live_answer_ends_with_its_terminal(
    start_server: StartServer,
) -> None:
    """Regression: a resume of a live stream with a Last-Event-ID beyond where the answer
    would end waited for ids that never came, and the response hung for ever. It now ends
    with the terminal event like any reader, and once the answer is over gets 204."""
    # No heartbeat within the read timeout: the old reader's silence shows as a timeout.
    server = start_server(
        {"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "20", "SLUICE_STREAM__HEARTBEAT_SECONDS": "60"}
    )
    first = start_stream(server.url, "Tell me a story")
    stream_id = first.headers["X-Stream-Id"]
    first.until(lambda f: f.event == "chunk")  # the answer is being written
    ahead = request(
        server.url,
        "GET",
        f"/api/streams/{stream_id}",
        headers={**ALICE, "Last-Event-ID": "100000"},
        timeout=15,  # the old reader never ended: reading it timed out
    )
    assert ahead.status == 200
    frames = data_frames(ahead.read_all())
    assert [f.event for f in frames] == ["complete"]
    whole = data_frames(first.read_all())
    assert frames[0].id == whole[-1].id  # the terminal, with its own id
    after = resume(server, stream_id, 100000)
    assert after.status == 204


@pytest.mark.parametrize("raw", ["²", "１２", "-1", "+1", "1.5", "1e3", "abc", "0x10"])
def test_a_last_event_id_that_is_not_ascii_digits_is_400(
    demo_server: RunningServer, raw: str
) -> None:
    """Regression: "²" and fullwidth digits pass ``str.isdigit`` but not ``int``: a 500
    with a traceback. A sign, a point, an exponent or a base is no event id either."""
    stream = start_stream(demo_server.url, "hi")
    stream_id = stream.headers["X-Stream-Id"]
    stream.read_all()
    status, body, _ = json_request(
        demo_server.url,
        "GET",
        f"/api/streams/{stream_id}?last_event_id={quote(raw)}",
        headers=ALICE,
    )
    assert status == 400
    assert body is not None and body["error"]["code"] == "bad_request"
    if raw.isascii():  # the header says the same (non-ASCII cannot be sent as a header)
        status, body, _ = json_request(
            demo_server.url,
            "GET",
            f"/api/streams/{stream_id}",
            headers={**ALICE, "Last-Event-ID": raw},
        )
        assert status == 400


@pytest.mark.parametrize("via_header", [True, False])
@pytest.mark.parametrize("raw", ["99999999999999999999", "9" * 19, "1" * 4301])
def test_a_twenty_digit_last_event_id_past_a_finished_stream_is_204_not_400(
    demo_server: RunningServer, raw: str, via_header: bool
) -> None:
    """Regression: ``Last-Event-ID: 99999999999999999999`` answered 400 "must be a whole
    number" (anything over 18 digits was refused), though it is one. Past the end of a
    finished stream, it gets the 204 any id past the end gets; 4,301 digits too, which
    ``int()`` refuses to convert."""
    stream = start_stream(demo_server.url, "hi")
    stream_id = stream.headers["X-Stream-Id"]
    stream.read_all()
    headers = {**ALICE, "Last-Event-ID": raw} if via_header else ALICE
    query = "" if via_header else f"?last_event_id={raw}"
    response = request(demo_server.url, "GET", f"/api/streams/{stream_id}{query}", headers=headers)
    assert response.status == 204 and response.body() == b""


def test_a_last_event_id_with_leading_zeros_is_the_same_id(demo_server: RunningServer) -> None:
    """Thirty characters of which the last is 5 is event 5: the replay starts after it,
    however many zeros come first (the digits are counted without them)."""
    original = start_stream(demo_server.url, "Tell me a story")
    stream_id = original.headers["X-Stream-Id"]
    whole = data_frames(original.read_all())
    response = request(
        demo_server.url,
        "GET",
        f"/api/streams/{stream_id}",
        headers={**ALICE, "Last-Event-ID": "5".rjust(30, "0")},
    )
    assert response.status == 200
    assert data_frames(response.read_all()) == whole[5:]


def test_fifty_readers_past_the_end_of_a_live_answer_end_when_it_ends(
    start_server: StartServer,
) -> None:
    """Regression: readers resumed with a Last-Event-ID past the end of a live stream were
    found still open, and pinged, 10 s after the turn had ended (a fresh resume got 204 by
    then). Fifty of them, pinged while they wait, must each get the terminal event and the
    end of the response as the answer ends."""
    server = start_server(
        {"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "20", "SLUICE_STREAM__HEARTBEAT_SECONDS": "1"}
    )
    first = start_stream(server.url, "Tell me a story")
    stream_id = first.headers["X-Stream-Id"]
    first.until(lambda f: f.event == "chunk")  # the answer is being written
    readers = [
        request(
            server.url,
            "GET",
            f"/api/streams/{stream_id}",
            headers={**ALICE, "Last-Event-ID": "100000"},
        )
        for _ in range(50)
    ]
    whole = data_frames(first.read_all())
    deadline = time.monotonic() + 5
    for reader in readers:
        assert reader.status == 200
        for _ in reader:  # to the end of the response; a ping every second meanwhile
            assert time.monotonic() < deadline, "a reader outlived the answer"
        frames = data_frames(reader.frames)
        assert [(f.id, f.event) for f in frames] == [(whole[-1].id, "complete")]
