"""The web console: its users (a role and an scrypt hash each) and the log of every
administrator's move with who made it; each attempt keeps what it settled for
each recipient (the send log, "Versandnachweis", which a later requeue must not
rewrite). Indexes for the chart and the send log: entries by sending time,
attempts and deliveries by their time.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import json
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
    with op.batch_alter_table("attempt") as batch:
        batch.add_column(sa.Column("recipients_json", sa.String(), nullable=True))
        batch.add_column(sa.Column("message_id", sa.String(), nullable=True))
    op.create_index("ix_attempt_at", "attempt", ["at"])
    op.create_index("ix_entry_size", "entry", ["size"])  # history of a new file's size
    _recipients_of_earlier_attempts()


def _recipients_of_earlier_attempts() -> None:
    """An attempt recorded before this revision gets the entry's Message-ID (a resend
    before it is not told apart) and the recipients whose delivery it settled last
    (a delivery's time is its attempt's); what an attempt settled before a later one
    overwrote it was not kept, and stays unknown."""
    conn = op.get_bind()
    attempt = sa.table("attempt", sa.column("id"), sa.column("entry_id"), sa.column("at"),
                       sa.column("recipients_json"), sa.column("message_id"))
    entry = sa.table("entry", sa.column("id"), sa.column("message_id"))
    conn.execute(sa.update(attempt).values(message_id=sa.select(entry.c.message_id).where(
        entry.c.id == attempt.c.entry_id).scalar_subquery()))
    delivery = sa.table("delivery", sa.column("entry_id"), sa.column("at"),
                        sa.column("address"), sa.column("role"), sa.column("state"),
                        sa.column("reply"))
    settled: dict[tuple[int, object], list[list[str | None]]] = {}
    for d in conn.execute(sa.select(delivery).where(delivery.c.at.is_not(None))):
        settled.setdefault((d.entry_id, d.at), []).append(
            [d.address, d.role, d.state, d.reply])
    for a in conn.execute(sa.select(attempt.c.id, attempt.c.entry_id, attempt.c.at)).all():
        found = settled.get((a.entry_id, a.at))
        if found:
            conn.execute(sa.update(attempt).where(attempt.c.id == a.id)
                         .values(recipients_json=json.dumps(found, ensure_ascii=False)))


def downgrade() -> None:
    op.drop_index("ix_entry_size", "entry")
    op.drop_index("ix_attempt_at", "attempt")
    with op.batch_alter_table("attempt") as batch:
        batch.drop_column("message_id")
        batch.drop_column("recipients_json")
    op.drop_index("ix_delivery_at", "delivery")
    op.drop_index("ix_entry_sent_at", "entry")
    op.drop_table("action")
    op.drop_table("web_user")
