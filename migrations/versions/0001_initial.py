"""The outbox: entries, attempts, document copies, meta facts.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "entry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mandant", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("file_name", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("doctype", sa.String(), nullable=False),
        sa.Column("docno", sa.String(), nullable=False),
        sa.Column("customer", sa.String(), nullable=False),
        sa.Column("fields_json", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("recipients_json", sa.String(), nullable=True),
        sa.Column("refused_json", sa.String(), nullable=True),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("first_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("transient_failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("mandant", "path", "sha256", name="uq_entry_document"),
    )
    for column in ("mandant", "path", "sha256", "docno", "customer", "state", "created_at",
                   "next_attempt_at"):
        op.create_index(f"ix_entry_{column}", "entry", [column])
    op.create_table(
        "attempt",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("entry_id", sa.Integer(), sa.ForeignKey("entry.id"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("server", sa.String(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("reply", sa.String(), nullable=False),
        sa.Column("refused_json", sa.String(), nullable=True),
    )
    op.create_index("ix_attempt_entry_id", "attempt", ["entry_id"])
    op.create_table(
        "blob",
        sa.Column("sha256", sa.String(length=64), primary_key=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("purged_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=200), primary_key=True),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("meta")
    op.drop_table("blob")
    op.drop_index("ix_attempt_entry_id", "attempt")
    op.drop_table("attempt")
    for column in ("mandant", "path", "sha256", "docno", "customer", "state", "created_at",
                   "next_attempt_at"):
        op.drop_index(f"ix_entry_{column}", "entry")
    op.drop_table("entry")
