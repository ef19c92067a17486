"""Sending accounts: pacing, quotas and cool-downs shared by every process.

`account` holds each account's next pacing slot and its cool-down after the
provider said "slow down"; `account_send` logs every mail counted against the
account's hourly and daily quotas (rolling windows; rows older than a day and
an hour are deleted as new ones come). `entry.account_stops` counts the runs
an entry's mail stopped for its account: a second time, an ambiguous reply is
that mail's own fate, so that one mail can never hold up its account for good.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("name", sa.String(400), primary_key=True),
        sa.Column("next_slot_at", sa.DateTime(), nullable=True),
        sa.Column("cool_until", sa.DateTime(), nullable=True),
        sa.Column("cool_level", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cool_kind", sa.String(), nullable=True),
        sa.Column("cool_reason", sa.String(), nullable=True),
        sa.Column("quota_until", sa.DateTime(), nullable=True),
        sa.Column("quota_reason", sa.String(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "account_send",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account", sa.String(400), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
    )
    op.create_index("ix_account_send_account_at", "account_send", ["account", "at"])
    with op.batch_alter_table("entry") as batch:
        batch.add_column(sa.Column("account_stops", sa.Integer(), nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("entry") as batch:
        batch.drop_column("account_stops")
    op.drop_index("ix_account_send_account_at", "account_send")
    op.drop_table("account_send")
    op.drop_table("account")
