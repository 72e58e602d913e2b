"""Session stores of both backends for the store tests: SQLite in a file under the test's
``tmp_path``, and PostgreSQL on a new database of the run's shared server (the ``postgres``
fixture in tests/conftest.py, asked for only when a PostgreSQL store is made, so a run of
the SQLite cases alone starts no PostgreSQL).

The fixtures are bound into a test module by name (``store = stores.store``): pytest finds
fixtures among a module's names, and a module that leaves them out is not affected.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Protocol

import asyncpg
import pytest

from server.contract import SessionStore
from server.stores.postgres import PostgresSessionStore
from server.stores.schema import upgrade_postgres, upgrade_sqlite
from server.stores.sqlite import SQLiteSessionStore
from tests.support.postgres import PostgresServer

__all__ = [
    "BACKENDS",
    "MakeStore",
    "make_store",
    "postgres_history_at",
    "sqlite_history_at",
    "store",
]

BACKENDS = ["sqlite", "postgres"]


class MakeStore(Protocol):
    def __call__(self, backend: str, database: str | Path | None = None, /) -> SessionStore:
        """A store of ``backend`` (not opened yet), on a new, empty database, or on the one
        given: a SQLite file's path, or a PostgreSQL URL."""
        ...


@pytest.fixture
async def make_store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    """``make_store(backend)``: see :class:`MakeStore`. Every store made is closed after the
    test."""
    made: list[SessionStore] = []

    def make(backend: str, database: str | Path | None = None, /) -> SessionStore:
        store: SessionStore
        if backend == "sqlite":
            store = SQLiteSessionStore(Path(database or tmp_path / f"{len(made)}.sqlite3"))
        else:
            if database is None:
                server: PostgresServer = request.getfixturevalue("postgres")
                database = server.new_database()
            store = PostgresSessionStore(str(database), timeout=10)
        made.append(store)
        return store

    yield make
    for made_store in made:
        await made_store.close()


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, make_store: MakeStore) -> SessionStore:
    """An opened, empty store of each backend in turn."""
    made = make_store(request.param)
    await made.open()
    return made


def sqlite_history_at(path: Path, revision: str, statements: Iterable[str]) -> None:
    """A SQLite history at schema ``revision`` (an older one, to test the upgrade from it),
    holding what ``statements`` insert."""
    upgrade_sqlite(path, revision=revision)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        for statement in statements:
            db.execute(statement)


async def postgres_history_at(url: str, revision: str, statements: Iterable[str]) -> None:
    """The PostgreSQL database at ``url`` at schema ``revision``, holding what
    ``statements`` insert."""
    await upgrade_postgres(url, timeout=10, revision=revision)
    db = await asyncpg.connect(url)
    try:
        for statement in statements:
            await db.execute(statement)
    finally:
        await db.close()
