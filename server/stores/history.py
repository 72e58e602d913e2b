"""Which history backend a configuration asks for: PostgreSQL when ``store.database_url``
(``DATABASE_URL``) is set, else SQLite in the data directory."""

from __future__ import annotations

from server.config import Settings
from server.contract.stores import SessionStore

__all__ = ["session_store"]


def session_store(settings: Settings) -> SessionStore:
    store = settings.store
    if store.database_url:
        # Imported here: a server on SQLite never loads the PostgreSQL driver.
        from server.stores.postgres import PostgresSessionStore

        return PostgresSessionStore(
            store.database_url,
            pool_size=store.database_pool_size,
            timeout=store.database_timeout_seconds,
        )
    from server.stores.sqlite import SQLiteSessionStore

    return SQLiteSessionStore(settings.data_dir / store.sqlite_file)
