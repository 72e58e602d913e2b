"""Several real ``python -m server`` processes on one real ``redis-server``.

What the server promises across instances: stop anywhere (also when the pub/sub
message is lost), a dead producer's readers end cleanly with its partial answer saved, and
Redis trouble is survivable (down at start, restarted empty mid-stream). History is SQLite
in a data directory all instances share here; nothing in the server assumes that.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes, openai_env
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer
from tests.support.sse import Frame, bearer, json_request, request, start_stream

ALICE = bearer("tok-alice")


def data_frames(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.data is not None]


def instances(
    start_server: StartServer,
    redis: RedisServer,
    tmp_path: Path,
    count: int = 2,
    **settings: str,
) -> list[RunningServer]:
    env = {
        "REDIS_URL": redis.url,
        "SLUICE_LLM__DEMO__WORDS_PER_SECOND": "8",
        "SLUICE_STREAM__HEARTBEAT_SECONDS": "1",
        # A killed instance's turns end within a lease: 4 s, not 10, still long enough for
        # the stalls of a loaded machine.
        "SLUICE_STORE__REDIS_LEASE_SECONDS": "4",
        **settings,
    }
    shared = tmp_path / "shared-data"  # one history for all: as PostgreSQL would be
    shared.mkdir(exist_ok=True)
    return [start_server(env, data_dir=shared) for _ in range(count)]


def resume(server: RunningServer, stream_id: str, after: int) -> Any:
    return request(
        server.url,
        "GET",
        f"/api/streams/{stream_id}",
        headers={**ALICE, "Last-Event-ID": str(after)},
    )


def test_a_stop_sent_to_another_instance_closes_the_upstream_within_a_second(
    start_server: StartServer, redis_server: RedisServer, tmp_path: Path, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(text=["Once ", "upon ", "a time"], hang_at=1)
    producer, other = instances(start_server, redis_server, tmp_path, **openai_env(fakes))
    stream = start_stream(producer.url, "Tell me a long story")
    stream_id = stream.headers["X-Stream-Id"]
    stream.until(lambda f: f.event == "chunk")  # the upstream is now hanging mid-answer
    asked = time.monotonic()
    status, body, _ = json_request(
        other.url, "POST", f"/api/streams/{stream_id}/cancel", headers=ALICE
    )
    assert status == 200 and body == {"stream_id": stream_id, "cancelled": True}
    fakes.run(fakes.openai.wait_closed(1, within=1.0))  # the producer let the upstream go
    frames = data_frames(stream.read_all())
    assert time.monotonic() - asked < 1.0
    assert frames[-1].event == "error" and frames[-1].data["code"] == "cancelled"  # type: ignore[index]


def test_a_stop_whose_pubsub_message_was_lost_still_closes_the_upstream_within_a_second(
    start_server: StartServer, redis_server: RedisServer, tmp_path: Path, fakes: ThreadedFakes
) -> None:
    """The cancel is also kept as a key, which the producer polls: here the key is set and
    nothing is published, as when the message is lost on its way."""
    fakes.openai.default = Reply(text=["Once ", "upon ", "a time"], hang_at=1)
    (producer,) = instances(start_server, redis_server, tmp_path, count=1, **openai_env(fakes))
    stream = start_stream(producer.url, "Tell me a long story")
    stream_id = stream.headers["X-Stream-Id"]
    stream.until(lambda f: f.event == "chunk")
    asked = time.monotonic()
    redis_server.client().set(f"sluice:cancel:{stream_id}", "cancelled", px=60_000)
    fakes.run(fakes.openai.wait_closed(1, within=1.0))
    frames = data_frames(stream.read_all())
    assert time.monotonic() - asked < 1.0
    assert frames[-1].data is not None and frames[-1].data["code"] == "cancelled"


def test_readers_past_the_end_of_a_live_answer_end_with_it_on_every_instance(
    start_server: StartServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Regression: readers resumed with a Last-Event-ID past the end of a live stream were
    found still open, and pinged, 10 s after the turn had ended. On the producer's instance
    (its own log) and on another (a mirror that follows Redis), fifty such readers each get
    the terminal event and the end of the response as the answer ends."""
    producer, other = instances(start_server, redis_server, tmp_path)
    first = start_stream(producer.url, "Tell me a story")
    stream_id = first.headers["X-Stream-Id"]
    first.until(lambda f: f.event == "chunk")  # the answer is being written
    readers = [resume((producer, other)[i % 2], stream_id, 100000) for i in range(50)]
    whole = data_frames(first.read_all())
    deadline = time.monotonic() + 5
    for reader in readers:
        assert reader.status == 200
        for _ in reader:  # to the end of the response; a ping every second meanwhile
            assert time.monotonic() < deadline, "a reader outlived the answer"
        frames = data_frames(reader.frames)
        assert [(f.id, f.event) for f in frames] == [(whole[-1].id, "complete")]


