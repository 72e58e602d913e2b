"""The usage ledger: one row per answer, what it cost.

Who asked (``user_id``, ``session_id`` — NULL for an API client that keeps its own
conversation), which turn (``stream_id``, unique: an answer is recorded once, whichever
instance records it), who answered (``provider``, ``model``), the tokens (input — cached
ones included —, output — reasoning included —, cached, reasoning), ``cost_usd`` (NULL when
the model has no price), ``estimated`` (counted from characters: the answer was stopped or
cut, or the provider sent no figures) and ``created_at`` (epoch seconds).

Indexed by user and time (a user's period, the budgets' rebuild) and by time alone (every
user's totals for a period).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=True),
        sa.Column("stream_id", sa.Text(), nullable=False, unique=True),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=True),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
    )
    op.create_index("usage_ledger_user_time", "usage_ledger", ["user_id", "created_at"])
    op.create_index("usage_ledger_time", "usage_ledger", ["created_at"])


def downgrade() -> None:
    op.drop_index("usage_ledger_time", table_name="usage_ledger")
    op.drop_index("usage_ledger_user_time", table_name="usage_ledger")
    op.drop_table("usage_ledger")
