"""Drop the index on entry.mandant.

With a handful of mandants it selects nothing, and without statistics SQLite
preferred it over the path and content indexes: recording a document then
walked every entry of its mandant.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_entry_mandant", "entry")


def downgrade() -> None:
    op.create_index("ix_entry_mandant", "entry", ["mandant"])
