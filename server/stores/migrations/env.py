"""Alembic's environment: run the pending revisions on the connection we are handed.

``server.stores.schema`` opens the connection (a lock held on it, in one transaction) and
passes it in ``config.attributes["connection"]``; nothing here reads a URL or a file.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

connection: Connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    # SQLite and PostgreSQL both roll back DDL: an upgrade that fails half-way leaves the
    # database at the version it had.
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
