"""Per-recipient delivery, the attention line, and why a file is held.

Existing entries are carried over: a sent entry's recipients become delivered
(those the server refused, refused with its reply), a failed or deferred
entry's become refused or deferred; entries not tried yet get their rows at
their first send. Failed, held, partly refused and address-less entries get
their attention line.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tikos_outbox.core import attention
from tikos_outbox.core.recipients import DState, Recipient, Role

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NO_ADDRESS = "no e-mail address found for customer"
#: reasons of round one for which the file itself is not a mailable PDF
UNMAILABLE = ("the file is empty", "not a PDF file", "incomplete PDF", "larger than the limit")


def upgrade() -> None:
    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("entry_id", sa.Integer(), sa.ForeignKey("entry.id"), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("reply", sa.String(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("entry_id", "role", "address", name="uq_delivery"),
    )
    op.create_index("ix_delivery_entry_id", "delivery", ["entry_id"])
    with op.batch_alter_table("entry") as batch:
        batch.add_column(sa.Column("attention", sa.String(), nullable=True))
        batch.add_column(sa.Column("problem", sa.String(), nullable=True))
        batch.add_column(sa.Column("needs_force", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.create_index("ix_entry_attention", ["attention"])
    _carry_over()


def _carry_over() -> None:
    conn = op.get_bind()
    entry = sa.table("entry", sa.column("id"), sa.column("state"), sa.column("customer"),
                     sa.column("reason"), sa.column("last_error"),
                     sa.column("recipients_json"), sa.column("refused_json"),
                     sa.column("sent_at"), sa.column("updated_at"), sa.column("attention"),
                     sa.column("problem"), sa.column("needs_force"))
    delivery = sa.table("delivery", sa.column("entry_id"), sa.column("role"),
                        sa.column("address"), sa.column("name"), sa.column("state"),
                        sa.column("reply"), sa.column("at"))
    rows = conn.execute(sa.select(entry).where(
        entry.c.state.in_(["sent", "failed", "deferred", "held", "skipped"]))).all()
    for r in rows:
        addresses = json.loads(r.recipients_json) if r.recipients_json else []
        refused = json.loads(r.refused_json) if r.refused_json else {}
        state = {"sent": DState.DELIVERED, "failed": DState.REFUSED,
                 "deferred": DState.DEFERRED}.get(r.state)
        recipients = []
        if state is not None:
            for addr in addresses:
                mine = DState.REFUSED if addr in refused else state
                reply = refused.get(addr) or (r.last_error if mine is not DState.DELIVERED
                                              else None)
                recipients.append(Recipient(addr, Role.TO, mine, reply, r.sent_at or r.updated_at))
            if recipients:
                conn.execute(delivery.insert(), [
                    {"entry_id": r.id, "role": x.role.value, "address": x.address, "name": "",
                     "state": x.state.value, "reply": x.reply, "at": x.at} for x in recipients])
        line: str | None = None
        changes: dict[str, object] = {}
        if r.state == "failed":
            line = attention.failed(r.customer, r.last_error or r.reason or "")
        elif r.state == "held":
            blocks = (r.reason or "").startswith(UNMAILABLE)
            line = attention.held(r.reason or "", blocks)
            if r.reason != "held by the administrator":
                changes = {"problem": r.reason, "needs_force": blocks}
        elif r.state == "skipped" and (r.reason or "").startswith(NO_ADDRESS):
            line = attention.no_address(r.customer, [])
        elif r.state == "sent":
            line = attention.partly_refused(r.customer, recipients)
        if line or changes:
            conn.execute(entry.update().where(entry.c.id == r.id)
                         .values(attention=line, **changes))


def downgrade() -> None:
    with op.batch_alter_table("entry") as batch:
        batch.drop_index("ix_entry_attention")
        batch.drop_column("needs_force")
        batch.drop_column("problem")
        batch.drop_column("attention")
    op.drop_index("ix_delivery_entry_id", "delivery")
    op.drop_table("delivery")
