"""The outbox's upkeep: its copies dropped after `keep_days`, the space given back,
and a consistent backup while it is in use. A part of Commands (store/commands.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, or_, select, update

from tikos_outbox.core.states import State
from tikos_outbox.store.engine import mapped
from tikos_outbox.store.tables import Tables


class Retention:
    engine: Engine
    t: Tables
    is_sqlite: bool

    @mapped
    def backup_to(self, target: Path) -> None:
        """A consistent copy of the SQLite outbox, taken while it is in use (VACUUM
        INTO reads one snapshot; writers go on meanwhile)."""
        raw = self.engine.raw_connection()
        try:
            raw.cursor().execute("VACUUM INTO ?", (str(target),))
        finally:
            raw.close()

    @mapped
    def compact(self) -> None:
        """Give the space of purged copies back to the disk (SQLite: VACUUM, outside any
        transaction; PostgreSQL's autovacuum does this by itself)."""
        if not self.is_sqlite:
            return
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("VACUUM")
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file itself shrinks now
        finally:
            raw.close()

    @mapped
    def purge(self, sent_before: datetime, now: datetime) -> int:
        """Drop the stored copies whose every entry was sent (or skipped) before the date."""
        E, B = self.t.entry.c, self.t.blob.c
        keep = select(E.sha256).where(or_(
            E.state.not_in([State.SENT.value, State.SKIPPED.value]),
            E.updated_at > sent_before))
        with self.engine.begin() as conn:
            n = conn.execute(update(self.t.blob)
                             .where(B.data.is_not(None), B.sha256.not_in(keep))
                             .values(data=None, purged_at=now)).rowcount
        return int(n)
