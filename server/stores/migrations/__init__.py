"""Alembic's script directory for the history schema: ``env.py`` and ``versions/``.

A new schema change is a new file in ``versions/`` whose ``down_revision`` is the newest
one's; it must run on SQLite and PostgreSQL alike (``server.stores.schema`` applies it at
start-up, and the shared store tests run both). Generate the skeleton with::

    .venv/bin/alembic -c server/stores/migrations/alembic.ini revision -m "what changes"

and set :data:`HEAD_REVISION` to its id (``tests/test_schema.py`` fails until you do).
"""

HEAD_REVISION = "0007"
"""The newest revision's id: a SQLite file already at it opens without loading Alembic."""
