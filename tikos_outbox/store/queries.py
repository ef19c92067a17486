"""Reads from the outbox: typed views, nothing changed."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, func, select

from tikos_outbox.core import attention
from tikos_outbox.core.bounces import Kind
from tikos_outbox.core.einvoice import EInvoice
from tikos_outbox.core.intake import UNREAD
from tikos_outbox.core.recipients import DState, Recipient, Role
from tikos_outbox.core.states import State
from tikos_outbox.core.views import (
    AttemptView,
    BounceView,
    EntryView,
    ListFilter,
    StaleClaim,
    Unresolved,
)
from tikos_outbox.store.engine import READ_ONLY, mapped, padded
from tikos_outbox.store.tables import Tables
from tikos_outbox.store.types import parse_address

CHUNK = 500


class Queries:
    """The outbox's reads (OutboxQueries)."""

    def __init__(self, engine: Engine, tables: Tables,
                 language: attention.Language = attention.Language.DE,
                 address_source: str = "TIKOS") -> None:
        self.engine = engine
        self.language = language
        self.address_source = address_source  # where the "what to do" lines send the office
        self.t = tables
        self.E = tables.entry.c
        B = tables.blob.c  # built once: a send run reads a copy per mail
        self._copy = select(B.data).where(B.sha256 == bindparam("b_sha256"))

    def _read(self) -> Connection:
        return self.engine.connect().execution_options(**{READ_ONLY: True})

    @mapped
    def get_meta(self, key: str) -> str | None:
        M = self.t.meta.c
        with self._read() as conn:
            value = conn.execute(select(M.value).where(M.key == key)).scalar()
        return str(value) if value is not None else None

    @mapped
    def known_among(self, mandant: int, paths: Sequence[str]) -> dict[str, tuple[int, int]]:
        """path -> (size, mtime_ns) of the newest entry, for those of `paths` the outbox
        has: files that need not be read again. Asked in chunks, so that memory does
        not grow with the archive."""
        E = self.E
        out: dict[str, tuple[int, int]] = {}
        with self._read() as conn:
            for i in range(0, len(paths), CHUNK):
                rows = conn.execute(
                    select(E.path, E.size, E.mtime_ns)
                    .where(E.mandant == mandant, E.path.in_(padded(paths[i:i + CHUNK])))
                    .order_by(E.id))
                for path, size, mtime in rows:
                    out[path] = (size, mtime)
        return out

    @mapped
    def unresolved(self, limit: int = CHUNK) -> list[Unresolved]:
        """Pending entries whose recipients were not looked up yet."""
        E = self.E
        with self._read() as conn:
            rows = conn.execute(
                select(E.id, E.mandant, E.fields_json, E.einvoice)
                .where(E.state == State.PENDING.value, E.recipients_json.is_(None))
                .order_by(E.id).limit(limit)).all()
        return [Unresolved(r.id, r.mandant, json.loads(r.fields_json),
                           found.buyer_email if (found := EInvoice.from_json(r.einvoice))
                           else None) for r in rows]

    @mapped
    def ids_in_state(self, state: State, since: datetime | None = None) -> list[int]:
        E = self.E
        q = select(E.id).where(E.state == state.value)
        if since is not None:
            q = q.where(E.created_at >= since)
        with self._read() as conn:
            return list(conn.scalars(q.order_by(E.id)))

    @mapped
    def due_outside(self, mandants: set[int]) -> list[tuple[int, int]]:
        """(id, mandant) of pending or deferred entries whose mandant is not in the set."""
        E = self.E
        with self._read() as conn:
            rows = conn.execute(select(E.id, E.mandant).where(
                E.state.in_([State.PENDING.value, State.DEFERRED.value]),
                E.mandant.not_in(mandants))).all()
        return [(r.id, r.mandant) for r in rows]

    @mapped
    def stale_claims(self, now: datetime, dead_worker: Callable[[str], bool]
                     ) -> list[StaleClaim]:
        """Entries in `sending` whose lease ran out or whose worker is gone."""
        E = self.E
        with self._read() as conn:
            rows = conn.execute(select(E.id, E.claimed_by, E.lease_until)
                                .where(E.state == State.SENDING.value)).all()
        return [StaleClaim(r.id, r.claimed_by or "", r.lease_until) for r in rows
                if r.lease_until is None or r.lease_until <= now
                or dead_worker(r.claimed_by or "")]

    @mapped
    def load_copy(self, sha256: str) -> bytes | None:
        """The outbox's own copy of a document, or None when it was purged."""
        with self._read() as conn:
            data: bytes | None = conn.execute(self._copy, {"b_sha256": sha256}).scalar()
        return data

    @mapped
    def unread_history(self, mandant: int, sizes: Collection[int] | None = None,
                       ids: Sequence[int] | None = None, limit: int | None = None,
                       after_id: int = 0) -> list[tuple[int, str, int, int]]:
        """(id, path, size, mtime_ns) of history entries whose file was never read: of
        these sizes (through the size index), these entries, or the first `limit`
        after `after_id`. (A prefix match, not a range of the marks: a range depends
        on the database's collation, a LIKE prefix does not.)"""
        E = self.E
        q = select(E.id, E.path, E.size, E.mtime_ns).where(
            E.mandant == mandant, E.sha256.startswith(UNREAD), E.id > after_id)
        if sizes is not None:
            q = q.where(E.size.in_(padded(sorted(sizes))))
        if ids is not None:
            q = q.where(E.id.in_(padded(ids)))
        with self._read() as conn:
            return [(r.id, r.path, r.size, r.mtime_ns)
                    for r in conn.execute(q.order_by(E.id).limit(limit))]

    @mapped
    def unread_count(self) -> int:
        """History entries whose file was not read yet (the background reads them)."""
        E = self.E
        # SQLite compares bytes: the marks' range is read from the sha256 index; on
        # PostgreSQL a range would depend on the collation, so the prefix is matched
        unread = (E.sha256.between(UNREAD, UNREAD[:-1] + ";")
                  if self.engine.dialect.name == "sqlite" else E.sha256.startswith(UNREAD))
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(self.t.entry)
                                    .where(unread)).scalar() or 0)

    @mapped
    def attention_count(self) -> int:
        """How many entries need an administrator's move."""
        E = self.E
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(self.t.entry)
                                    .where(E.attention.is_not(None))).scalar() or 0)

    @mapped
    def counts(self) -> dict[str, int]:
        E = self.E
        counts = {st.value: 0 for st in State}
        with self._read() as conn:
            for state, n in conn.execute(select(E.state, func.count()).group_by(E.state)):
                counts[state] = n
        return counts

    @mapped
    def einvoice_counts(self, since: datetime, doctypes: Sequence[str]) -> dict[str, int]:
        """Documents of these types recorded since then (not skipped), by their
        e-invoice data: "valid", "invalid" (e-invoice data, but no valid invoice),
        "none" (a plain PDF)."""
        E = self.E
        out = {"valid": 0, "invalid": 0, "none": 0}
        with self._read() as conn:
            for valid, n in conn.execute(
                    select(E.einvoice_valid, func.count())
                    .where(E.created_at >= since, E.doctype.in_(list(doctypes)),
                           E.state != State.SKIPPED.value)
                    .group_by(E.einvoice_valid)):
                out["none" if valid is None else "valid" if valid else "invalid"] += n
        return out

    @mapped
    def list_entries(self, flt: ListFilter) -> list[EntryView]:
        E = self.E
        q = select(self.t.entry)
        if flt.states:
            q = q.where(E.state.in_(flt.states))
        if flt.mandant is not None:
            q = q.where(E.mandant == flt.mandant)
        if flt.since is not None:
            q = q.where(E.created_at >= flt.since)
        if flt.customer:
            q = q.where(E.customer == flt.customer)
        if flt.docno:
            q = q.where(E.docno == flt.docno)
        if flt.changed_since is not None:
            q = q.where(E.updated_at >= flt.changed_since)
        if flt.attention:
            q = q.where(E.attention.is_not(None))
        if flt.noticed:
            q = q.where(E.notices.is_not(None))
        if flt.after_id is not None:
            q = q.where(E.id > flt.after_id)
        order = E.id.asc() if flt.oldest_first else E.id.desc()
        with self._read() as conn:
            rows = conn.execute(q.order_by(order).limit(flt.limit)).all()
        return self.views(rows)

    @mapped
    def views(self, rows: Sequence[Row[Any]]) -> list[EntryView]:
        """Entry rows as the administrator sees them, with their attempts counted."""
        A = self.t.attempt.c
        ids = [r.id for r in rows]
        with self._read() as conn:
            counts: dict[int, int] = {r[0]: r[1] for r in conn.execute(
                select(A.entry_id, func.count()).where(A.entry_id.in_(padded(ids)))
                .group_by(A.entry_id))} if ids else {}
        return [_view(r, counts.get(r.id, 0), self.language, self.address_source) for r in rows]

    @mapped
    def get_entry(self, entry_id: int) -> EntryView | None:
        E, A, B = self.E, self.t.attempt.c, self.t.blob.c
        with self._read() as conn:
            row = conn.execute(select(self.t.entry).where(E.id == entry_id)).first()
            if row is None:
                return None
            attempts = conn.execute(
                select(self.t.attempt).where(A.entry_id == entry_id).order_by(A.id)).all()
            has_copy = conn.execute(
                select(func.count()).select_from(self.t.blob)
                .where(B.sha256 == row.sha256, B.data.is_not(None))).scalar()
            D = self.t.delivery.c
            deliveries = conn.execute(select(self.t.delivery).where(D.entry_id == entry_id)
                                      .order_by(D.id)).all()
            B = self.t.bounce.c
            bounces = conn.execute(select(self.t.bounce).where(B.entry_id == entry_id)
                                   .order_by(B.id)).all()
        view = _view(row, len(attempts), self.language, self.address_source)
        view.stored_copy = bool(has_copy)
        view.deliveries = [Recipient(d.address, Role(d.role), DState(d.state), d.reply, d.at,
                                     d.name) for d in deliveries]
        view.bounces = [BounceView(b.at, b.address, Kind(b.kind), b.status, b.diagnostic)
                        for b in bounces]
        view.attempts = [
            AttemptView(at=a.at, server=a.server, outcome=a.outcome, code=a.code,
                        reply=a.reply, refused=json.loads(a.refused_json)
                        if a.refused_json else None)
            for a in attempts]
        return view


def _plain(stored: list[str]) -> list[str]:
    """The addresses of stored recipients (`"Name" <addr>` or addr), without names."""
    return [str(a) for a in map(parse_address, stored) if a is not None]


def _view(r: Row[Any], attempt_count: int, language: attention.Language,
          source: str) -> EntryView:
    return EntryView(
        id=r.id, state=r.state, mandant=r.mandant, path=r.path, file_name=r.file_name,
        sha256=r.sha256, size=r.size, doctype=r.doctype, docno=r.docno, customer=r.customer,
        recipients=_plain(json.loads(r.recipients_json)) if r.recipients_json else None,
        refused=json.loads(r.refused_json) if r.refused_json else None,
        reason=r.reason, last_error=r.last_error, message_id=r.message_id,
        created_at=r.created_at, updated_at=r.updated_at, sent_at=r.sent_at,
        next_attempt_at=r.next_attempt_at, attempt_count=attempt_count,
        attention=attention.for_entry(r.attention, r.id, language, source), problem=r.problem,
        needs_force=bool(r.needs_force), einvoice=EInvoice.from_json(r.einvoice),
        notices=attention.notices_for(r.notices, r.id, language, source),
    )
