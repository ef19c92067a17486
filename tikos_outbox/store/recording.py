"""Recording settled files by the identity rules (the intake's writes)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Update,
    bindparam,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError

from tikos_outbox.core.intake import Decision, Prior, curable
from tikos_outbox.core.ports import StoreError
from tikos_outbox.core.recipients import DState, Role
from tikos_outbox.core.states import Event, State, sources, target
from tikos_outbox.core.views import Recorded, Recording
from tikos_outbox.store.engine import mapped, padded
from tikos_outbox.store.tables import Tables

#: the execution option that names the event of a state change (for tests and tracing)
EVENT_OPTION = "tikos_event"
RACE_RETRIES = 5


class _Raced(Exception):
    """An entry the rules decided on changed state before the decision was written."""


class Recorder:
    """Records settled files; holds the one function that changes an entry's state."""

    def __init__(self, engine: Engine, tables: Tables) -> None:
        self.engine = engine
        self.t = tables
        E = self.E = tables.entry.c
        self.is_sqlite = engine.dialect.name == "sqlite"
        # upserts are the dialect's own; only the engine's dialect is loaded
        self.dialect_insert = importlib.import_module(
            f"sqlalchemy.dialects.{engine.dialect.name}").insert
        # a document copy that is already stored (same content) is not stored again
        self._insert_blob = self.dialect_insert(tables.blob).on_conflict_do_nothing(
            index_elements=["sha256"])
        # the intake's hot path, built once: entries of the same mandant with the same
        # path or the same content, by two indexed lookups (an OR would walk the mandant)
        D = tables.delivery.c
        reached = (select(D.id).where(D.entry_id == E.id, D.role == Role.TO.value,
                                      D.state == DState.DELIVERED.value)
                   .exists().label("reached"))  # a customer address already has it
        # of the same content only the first under another path counts (the duplicate
        # rule): a thousand identical files must not make each recording read them all
        first_copy = (select(E.id, E.state, E.sha256, E.path, E.needs_force, E.problem,
                             reached)
                      .where(E.mandant == bindparam("m"), E.sha256 == bindparam("h"),
                             E.path != bindparam("p"))
                      .order_by(E.id).limit(1).subquery())
        self._priors = union_all(
            select(E.id, E.state, E.sha256, E.path, E.needs_force, E.problem, reached)
            .where(E.mandant == bindparam("m"), E.path == bindparam("p")),
            select(first_copy),
        ).order_by("id")
        self._insert_entry = insert(tables.entry).returning(E.id)
        self._insert_history = self.dialect_insert(tables.entry).on_conflict_do_nothing(
            index_elements=["mandant", "path", "sha256"])
        self._history_sql: dict[tuple[str, ...], tuple[str, tuple[str, ...] | None,
                                                      dict[str, Any]]] = {}

    def _transition(self, event: Event, *where: ColumnElement[bool], **values: Any) -> Update:
        """The one statement that changes states: guarded by the event's sources."""
        return (update(self.t.entry)
                .where(self.E.state.in_(sorted(s.value for s in sources(event))), *where)
                .values(state=target(event).value, **values)
                .execution_options(**{EVENT_OPTION: event.value}))

    # -- intake -----------------------------------------------------------------------------

    @mapped
    def record_many(self, items: Sequence[Recording], now: datetime) -> list[Recorded | None]:
        """Record settled files by the identity rules, in one transaction.

        For each item, `decide(same_path, same_content)` applies the rules to what
        the outbox holds (including the items before it); None means the file is
        already recorded. If another process recorded one of them at the same
        moment, the items are recorded one by one instead, and that one is a no-op.
        """
        for _ in range(RACE_RETRIES):
            try:
                with self.engine.begin() as conn:
                    return [self._record(conn, item, now) for item in items]
            except IntegrityError:
                if len(items) == 1:
                    return [None]  # another watcher recorded the same document first
                return [self.record_many([item], now)[0] for item in items]
            except _Raced:
                continue  # decided on a state that changed: decide again on the new one
        raise StoreError("the outbox kept changing while a document was recorded; it is"
                         " recorded at the next pass")

    def _record(self, conn: Connection, item: Recording, now: datetime) -> Recorded | None:
        doc = item.doc
        rows = conn.execute(self._priors, {"m": doc.mandant, "p": doc.path,
                                           "h": doc.sha256}).all()
        same_path = [Prior(r.id, State(r.state), r.sha256,
                           curable(r.problem, bool(r.needs_force)), bool(r.reached))
                     for r in rows if r.path == doc.path]
        dup = next((r for r in rows if r.path != doc.path), None)
        same_content = Prior(dup.id, State(dup.state), dup.sha256) if dup else None
        decision = item.decide(same_path, same_content)
        if decision is None:
            return None
        if decision.state in (State.PENDING, State.HELD) and doc.data is not None:
            # a copy only of what may be mailed: the baseline (often the whole archive),
            # duplicates and skipped entries are not copied; if one is requeued, the
            # send run takes the archive file, provided its content is still the same
            conn.execute(self._insert_blob, {"sha256": doc.sha256, "size": doc.size,
                                             "data": doc.data, "purged_at": None})
        entry_id: int = conn.execute(self._insert_entry,
                                     self._entry_row(item, decision, now)).scalar_one()
        if decision.supersede:
            n = conn.execute(self._transition(Event.SKIP, self.E.id.in_(decision.supersede),
                                              updated_at=now, attention=None,
                                              reason=f"superseded by entry {entry_id}")
                             ).rowcount
            if n != len(decision.supersede):  # a send run took one meanwhile (PostgreSQL)
                raise _Raced
        return Recorded(entry_id, decision)

    @mapped
    def record_history(self, items: Sequence[Recording], now: datetime) -> set[str]:
        """History files of one mandant's first pass, recorded as they are decided
        without an earlier entry (skipped, never read), in one statement; one already
        recorded as it is (same path, size and time) is left alone. Returns the paths
        recorded."""
        rows = []
        for item in items:
            decision = item.decide([], None)
            assert decision is not None and decision.state is State.SKIPPED
            rows.append(self._entry_row(item, decision, now))
        if not rows:
            return set()
        with self.engine.begin() as conn:
            # the driver's executemany (no RETURNING: several times faster); paths the
            # outbox holds as they are (a race with another process) are the only ones
            # the insert can skip, so only then are the inserted ones asked back, by
            # the Message-IDs made for them
            n = self._insert_many(conn, rows)
            if n == len(rows):
                return {r["path"] for r in rows}
            E = self.E
            return set(conn.scalars(select(E.path).where(
                E.message_id.in_(padded(r["message_id"] for r in rows)))))

    def _insert_many(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        """The history insert, through the driver's executemany: SQLAlchemy's own
        parameter handling per row was a fifth of a first pass. The statement is
        compiled once for the dialect; the columns whose type converts a value for
        the driver (times, flags) are converted by that type's own processor."""
        keys = tuple(rows[0])
        if (prepared := self._history_sql.get(keys)) is None:
            compiled = self._insert_history.compile(dialect=conn.dialect, column_keys=keys,
                                                     for_executemany=True)  # no RETURNING
            order = tuple(compiled.positiontup) if compiled.positiontup else None
            assert set(order or compiled.binds) == set(keys), "one parameter per column"
            dialect = conn.dialect
            procs = {k: p for k in keys  # the dialect's own type: SQLite's writes the text
                     if (p := self.t.entry.c[k].type.dialect_impl(dialect)
                         .bind_processor(dialect))}
            prepared = self._history_sql[keys] = (compiled.string, order, procs)
        sql, order, procs = prepared

        done: dict[tuple[str, Any], Any] = {}  # a batch's times are mostly one instant

        def cell(row: dict[str, Any], key: str) -> Any:
            if key not in procs:
                return row[key]
            if (key, row[key]) not in done:
                done[key, row[key]] = procs[key](row[key])
            return done[key, row[key]]

        params: list[Any] = ([tuple(cell(r, k) for k in order) for r in rows] if order
                             else [{k: cell(r, k) for k in keys} for r in rows])
        return int(conn.exec_driver_sql(sql, params).rowcount)

    @staticmethod
    def _entry_row(item: Recording, decision: Decision, now: datetime) -> dict[str, Any]:
        doc = item.doc
        recipients = item.recipients if decision.state is State.PENDING else None
        return {
            "mandant": doc.mandant, "path": doc.path, "file_name": doc.file_name,
            "sha256": doc.sha256, "size": doc.size, "mtime_ns": doc.mtime_ns,
            "doctype": doc.doctype, "docno": doc.docno, "customer": doc.customer,
            "fields_json": json.dumps(doc.fields, ensure_ascii=False),
            "state": decision.state.value, "reason": decision.reason,
            "recipients_json": json.dumps(recipients) if recipients is not None else None,
            "message_id": item.message_id, "created_at": now, "updated_at": now,
            "transient_failures": 0, "attention": decision.attention,
            "problem": decision.problem, "needs_force": decision.needs_force,
            "einvoice": doc.einvoice.to_json() if doc.einvoice else None,
            "einvoice_valid": doc.einvoice.valid_invoice if doc.einvoice else None,
            "notices": (json.dumps([json.loads(n) for n in item.notices], ensure_ascii=False)
                        if item.notices and decision.state in (State.PENDING, State.HELD)
                        else None),
        }

    @mapped
    def set_recipients(self, entry_id: int, recipients: list[str], now: datetime,
                       notices: Sequence[str] = ()) -> bool:
        """The looked-up addresses of a pending entry, with what the lookup noticed
        (added to the entry's notices, each once); False if it is no longer pending."""
        E = self.E
        values: dict[str, Any] = {"recipients_json": json.dumps(recipients), "updated_at": now}
        with self.engine.begin() as conn:
            if notices:
                stored = conn.execute(select(E.notices).where(E.id == entry_id)).scalar()
                merged = _merged(stored, notices)
                if merged != stored:
                    values["notices"] = merged
            n = conn.execute(update(self.t.entry)
                             .where(E.id == entry_id, E.state == State.PENDING.value)
                             .values(**values)).rowcount
        return bool(n)


def _merged(stored: str | None, notices: Sequence[str]) -> str | None:
    """The stored notices (a JSON list of facts) with the new ones that are not in it."""
    items = json.loads(stored) if stored else []
    for facts in map(json.loads, notices):
        if facts not in items:
            items.append(facts)
    return json.dumps(items, ensure_ascii=False) if items else stored

