"""The backups docs/operations.md gives, run as written: each copy, restored, serves the
same history."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import StartServer
from tests.support.postgres import PostgresServer, find_bindir
from tests.support.server import ROOT
from tests.support.sse import bearer, json_request, start_stream

ALICE = bearer("tok-alice")


def doc_blocks() -> list[str]:
    page = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    marker = "<!-- tested: tests/test_backups.py -->\n```sh\n"
    return [part.split("```", 1)[0] for part in page.split(marker)[1:]]


def history(url: str) -> list[dict[str, Any]]:
    _, listed, _ = json_request(url, "GET", "/api/sessions/alice", headers=ALICE)
    assert listed is not None and listed["sessions"]
    found = []
    for item in listed["sessions"]:
        _, detail, _ = json_request(
            url, "GET", f"/api/sessions/alice/{item['session_id']}", headers=ALICE
        )
        assert detail is not None
        found.append(detail | {"active_turn": None})
    return found


def converse(url: str) -> None:
    first = start_stream(url, "Find me a restaurant in Tokyo").read_all()[-1].data
    assert first is not None
    start_stream(url, "What about sushi?", session_id=first["session_id"]).read_all()
    start_stream(url, "weather in Paris").read_all()


def run_block(block: str, cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["bash", "-euc", block],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_the_postgres_dump_restores_into_a_new_database(
    start_server: StartServer, postgres: PostgresServer, tmp_path: Path
) -> None:
    dump, restore = doc_blocks()[0].strip().splitlines()
    source = postgres.new_database()
    server = start_server({"DATABASE_URL": source})
    converse(server.url)
    before = history(server.url)
    server.stop()

    # The PostgreSQL client programs of the server's version, as the page asks.
    path = {"PATH": f"{find_bindir()}:{os.environ.get('PATH', '')}"}
    run_block(dump, tmp_path, {**path, "DATABASE_URL": source})
    target = postgres.new_database()
    run_block(restore, tmp_path, {**path, "DATABASE_URL": target})
    restored = start_server({"DATABASE_URL": target})
    assert history(restored.url) == before


def test_the_sqlite_backup_copies_a_live_database(
    start_server: StartServer, tmp_path: Path
) -> None:
    assert shutil.which("sqlite3"), "scripts/test installs Debian's sqlite3"
    (block,) = doc_blocks()[1:]
    data = tmp_path / "data"
    server = start_server(data_dir=data)
    converse(server.url)
    before = history(server.url)
    run_block(block, tmp_path, {})  # while the server runs
    server.stop()

    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    shutil.copy(tmp_path / "sessions-backup.sqlite3", restored_dir / "sessions.sqlite3")
    restored = start_server(data_dir=restored_dir)
    assert history(restored.url) == before
