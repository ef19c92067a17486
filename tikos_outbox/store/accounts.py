"""The sending accounts' budget (SendingAccounts): pacing slots, the log of sends
counted against quotas, and cool-downs, in the outbox database.

Every decision is one transaction that holds the account's row (SQLite: the
write lock of BEGIN IMMEDIATE; PostgreSQL: SELECT … FOR UPDATE), so that two
processes sending with one account never both take the last mail of a quota or
the same pacing slot.
"""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, Row, bindparam, delete, func, insert, select, update

from tikos_outbox.core.pacing import (
    DAY,
    HOUR,
    KEEP_SENDS,
    AccountState,
    Limits,
    Pause,
    PauseKind,
    Reserved,
    Send,
    cool_down,
    quota_pause,
)
from tikos_outbox.core.replies import Stop
from tikos_outbox.store.engine import READ_ONLY, lazy_begin, mapped
from tikos_outbox.store.tables import Tables

#: how often a process deletes an account's sends that no quota counts any more
PRUNE_EVERY = timedelta(minutes=10)


class Accounts:
    def __init__(self, engine: Engine, tables: Tables) -> None:
        self.engine = engine
        self.t = tables
        self.A = tables.account.c
        self.S = tables.account_send.c
        dialect = importlib.import_module(f"sqlalchemy.dialects.{engine.dialect.name}")
        self._ensure = dialect.insert(tables.account).on_conflict_do_nothing(
            index_elements=["name"])
        self._pruned: dict[str, datetime] = {}  # sends older than a day: deleted now and then
        # a send's statements, built once: `reserve` runs per mail
        A, S = self.A, self.S
        self._held = (select(tables.account).where(A.name == bindparam("b_account"))
                      .with_for_update())
        self._take = (update(tables.account).where(A.name == bindparam("b_account"))
                      .values(next_slot_at=bindparam("b_slot"), quota_until=None,
                              quota_reason=None, updated_at=bindparam("b_now")))
        self._log = insert(tables.account_send).returning(S.id)

    def _hold(self, conn: Connection, account: str, now: datetime) -> Row[tuple[object, ...]]:
        """The account's row, created if new, locked until the transaction ends."""
        row = conn.execute(self._held, {"b_account": account}).first()
        if row is not None:  # the usual case: one statement, not two
            return row
        conn.execute(self._ensure, {"name": account, "cool_level": 0, "updated_at": now})
        return conn.execute(self._held, {"b_account": account}).one()

    def _paused(self, conn: Connection, row: Row[tuple[object, ...]], account: str,
                limits: Limits, recipients: int, now: datetime, force: bool) -> Pause | None:
        if row.cool_until is not None and row.cool_until > now and not force:
            return Pause(PauseKind.COOL_DOWN, row.cool_until, row.cool_reason or "",
                         blocked=row.cool_kind == Stop.BLOCKED.value)
        if not limits.counted:
            return None
        S = self.S
        sends = [Send(r.at, r.recipients) for r in conn.execute(
            select(S.at, S.recipients).where(S.account == account, S.at > now - DAY)
            .order_by(S.at))]
        return quota_pause(sends, limits, now, recipients)

    @mapped
    def pause(self, account: str, limits: Limits, now: datetime,
              force: bool = False) -> Pause | None:
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            row = conn.execute(select(self.t.account).where(self.A.name == account)).first()
            if row is None:
                return None
            return self._paused(conn, row, account, limits, 1, now, force)

    @mapped
    def reserve(self, account: str, limits: Limits, recipients: int, now: datetime,
                force: bool = False) -> Reserved | Pause:
        A, S = self.A, self.S
        # without limits the slot and the send log only inform `status`: not worth a
        # wait for the disk per mail (the outcome's durable commit comes right after)
        unlimited = not limits.interval and not limits.counted
        with lazy_begin(self.engine) if unlimited else self.engine.begin() as conn:
            row = self._hold(conn, account, now)
            pause = self._paused(conn, row, account, limits, recipients, now, force)
            if pause is not None:
                if pause.kind is PauseKind.QUOTA:
                    conn.execute(update(self.t.account).where(A.name == account).values(
                        quota_until=pause.until, quota_reason=pause.reason, updated_at=now))
                return pause
            slot = max(now, row.next_slot_at or now)
            conn.execute(self._take, {"b_account": account, "b_slot": slot + limits.interval,
                                      "b_now": now})
            send_id = conn.execute(self._log, {"account": account, "at": slot,
                                               "recipients": recipients}).scalar_one()
            if self._pruned.get(account, now - PRUNE_EVERY) <= now - PRUNE_EVERY:
                conn.execute(delete(self.t.account_send).where(
                    S.account == account, S.at < now - KEEP_SENDS))
                self._pruned[account] = now
            return Reserved(send_id, account, slot, row.cool_kind is not None)

    @mapped
    def release(self, slot: Reserved) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(self.t.account_send).where(self.S.id == slot.send_id))

    @mapped
    def cool(self, account: str, stop: Stop, reason: str, now: datetime,
             after_s: float | None = None) -> Pause:
        """A slow-down rests the account, twice as long as the last one if it came
        right after it; one that comes while it rests (a flush, another process)
        does not raise the level again; `after_s`: the server said how long (Graph's
        Retry-After), and that is how long it rests. A session problem is only noted."""
        with self.engine.begin() as conn:
            row = self._hold(conn, account, now)
            resting = row.cool_until is not None and row.cool_until > now
            level = int(row.cool_level) + (0 if resting or stop is Stop.SESSION else 1)
            until = now + (timedelta(seconds=after_s) if after_s is not None
                           else cool_down(stop, max(level, 1)))
            if resting:
                until = max(until, row.cool_until)
            conn.execute(update(self.t.account).where(self.A.name == account).values(
                cool_until=None if stop is Stop.SESSION else until, cool_level=level,
                cool_kind=stop.value, cool_reason=reason, updated_at=now))
        return Pause(PauseKind.COOL_DOWN, until, reason, blocked=stop is Stop.BLOCKED)

    @mapped
    def cleared(self, account: str, now: datetime) -> None:
        A = self.A
        with self.engine.begin() as conn:
            conn.execute(update(self.t.account).where(A.name == account,
                                                      A.cool_kind.is_not(None))
                         .values(cool_until=None, cool_level=0, cool_kind=None,
                                 cool_reason=None, updated_at=now))

    @mapped
    def states(self, now: datetime) -> list[AccountState]:
        A, S = self.A, self.S
        counts = (select(S.account,
                         func.count().filter(S.at > now - HOUR).label("hour"),
                         func.count().label("day"),
                         func.coalesce(func.sum(S.recipients), 0).label("rcpts"))
                  .where(S.at > now - DAY).group_by(S.account).subquery())
        query = (select(self.t.account, counts.c.hour, counts.c.day, counts.c.rcpts)
                 .outerjoin(counts, counts.c.account == A.name).order_by(A.name))
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            return [AccountState(
                name=r.name, sent_last_hour=int(r.hour or 0), sent_last_day=int(r.day or 0),
                recipients_last_day=int(r.rcpts or 0), cool_until=r.cool_until,
                cool_kind=Stop(r.cool_kind) if r.cool_kind else None,
                cool_reason=r.cool_reason, quota_until=r.quota_until,
                quota_reason=r.quota_reason) for r in conn.execute(query)]
