"""Bounces: what the customers' mail servers reported back after accepting a mail.

`bounce` keeps one row per recipient of each report read from the bounce
mailbox (a permanent failure or a delay, with the remote server's words); the
report's own Message-ID and the address are unique, so reading the same
mailbox twice records nothing twice. A recipient that bounced has the delivery
state `bounced`, an entry whose every customer address bounced the state
`bounced` (both strings: no schema change for them).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bounce",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("entry_id", sa.Integer(), sa.ForeignKey("entry.id"), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("diagnostic", sa.String(), nullable=False),
        sa.Column("source", sa.String(400), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("source", "address", name="uq_bounce_report"),
    )
    op.create_index("ix_bounce_entry_id", "bounce", ["entry_id"])


def downgrade() -> None:
    op.drop_index("ix_bounce_entry_id", "bounce")
    op.drop_table("bounce")
