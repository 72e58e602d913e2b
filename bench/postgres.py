"""The PostgreSQL that ``sluice-pg`` keeps its history in: ``$SLUICE_BENCH_DATABASE_URL``
when set (a server you run; each run gets a new database on it), else one started for the
bench run with the test suite's harness (``initdb`` in a temporary directory, loopback, as
the ``postgres`` user under root), with PostgreSQL's default durability (every commit
flushed), and removed at exit."""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
from urllib.parse import urlsplit, urlunsplit

__all__ = ["new_database"]

URL_ENV = "SLUICE_BENCH_DATABASE_URL"

_server: object | None = None
_exit = contextlib.ExitStack()


def _admin_url() -> str:
    global _server
    explicit = os.environ.get(URL_ENV)
    if explicit:
        return explicit
    if _server is None:
        from tests.support.postgres import running_postgres

        _server = _exit.enter_context(running_postgres(durable=True))
        atexit.register(_exit.close)
    url: str = _server.url()  # type: ignore[attr-defined]
    return url


def new_database() -> str:
    """The URL of a new, empty database."""
    import asyncio

    import asyncpg

    admin = _admin_url()
    name = "bench_" + secrets.token_hex(4)

    async def create() -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    parts = urlsplit(admin)
    return urlunsplit(parts._replace(path=f"/{name}"))
