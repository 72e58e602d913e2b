"""History through the real server, on SQLite and on a real PostgreSQL: answers keep their
facts, history outlives the machine, yesterday's SQLite file upgrades with no loss, and
``python -m server export`` / ``import`` move it from one to the other."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from server.stores.schema import head_revision
from server.stores.sqlite import sqlite_revision
from tests.conftest import StartServer
from tests.support.postgres import PostgresServer
from tests.support.server import ROOT, base_env, server_command
from tests.support.sse import bearer, json_request, start_stream

# Written by the SQLite store as it was before schema versions (commit f8ef8de), through its
# own calls: three users, four sessions (one empty), complete, incomplete and error answers,
# memory with nested values, Arabic, emoji, quotes and newlines.
V0 = ROOT / "tests" / "data" / "history-v0.sqlite"
TOKENS = {"alice": "tok-alice", "bob": "tok-bob", "carol": "tok-carol"}
API_TOKENS = ",".join(f"{token}:{user}" for user, token in TOKENS.items())


def ask(url: str, message: str, session_id: str | None = None) -> dict[str, Any]:
    body = {"session_id": session_id} if session_id else {}
    frames = start_stream(url, message, **body).read_all()
    assert frames[-1].event == "complete", frames[-1]
    data = frames[-1].data
    assert data is not None
    return data


def session(url: str, user: str, session_id: str) -> dict[str, Any]:
    status, data, _ = json_request(
        url, "GET", f"/api/sessions/{user}/{session_id}", headers=bearer(TOKENS[user])
    )
    assert status == 200, (status, data)
    assert data is not None
    return data


@pytest.fixture(params=["sqlite", "postgres"])
def history_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment that puts a server's history on one backend."""
    if request.param == "sqlite":
        return {}
    return {"DATABASE_URL": request.getfixturevalue("database_url")}


