"""Tool calls waiting for approval, with several real ``python -m server`` processes on one
real ``redis-server``: decided through another instance, followed across a restart of the
reader's instance, ended by a stop sent elsewhere or by the producer's death (kill -9), and
the store failing as approval is asked.

Each turn's calls come from a fake OpenAI upstream (streamed ``delta.tool_calls``); the
tools from a test package installed as an operator would (``tests/support/tool_package.py``).
The rule checked throughout: every ``tool_call`` has exactly one ``tool_result``, after it
and before the stream's one terminal event, on every instance.
"""

from __future__ import annotations

import contextlib
import http.client
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes, openai_env
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer
from tests.support.sse import EventStream, Frame, bearer, json_request, request, start_stream
from tests.support.tool_package import ENABLED_TOOLS, write_tool_package

ALICE = bearer("tok-alice")
GUARDED = Reply(text=[], tool_calls=[("c1", "guarded_echo", '{"text": "one"}')])


@dataclass
class Cluster:
    """Instances sharing one Redis (and one history folder, as PostgreSQL would be)."""

    start_server: StartServer
    env: dict[str, str]
    data_dir: Path

    def start(self) -> RunningServer:
        return self.start_server(self.env, data_dir=self.data_dir)


@pytest.fixture
def cluster(
    start_server: StartServer, redis_server: RedisServer, fakes: ThreadedFakes, tmp_path: Path
) -> Cluster:
    shared = tmp_path / "shared-data"
    shared.mkdir()
    env = {
        "REDIS_URL": redis_server.url,
        "PYTHONPATH": write_tool_package(tmp_path / "site"),
        "SLUICE_TOOLS__ENABLED": ENABLED_TOOLS,
        "SLUICE_STREAM__HEARTBEAT_SECONDS": "1",
        "SLUICE_STORE__REDIS_LEASE_SECONDS": "4",  # a killed producer is found sooner
        **openai_env(fakes),
    }
    return Cluster(start_server, env, shared)


def data(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.data is not None]


def of(frames: list[Frame], kind: str) -> list[dict[str, Any]]:
    return [f.data for f in frames if f.data is not None and f.event == kind]


def check_pairs(frames: list[Frame]) -> None:
    """Ids 1..n with no gap; every tool_call has exactly one tool_result, after it and
    before the one terminal event, which is last."""
    frames = data(frames)
    assert [f.id for f in frames] == list(range(1, len(frames) + 1))
    kinds = [f.event for f in frames]
    calls = [d["call_id"] for d in of(frames, "tool_call")]
    results = [d["call_id"] for d in of(frames, "tool_result")]
    assert sorted(calls) == sorted(results) and len(set(calls)) == len(calls), kinds
    for call_id in calls:
        at = [i for i, f in enumerate(frames) if f.data and f.data.get("call_id") == call_id]
        assert frames[at[0]].event == "tool_call" and frames[at[1]].event == "tool_result"
    assert kinds[-1] in ("complete", "error")
    assert sum(kind in ("complete", "error") for kind in kinds) == 1


def resume(server: RunningServer, stream_id: str, after: int = 0) -> EventStream:
    return request(
        server.url,
        "GET",
        f"/api/streams/{stream_id}",
        headers={**ALICE, "Last-Event-ID": str(after)},
    )


def until_call(stream: EventStream) -> Frame:
    return stream.until(lambda f: f.event == "tool_call")


def decide(server: RunningServer, stream_id: str, call_id: str, approve: bool) -> int:
    status, _, _ = json_request(
        server.url,
        "POST",
        f"/api/streams/{stream_id}/tools/{call_id}",
        body={"approve": approve},
        headers=ALICE,
    )
    return status


def same_events(one: list[Frame], other: list[Frame]) -> bool:
    return [(f.id, f.data) for f in data(one)] == [(f.id, f.data) for f in data(other)]


