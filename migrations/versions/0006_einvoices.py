"""E-invoices: what a document's structured invoice data is, and the notes on an
entry that was sent but needs a look (not a valid e-invoice, the e-invoice names
another buyer address).

`einvoice` holds the facts as JSON (format, profile, validity, BT-49, …; NULL: a
plain PDF), `einvoice_valid` the verdict alone, for the counts per month (NULL:
no e-invoice data). `notices` holds a JSON list of facts, worded when read.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("entry") as batch:
        batch.add_column(sa.Column("einvoice", sa.String(), nullable=True))
        batch.add_column(sa.Column("einvoice_valid", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("notices", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("entry") as batch:
        batch.drop_column("notices")
        batch.drop_column("einvoice_valid")
        batch.drop_column("einvoice")