def test_answers_record_their_facts(start_server: StartServer, history_env: dict[str, str]) -> None:
    server = start_server(history_env)
    first = ask(server.url, "Find me a restaurant in Tokyo")
    ask(server.url, "What about sushi?", first["session_id"])
    messages = session(server.url, "alice", first["session_id"])["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2
    assert messages[0]["id"] < messages[1]["id"] < messages[2]["id"] < messages[3]["id"]
    for question, answer in (messages[0:2], messages[2:4]):
        assert "provider" not in question
        assert answer["reply_to"] == question["id"]
        assert answer["status"] == "complete"
        assert (answer["provider"], answer["model"], answer["mode"], answer["fallback"]) == (
            "demo",
            "sluice-demo",
            "stream",
            False,
        )
        # The demo counts words as output tokens and reports no input tokens.
        assert answer["usage"]["input_tokens"] is None
        assert answer["usage"]["output_tokens"] == len(answer["content"].split())
        assert 0 < answer["time_to_first_token_ms"] <= answer["duration_ms"] < 30_000


def test_history_outlives_the_machine_on_postgres(
    start_server: StartServer, database_url: str
) -> None:
    """Each start gets a new, empty data directory (a new dyno): with DATABASE_URL the
    conversation is still there, memory included."""
    first = start_server({"DATABASE_URL": database_url})
    started = ask(first.url, "Find me a restaurant in Tokyo")
    assert first.stop() == 0
    assert not list(first.data_dir.glob("*.sqlite3"))  # nothing was kept on the machine

    second = start_server({"DATABASE_URL": database_url})
    data = session(second.url, "alice", started["session_id"])
    assert [m["status"] for m in data["messages"]] == ["complete", "complete"]
    assert data["context"]["location"] == "Tokyo"
    again = ask(second.url, "What about sushi?", started["session_id"])
    assert again["session_id"] == started["session_id"]


def _v0_rows() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """What the file made by the store before schema versions holds, read with sqlite3."""
    with sqlite3.connect(V0) as db:
        sessions = db.execute(
            "SELECT user_id, session_id, title, memory, updated_at FROM sessions"
            " ORDER BY user_id, session_id"
        ).fetchall()
        messages = db.execute(
            "SELECT id, user_id, session_id, role, content, status, created_at FROM messages"
            " ORDER BY id"
        ).fetchall()
    return sessions, messages


def _as_served(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The same two tables, as the API serves them."""
    sessions: list[tuple[Any, ...]] = []
    messages: list[tuple[Any, ...]] = []
    for user, token in TOKENS.items():
        _, listed, _ = json_request(url, "GET", f"/api/sessions/{user}", headers=bearer(token))
        assert listed is not None
        for item in listed["sessions"]:
            detail = session(url, user, item["session_id"])
            sessions.append(
                (
                    user,
                    item["session_id"],
                    item["title"],
                    detail["context"],
                    item["updated_at"],
                )
            )
            messages += [
                (user, item["session_id"], m["role"], m["content"], m["status"], m["created_at"])
                for m in detail["messages"]
            ]
    return sorted(sessions), sorted(messages, key=lambda m: m[5])


def _v0_expected() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    sessions, messages = _v0_rows()
    return (
        sorted((u, s, t, json.loads(memory), updated) for u, s, t, memory, updated in sessions),
        [row[1:] for row in messages],
    )


def test_a_sqlite_history_from_before_versions_upgrades_with_no_loss(
    start_server: StartServer, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(V0, data_dir / "sessions.sqlite3")
    assert sqlite_revision(data_dir / "sessions.sqlite3") is None

    server = start_server({"SLUICE_API_TOKENS": API_TOKENS}, data_dir=data_dir)
    assert sqlite_revision(data_dir / "sessions.sqlite3") == head_revision()
    assert _as_served(server.url) == _v0_expected()
    # Old answers have no facts (null), and new ones get them alongside.
    trip = session(server.url, "alice", "trip")["messages"]
    assert trip[1]["provider"] is None and trip[1]["reply_to"] is None
    ask(server.url, "And ramen?", "trip")
    trip = session(server.url, "alice", "trip")["messages"]
    assert len(trip) == 6 and trip[5]["reply_to"] == trip[4]["id"] > trip[3]["id"]


def test_moving_a_sqlite_history_to_postgres_keeps_everything(
    start_server: StartServer, database_url: str, tmp_path: Path
) -> None:
    """The commands docs/deploy.md gives: export with the old settings, import with
    DATABASE_URL, and the server on PostgreSQL serves the same history."""
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(V0, old / "sessions.sqlite3")
    export_file = tmp_path / "history.jsonl"
    exported = server_command(old, "export", "--output", str(export_file))
    assert exported.returncode == 0, exported.stderr
    summary = "4 sessions of 3 users, 8 messages (6 complete, 1 error, 1 incomplete), 2 memories"
    assert f"exported {summary} (everyone) from SQLite" in exported.stderr

    pg = {"DATABASE_URL": database_url}
    imported = server_command(tmp_path / "new", "import", str(export_file), env=pg)
    assert imported.returncode == 0, imported.stderr
    assert f"imported {summary} into PostgreSQL (DATABASE_URL); every one checked" in (
        imported.stderr
    )
    # Importing the same again changes nothing and says why.
    again = server_command(tmp_path / "new", "import", str(export_file), env=pg)
    assert again.returncode == 1 and "4 sessions exist already" in again.stderr

    server = start_server({**pg, "SLUICE_API_TOKENS": API_TOKENS})
    assert _as_served(server.url) == _v0_expected()

    # One user's history, through a pipe.
    alice = server_command(tmp_path / "new", "export", "--user", "alice", env=pg)
    assert alice.returncode == 0, alice.stderr
    lines = [json.loads(line) for line in alice.stdout.splitlines()]
    assert {line.get("user_id") for line in lines[1:]} == {"alice"}
    assert "exported 2 sessions of 1 user, 6 messages (4 complete, 1 error, 1 incomplete)," in (
        alice.stderr
    )
    back = server_command(old, "import", "--replace", "-", stdin=alice.stdout)
    assert back.returncode == 0, back.stderr


def test_import_refuses_what_is_not_an_export(tmp_path: Path) -> None:
    result = server_command(tmp_path, "import", "-", stdin='{"type": "session"}\n')
    assert result.returncode == 1
    assert result.stderr.strip() == "sluice: import failed: line 1: not a sluice history export"


def test_migrate_command_reports_the_schema(tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.new_database()
    result = server_command(tmp_path, "migrate", env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert "history schema in PostgreSQL (DATABASE_URL) is up to date" in result.stderr
    name = url.rsplit("/", 1)[1]
    assert postgres.psql("SELECT version_num FROM alembic_version", name) == head_revision()


def test_the_move_in_docs_deploy_runs_as_written(
    start_server: StartServer, database_url: str, tmp_path: Path
) -> None:
    """docs/deploy.md's two commands, run as a shell runs them (only the interpreter and
    the database's URL put in), print what the page shows, and the history moves."""
    page = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    after = page.split("<!-- tested: tests/test_history.py -->\n```sh\n", 1)[1]
    commands, rest = after.split("```\n", 1)
    shown = rest.split("```\n", 1)[1].split("```", 1)[0].splitlines()
    script = commands.replace("python -m", f"{sys.executable} -m").replace(
        "postgres://user:password@host:5432/dbname", database_url
    )
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(V0, data_dir / "sessions.sqlite3")
    done = subprocess.run(
        ["bash", "-euc", script],
        cwd=tmp_path,
        env=base_env(data_dir) | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == shown
    server = start_server({"DATABASE_URL": database_url, "SLUICE_API_TOKENS": API_TOKENS})
    assert _as_served(server.url) == _v0_expected()