def test_approval_posted_through_another_instance_runs_the_tool_and_a_second_is_409(
    cluster: Cluster, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(GUARDED, Reply(text=["The tool ", "said so."]))
    producer, other = cluster.start(), cluster.start()
    stream = start_stream(producer.url, "Guarded")
    stream_id = stream.headers["X-Stream-Id"]
    call = until_call(stream)
    assert call.data is not None and call.data["approval"] == "required"
    follower = resume(other, stream_id)
    assert until_call(follower).id == call.id  # the pending call, read from Redis
    assert decide(other, stream_id, "c1", True) == 204
    assert decide(producer, stream_id, "c1", False) == 409  # decided already, elsewhere
    assert decide(other, stream_id, "c1", True) == 409
    mine, theirs = stream.read_all(), follower.read_all()
    check_pairs(mine)
    assert same_events(mine, theirs)
    [result] = of(mine, "tool_result")
    assert result["ok"] is True and result["content"] == "guarded: one"
    end = data(mine)[-1].data
    assert end is not None and end["type"] == "complete" and end["tool_calls"] == 1
    assert end["message"] == "The tool said so."
    assert decide(producer, stream_id, "c1", True) == 409  # and after the turn ended


def test_the_wait_survives_a_restart_of_the_readers_instance(
    cluster: Cluster, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(GUARDED, Reply(text=["Approved in the end."]))
    producer, reader_side = cluster.start(), cluster.start()
    stream = start_stream(producer.url, "Guarded")
    stream_id = stream.headers["X-Stream-Id"]
    call = until_call(stream)
    assert call.id is not None
    # A reader on the other instance, resumed from just before the call: it sees it pending.
    follower = resume(reader_side, stream_id, call.id - 1)
    assert until_call(follower).data == call.data
    assert reader_side.stop(signal.SIGTERM) == 0
    # Its instance went away: the response ended, or was cut, as a client may see either.
    with contextlib.suppress(http.client.IncompleteRead, ConnectionError):
        follower.read_all()
    seen = max(f.id for f in data(follower.frames) if f.id is not None)
    assert seen >= call.id
    restarted = cluster.start()
    # The client reconnects with the id it last had; a reloaded page reads from the start.
    reconnected = resume(restarted, stream_id, seen)
    reloaded = resume(restarted, stream_id)
    assert until_call(reloaded).data == call.data
    assert decide(restarted, stream_id, "c1", True) == 204
    whole = stream.read_all()
    check_pairs(whole)
    assert same_events(whole, reloaded.read_all())
    tail = data(reconnected.read_all())
    assert [f.id for f in tail] == list(range(seen + 1, len(data(whole)) + 1))
    [result] = of(whole, "tool_result")
    assert result["ok"] is True and result["content"] == "guarded: one"
    assert data(whole)[-1].event == "complete"


def test_kill_9_the_producer_while_a_call_waits(cluster: Cluster, fakes: ThreadedFakes) -> None:
    """Readers elsewhere get the waiting call's ``cancelled`` result, then the terminal
    ``internal``, within 20 s; a decision is then too late; the user's one slot is free."""
    fakes.openai.script(GUARDED, Reply(text=["Next answer."]))
    cluster.env["SLUICE_LIMITS__MAX_STREAMS_PER_USER"] = "1"
    producer, other = cluster.start(), cluster.start()
    stream = start_stream(producer.url, "Guarded", session_id="s_dies")
    stream_id = stream.headers["X-Stream-Id"]
    call = until_call(stream)
    follower = resume(other, stream_id)
    assert until_call(follower).data == call.data
    producer.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    stream.close()
    frames = follower.read_all()
    assert time.monotonic() - killed < 20
    check_pairs(frames)
    [result] = of(frames, "tool_result")
    assert result["call_id"] == "c1" and result["error"] == "cancelled" and not result["ok"]
    end = data(frames)[-1].data
    assert end is not None and end["type"] == "error"
    assert end["code"] == "internal" and end["retryable"] is True
    assert decide(other, stream_id, "c1", True) == 409
    replay = resume(other, stream_id).read_all()
    assert same_events(frames, replay)  # later resumes replay the same ending
    again = data(start_stream(other.url, "hi", session_id="s_next").read_all())
    assert again[-1].event == "complete"
    assert time.monotonic() - killed < 25


def test_a_stop_through_another_instance_ends_the_wait_within_a_second(
    cluster: Cluster, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(GUARDED)
    producer, other = cluster.start(), cluster.start()
    stream = start_stream(producer.url, "Guarded")
    stream_id = stream.headers["X-Stream-Id"]
    until_call(stream)
    follower = resume(other, stream_id)
    until_call(follower)
    stopped = time.monotonic()
    status, body, _ = json_request(
        other.url, "POST", f"/api/streams/{stream_id}/cancel", headers=ALICE
    )
    assert status == 200 and body == {"stream_id": stream_id, "cancelled": True}
    theirs = follower.read_all()
    took = time.monotonic() - stopped
    mine = stream.read_all()
    assert took < 1.0, took
    check_pairs(theirs)
    assert same_events(mine, theirs)
    kinds = [f.event for f in data(theirs)]
    assert kinds[-2:] == ["tool_result", "error"]
    [result] = of(theirs, "tool_result")
    assert result["error"] == "cancelled"
    assert data(theirs)[-1].data["code"] == "cancelled"  # type: ignore[index]
    assert decide(producer, stream_id, "c1", True) == 409


def test_a_stop_landing_outside_the_llm_stage_still_answers_the_announced_call(
    cluster: Cluster, fakes: ThreadedFakes
) -> None:
    """Regression: a stop that reached the turn while it was between a ``tool_call`` event
    and the call's run, in another stage (here a wrapper that takes its time after each
    call, as one saving to a slow store does), ended the stream with ``cancelled`` and no
    ``tool_result`` for the call: the llm stage, which answers the calls it was stopped in,
    was only closed. The producer now closes every open call before the terminal event."""
    fakes.openai.script(Reply(text=[], tool_calls=[("c1", "echo", '{"text": "x"}')]))
    cluster.env["SLUICE_PIPELINE__STAGES"] = (
        "rate_limit,session,intent,context,hold_after_tool_call,llm"
    )
    producer, other = cluster.start(), cluster.start()
    stream = start_stream(producer.url, "Echo")
    stream_id = stream.headers["X-Stream-Id"]
    until_call(stream)
    follower = resume(other, stream_id)
    until_call(follower)
    status, _, _ = json_request(
        other.url, "POST", f"/api/streams/{stream_id}/cancel", headers=ALICE
    )
    assert status == 200
    theirs, mine = follower.read_all(), stream.read_all()
    check_pairs(theirs)
    assert same_events(mine, theirs)
    [result] = of(theirs, "tool_result")
    assert result["call_id"] == "c1" and result["error"] == "cancelled"
    assert data(theirs)[-1].data["code"] == "cancelled"  # type: ignore[index]


def test_redis_down_as_approval_is_asked_announces_no_call_it_cannot_settle(
    cluster: Cluster, fakes: ThreadedFakes, redis_server: RedisServer
) -> None:
    """Regression: with the store down when a round's approval was asked, the turn ended
    with ``internal`` after a call of that round had been announced, and that call never got
    a result. Every approval of a round is now asked before any call is announced: the turn
    ends with the retryable ``internal`` and no call left open."""
    # The upstream pauses after its first piece of text, while Redis is stopped.
    fakes.openai.script(
        Reply(
            text=["Checking. ", "Now."],
            interval=1.0,
            tool_calls=[("c0", "echo", '{"text": "x"}'), ("c1", "guarded_echo", '{"text": "y"}')],
        )
    )
    (producer,) = (cluster.start(),)
    stream = start_stream(producer.url, "Guarded")
    stream.until(lambda f: f.event == "chunk")
    redis_server.stop()
    frames = stream.read_all()
    check_pairs(frames)
    assert of(frames, "tool_call") == []
    end = data(frames)[-1].data
    assert end is not None and end["type"] == "error"
    assert end["code"] == "internal" and end["retryable"] is True
    assert len(fakes.openai.requests) == 1  # no round went on without its approvals
    assert "Traceback" not in producer.output()