def test_kill_9_the_producer_ends_readers_elsewhere_and_saves_the_partial(
    start_server: StartServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    producer, other = instances(
        start_server, redis_server, tmp_path, SLUICE_LIMITS__MAX_STREAMS_PER_USER="1"
    )
    stream = start_stream(producer.url, "Tell me a long story", session_id="s_dies")
    stream_id = stream.headers["X-Stream-Id"]
    seen = data_frames([stream.until(lambda f: f.event == "chunk")])
    # The turn's lease is the one set (store.redis_lease_seconds, 4 s here; 10 by default):
    # it runs out at most 4 s from now, renewed every second.
    with redis_server.client() as client:
        seconds, micros = client.time()
        expires_ms = client.zscore("sluice:live", stream_id)
    assert expires_ms is not None
    assert 0 < expires_ms - (seconds * 1000 + micros / 1000) <= 4000
    follower = resume(other, stream_id, 0)
    followed: list[Frame] = []
    for frame in follower:  # following live on the other instance
        if frame.data is not None:
            followed.append(frame)
        if len(followed) > len(data_frames(stream.frames)) + 2:
            break
    producer.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    stream.close()
    followed = data_frames(follower.read_all())  # every frame it got, from the first
    ended = time.monotonic() - killed
    assert ended < 20, ended
    ids = [f.id for f in followed]
    assert ids == list(range(1, len(ids) + 1))  # the terminal is the next id
    last = followed[-1].data
    assert last is not None and last["type"] == "error"
    assert last["code"] == "internal" and last["retryable"] is True
    partial = "".join(f.data["content"] for f in followed if f.event == "chunk")  # type: ignore[index]
    assert partial and seen
    # Later resumes replay it, from any instance.
    replay = data_frames(resume(other, stream_id, len(ids) - 1).read_all())
    assert [f.id for f in replay] == [ids[-1]] and replay[0].data == last
    _, session, _ = json_request(other.url, "GET", "/api/sessions/alice/s_dies", headers=ALICE)
    assert session is not None and session["active_turn"] is None
    assert [(m["role"], m["status"]) for m in session["messages"]] == [
        ("user", "complete"),
        ("assistant", "incomplete"),
    ]
    assert session["messages"][1]["content"] == partial
    # The dead instance's stream slot (the only one) is free again.
    again = data_frames(start_stream(other.url, "hi", session_id="s_next").read_all())
    assert again[-1].event == "complete"
    assert time.monotonic() - killed < 25


def test_redis_down_at_start_then_back(
    start_server: StartServer, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    redis = RedisServer(tmp_path_factory.mktemp("redis-later"))  # not started yet
    (server,) = instances(start_server, redis, tmp_path, count=1)
    status, body, _ = json_request(server.url, "GET", "/readyz")
    assert status == 503 and body is not None
    assert any("redis" in reason for reason in body["reasons"]), body
    refused = start_stream(server.url, "hi")
    payload = refused.body()
    assert refused.status == 503, payload
    assert b'"code": "unavailable"' in payload or b'"code":"unavailable"' in payload
    assert int(refused.headers["Retry-After"]) >= 1
    assert b"Traceback" not in payload
    redis.start()
    try:
        deadline = time.monotonic() + 10
        while json_request(server.url, "GET", "/readyz")[0] != 200:
            assert time.monotonic() < deadline, "not ready after Redis came back"
            time.sleep(0.05)
        frames = data_frames(start_stream(server.url, "hi").read_all())
        assert frames[-1].event == "complete"
    finally:
        redis.stop()
    assert "Traceback" not in server.output()


def test_redis_restarted_empty_mid_answer(
    start_server: StartServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Readers of a turn whose log vanished end with ``internal``; then new turns work."""
    producer, other = instances(start_server, redis_server, tmp_path)
    stream = start_stream(producer.url, "Tell me a long story")
    stream_id = stream.headers["X-Stream-Id"]
    stream.until(lambda f: f.event == "chunk")
    follower = resume(other, stream_id, 0)
    follower.until(lambda f: f.event == "chunk")
    redis_server.stop()
    redis_server.start()  # no persistence: it comes back empty
    for reader in (stream, follower):
        frames = data_frames(reader.read_all())
        assert frames[-1].event in ("error", "complete")
        if frames[-1].event == "error":
            assert frames[-1].data is not None and frames[-1].data["code"] == "internal"
    assert data_frames(follower.frames)[-1].event == "error"  # its log is gone
    for server in (producer, other):
        deadline = time.monotonic() + 10
        while True:
            frames = data_frames(start_stream(server.url, "hi").read_all())
            if frames and frames[-1].event == "complete":
                break
            assert time.monotonic() < deadline, frames
            time.sleep(0.1)
        assert "Traceback" not in server.output()


def test_workers_share_the_port_and_drain_on_sigterm(
    start_server: StartServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    server = start_server(
        {
            "REDIS_URL": redis_server.url,
            "SLUICE_SERVER__WORKERS": "2",
            "SLUICE_LLM__DEMO__WORDS_PER_SECOND": "40",
        }
    )
    first = server.wait_for_log("listening", worker=0)
    second = server.wait_for_log("listening", worker=1)
    assert first["pid"] != second["pid"] and first["url"] == second["url"]
    # Three at once (limits.max_streams_per_user), over both workers; a fourth is refused:
    # the workers count the user's streams together.
    streams = [start_stream(server.url, f"Tell me story {n}") for n in range(4)]
    ends = sorted(data_frames(stream.read_all())[-1].data["type"] for stream in streams)  # type: ignore[index]
    assert ends == ["complete", "complete", "complete", "error"]
    running = start_stream(server.url, "Tell me a story")
    running.until(lambda f: f.event == "chunk")
    assert server.stop(signal.SIGTERM) == 0
    assert data_frames(running.read_all())[-1].event == "complete"  # drained, not cut
    assert server.output().count('"event": "stopped"') == 2


def test_web_concurrency_without_shared_stores_is_ignored_with_a_warning(
    start_server: StartServer,
) -> None:
    server = start_server({"WEB_CONCURRENCY": "3"})
    line = server.wait_for_log("web_concurrency_ignored")
    assert "REDIS_URL" in line["reason"]
    assert "worker" not in server.wait_for_log("listening")  # one process


def test_rediss_with_a_password(
    start_server: StartServer, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``rediss://`` (TLS) with a password, as Heroku Redis and Upstash hand it out."""
    redis = RedisServer(tmp_path_factory.mktemp("redis-tls"), tls_password="s3cret").start()
    try:
        producer, other = instances(start_server, redis, tmp_path)
        assert json_request(other.url, "GET", "/readyz")[0] == 200
        stream = start_stream(producer.url, "hi")
        stream_id = stream.headers["X-Stream-Id"]
        frames = data_frames(stream.read_all())
        assert frames[-1].event == "complete"
        replay = data_frames(resume(other, stream_id, 0).read_all())
        assert [(f.id, f.data) for f in replay] == [(f.id, f.data) for f in frames]
        assert redis.client().exists(f"sluice:log:{stream_id}")
        wrong = start_server(
            {"REDIS_URL": redis.url.replace("s3cret", "wrong")}, data_dir=tmp_path / "wrong"
        )
        status, body, _ = json_request(wrong.url, "GET", "/readyz")
        assert status == 503 and body is not None
        assert any(reason.startswith("redis store unreachable") for reason in body["reasons"])
    finally:
        redis.stop()
