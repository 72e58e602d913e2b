"""Which usage ledger goes with a history store: the same database, another table."""

from __future__ import annotations

from server.contract import SessionStore
from server.stores.sqlite import SQLiteSessionStore
from server.usage.ledger import Ledger
from server.usage.ledger_sqlite import SQLiteLedger

__all__ = ["ledger_for"]


def ledger_for(sessions: SessionStore) -> Ledger:
    if isinstance(sessions, SQLiteSessionStore):
        return SQLiteLedger(sessions.connection())
    # Imported here, as the sessions store is: a server on SQLite never loads asyncpg.
    from server.stores.postgres import PostgresSessionStore
    from server.usage.ledger_postgres import PostgresLedger

    assert isinstance(sessions, PostgresSessionStore)
    return PostgresLedger(sessions)
