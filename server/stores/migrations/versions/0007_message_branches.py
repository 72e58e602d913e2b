"""Conversations as trees: each message's parent, and each session's current leaf.

Editing a sent message starts a new branch from the message before it, and regenerating an
answer adds a sibling of that answer; ``messages.parent_id`` is the message a message
follows (NULL for a conversation's first messages) and ``sessions.leaf_id`` the last message
of the branch the user is on. The conversation as it stands is the path from the root to
that leaf.

Histories written before this revision were a single line: each message follows the one
before it in the session (by id), and the leaf is the session's newest message.

Revision ID: 0007_message_branches
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Nullable columns: SQLite adds them in place, PostgreSQL without rewriting the table.
    op.add_column("messages", sa.Column("parent_id", _ID, nullable=True))
    op.add_column("sessions", sa.Column("leaf_id", _ID, nullable=True))
    # The same SQL for both databases; messages_by_session (user, session, id) answers
    # each subquery from the index.
    op.execute(
        "UPDATE messages SET parent_id = (SELECT MAX(earlier.id) FROM messages earlier"
        " WHERE earlier.user_id = messages.user_id AND earlier.session_id = messages.session_id"
        " AND earlier.id < messages.id)"
    )
    op.execute(
        "UPDATE sessions SET leaf_id = (SELECT MAX(m.id) FROM messages m"
        " WHERE m.user_id = sessions.user_id AND m.session_id = sessions.session_id)"
    )


def downgrade() -> None:
    # The tree is flattened: every message stays, in id order, as before this revision.
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("leaf_id")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("parent_id")
