"""Budgets across several real instances on one real ``redis-server``, history (and the
usage ledger) in a real PostgreSQL: reserve then settle, so two instances cannot both spend
the last of a budget, and what was spent survives a restart of the instances and of Redis.
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

from tests.conftest import StartServer
from tests.support.redis_server import RedisServer
from tests.support.sse import bearer, events, json_request, request, start_stream

OPERATOR = bearer("op-secret")


def test_two_instances_cannot_both_spend_the_last_of_a_budget_and_restarts_keep_it(
    start_server: StartServer, redis_server: RedisServer, database_url: str, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": database_url,
        "SLUICE_ADMIN_TOKENS": "op-secret:ops",
        # Any answer crosses a budget of one token: only the first turn admitted may run.
        "SLUICE_BUDGETS__TOKENS_PER_USER": "1",
        "SLUICE_LIMITS__MAX_STREAMS_PER_USER": "10",
        # Slow enough that every turn below starts while the first is still streaming.
        "SLUICE_LLM__DEMO__WORDS_PER_SECOND": "8",
    }
    first, second = start_server(env), start_server(env)
    streams = [
        start_stream(server.url, f"Turn {n}") for n in range(6) for server in (first, second)
    ][:6]
    endings = [events(stream.read_all())[-1] for stream in streams]
    kinds = sorted(e["type"] if e["type"] == "complete" else e["code"] for e in endings)
    assert kinds == ["budget_exhausted"] * 5 + ["complete"]

    status, body, _ = json_request(first.url, "GET", "/api/usage", headers=OPERATOR)
    assert status == 200 and body is not None
    (alice,) = body["users"]
    assert alice["user_id"] == "alice" and alice["totals"]["answers"] == 1
    spent = alice["totals"]["input_tokens"] + alice["totals"]["output_tokens"]
    for server in (first, second):  # both instances read one counter
        status, body, _ = json_request(
            server.url, "GET", "/api/usage/alice", headers=bearer("tok-alice")
        )
        assert status == 200 and body is not None
        assert body["budget"]["used_tokens"] == spent

    # Every instance restarted, and Redis emptied: the counter is rebuilt from the ledger.
    first.stop()
    second.stop()
    redis_server.client().flushall()
    third = start_server(env)
    assert events(start_stream(third.url, "Again").read_all())[-1]["code"] == "budget_exhausted"
    status, body, _ = json_request(
        third.url, "GET", "/api/usage/alice", headers=bearer("tok-alice")
    )
    assert status == 200 and body is not None and body["budget"]["used_tokens"] == spent
    bob = events(start_stream(third.url, "Hi", user="bob", token="tok-bob").read_all())
    assert bob[-1]["type"] == "complete"


def test_an_answer_whose_instance_dies_mid_stream_is_recorded_estimated_by_another(
    start_server: StartServer, redis_server: RedisServer, database_url: str
) -> None:
    env = {
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": database_url,
        "SLUICE_ADMIN_TOKENS": "op-secret:ops",
        "SLUICE_BUDGETS__TOKENS_PER_USER": "1000000",
        "SLUICE_LLM__DEMO__WORDS_PER_SECOND": "8",
        "SLUICE_STORE__REDIS_LEASE_SECONDS": "4",  # the killed producer is found sooner
    }
    producer, other = start_server(env), start_server(env)
    stream = start_stream(producer.url, "Tell me a long story")
    stream_id = stream.headers["X-Stream-Id"]
    stream.until(lambda f: f.event == "chunk")
    producer.process.send_signal(signal.SIGKILL)
    stream.close()
    # The other instance finds the lease lapsed and ends the stream for its readers...
    ending = events(
        request(
            other.url, "GET", f"/api/streams/{stream_id}", headers=bearer("tok-alice")
        ).read_all()
    )
    assert ending[-1]["code"] == "internal"
    sent = "".join(e["content"] for e in ending if e["type"] == "chunk")
    # ... and records the answer, estimated from what its client was sent.
    deadline = time.monotonic() + 30
    while True:
        status, body, _ = json_request(other.url, "GET", "/api/usage/alice", headers=OPERATOR)
        assert status == 200 and body is not None
        totals = body["totals"]
        settled = body["budget"]["used_tokens"] == totals["input_tokens"] + totals["output_tokens"]
        if (totals["answers"] and settled) or time.monotonic() > deadline:
            break
        # Polled: the entry is written just after the terminal event, and the budget is
        # settled just after the entry (a loaded machine once answered between the two).
        time.sleep(0.2)
    assert totals["answers"] == 1 and totals["estimated_answers"] == 1
    assert totals["output_tokens"] == math.ceil(len(sent) / 4)
    assert body["by_model"][0]["provider"] is None  # who was writing died with the process
    assert body["budget"]["used_tokens"] == totals["input_tokens"] + totals["output_tokens"]
