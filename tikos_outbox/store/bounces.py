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
from tikos_outbox.core.recipients import DState, Role
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
                                                        for a in addresses))

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
                new += done.rowcount or 0
                if n.kind is Kind.FAILED:
                    conn.execute(update(self.t.delivery).where(
                        D.entry_id == entry.id, D.address == n.address,
                        D.state != DState.BOUNCED.value).values(
                        state=DState.BOUNCED.value, reply=n.diagnostic, at=now))
            if new:
                self._settle(conn, entry, now)
        return new > 0

    def _settle(self, conn: Connection, entry: BouncedEntry, now: datetime) -> None:
        """The entry after its recipients' bounces: `bounced` when no customer address
        has it; otherwise sent, with the bounced ones needing attention."""
        D, E = self.t.delivery.c, self.E
        rows = conn.execute(select(D.address, D.state, D.reply).where(
            D.entry_id == entry.id, D.role == Role.TO.value)).all()
        bounced = [(r.address, r.reply or "") for r in rows if r.state == DState.BOUNCED.value]
        if not bounced:
            return
        everyone = not any(r.state == DState.DELIVERED.value for r in rows)
        line = attention.bounced(entry.customer, bounced, everyone)
        reason = "bounced: " + "; ".join(f"{a}: {d}" for a, d in bounced)
        if everyone:
            conn.execute(self._transition(Event.BOUNCE, E.id == entry.id, updated_at=now,
                                          reason=reason, last_error=reason, attention=line))
        conn.execute(update(self.t.entry).where(
            E.id == entry.id, E.state.in_([State.SENT.value, State.BOUNCED.value]))
            .values(attention=line, last_error=reason, updated_at=now))


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
