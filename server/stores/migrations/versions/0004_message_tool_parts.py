"""An answer's tool calls and results, kept with it: ``messages.parts_json``.

A turn in which the model called tools is more than its text: each round's text, the calls
it made and what they came to, in order. This column holds that list as JSON (the shape of
``server.contract.parts.part_to_dict``), so that history shows the calls and later turns
give them to the model. NULL for a message that is its text alone (every message saved
before this revision, and most after).

JSON as text in both databases, not ``jsonb`` in PostgreSQL: a tool's output may hold
characters ``jsonb`` refuses (``\\u0000``), and the list is read back whole, never queried.

Not to be confused with ``message_parts`` (revision 0003): pieces of an answer's *text*
saved as it streams.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column: SQLite adds it in place, PostgreSQL without rewriting the table.
    op.add_column("messages", sa.Column("parts_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("parts_json")
