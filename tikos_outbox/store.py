"""The outbox on SQLAlchemy (SQLite by default, PostgreSQL for larger sites).

Every state change is a guarded UPDATE (`WHERE state IN (legal sources)`), so
two processes can never move one entry twice; claims are atomic.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    Engine,
    Table,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tikos_outbox.core.intake import Decision, Prior
from tikos_outbox.core.states import CLAIMABLE, Event, State, sources, transition
from tikos_outbox.models import Attempt, Blob, Entry, Meta

log = logging.getLogger(__name__)

ENTRY = cast(Table, getattr(Entry, "__table__"))  # noqa: B009 - typed as a Table here
ATTEMPT = cast(Table, getattr(Attempt, "__table__"))  # noqa: B009
BLOB = cast(Table, getattr(Blob, "__table__"))  # noqa: B009
META = cast(Table, getattr(Meta, "__table__"))  # noqa: B009
E, A, B = ENTRY.c, ATTEMPT.c, BLOB.c

# statements of the intake's hot path, built once (recording 10,000 files builds none)
# entries of the same mandant with the same path or the same content; two indexed
# lookups (with one OR, SQLite would walk every entry of the mandant)
_PRIORS = union_all(
    select(E.id, E.state, E.sha256, E.path)
    .where(E.mandant == bindparam("m"), E.path == bindparam("p")),
    select(E.id, E.state, E.sha256, E.path)
    .where(E.mandant == bindparam("m"), E.sha256 == bindparam("h")),
).order_by("id")
_INSERT_ENTRY = insert(ENTRY).returning(E.id)
_INSERT_ATTEMPT = insert(ATTEMPT)

SQLITE_BUSY_TIMEOUT_MS = 30_000


class StoreError(Exception):
    """The outbox database cannot be used (locked, read-only, full, unreachable)."""


def migrations_dir() -> Path:
    """`migrations/` beside the package (a checkout) or inside it (an installed wheel)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StoreError("the database migrations are missing from this installation")


