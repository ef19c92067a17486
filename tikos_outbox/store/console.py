"""The web console's records (ConsoleRecords): its users, the log of the
administrators' moves, the search over entries, the mails sent per day and the
send log. The entries themselves are read and moved by `queries` and `commands`."""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from tikos_outbox.core.console import ActionView, Found, Move, Search, SendLogLine, WebRole, WebUser
from tikos_outbox.core.recipients import DState
from tikos_outbox.store.engine import READ_ONLY, mapped
from tikos_outbox.store.queries import Queries
from tikos_outbox.store.tables import Tables

LOG_CHUNK = 2000


class ConsoleStore:
    def __init__(self, engine: Engine, tables: Tables, queries: Queries) -> None:
        self.engine = engine
        self.t = tables
        self.queries = queries

    def _read(self) -> Connection:
        return self.engine.connect().execution_options(**{READ_ONLY: True})

    # -- users ------------------------------------------------------------------------------

    @mapped
    def user(self, name: str) -> WebUser | None:
        U = self.t.web_user.c
        with self._read() as conn:
            row = conn.execute(select(self.t.web_user).where(U.name == name)).first()
        return None if row is None else WebUser(row.name, WebRole(row.role), row.password_hash,
                                                row.created_at, row.valid_from)

    @mapped
    def users(self) -> list[WebUser]:
        U = self.t.web_user.c
        with self._read() as conn:
            rows = conn.execute(select(self.t.web_user).order_by(U.name)).all()
        return [WebUser(r.name, WebRole(r.role), r.password_hash, r.created_at, r.valid_from)
                for r in rows]

    @mapped
    def add_user(self, user: WebUser, actor: str) -> bool:
        """False when the name is taken."""
        U = self.t.web_user.c
        with self.engine.begin() as conn:
            if conn.execute(select(U.name).where(U.name == user.name)).first() is not None:
                return False
            conn.execute(insert(self.t.web_user).values(
                name=user.name, role=user.role.value, password_hash=user.password_hash,
                created_at=user.created_at, valid_from=user.valid_from))
            self._log(conn, actor, Move.USER_ADD, [None], f"{user.name} ({user.role.value})",
                      user.created_at)
        return True

    @mapped
    def set_password(self, name: str, password_hash: str, now: datetime, actor: str) -> bool:
        """A new password; every session of the user ends. False: no such user."""
        U = self.t.web_user.c
        with self.engine.begin() as conn:
            n = conn.execute(update(self.t.web_user).where(U.name == name).values(
                password_hash=password_hash, valid_from=now)).rowcount
            if n:
                self._log(conn, actor, Move.USER_PASSWORD, [None], name, now)
        return bool(n)

    @mapped
    def remove_user(self, name: str, now: datetime, actor: str) -> bool:
        U = self.t.web_user.c
        with self.engine.begin() as conn:
            n = conn.execute(delete(self.t.web_user).where(U.name == name)).rowcount
            if n:
                self._log(conn, actor, Move.USER_REMOVE, [None], name, now)
        return bool(n)

    # -- the audit log ----------------------------------------------------------------------

    @mapped
    def record(self, actor: str, move: Move, entry_ids: Sequence[int | None], detail: str,
               now: datetime) -> None:
        with self.engine.begin() as conn:
            self._log(conn, actor, move, entry_ids, detail, now)

    def _log(self, conn: Connection, actor: str, move: Move,
             entry_ids: Sequence[int | None], detail: str, now: datetime) -> None:
        if entry_ids:
            conn.execute(insert(self.t.action), [
                {"at": now, "actor": actor, "action": move.value, "entry_id": i,
                 "detail": detail} for i in entry_ids])

    @mapped
    def actions(self, entry_id: int | None = None, limit: int = 200) -> list[ActionView]:
        """The newest moves first: of one entry, or all of them."""
        A = self.t.action.c
        q = select(self.t.action)
        if entry_id is not None:
            q = q.where(A.entry_id == entry_id)
        with self._read() as conn:
            rows = conn.execute(q.order_by(A.id.desc()).limit(limit)).all()
        return [ActionView(r.at, r.actor, Move(r.action), r.entry_id, r.detail) for r in rows]

    # -- reading entries --------------------------------------------------------------------

    @mapped
    def search(self, s: Search) -> Found:
        """Newest first. The text is a document or customer number (equal), or part of
        a file name or of a recipient's address (case does not matter for A to Z; an
        umlaut must be typed in the case it has)."""
        E, D = self.t.entry.c, self.t.delivery.c
        q = select(self.t.entry)
        text = s.text.strip()
        if text.isdigit():  # a document or customer number: two index lookups
            q = q.where(or_(E.docno == text, E.customer == text))
        elif text:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace(
                "_", "\\_") + "%"
            q = q.where(or_(
                E.docno == text, E.customer == text, self._contains(E.file_name, pattern),
                E.id.in_(select(D.entry_id).where(self._contains(D.address, pattern)))))
        if s.state:
            q = q.where(E.state == s.state)
        if s.mandant is not None:
            q = q.where(E.mandant == s.mandant)
        if s.since is not None:
            q = q.where(E.created_at >= s.since)
        if s.until is not None:
            q = q.where(E.created_at < s.until)
        with self._read() as conn:
            rows = conn.execute(q.order_by(E.id.desc()).offset(s.offset)
                                .limit(s.per_page + 1)).all()
        views = self.queries.views(rows[:s.per_page])
        return Found(views, len(rows) > s.per_page)

    def _contains(self, column: ColumnElement[str], pattern: str) -> ColumnElement[bool]:
        """Case-insensitive: SQLite's LIKE is so already (for ASCII letters) and reads
        the column without a function call per row; PostgreSQL has ILIKE."""
        if self.engine.dialect.name == "sqlite":
            return column.like(pattern, escape="\\")
        return column.ilike(pattern, escape="\\")

    @mapped
    def delivered_times(self, since: datetime) -> list[datetime]:
        """When each mail since then was delivered to the server (one a delivered
        attempt; a resend counts again on its own day)."""
        A = self.t.attempt.c
        with self._read() as conn:
            return list(conn.scalars(select(A.at).where(A.at >= since,
                                                        A.outcome == "delivered")))

    def send_log(self, since: datetime, until: datetime) -> Iterator[SendLogLine]:
        """What every send attempt in the range settled for each recipient it was for
        (delivered, refused, deferred), and every bounce read in it, in time order.
        Kept with the attempt and its Message-ID, so a later requeue or resend does
        not rewrite it. Read in chunks: a year costs no memory."""
        return heapq.merge(self._chunked(self._attempt_chunk, since, until),
                           self._chunked(self._bounce_chunk, since, until),
                           key=lambda line: line.at)

    @staticmethod
    def _chunked(read: Callable[[datetime, datetime, tuple[datetime, int] | None],
                                tuple[list[SendLogLine], tuple[datetime, int] | None]],
                 since: datetime, until: datetime) -> Iterator[SendLogLine]:
        after: tuple[datetime, int] | None = None
        while True:
            lines, after = read(since, until, after)
            yield from lines
            if after is None:
                return

    @mapped
    def _attempt_chunk(self, since: datetime, until: datetime,
                       after: tuple[datetime, int] | None
                       ) -> tuple[list[SendLogLine], tuple[datetime, int] | None]:
        A = self.t.attempt.c
        rows = self._chunk(self.t.attempt, A.entry_id,
                           [A.id, A.at, A.recipients_json,
                            func.coalesce(A.message_id, self.t.entry.c.message_id)
                            .label("mid")],
                           A.recipients_json.is_not(None), since, until, after)
        lines = [self._line(r, r.mid, address, role, state, reply)
                 for r in rows for address, role, state, reply in json.loads(r.recipients_json)
                 if state != DState.PENDING.value]
        return lines, self._next(rows)

    @mapped
    def _bounce_chunk(self, since: datetime, until: datetime,
                      after: tuple[datetime, int] | None
                      ) -> tuple[list[SendLogLine], tuple[datetime, int] | None]:
        B = self.t.bounce.c
        rows = self._chunk(self.t.bounce, B.entry_id,
                           [B.id, B.at, B.address, B.kind, B.status, B.diagnostic,
                            self.t.entry.c.message_id.label("mid")],
                           B.id.is_not(None), since, until, after)
        lines = [self._line(r, r.mid, r.address, "to",
                            DState.BOUNCED.value if r.kind == "failed" else "delayed",
                            f"{r.status} {r.diagnostic}".strip()) for r in rows]
        return lines, self._next(rows)

    def _chunk(self, table: Table, entry_id: ColumnElement[int],
               columns: list[ColumnElement[Any]], where: ColumnElement[bool], since: datetime,
               until: datetime, after: tuple[datetime, int] | None) -> Sequence[Row[Any]]:
        E, T = self.t.entry.c, table.c
        q = (select(*columns, E.id.label("eid"), E.mandant, E.doctype, E.docno, E.customer,
                    E.file_name, E.sha256)
             .join(self.t.entry, E.id == entry_id)
             .where(T.at >= since, T.at < until, where))
        if after is not None:
            q = q.where(or_(T.at > after[0], and_(T.at == after[0], T.id > after[1])))
        with self._read() as conn:
            return list(conn.execute(q.order_by(T.at, T.id).limit(LOG_CHUNK)))

    @staticmethod
    def _next(rows: Sequence[Row[Any]]) -> tuple[datetime, int] | None:
        return (rows[-1].at, rows[-1].id) if len(rows) == LOG_CHUNK else None

    @staticmethod
    def _line(r: Row[Any], message_id: str, address: str, role: str, state: str,
              reply: str | None) -> SendLogLine:
        return SendLogLine(r.at, r.eid, r.mandant, r.doctype, r.docno, r.customer,
                           r.file_name, r.sha256, message_id, address, role, state,
                           " ".join((reply or "").split()))
