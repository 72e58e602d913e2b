"""The usage ledger and budgets through a real server (SQLite history, the fake OpenAI).

What an operator relies on: every answer is in the ledger with the provider's figures and
their cost, or estimated and marked so when it was stopped; a model without a price costs
null; a user over budget is refused before any model is asked, on every API, and still
after a restart; a JWT's ``budget_group`` picks the group's budget; operators read anyone.
"""

from __future__ import annotations

import csv
import io
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes, openai_env
from tests.support.server import RunningServer, server_command
from tests.support.sse import bearer, events, json_request, request, start_stream
from tests.test_openapi import check

ALICE = bearer("tok-alice")
OPERATOR = bearer("op-secret")
JWT_SECRET = "usage-jwt-secret-0123456789abcdefgh"

PRICED = {
    "SLUICE_PRICING__GPT-4O-MINI__INPUT_PER_MILLION": "1.0",
    "SLUICE_PRICING__GPT-4O-MINI__CACHED_INPUT_PER_MILLION": "0.5",
    "SLUICE_PRICING__GPT-4O-MINI__OUTPUT_PER_MILLION": "2.0",
}


def usage(server: RunningServer, user: str = "alice", **headers: str) -> dict[str, Any]:
    status, body, _ = json_request(
        server.url, "GET", f"/api/usage/{user}", headers=headers or ALICE
    )
    assert status == 200, body
    assert body is not None
    return body


def metric(server: RunningServer, name: str, **labels: str) -> float:
    text = request(server.url, "GET", "/metrics").body().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def seconds_to_midnight() -> float:
    now = datetime.now(UTC)
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


