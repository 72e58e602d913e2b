"""Schema versions: instances starting at once against one database take turns (an advisory
lock in PostgreSQL, the write lock in SQLite) and end at the newest revision, once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest

from server.contract import SessionStore, TextPart, ToolCall, ToolResult
from server.stores.migrations import HEAD_REVISION
from server.stores.postgres import PostgresSessionStore
from server.stores.schema import ADVISORY_LOCK_KEY, head_revision
from server.stores.sqlite import SQLiteSessionStore, sqlite_revision
from tests.conftest import StartServer
from tests.support import forkserver
from tests.support.postgres import PostgresServer
from tests.support.server import ROOT, RunningServer, base_env, run_command
from tests.support.stores import postgres_history_at, sqlite_history_at


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_concurrent_migrations_of_a_new_database_do_not_race(
    postgres: PostgresServer, database_url: str
) -> None:
    """Four `migrate` processes at once on an empty database: all succeed, and the schema
    is at the newest revision once. Process start-up spreads them out, so this alone rarely
    catches a missing lock: the next test is the one that proves they queue on it."""
    env = {**base_env(Path("unused")), "DATABASE_URL": database_url}
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: run_command(["migrate"], env), range(4)))
    for run in runs:
        assert run.returncode == 0, run.stderr
    name = _name(database_url)
    assert postgres.psql("SELECT version_num FROM alembic_version", name) == head_revision()
    assert postgres.psql("SELECT count(*) FROM alembic_version", name) == "1"


@pytest.mark.anyio
async def test_an_upgrade_waits_for_the_lock_another_holds(
    postgres: PostgresServer, database_url: str
) -> None:
    """The lock is really taken: while a connection holds it, `migrate` waits on it (seen in
    pg_locks), and finishes once it is released."""
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
        env = {**base_env(Path("unused")), "DATABASE_URL": database_url}
        migrate = forkserver.spawn(["migrate"], env, ROOT, None)
        assert migrate.stderr is not None
        try:
            deadline = time.monotonic() + 30
            while not await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ):
                assert migrate.poll() is None, "migrate ended without waiting for the lock"
                assert time.monotonic() < deadline, "migrate never waited for the lock"
                await asyncio.sleep(0.05)
            assert not await holder.fetchval("SELECT to_regclass('sessions') IS NOT NULL")
            await holder.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
            code = await asyncio.to_thread(migrate.wait, 60)
            assert code == 0, migrate.stderr.read()
        finally:
            if migrate.poll() is None:
                migrate.kill()
                migrate.wait()
            migrate.stderr.close()
        assert await holder.fetchval("SELECT version_num FROM alembic_version") == head_revision()
    finally:
        await holder.close()


def _start_together(start_server: StartServer, envs: list[dict[str, str]]) -> list[RunningServer]:
    """Start one server per environment, all released at the same instant."""
    started: list[RunningServer] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(len(envs))

    def start(env: dict[str, str]) -> None:
        gate.wait()
        try:
            started.append(start_server(env))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start, args=(env,)) for env in envs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return started


def test_two_servers_starting_at_once_share_one_postgres(
    start_server: StartServer, postgres: PostgresServer, database_url: str
) -> None:
    servers = _start_together(start_server, [{"DATABASE_URL": database_url}] * 2)
    assert len(servers) == 2
    name = _name(database_url)
    assert postgres.psql("SELECT version_num FROM alembic_version", name) == head_revision()
    for server in servers:
        assert server.process.poll() is None


def test_two_processes_upgrading_one_sqlite_file_at_once(tmp_path: Path) -> None:
    """SQLite is per machine, but an import can run while a server starts."""
    path = tmp_path / "sessions.sqlite3"
    code = (
        "import sys; from pathlib import Path; from server.stores.schema import upgrade_sqlite;"
        " upgrade_sqlite(Path(sys.argv[1]))"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert sqlite_revision(path) == head_revision()


def test_the_head_revision_named_in_code_is_alembics() -> None:
    """A new migration must move ``HEAD_REVISION`` too, or files at the old head would be
    taken as current and never upgraded."""
    assert head_revision() == HEAD_REVISION


def test_a_current_sqlite_file_opens_without_loading_alembic(tmp_path: Path) -> None:
    """Alembic and SQLAlchemy are ~30 MiB of a server's memory for its whole life once
    imported: only a file that needs upgrading loads them; a file from before versions
    existed is still upgraded."""
    code = (
        "import sys; from pathlib import Path;"
        " from server.stores.sqlite import SQLiteSessionStore;"
        " SQLiteSessionStore(Path(sys.argv[1]));"
        " print('alembic' in sys.modules, 'sqlalchemy' in sys.modules)"
    )

    def open_store(path: Path) -> str:
        run = subprocess.run(
            [sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, timeout=120
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.decode().strip()

    new = tmp_path / "new.sqlite3"
    assert open_store(new) == "True True"  # created: upgraded to the head
    assert open_store(new) == "False False"  # current: opened with sqlite3 alone
    old = tmp_path / "v0.sqlite3"
    old.write_bytes((ROOT / "tests/data/history-v0.sqlite").read_bytes())
    assert sqlite_revision(old) is None
    assert open_store(old) == "True True"
    assert sqlite_revision(old) == HEAD_REVISION


# What a history at revision 0003 holds: a question, an answer whose text was partly saved
# by appending (message_parts), with its facts. The same statements in both databases.
_AT_0003 = (
    "INSERT INTO sessions (user_id, session_id, title, memory, created_at, updated_at)"
    " VALUES ('alice', 'trip', 'Tokyo', '{\"location\": \"Tokyo\"}', 1.5, 2.5)",
    "INSERT INTO messages (user_id, session_id, role, content, status, created_at)"
    " VALUES ('alice', 'trip', 'user', 'What time is it?', 'complete', 1.5)",
    "INSERT INTO messages (user_id, session_id, role, content, status, created_at, reply_to,"
    " provider) SELECT 'alice', 'trip', 'assistant', 'It is ', 'complete', 2.5, id, 'openai'"
    " FROM messages WHERE role = 'user'",
    "INSERT INTO message_parts (user_id, session_id, message_id, seq, content)"
    " SELECT 'alice', 'trip', id, 1, 'noon ✨.' FROM messages WHERE role = 'assistant'",
)
_TOOL_PARTS = (
    TextPart("Checking. "),
    ToolCall("call_a", "current_time", {"timezone": "Asia/Tokyo"}),
    ToolResult("call_a", "current_time", True, "2026-12-08T12:00:00+09:00"),
    TextPart("Noon."),
)


async def _check_upgraded(store: SessionStore) -> None:
    """The 0003 history reads as before, with no parts; a new answer keeps its parts."""
    [question, answer] = await store.messages("alice", "trip")
    assert (question.content, question.parts) == ("What time is it?", ())
    assert (answer.content, answer.reply_to, answer.facts.provider) == (
        "It is noon ✨.",
        question.id,
        "openai",
    )
    assert answer.parts == () and answer.as_json()["parts"] == []
    added = await store.add_message(
        "alice", "trip", "assistant", "Checking. Noon.", "complete", parts=_TOOL_PARTS
    )
    assert added > answer.id
    assert (await store.messages("alice", "trip"))[2].parts == _TOOL_PARTS


@pytest.mark.anyio
async def test_a_sqlite_history_at_0003_upgrades_to_keep_tool_parts(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    sqlite_history_at(path, "0003", _AT_0003)
    assert sqlite_revision(path) == "0003"
    store = SQLiteSessionStore(path)
    try:
        assert sqlite_revision(path) == HEAD_REVISION
        await _check_upgraded(store)
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_postgres_history_at_0003_upgrades_to_keep_tool_parts(
    postgres: PostgresServer,
) -> None:
    url = postgres.new_database()
    await postgres_history_at(url, "0003", _AT_0003)
    store = PostgresSessionStore(url, timeout=10)
    try:
        await store.open()
        assert postgres.psql("SELECT version_num FROM alembic_version", _name(url)) == HEAD_REVISION
        await _check_upgraded(store)
    finally:
        await store.close()
