"""The web console: its users (a role and an scrypt hash each) and the log of every
administrator's move with who made it. Indexes for the console's chart and the
send log ("Versandnachweis"): entries by sending time, deliveries by their time.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_user",
        sa.Column("name", sa.String(length=200), primary_key=True),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(length=400), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("valid_from", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "action",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(), nullable=False),
    )
    op.create_index("ix_action_at", "action", ["at"])
    op.create_index("ix_action_entry_id", "action", ["entry_id"])
    op.create_index("ix_entry_sent_at", "entry", ["sent_at"])
    op.create_index("ix_delivery_at", "delivery", ["at"])


def downgrade() -> None:
    op.drop_index("ix_delivery_at", "delivery")
    op.drop_index("ix_entry_sent_at", "entry")
    op.drop_table("action")
    op.drop_table("web_user")