def test_an_answer_is_recorded_with_the_providers_figures_and_its_cost(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(text=["Hel", "lo"], cached_tokens=4)
    server = start_server(openai_env(fakes, **PRICED))
    frames = events(start_stream(server.url, "Hi there").read_all())
    assert frames[-1]["type"] == "complete"
    report = usage(server)
    # The fake counts 11 prompt tokens (4 of them cached) and one output token per piece.
    cost = ((11 - 4) * 1.0 + 4 * 0.5 + 2 * 2.0) / 1_000_000
    assert report["totals"] == {
        "input_tokens": 11,
        "output_tokens": 2,
        "cached_tokens": 4,
        "reasoning_tokens": 0,
        "cost_usd": round(cost, 6),
        "answers": 1,
        "estimated_answers": 0,
        "unpriced_answers": 0,
    }
    (row,) = report["by_model"]
    assert (row["provider"], row["model"], row["answers"]) == ("openai", "gpt-4o-mini", 1)
    assert report["budget"] is None  # no [budgets] limit configured
    assert metric(server, "sluice_tokens_total", provider="openai", kind="input") == 11
    assert metric(server, "sluice_tokens_total", provider="openai", kind="cached") == 4
    assert math.isclose(metric(server, "sluice_cost_usd_total", provider="openai"), cost)
    # A window that ends before the answer holds nothing.
    status, body, _ = json_request(
        server.url, "GET", "/api/usage/alice?since=0&until=1", headers=ALICE
    )
    assert status == 200 and body is not None and body["totals"]["answers"] == 0
    # An OpenAI API client that keeps its own conversation (nothing stored) is counted too.
    status, body, _ = json_request(
        server.url,
        "POST",
        "/v1/chat/completions",
        body={"model": "sluice", "messages": [{"role": "user", "content": "Hi again"}]},
        headers=ALICE,
    )
    assert status == 200, body
    assert usage(server)["totals"]["answers"] == 2


def test_a_stopped_answer_is_estimated_and_a_model_without_a_price_costs_null(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(text=["Once upon ", "a time"], hang_at=1)
    server = start_server(openai_env(fakes))
    stream = start_stream(server.url, "Tell me a story")
    stream.until(lambda f: f.event == "chunk")
    stream_id = stream.headers["X-Stream-Id"]
    status, _, _ = json_request(
        server.url, "POST", f"/api/streams/{stream_id}/cancel", headers=ALICE
    )
    assert status == 200
    assert events(stream.read_all())[-1]["code"] == "cancelled"
    report = usage(server)
    totals = report["totals"]
    assert totals["answers"] == 1 and totals["estimated_answers"] == 1
    # Estimated from characters: what the user was sent, four to a token.
    assert totals["output_tokens"] == math.ceil(len("Once upon ") / 4)
    assert totals["input_tokens"] > 0
    assert totals["cost_usd"] is None and totals["unpriced_answers"] == 1
    assert report["by_model"][0]["cost_usd"] is None
    assert metric(server, "sluice_usage_answers_total", estimated="true", priced="false") == 1


def test_a_turn_over_budget_is_refused_before_the_model_is_asked_even_after_a_restart(
    start_server: StartServer, fakes: ThreadedFakes, tmp_path_factory: Any
) -> None:
    data_dir = tmp_path_factory.mktemp("budget")
    env = openai_env(
        fakes,
        SLUICE_BUDGETS__PERIOD="day",
        SLUICE_BUDGETS__TOKENS_PER_USER="10",
    )
    server = start_server(env, data_dir=data_dir)
    # Under the line when it starts: it runs, crosses the line (11 + 3 tokens) and is whole.
    first = events(start_stream(server.url, "One").read_all())
    assert first[-1]["type"] == "complete" and first[-1]["message"] == "Hello, world!"
    asked = len(fakes.openai.requests)

    refused = events(start_stream(server.url, "Two").read_all())[-1]
    assert refused["type"] == "error" and refused["code"] == "budget_exhausted"
    assert refused["retryable"] is False
    assert abs(refused["retry_after"] - seconds_to_midnight()) < 60
    assert "comes back at" in refused["message"]

    status, body, headers = json_request(
        server.url, "POST", "/api/conversation/alice", body={"message": "Three"}, headers=ALICE
    )
    assert status == 429 and body is not None
    assert body["error"]["code"] == "budget_exhausted"
    assert abs(int(headers["Retry-After"]) - seconds_to_midnight()) < 60

    status, body, headers = json_request(
        server.url,
        "POST",
        "/v1/chat/completions",
        body={"model": "sluice", "messages": [{"role": "user", "content": "Four"}]},
        headers=ALICE,
    )
    assert status == 429 and body is not None
    assert body["error"]["code"] == "insufficient_quota"
    assert body["error"]["type"] == "insufficient_quota"
    assert int(headers["Retry-After"]) > 0
    status, body, _ = json_request(
        server.url,
        "POST",
        "/v1/chat/completions",
        body={"model": "sluice", "stream": True, "messages": [{"role": "user", "content": "5"}]},
        headers=ALICE,
    )
    assert status == 429 and body is not None  # refused before the stream began
    assert body["error"]["code"] == "insufficient_quota"
    assert len(fakes.openai.requests) == asked  # no model was asked for any of them

    budget = usage(server)["budget"]
    assert budget["period"] == "day" and budget["limit_tokens"] == 10
    assert budget["used_tokens"] == 14 and budget["limit_usd"] is None
    assert abs(budget["resets_at"] - (time.time() + seconds_to_midnight())) < 60
    assert metric(server, "sluice_budget_refusals_total", group="default") == 4

    # A restart keeps what was spent: the counters are rebuilt from the ledger.
    server.stop()
    again = start_server(env, data_dir=data_dir)
    refused = events(start_stream(again.url, "Five").read_all())[-1]
    assert refused["code"] == "budget_exhausted"
    assert usage(again)["budget"]["used_tokens"] == 14
    assert len(fakes.openai.requests) == asked
    # Another user has a budget of their own.
    bob = events(start_stream(again.url, "Hi", user="bob", token="tok-bob").read_all())
    assert bob[-1]["type"] == "complete"


def test_a_jwt_claim_chooses_the_group_and_operators_read_everyone(
    start_server: StartServer,
) -> None:
    server = start_server(
        {
            "SLUICE_JWT_SECRET": JWT_SECRET,
            "SLUICE_ADMIN_TOKENS": "op-secret:ops",
            "SLUICE_BUDGETS__TOKENS_PER_USER": "1",
            "SLUICE_BUDGETS__GROUPS__STAFF__TOKENS_PER_USER": "1000000",
        }
    )
    expires = int(time.time()) + 600
    staff = bearer(
        jwt.encode({"sub": "carol", "budget_group": "staff", "exp": expires}, JWT_SECRET)
    )
    plain = bearer(jwt.encode({"sub": "dave", "exp": expires}, JWT_SECRET))
    for _ in range(2):
        frames = events(
            start_stream(
                server.url, "Hi", user="carol", token=staff["Authorization"][7:]
            ).read_all()
        )
        assert frames[-1]["type"] == "complete"
    outcomes = [
        events(
            start_stream(server.url, "Hi", user="dave", token=plain["Authorization"][7:]).read_all()
        )[-1]
        for _ in range(2)
    ]
    assert outcomes[0]["type"] == "complete"
    assert outcomes[1]["code"] == "budget_exhausted"
    carol = usage(server, "carol", **staff)
    assert carol["budget"]["group"] == "staff" and carol["budget"]["limit_tokens"] == 1000000
    assert carol["totals"]["answers"] == 2
    check("get", "/api/usage/{user_id}", 200, carol, "application/json")

    # Operators: anyone's usage, and the list; nobody else.
    assert usage(server, "dave", **OPERATOR)["totals"]["answers"] == 1
    status, body, _ = json_request(server.url, "GET", "/api/usage", headers=OPERATOR)
    assert status == 200 and body is not None
    assert {u["user_id"]: u["totals"]["answers"] for u in body["users"]} == {"carol": 2, "dave": 1}
    check("get", "/api/usage", 200, body, "application/json")
    status, body, _ = json_request(server.url, "GET", "/api/usage", headers=plain)
    assert status == 403
    check("get", "/api/usage", 403, body, "application/json")
    status, _, _ = json_request(server.url, "GET", "/api/usage/carol", headers=plain)
    assert status == 403
    status, _, _ = json_request(server.url, "GET", "/api/usage?since=yesterday", headers=OPERATOR)
    assert status == 400
    # An operator's token opens usage and nothing else.
    status, _, _ = json_request(server.url, "GET", "/api/sessions/ops", headers=OPERATOR)
    assert status == 401


def test_the_usage_command_and_the_ledger_moving_from_sqlite_to_postgres(
    start_server: StartServer, database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "sqlite"
    data_dir.mkdir()
    server = start_server(data_dir=data_dir)
    for user, token in (("alice", "tok-alice"), ("bob", "tok-bob"), ("alice", "tok-alice")):
        frames = events(start_stream(server.url, "Hi", user=user, token=token).read_all())
        assert frames[-1]["type"] == "complete"
    server.stop()

    table = server_command(data_dir, "usage")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["user_id", "provider", "model", "answers"]
    assert [row.split()[:4] for row in rows] == [
        ["alice", "demo", "sluice-demo", "2"],
        ["bob", "demo", "sluice-demo", "1"],
    ]
    csv_out = server_command(data_dir, "usage", "--format", "csv", "--since", "2020-01-01")
    assert csv_out.returncode == 0, csv_out.stderr
    sqlite_rows = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    assert [(r["user_id"], r["answers"], r["cost_usd"]) for r in sqlite_rows] == [
        ("alice", "2", ""),  # the demo has no price: no cost, not 0
        ("bob", "1", ""),
    ]
    nothing = server_command(data_dir, "usage", "--until", "2020-01-01", "--format", "csv")
    assert nothing.stdout.splitlines()[1:] == []

    # Export with the SQLite settings, import with DATABASE_URL: the ledger moves too.
    export_file = tmp_path / "history.jsonl"
    exported = server_command(data_dir, "export", "--output", str(export_file))
    assert exported.returncode == 0, exported.stderr
    assert "exported 3 usage entries" in exported.stderr
    pg = {"DATABASE_URL": database_url}
    for attempt in ("imported 3 usage entries (0 were there", "imported 0 usage entries (3 were"):
        imported = server_command(tmp_path, "import", "--replace", str(export_file), env=pg)
        assert imported.returncode == 0, imported.stderr
        assert attempt in imported.stderr
    moved = server_command(tmp_path, "usage", "--format", "csv", "--since", "2020-01-01", env=pg)
    assert moved.returncode == 0, moved.stderr
    assert list(csv.DictReader(io.StringIO(moved.stdout))) == sqlite_rows
