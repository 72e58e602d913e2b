"""Sessions and messages, as the store wrote them before the schema had versions.

Every statement is "if not exists": a database made before versions (same tables, no
``alembic_version``) passes through unchanged and is then at this revision.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# SQLite keeps epoch seconds in REAL; PostgreSQL in double precision, so that the numbers
# the API shows (created_at, updated_at) move between the two unchanged.
_EPOCH: sa.Double[float] = sa.Double()
# Memory is a JSON object: text in SQLite, jsonb in PostgreSQL (queryable by operators).
_JSON = sa.Text().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("memory", _JSON, nullable=False, server_default=sa.text("'{}'")),
        sa.Column("created_at", _EPOCH, nullable=False),
        sa.Column("updated_at", _EPOCH, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "session_id"),
        if_not_exists=True,
    )
    op.create_index(
        "sessions_by_user",
        "sessions",
        ["user_id", sa.text("updated_at DESC")],
        if_not_exists=True,
    )
    op.create_table(
        "messages",
        # Ids are never reused (AUTOINCREMENT in SQLite, an identity in PostgreSQL): an
        # answer names the message it replies to by id.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            primary_key=True,
        ),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("created_at", _EPOCH, nullable=False),
        sqlite_autoincrement=True,
        if_not_exists=True,
    )
    op.create_index(
        "messages_by_session",
        "messages",
        ["user_id", "session_id", "id"],
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("sessions")
