"""Schema versions: create or upgrade a history database to the newest revision.

Alembic (``server/stores/migrations``) holds the revisions, the same for SQLite and
PostgreSQL. Each upgrade runs as one transaction that first takes a lock, so that instances
starting at once against one database take turns: the first upgrades, the others then find
nothing left to do. In PostgreSQL the lock is a transaction-scoped advisory lock; in SQLite
it is the database's own write lock, taken at ``BEGIN IMMEDIATE``.

A SQLite database written before versions existed (same tables, no ``alembic_version``)
upgrades in place: the first revision creates only what is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

__all__ = [
    "ADVISORY_LOCK_KEY",
    "head_revision",
    "upgrade_postgres",
    "upgrade_sqlite",
]

# pg_advisory_xact_lock's key: any constant no other program on the database uses
# (int.from_bytes(b"sluice\0\1") fits a bigint and says what it is).
ADVISORY_LOCK_KEY = int.from_bytes(b"sluice\x00\x01", "big")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _upgrade(connection: Connection, revision: str) -> None:
    config = _config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def upgrade_sqlite(path: Path, *, busy_timeout: float = 30.0, revision: str = "head") -> None:
    """Bring the SQLite file at ``path`` to the newest revision (creating it if absent), or
    to ``revision`` (a file as an older sluice left it, for tests of an upgrade).

    Synchronous: it runs once, before the server takes requests, on a local file.
    """
    engine = create_engine(
        f"sqlite:///{path}", poolclass=NullPool, connect_args={"timeout": busy_timeout}
    )

    # SQLAlchemy's documented recipe for real SQLite transactions: the driver's own
    # transaction handling off, and our BEGIN. IMMEDIATE takes the write lock at once, so a
    # second process waits here (up to busy_timeout) instead of migrating alongside.
    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as connection:
            _upgrade(connection, revision)
    finally:
        engine.dispose()


async def upgrade_postgres(dsn: str, *, timeout: float, revision: str = "head") -> None:
    """Bring the PostgreSQL database at ``dsn`` to the newest revision (or to ``revision``,
    as :func:`upgrade_sqlite`), under an advisory lock held until the upgrade commits.
    ``timeout`` bounds connecting; the statements are not bounded by it: waiting for another
    instance's upgrade, or rewriting a large table, takes what it takes (a caller that must
    not wait puts its own bound around this)."""

    # Connected here rather than by SQLAlchemy, so that a database that cannot be reached
    # (or refuses the credentials) raises asyncpg's own error, as the pool's calls do.
    # asyncpg reads the URL itself, sslmode and all, exactly as the pool does.
    first = await asyncpg.connect(dsn, timeout=timeout, command_timeout=None)

    async def connect() -> asyncpg.Connection:
        return first

    engine = create_async_engine("postgresql+asyncpg://", async_creator=connect, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
            await connection.run_sync(_upgrade, revision)
    finally:
        await engine.dispose()
