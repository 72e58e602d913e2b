"""Three real ``python -m server`` processes on one real Redis, behind real nginx.

deploy/nginx.conf as shipped, with an upstream of the three. One answer is started, resumed
through the other instances at random ids and stopped through a third; a rate limit is
exhausted over all three; the per-user stream cap is reached across them; a second message
into a session whose answer is being written elsewhere gets 409 everywhere; then the
producing instance is killed with SIGKILL and its readers elsewhere end cleanly with the
partial answer saved.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import StartServer
from tests.support.nginx import NGINX, sandboxed_config
from tests.support.redis_server import RedisServer
from tests.support.server import STARTUP_SECONDS, RunningServer, free_port, wait_until_answering
from tests.support.sse import EventStream, Frame, bearer, json_request, request, start_stream

pytestmark = pytest.mark.nginx

ALICE = bearer("tok-alice")
BOB = bearer("tok-bob")
BURST = 8  # tokens in each bucket (user and client address); refills too slowly to matter


def data_frames(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.data is not None]


def resume(url: str, stream_id: str, after: int, headers: dict[str, str] = ALICE) -> EventStream:
    return request(
        url, "GET", f"/api/streams/{stream_id}", headers={**headers, "Last-Event-ID": str(after)}
    )


def producer_of(servers: list[RunningServer], stream_id: str) -> RunningServer:
    for server in servers:
        server.drain()
        if any(
            line.get("event") == "turn_started" and line.get("stream_id") == stream_id
            for line in server.lines
        ):
            return server
    raise AssertionError(f"no instance started {stream_id}")


@pytest.fixture
def cluster(
    start_server: StartServer, redis_server: RedisServer, tmp_path: Path
) -> Iterator[tuple[list[RunningServer], str]]:
    shared = tmp_path / "history"  # one history for the three, as PostgreSQL would be
    shared.mkdir()
    env = {
        "REDIS_URL": redis_server.url,
        "SLUICE_LLM__DEMO__WORDS_PER_SECOND": "6",
        "SLUICE_STREAM__HEARTBEAT_SECONDS": "1",
        "SLUICE_SERVER__TRUST_PROXY": "true",
        "SLUICE_RATE_LIMIT__BURST": str(BURST),
        "SLUICE_RATE_LIMIT__REQUESTS_PER_MINUTE": "0.01",
    }
    servers = [start_server(env, data_dir=shared) for _ in range(3)]
    port = free_port()
    text = sandboxed_config(servers[0].port, port, tmp_path)
    upstreams = "\n        ".join(f"server 127.0.0.1:{s.port};" for s in servers)
    text = text.replace(f"server 127.0.0.1:{servers[0].port};", upstreams, 1)
    config = tmp_path / "nginx.conf"
    config.write_text(text, encoding="utf-8")
    check = subprocess.run(
        [NGINX, "-t", "-c", str(config), "-p", str(tmp_path)], capture_output=True
    )
    assert check.returncode == 0, check.stderr.decode()
    nginx = subprocess.Popen(
        [NGINX, "-c", str(config), "-p", str(tmp_path), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_answering(url, nginx, timeout=STARTUP_SECONDS, what="nginx")
    yield servers, url
    nginx.terminate()
    nginx.wait(timeout=10)
    assert nginx.stderr is not None
    nginx.stderr.close()


def test_three_instances_behind_nginx_act_as_one_server(
    cluster: tuple[list[RunningServer], str], redis_server: RedisServer
) -> None:
    servers, url = cluster
    rng = random.Random(12)
    tokens_used = 0

    # -- an answer, resumed through the others at random ids, stopped through a third ----
    first = start_stream(url, "Tell me a long story", session_id="s_story")
    tokens_used += 1
    stream_id = first.headers["X-Stream-Id"]
    first.until(lambda f: f.event == "chunk")
    producer = producer_of(servers, stream_id)
    others = [s for s in servers if s is not producer]
    readers: list[tuple[int, EventStream]] = []
    for target in [others[0].url, others[1].url, url, url, others[0].url]:
        after = rng.randint(0, max(1, len(data_frames(first.frames))))
        reader = resume(target, stream_id, after)
        assert reader.status == 200
        reader.until(lambda f: f.data is not None)  # replaying, then following live
        readers.append((after, reader))
    status, body, _ = json_request(
        others[1].url, "POST", f"/api/streams/{stream_id}/cancel", headers=ALICE
    )
    assert (status, body) == (200, {"stream_id": stream_id, "cancelled": True})
    whole = data_frames(first.read_all())
    assert whole[-1].data is not None and whole[-1].data["code"] == "cancelled"
    assert [f.id for f in whole] == list(range(1, len(whole) + 1))
    for after, reader in readers:
        got = data_frames(reader.read_all())
        # exactly the missing events, the same ones, nothing repeated or lost
        assert [(f.id, f.data) for f in got] == [(f.id, f.data) for f in whole[after:]]

    # -- a session whose answer is being written elsewhere: 409 on every instance ----------
    writing = start_stream(producer.url, "Tell me a long story", session_id="s_busy")
    tokens_used += 1
    busy_id = writing.headers["X-Stream-Id"]
    writing.until(lambda f: f.event == "chunk")
    for target in [*(s.url for s in servers), url]:
        refused = start_stream(target, "and then?", session_id="s_busy")
        refused.body()
        assert refused.status == 409 and refused.headers["X-Stream-Id"] == busy_id
        _, session, _ = json_request(target, "GET", "/api/sessions/alice/s_busy", headers=ALICE)
        assert session is not None and session["active_turn"]["stream_id"] == busy_id

    # -- the per-user cap (3) reached across the instances ---------------------------------
    held = [start_stream(s.url, "Tell me a long story") for s in others]
    tokens_used += len(held)
    for stream in held:
        stream.until(lambda f: f.event == "chunk")
    over = data_frames(start_stream(url, "one more").read_all())
    assert over[-1].data is not None and over[-1].data["code"] == "too_many_streams"
    for stream in held:
        json_request(
            url, "POST", f"/api/streams/{stream.headers['X-Stream-Id']}/cancel", headers=ALICE
        )
        stream.read_all()

    # -- a rate limit exhausted over all three (the client address's bucket is shared) -----
    allowed = 0
    for turn in range(BURST):
        target = servers[turn % 3].url
        stream = start_stream(target, "hi", user="bob", token="tok-bob")
        frame = stream.until(lambda f: f.event in ("error", "chunk"))
        if frame.event == "error":
            assert frame.data is not None and frame.data["code"] == "rate_limited"
            stream.read_all()
            break
        allowed += 1
        json_request(
            target, "POST", f"/api/streams/{stream.headers['X-Stream-Id']}/cancel", headers=BOB
        )
        stream.read_all()
    assert allowed == BURST - tokens_used and allowed >= 3  # every instance took some
    again = data_frames(start_stream(url, "hi", user="bob", token="tok-bob").read_all())
    assert again[-1].data is not None and again[-1].data["code"] == "rate_limited"

    # -- kill -9 the instance writing s_busy: readers elsewhere end, the partial is kept ---
    followers = [resume(s.url, busy_id, 0) for s in others]
    for follower in followers:
        follower.until(lambda f: f.event == "chunk")
    producer.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    writing.close()
    ends = []
    for follower in followers:
        frames = data_frames(follower.read_all())
        assert time.monotonic() - killed < 20
        assert [f.id for f in frames] == list(range(1, len(frames) + 1))
        last = frames[-1].data
        assert last is not None and last["code"] == "internal" and last["retryable"] is True
        ends.append(
            (frames[-1].id, "".join(f.data["content"] for f in frames if f.event == "chunk"))
        )  # type: ignore[index]
    assert ends[0] == ends[1]  # the same terminal id and partial on both
    # Polled: the instance that finds the lost turn saves the partial answer as it ends the
    # readers' streams, not before them (a loaded run read the session before the save).
    deadline = time.monotonic() + 30
    while True:
        _, session, _ = json_request(url, "GET", "/api/sessions/alice/s_busy", headers=ALICE)
        assert session is not None
        if len(session["messages"]) > 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert session["active_turn"] is None
    assert [(m["role"], m["status"]) for m in session["messages"]] == [
        ("user", "complete"),
        ("assistant", "incomplete"),
    ]
    assert session["messages"][1]["content"] == ends[0][1]
    # The dead instance's stream slot is free again (slots are leases, not counters).
    redis = redis_server.client()
    while redis.zcard("sluice:slots:alice"):
        assert time.monotonic() - killed < 25, "the dead instance's slot was not freed"
        time.sleep(0.1)
