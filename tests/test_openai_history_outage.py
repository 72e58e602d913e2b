"""/v1 while PostgreSQL is down: a stored session (X-Session-Id) gets OpenAI's error object
with 503 ``unavailable`` and Retry-After, which the SDK raises as its own exception; a
conversation the client holds needs no store and is still answered."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.conftest import StartServer
from tests.support.postgres import PostgresServer, running_postgres
from tests.test_history_outage import wait_ready

USER = [{"role": "user", "content": "Find me a restaurant in Tokyo"}]


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


def test_history_down(start_server: StartServer, own_postgres: PostgresServer) -> None:
    server = start_server(
        {"DATABASE_URL": own_postgres.url(), "SLUICE_STORE__DATABASE_TIMEOUT_SECONDS": "2"}
    )
    with openai.OpenAI(base_url=server.url + "/v1", api_key="tok-alice", max_retries=0) as client:
        session = {"X-Session-Id": "s_outage"}
        client.chat.completions.create(model="sluice", messages=USER, extra_headers=session)
        own_postgres.stop()
        wait_ready(server, ready=False)
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as down:
                client.chat.completions.create(
                    model="sluice", messages=USER, extra_headers=session, stream=stream
                )
            assert down.value.status_code == 503 and down.value.code == "unavailable"
            assert int(down.value.response.headers["retry-after"]) >= 1
        held = client.chat.completions.create(model="sluice", messages=USER)
        assert "Tokyo" in (held.choices[0].message.content or "")
