"""Text appended to a message after it was written: an answer saved as it streams.

Saving an answer in progress by rewriting its whole text made a long answer cost the square
of its length (a 19 MB answer rewrote gigabytes, holding the event loop meanwhile). Each
save now adds only what arrived since the last one, as a row here; a message's text is its
``content`` followed by its parts in ``seq`` order, and replacing the text drops the parts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_parts",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        # Reads, appends and deletes all go by session, then message: one index serves all.
        sa.PrimaryKeyConstraint("user_id", "session_id", "message_id", "seq"),
    )


def downgrade() -> None:
    # Fold the parts back into their messages first: dropping them would lose answer text.
    db = op.get_bind()
    parts = db.execute(
        sa.text(
            "SELECT user_id, session_id, message_id, content FROM message_parts"
            " ORDER BY user_id, session_id, message_id, seq"
        )
    ).fetchall()
    appended: dict[tuple[str, str, int], list[str]] = {}
    for user_id, session_id, message_id, content in parts:
        appended.setdefault((user_id, session_id, message_id), []).append(content)
    for (user_id, session_id, message_id), texts in appended.items():
        db.execute(
            sa.text(
                "UPDATE messages SET content = content || :text"
                " WHERE id = :id AND user_id = :user AND session_id = :session"
            ),
            {"text": "".join(texts), "id": message_id, "user": user_id, "session": session_id},
        )
    op.drop_table("message_parts")
