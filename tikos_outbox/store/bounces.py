"""Bounces in the outbox (BounceRecords): finding the entry a report is about, and
recording what it says, once.

One transaction per report: its rows (unique by the report's Message-ID and the
address, so a second reading inserts nothing), the bounced recipients' states,
and, when no customer address is left that received the mail, the entry's move
from `sent` to `bounced` through the transition table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, select, update

from tikos_outbox.core import attention
from tikos_outbox.core.bounces import Kind, Notice, envid_for
from tikos_outbox.core.recipients import DState, Recipient, Role
from tikos_outbox.core.states import Event, State
from tikos_outbox.core.views import BouncedEntry
from tikos_outbox.store.engine import READ_ONLY, mapped
from tikos_outbox.store.recording import Recorder


class Bounces(Recorder):
    @mapped
    def entry_for(self, envid: str | None, message_ids: Sequence[str]) -> BouncedEntry | None:
        """The entry a report is about: by the ENVID we gave, else the first of the
        Message-IDs it returns that is one of ours."""
        E, D = self.E, self.t.delivery.c
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            row = None
            if envid:
                row = conn.execute(select(E.id, E.customer, E.message_id).where(
                    E.message_id.like(f"<{_like(envid)}@%", escape="\\"))).first()
                if row is not None and envid_for(row.message_id) != envid:
                    row = None
            by_envid = row is not None
            for mid in message_ids:
                if row is not None:
                    break
                row = conn.execute(select(E.id, E.customer, E.message_id)
                                   .where(E.message_id == mid)).first()
            if row is None:
                return None
            addresses = conn.execute(select(D.address, D.role).where(D.entry_id == row.id)
                                     .order_by(D.id)).all()
        return BouncedEntry(row.id, row.customer, tuple((a.address, Role(a.role))
                                                        for a in addresses), by_envid)

    @mapped
    def record(self, entry: BouncedEntry, source: str, notices: Sequence[Notice],
               now: datetime) -> bool:
        """Record a report's notices (addresses as the entry holds them). Returns
        False when every one of them was recorded before (the same report again)."""
        D = self.t.delivery.c
        insert = self.dialect_insert(self.t.bounce).on_conflict_do_nothing(
            index_elements=["source", "address"])
        with self.engine.begin() as conn:
            new = 0
            for n in notices:
                done = conn.execute(insert.values(
                    entry_id=entry.id, address=n.address, kind=n.kind.value, status=n.status,
                    diagnostic=n.diagnostic, source=source[:400], at=now))
                if not done.rowcount:
                    continue  # read before: what happened since (a requeue) stays
                new += 1
                if n.kind is Kind.FAILED:  # only a recipient that had it can bounce
                    conn.execute(update(self.t.delivery).where(
                        D.entry_id == entry.id, D.address == n.address,
                        D.state == DState.DELIVERED.value).values(
                        state=DState.BOUNCED.value, reply=n.diagnostic, at=now))
            if new:
                self._settle(conn, entry, now)
        return new > 0

    def _settle(self, conn: Connection, entry: BouncedEntry, now: datetime) -> None:
        """The entry after its recipients' bounces: `bounced` when no customer address
        has it; otherwise it stays as it is, with the bounced ones needing attention
        (an entry still being retried gets the line when its run finishes)."""
        D, E = self.t.delivery.c, self.E
        rows = [Recipient(r.address, Role.TO, DState(r.state), r.reply) for r in conn.execute(
            select(D.address, D.state, D.reply).where(D.entry_id == entry.id,
                                                       D.role == Role.TO.value))]
        gone = [r for r in rows if r.state is DState.BOUNCED]
        if not gone:
            return
        line = attention.after_send(entry.customer, rows)
        reason = "bounced: " + "; ".join(f"{r.address}: {r.reply}" for r in gone)
        if not any(r.state is DState.DELIVERED for r in rows):
            conn.execute(self._transition(Event.BOUNCE, E.id == entry.id, updated_at=now,
                                          reason=reason, last_error=reason, attention=line))
        conn.execute(update(self.t.entry).where(
            E.id == entry.id, E.state.in_([State.SENT.value, State.BOUNCED.value]))
            .values(attention=line, last_error=reason, updated_at=now))


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