def make_engine(url: str, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> Engine:
    """An engine with the settings the outbox relies on (SQLite: WAL, busy timeout,
    BEGIN IMMEDIATE so that a read-then-write transaction never fails half-way)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


@dataclass(frozen=True)
class NewDocument:
    mandant: int
    path: str
    file_name: str
    sha256: str
    size: int
    mtime_ns: int
    doctype: str
    docno: str
    customer: str
    fields: dict[str, str]
    data: bytes


#: decide(same_path, same_content) -> Decision | None: the identity rules, bound to one file
Decide = Callable[[list[Prior], Prior | None], Decision | None]


@dataclass(frozen=True)
class Recording:
    """A settled file to record, with its addresses when they were looked up."""

    doc: NewDocument
    decide: Decide
    message_id: str
    recipients: list[str] | None = None


@dataclass(frozen=True)
class Claimed:
    """An entry a send run has taken (state `sending`)."""

    id: int
    mandant: int
    path: str
    file_name: str
    sha256: str
    doctype: str
    docno: str
    customer: str
    fields: dict[str, str]
    recipients: list[str]
    message_id: str
    first_attempt_at: datetime | None
    transient_failures: int
    previous_state: State


@dataclass
class EntryView:
    """An entry as the CLI shows it."""

    id: int
    state: str
    mandant: int
    path: str
    file_name: str
    sha256: str
    size: int
    doctype: str
    docno: str
    customer: str
    recipients: list[str] | None
    refused: dict[str, str] | None
    reason: str | None
    last_error: str | None
    message_id: str
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    attempt_count: int
    attempts: list[dict[str, Any]] = field(default_factory=list)
    stored_copy: bool = False


@dataclass(frozen=True)
class ListFilter:
    states: tuple[str, ...] = ()
    mandant: int | None = None
    since: datetime | None = None
    customer: str | None = None
    docno: str | None = None
    changed_since: datetime | None = None
    limit: int = 50


class Store:
    """The outbox database."""

    def __init__(self, url: str, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
        self.url = url
        self.engine = make_engine(url, busy_timeout_s)
        self.is_sqlite = url.startswith("sqlite")
        # a document copy that is already stored (same content) is not stored again
        blob_insert = sqlite_insert(BLOB) if self.is_sqlite else pg_insert(BLOB)
        self._insert_blob = blob_insert.on_conflict_do_nothing(index_elements=["sha256"])

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed at the end, rolled back on any error."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    # -- schema ---------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema up to date (idempotent, safe to run at every start)."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(migrations_dir()))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    # -- meta -----------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(Meta, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str, now: datetime) -> None:
        with self.session() as s:
            row = s.get(Meta, key)
            if row is None:
                s.add(Meta(key=key, value=value, updated_at=now))
            else:
                row.value = value
                row.updated_at = now

    # -- intake ---------------------------------------------------------------------------

    def known_among(self, mandant: int, paths: Sequence[str]) -> dict[str, tuple[int, int]]:
        """path -> (size, mtime_ns) of the newest entry, for those of `paths` the outbox
        has: files that need not be read again. Asked in chunks, so that memory does
        not grow with the archive."""
        out: dict[str, tuple[int, int]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(paths), 500):
                rows = conn.execute(
                    select(E.path, E.size, E.mtime_ns)
                    .where(E.mandant == mandant, E.path.in_(paths[i:i + 500]))
                    .order_by(E.id))
                for path, size, mtime in rows:
                    out[path] = (size, mtime)
        return out

    def record(self, doc: NewDocument, decide: Decide, message_id: str, now: datetime,
               recipients: list[str] | None = None) -> tuple[int, Decision] | None:
        """Record one settled file; see record_many."""
        return self.record_many([Recording(doc, decide, message_id, recipients)], now)[0]

    def record_many(self, items: Sequence[Recording], now: datetime
                    ) -> list[tuple[int, Decision] | None]:
        """Record settled files by the identity rules, in one transaction.

        For each item, `decide(same_path, same_content)` applies the rules to
        what the outbox holds (including the items before it); None means the
        file is already recorded. If another process recorded one of them at
        the same moment, the items are recorded one by one instead, and that
        one is a no-op.
        """
        try:
            with self.session() as s:
                return [self._record(s, item, now) for item in items]
        except IntegrityError:
            if len(items) == 1:
                return [None]  # another watcher recorded the same document first
            return [self.record_many([item], now)[0] for item in items]

    def _record(self, s: Session, item: Recording, now: datetime) -> tuple[int, Decision] | None:
        doc = item.doc
        rows = s.execute(_PRIORS, {"m": doc.mandant, "p": doc.path, "h": doc.sha256}).all()
        same_path = [Prior(r.id, State(r.state), r.sha256) for r in rows if r.path == doc.path]
        dup = next((r for r in rows if r.path != doc.path), None)
        same_content = Prior(dup.id, State(dup.state), dup.sha256) if dup else None
        decision = item.decide(same_path, same_content)
        if decision is None:
            return None
        if decision.state in (State.PENDING, State.HELD):
            # a copy only of what may be mailed: the baseline (often the whole archive),
            # duplicates and skipped entries are not copied; if one is requeued, the
            # send run takes the archive file, provided its content is still the same
            s.execute(self._insert_blob, {"sha256": doc.sha256, "size": doc.size,
                                          "data": doc.data, "purged_at": None})
        recipients = item.recipients if decision.state is State.PENDING else None
        entry_id: int = s.execute(_INSERT_ENTRY, {
            "mandant": doc.mandant, "path": doc.path, "file_name": doc.file_name,
            "sha256": doc.sha256, "size": doc.size, "mtime_ns": doc.mtime_ns,
            "doctype": doc.doctype, "docno": doc.docno, "customer": doc.customer,
            "fields_json": json.dumps(doc.fields, ensure_ascii=False),
            "state": decision.state.value, "reason": decision.reason,
            "recipients_json": json.dumps(recipients) if recipients is not None else None,
            "message_id": item.message_id, "created_at": now, "updated_at": now,
            "transient_failures": 0,
        }).scalar_one()
        if decision.supersede:
            s.execute(
                update(ENTRY)
                .where(E.id.in_(decision.supersede), E.state.in_(sources(Event.SKIP)))
                .values(state=State.SKIPPED.value, updated_at=now,
                        reason=f"superseded by entry {entry_id}")
            )
        return entry_id, decision

    def unresolved(self, limit: int = 500) -> list[tuple[int, int, dict[str, str]]]:
        """Pending entries whose recipients were not looked up yet: (id, mandant, fields)."""
        with self.session() as s:
            rows = s.execute(
                select(E.id, E.mandant, E.fields_json)
                .where(E.state == State.PENDING.value, E.recipients_json.is_(None))
                .order_by(E.id)
                .limit(limit)
            ).all()
        return [(r.id, r.mandant, json.loads(r.fields_json)) for r in rows]

    def set_recipients(self, entry_id: int, recipients: list[str], now: datetime) -> None:
        with self.session() as s:
            s.execute(
                update(ENTRY)
                .where(E.id == entry_id)
                .values(recipients_json=json.dumps(recipients), updated_at=now)
            )

    # -- state changes by event ---------------------------------------------------------

    def apply(
        self,
        ids: Iterable[int],
        ev: Event,
        now: datetime,
        reason: str | None = None,
        **values: Any,
    ) -> dict[int, str]:
        """Apply an admin or service event to entries; returns id -> 'ok' or why not."""
        result: dict[int, str] = {}
        with self.session() as s:
            for entry_id in ids:
                row = s.get(Entry, entry_id)
                if row is None:
                    result[entry_id] = "no such entry"
                    continue
                state = State(row.state)
                try:
                    new = transition(state, ev)
                except ValueError as exc:
                    result[entry_id] = str(exc)
                    continue
                row.state = new.value
                row.updated_at = now
                if reason is not None or ev in (Event.RELEASE, Event.REQUEUE):
                    row.reason = reason
                for k, v in values.items():
                    setattr(row, k, v(row) if callable(v) else v)
                result[entry_id] = "ok"
        return result

    def ids_in_state(self, state: State, since: datetime | None = None) -> list[int]:
        with self.session() as s:
            q = select(E.id).where(E.state == state.value)
            if since is not None:
                q = q.where(E.created_at >= since)
            return list(s.scalars(q.order_by(E.id)))

    # -- sending ----------------------------------------------------------------------------

    def claim_due(
        self,
        now: datetime,
        worker: str,
        lease_until: datetime,
        limit: int,
        mandant: int | None = None,
        force_before: datetime | None = None,
    ) -> list[Claimed]:
        """Atomically move up to `limit` due entries to `sending` for this worker.

        Due: pending, or deferred with its back-off over; with `force_before`
        (a flush) also every deferred entry last changed before that instant.
        """
        db_now = now
        retry_due = or_(E.next_attempt_at.is_(None),
                        E.next_attempt_at <= db_now)
        if force_before is not None:
            retry_due = or_(retry_due, E.updated_at < force_before)
        due = or_(
            E.state == State.PENDING.value,
            (E.state == State.DEFERRED.value) & retry_due,
        )
        pick = (
            select(E.id)
            .where(due, E.recipients_json.is_not(None))
            .order_by(E.id)
            .limit(limit)
        )
        if mandant is not None:
            pick = pick.where(E.mandant == mandant)
        if not self.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        with self.session() as s:
            claimed_ids = list(
                s.scalars(
                    update(ENTRY)
                    .where(E.id.in_(pick.scalar_subquery()),
                           E.state.in_([st.value for st in CLAIMABLE]))
                    .values(state=State.SENDING.value, claimed_by=worker,
                            lease_until=lease_until, updated_at=db_now)
                    .returning(E.id)
                )
            )
            if not claimed_ids:
                return []
            rows = s.scalars(
                select(Entry).where(E.id.in_(claimed_ids)).order_by(E.id)
            ).all()
            out = []
            for r in rows:
                assert r.id is not None and r.recipients_json is not None
                # a deferred entry always has a transient failure; a pending one none
                prev = State.DEFERRED if r.transient_failures else State.PENDING
                out.append(Claimed(
                    id=r.id, mandant=r.mandant, path=r.path, file_name=r.file_name,
                    sha256=r.sha256, doctype=r.doctype, docno=r.docno, customer=r.customer,
                    fields=json.loads(r.fields_json), recipients=json.loads(r.recipients_json),
                    message_id=r.message_id, first_attempt_at=(r.first_attempt_at),
                    transient_failures=r.transient_failures, previous_state=prev,
                ))
            return out

    def due_outside(self, mandants: set[int]) -> list[tuple[int, int]]:
        """(id, mandant) of pending or deferred entries whose mandant is not in the set."""
        with self.session() as s:
            rows = s.execute(
                select(E.id, E.mandant).where(
                    E.state.in_([State.PENDING.value, State.DEFERRED.value]),
                    E.mandant.not_in(mandants))
            ).all()
        return [(r.id, r.mandant) for r in rows]

    def load_copy(self, sha256: str) -> bytes | None:
        """The outbox's own copy of a document, or None when it was purged."""
        with self.session() as s:
            data: bytes | None = s.scalar(select(B.data).where(B.sha256 == sha256))
            return data

    def finish(
        self,
        claimed: Claimed,
        worker: str,
        ev: Event,
        now: datetime,
        *,
        server: str,
        outcome: str,
        code: int | None,
        reply: str,
        refused: dict[str, str] | None = None,
        next_attempt_at: datetime | None = None,
        reason: str | None = None,
    ) -> bool:
        """Record one attempt and the entry's new state in one commit.

        Returns False if the entry was no longer this worker's claim.
        """
        new = transition(State.SENDING, ev)
        db_now = now
        refused_json = json.dumps(refused, ensure_ascii=False) if refused else None
        values: dict[str, Any] = {
            "state": new.value, "updated_at": db_now, "claimed_by": None, "lease_until": None,
            "first_attempt_at": func.coalesce(E.first_attempt_at, db_now),
        }
        if new is State.SENT:
            values.update(sent_at=db_now, refused_json=refused_json, next_attempt_at=None,
                          last_error=(f"refused: {', '.join(refused)}" if refused else None),
                          reason=None)
        else:
            values.update(last_error=reason or f"{code} {reply}".strip(),
                          next_attempt_at=next_attempt_at)
            if reason is not None:
                values["reason"] = reason
            if ev is Event.TRANSIENT or ev is Event.INTERRUPTED:
                values["transient_failures"] = E.transient_failures + 1
        with self.engine.begin() as conn:  # Core, no ORM: this runs once per mail
            n = conn.execute(
                update(ENTRY)
                .where(E.id == claimed.id, E.state == State.SENDING.value,
                       E.claimed_by == worker)
                .values(**values)
            ).rowcount
            if n != 1:
                return False
            conn.execute(_INSERT_ATTEMPT, {
                "entry_id": claimed.id, "at": db_now, "server": server, "outcome": outcome,
                "code": code, "reply": reply, "refused_json": refused_json})
        return True

    def unclaim(self, claims: Sequence[Claimed], worker: str, now: datetime) -> None:
        """Give entries back untouched (the run stopped before their DATA)."""
        with self.session() as s:
            for c in claims:
                s.execute(
                    update(ENTRY)
                    .where(E.id == c.id, E.state == State.SENDING.value,
                           E.claimed_by == worker)
                    .values(state=c.previous_state.value, claimed_by=None, lease_until=None,
                            updated_at=now)
                )

    def stale_claims(self, now: datetime, dead_workers: Any) -> list[tuple[int, str]]:
        """Entries in `sending` whose lease ran out or whose worker is gone: (id, worker)."""
        with self.session() as s:
            rows = s.execute(
                select(E.id, E.claimed_by, E.lease_until)
                .where(E.state == State.SENDING.value)
            ).all()
        out = []
        for r in rows:
            expired = r.lease_until is None or (r.lease_until) <= now
            if expired or dead_workers(r.claimed_by or ""):
                out.append((r.id, r.claimed_by or ""))
        return out

    def recover(self, entry_id: int, worker: str, now: datetime, reason: str) -> bool:
        """A claim that a crash left behind becomes `deferred`, its attempt noted."""
        db_now = now
        with self.session() as s:
            n = s.execute(
                update(ENTRY)
                .where(E.id == entry_id, E.state == State.SENDING.value,
                       E.claimed_by == (worker or None))
                .values(state=State.DEFERRED.value, claimed_by=None, lease_until=None,
                        last_error=reason, next_attempt_at=db_now, updated_at=db_now,
                        first_attempt_at=func.coalesce(E.first_attempt_at, db_now),
                        transient_failures=E.transient_failures + 1)
            ).rowcount  # type: ignore[attr-defined]
            if n != 1:
                return False
            s.add(Attempt(entry_id=entry_id, at=db_now, server="", outcome="interrupted",
                          code=None, reply=reason))
        return True

    # -- queries ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        counts = {st.value: 0 for st in State}
        with self.session() as s:
            for state, n in s.execute(select(E.state, func.count()).group_by(E.state)):
                counts[state] = n
        return counts

    def list_entries(self, flt: ListFilter) -> list[EntryView]:
        with self.session() as s:
            q = select(Entry)
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
            rows = s.scalars(q.order_by(E.id.desc()).limit(flt.limit)).all()
            ids = [r.id for r in rows]
            attempt_counts: dict[int, int] = {
                entry_id: n for entry_id, n in s.execute(
                    select(A.entry_id, func.count()).where(A.entry_id.in_(ids))
                    .group_by(A.entry_id))
            } if ids else {}
            return [_view(r, attempt_counts.get(r.id or 0, 0)) for r in rows]

    def get_entry(self, entry_id: int) -> EntryView | None:
        with self.session() as s:
            row = s.get(Entry, entry_id)
            if row is None:
                return None
            attempts = s.scalars(
                select(Attempt).where(A.entry_id == entry_id).order_by(A.id)
            ).all()
            has_copy = s.scalar(
                select(func.count()).select_from(BLOB)
                .where(B.sha256 == row.sha256, B.data.is_not(None))
            )
            view = _view(row, len(attempts))
            view.stored_copy = bool(has_copy)
            view.attempts = [
                {"at": (a.at), "server": a.server, "outcome": a.outcome, "code": a.code,
                 "reply": a.reply, "refused": json.loads(a.refused_json) if a.refused_json
                 else None}
                for a in attempts
            ]
            return view

    def purge(self, sent_before: datetime, now: datetime) -> int:
        """Drop the stored copies whose every entry was sent (or skipped) before the date."""
        cutoff = sent_before
        with self.session() as s:
            keep = select(E.sha256).where(
                or_(E.state.not_in([State.SENT.value, State.SKIPPED.value]),
                    E.updated_at > cutoff)
            )
            n = s.execute(
                update(BLOB)
                .where(B.data.is_not(None), B.sha256.not_in(keep))
                .values(data=None, purged_at=now)
            ).rowcount  # type: ignore[attr-defined]
        return int(n)


def _view(r: Entry, attempt_count: int) -> EntryView:
    assert r.id is not None
    return EntryView(
        id=r.id, state=r.state, mandant=r.mandant, path=r.path, file_name=r.file_name,
        sha256=r.sha256, size=r.size, doctype=r.doctype, docno=r.docno, customer=r.customer,
        recipients=json.loads(r.recipients_json) if r.recipients_json else None,
        refused=json.loads(r.refused_json) if r.refused_json else None,
        reason=r.reason, last_error=r.last_error, message_id=r.message_id,
        created_at=(r.created_at), updated_at=(r.updated_at),
        sent_at=(r.sent_at), next_attempt_at=(r.next_attempt_at),
        attempt_count=attempt_count,
    )
