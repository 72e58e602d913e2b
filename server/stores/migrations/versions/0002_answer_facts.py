"""Each answer's facts: the user message it replies to, provider, model, mode, fallback,
tokens in and out, time to first token and duration. All nullable: answers saved before
this revision keep their text and status, and have no facts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("reply_to", sa.BigInteger()),
    ("provider", sa.Text()),
    ("model", sa.Text()),
    ("mode", sa.Text()),
    ("fallback", sa.Boolean()),
    ("input_tokens", sa.Integer()),
    ("output_tokens", sa.Integer()),
    ("time_to_first_token_ms", sa.Double()),
    ("duration_ms", sa.Double()),
)


def upgrade() -> None:
    # ADD COLUMN of a nullable column, which SQLite does in place (no table rebuild).
    for name, type_ in _COLUMNS:
        op.add_column("messages", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
