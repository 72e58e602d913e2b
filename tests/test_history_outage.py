"""PostgreSQL down, slow, or not there yet: clear 503s and /readyz naming it, never a hang or
a traceback, and the server recovers by itself. Each test runs its own PostgreSQL, which it
stops and starts for real."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tests.conftest import StartServer
from tests.support.postgres import PostgresServer, running_postgres
from tests.support.server import RunningServer
from tests.support.sse import bearer, json_request, request, start_stream

ALICE = bearer("tok-alice")


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


def wait_ready(server: RunningServer, ready: bool, timeout: float = 30.0) -> dict[str, Any]:
    """Poll /readyz until it says ``ready`` (or not); its body."""
    deadline = time.monotonic() + timeout
    while True:
        status, body, _ = json_request(server.url, "GET", "/readyz")
        if (status == 200) == ready:
            assert body is not None
            return body
        assert time.monotonic() < deadline, f"/readyz still {status} {body}"
        time.sleep(0.1)


def assert_unavailable(status: int, body: dict[str, Any] | None, headers: Any) -> None:
    assert status == 503, (status, body)
    assert body is not None and body["error"]["code"] == "unavailable"
    assert body["error"]["message"] and body["error"]["retry_after"] >= 1
    assert int(headers["Retry-After"]) >= 1


def request_text(server: RunningServer, path: str) -> tuple[int, str, Any]:
    response = request(server.url, "GET", path)
    return response.status, response.body().decode(), response.headers


def new_turn(server: RunningServer, session_id: str | None = None) -> Any:
    body = {"session_id": session_id} if session_id else {}
    return start_stream(server.url, "Find me a restaurant in Tokyo", **body)


def test_database_down_then_back(start_server: StartServer, own_postgres: PostgresServer) -> None:
    server = start_server(
        {"DATABASE_URL": own_postgres.url(), "SLUICE_STORE__DATABASE_TIMEOUT_SECONDS": "2"}
    )
    frames = new_turn(server).read_all()
    session_id = frames[-1].data["session_id"] if frames[-1].data else None
    assert frames[-1].event == "complete" and session_id

    own_postgres.stop()
    body = wait_ready(server, ready=False)
    assert any("PostgreSQL" in reason and "unreachable" in reason for reason in body["reasons"])
    # Anyone may read /readyz: it names the store, never its address (the log does).
    assert not any(str(own_postgres.port) in reason for reason in body["reasons"]), body
    server.wait_for_log("database_unreachable")

    started = time.monotonic()
    response = new_turn(server, session_id)
    raw = response.body()
    assert response.headers["Content-Type"].startswith("application/json")
    assert_unavailable(response.status, json.loads(raw), response.headers)
    assert_unavailable(*json_request(server.url, "GET", "/api/sessions/alice", headers=ALICE))
    assert_unavailable(
        *json_request(server.url, "GET", f"/api/sessions/alice/{session_id}", headers=ALICE)
    )
    assert time.monotonic() - started < 10  # answered, not hung

    own_postgres.start()
    wait_ready(server, ready=True)
    server.wait_for_log("database_reachable")
    frames = new_turn(server, session_id).read_all()
    assert frames[-1].event == "complete"
    status, detail, _ = json_request(
        server.url, "GET", f"/api/sessions/alice/{session_id}", headers=ALICE
    )
    assert status == 200 and detail is not None
    assert [m["status"] for m in detail["messages"]] == ["complete"] * 4

    output = server.output()
    assert "Traceback" not in output
    assert "store_unavailable" in output  # one line per refused request, naming it
    _, metrics, _ = request_text(server, "/metrics")
    assert 'sluice_store_unavailable_total{store="sessions"} 3.0' in metrics


def test_server_starts_while_the_database_is_down(
    start_server: StartServer, own_postgres: PostgresServer
) -> None:
    """A platform may start the app before its database: it starts, reports 503, and
    creates the schema once the database answers."""
    own_postgres.stop()
    server = start_server(
        {"DATABASE_URL": own_postgres.url(), "SLUICE_STORE__DATABASE_TIMEOUT_SECONDS": "2"}
    )
    server.wait_for_log("database_unavailable")
    body = wait_ready(server, ready=False)
    assert any("PostgreSQL" in reason for reason in body["reasons"])
    response = new_turn(server)
    assert response.status == 503
    response.body()

    own_postgres.start()
    wait_ready(server, ready=True)
    frames = new_turn(server).read_all()
    assert frames[-1].event == "complete"
    assert "Traceback" not in server.output()


def test_a_slow_database_gives_errors_in_bounded_time(
    start_server: StartServer, own_postgres: PostgresServer
) -> None:
    """Tables locked by someone else: every statement waits, and the store's timeout turns
    each wait into a clear error instead of a hang; then it all works again."""
    server = start_server(
        {"DATABASE_URL": own_postgres.url(), "SLUICE_STORE__DATABASE_TIMEOUT_SECONDS": "1"}
    )
    first = new_turn(server).read_all()
    assert first[-1].event == "complete"

    async def hold_locks_while(check: Any) -> None:
        connection = await asyncpg.connect(own_postgres.url())
        try:
            transaction = connection.transaction()
            await transaction.start()
            await connection.execute("LOCK TABLE sessions, messages IN ACCESS EXCLUSIVE MODE")
            await asyncio.to_thread(check)
            await transaction.rollback()
        finally:
            await connection.close()

    def check() -> None:
        started = time.monotonic()
        # Admitted (the readiness check touches no table), then the session stage's first
        # statement times out: the stream ends with a retryable error, no model asked.
        frames = new_turn(server).read_all()
        assert frames[-1].event == "error" and frames[-1].data is not None
        assert frames[-1].data["retryable"] is True
        assert not [f for f in frames if f.event == "chunk"]
        status, body, headers = json_request(
            server.url, "GET", "/api/sessions/alice", headers=ALICE
        )
        assert_unavailable(status, body, headers)
        assert time.monotonic() - started < 15

    asyncio.run(hold_locks_while(check))
    wait_ready(server, ready=True)
    assert new_turn(server).read_all()[-1].event == "complete"
    assert "Traceback" not in server.output()


def test_a_wrong_database_url_is_named_not_a_crash(
    start_server: StartServer, postgres: PostgresServer
) -> None:
    """A URL naming a database that does not exist (a typo, a database not created yet):
    the server starts, /readyz says what is wrong, turns get 503, no traceback."""
    server = start_server({"DATABASE_URL": postgres.url("no_such_database")})
    body = wait_ready(server, ready=False)
    assert any('"no_such_database" does not exist' in reason for reason in body["reasons"])
    response = new_turn(server)
    assert response.status == 503
    response.body()
    assert "Traceback" not in server.output()
