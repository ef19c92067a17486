"""Writes to the outbox. The transition table is the only writer of an entry's
state: every change is one `UPDATE … SET state = target(event) WHERE state IN
sources(event)`, built by `Recorder._transition` (store/recording.py), so two
processes can never move one entry twice, and an admin's move never overwrites
a send run's claim."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Update,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import BindParameter

from tikos_outbox.core.recipients import DState, Recipient, Role
from tikos_outbox.core.states import (
    Event,
    MoveResult,
    Refusal,
    State,
    is_resend,
    target,
)
from tikos_outbox.core.views import Claimed, Finish, StaleClaim
from tikos_outbox.store.engine import mapped, padded
from tikos_outbox.store.recording import Recorder
from tikos_outbox.store.retention import Retention
from tikos_outbox.store.tables import Tables
from tikos_outbox.store.types import parse_address

#: the reply of a recipient that TIKOS holds but that is no e-mail address at all
INVALID = "not a valid e-mail address (as TIKOS holds it); never offered to the server"


def _valid(recipients_json: str) -> list[str]:
    """The stored customer recipients that are addresses (for the To header)."""
    return [x for x in json.loads(recipients_json) if parse_address(x) is not None]


#: Events that end a send attempt: legal only from `sending`, for the claiming worker.
FINISHING = frozenset({Event.DELIVERED, Event.TRANSIENT, Event.PERMANENT, Event.EXPIRE,
                       Event.INTERRUPTED, Event.UNCLAIM_FRESH, Event.UNCLAIM_RETRY})


class Commands(Recorder, Retention):
    """The outbox's writes (OutboxCommands): recording (Recorder), the events on
    entries, the send run's claims and results, retention."""

    def __init__(self, engine: Engine, tables: Tables) -> None:
        super().__init__(engine, tables)
        upsert = self.dialect_insert(tables.meta)
        self._upsert_meta = upsert.on_conflict_do_update(
            index_elements=["key"], set_={"value": upsert.excluded.value,
                                          "updated_at": upsert.excluded.updated_at})
        self._insert_attempt = insert(tables.attempt)
        D = tables.delivery.c
        self._set_delivery = (update(tables.delivery)
                              .where(D.entry_id == bindparam("b_entry"),
                                     D.role == bindparam("b_role"),
                                     D.address == bindparam("b_address"),
                                     D.state != DState.BOUNCED.value)
                              .values(state=bindparam("b_state"), reply=bindparam("b_reply"),
                                      at=bindparam("b_at")))
        self._finish_shapes: dict[tuple[Event, tuple[str, ...]], Update] = {}

    @mapped
    def set_meta(self, key: str, value: str, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(self._upsert_meta, {"key": key, "value": value, "updated_at": now})

    # -- events on entries ----------------------------------------------------------------

    @mapped
    def move(self, ids: Sequence[int], event: Event, now: datetime, reason: str | None = None,
             attention: str | None = None, force: bool = False) -> dict[int, MoveResult]:
        """An admin's or the service's event (hold, release, skip) on entries, with
        the reason and the attention line it leaves (release clears both). An
        entry whose file is not a mailable PDF is released only with `force`."""
        if event in FINISHING or event in (Event.CLAIM, Event.REQUEUE):
            raise ValueError(f"the event {event} has its own command")
        E = self.E
        guard = [E.id.in_(padded(ids))]
        extra: dict[str, Any] = {}
        if event is Event.RELEASE:
            if force:
                extra["needs_force"] = False  # the administrator's consent is recorded
            else:
                guard.append(E.needs_force.is_(False))
        with self.engine.begin() as conn:
            moved = set(conn.scalars(self._transition(
                event, *guard, updated_at=now, reason=reason, attention=attention, **extra)
                .returning(E.id)))
            return self._results(conn, ids, event, moved)

    @mapped
    def requeue(self, new_message_ids: Mapping[int, str], now: datetime,
                resend: bool = True) -> dict[int, MoveResult]:
        """Back to pending with the retry bookkeeping reset and the addresses to be
        looked up again. A sent entry that every customer address received is a
        deliberate resend: its recipients start afresh under the new Message-ID
        from `new_message_ids`. Otherwise the recipients who have the mail keep it
        (they do not get it twice) and the rest are tried again, same Message-ID.
        Without `resend`, an entry whose document the customer has already is left
        as it is (refused as unconfirmed), decided in the same transaction."""
        E, D = self.E, self.t.delivery.c
        moved: set[int] = set()
        unconfirmed: set[int] = set()
        with self.engine.begin() as conn:
            for entry_id, message_id in new_message_ids.items():
                row = conn.execute(select(E.state, E.reason).where(E.id == entry_id)).first()
                state = row.state if row is not None else None
                if row is not None and not resend and is_resend(State(row.state), row.reason):
                    unconfirmed.add(entry_id)
                    continue
                rows = conn.execute(select(D.role, D.state).where(D.entry_id == entry_id)).all()
                afresh = state == State.SENT.value and all(
                    r.state == DState.DELIVERED.value for r in rows if r.role == Role.TO.value)
                changes: dict[str, Any] = {"message_id": message_id, "sent_at": None} \
                    if afresh else {}
                done = list(conn.scalars(self._transition(
                    Event.REQUEUE, E.id == entry_id, E.state == state,
                    E.needs_force.is_(False), updated_at=now,
                    reason=None, attention=None, recipients_json=None, refused_json=None,
                    next_attempt_at=None, first_attempt_at=None, transient_failures=0,
                    last_error=None, **changes).returning(E.id)))
                if not done:
                    continue
                moved.add(entry_id)
                stale = D.entry_id == entry_id
                if not afresh:
                    stale = stale & (D.state != DState.DELIVERED.value)
                conn.execute(delete(self.t.delivery).where(stale))
            return self._results(conn, list(new_message_ids), Event.REQUEUE, moved,
                                 unconfirmed)

    def _results(self, conn: Connection, ids: Sequence[int], event: Event,
                 moved: set[int], unconfirmed: set[int] | None = None
                 ) -> dict[int, MoveResult]:
        E = self.E
        rows = {r.id: r for r in conn.execute(
            select(E.id, E.state, E.needs_force, E.problem).where(E.id.in_(padded(ids))))}
        out: dict[int, MoveResult] = {}
        for entry_id in ids:
            row = rows.get(entry_id)
            state = State(row.state) if row is not None else None
            if entry_id in moved:
                out[entry_id] = MoveResult(entry_id, event, state)
            elif unconfirmed and entry_id in unconfirmed:
                out[entry_id] = MoveResult(entry_id, event, state, Refusal.UNCONFIRMED)
            elif row is None:
                out[entry_id] = MoveResult(entry_id, event, None, Refusal.NO_SUCH_ENTRY)
            elif state is State.SENDING:
                out[entry_id] = MoveResult(entry_id, event, state, Refusal.BUSY)
            elif event in (Event.RELEASE, Event.REQUEUE) and row.needs_force:
                out[entry_id] = MoveResult(entry_id, event, state, Refusal.NEEDS_FORCE,
                                           row.problem)
            else:
                out[entry_id] = MoveResult(entry_id, event, state, Refusal.NOT_ALLOWED)
        return out

    # -- sending ----------------------------------------------------------------------------

    @mapped
    def claim_due(self, now: datetime, worker: str, lease_until: datetime, limit: int,
                  mandant: int | None = None, force_before: datetime | None = None,
                  bcc: Sequence[str] = ()) -> list[Claimed]:
        """Atomically move up to `limit` due entries to `sending` for this worker,
        each with its recipients: the customer's addresses and the `bcc` copies,
        those not yet known to the entry added as pending.

        Due: pending, or deferred with its back-off over; with `force_before`
        (a flush) also every deferred entry last changed before that instant.
        """
        E = self.E
        retry_due = or_(E.next_attempt_at.is_(None), E.next_attempt_at <= now)
        if force_before is not None:
            retry_due = or_(retry_due, E.updated_at < force_before)
        due = or_(E.state == State.PENDING.value, (E.state == State.DEFERRED.value) & retry_due)
        pick = (select(E.id).where(due, E.recipients_json.is_not(None))
                .order_by(E.id).limit(limit))
        if mandant is not None:
            pick = pick.where(E.mandant == mandant)
        if not self.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        with self.engine.begin() as conn:
            ids = list(conn.scalars(self._transition(
                Event.CLAIM, E.id.in_(pick.scalar_subquery()), claimed_by=worker,
                lease_until=lease_until, updated_at=now).returning(E.id)))
            if not ids:
                return []
            rows = conn.execute(select(self.t.entry).where(E.id.in_(padded(ids)))
                                .order_by(E.id)).all()
            recipients = self._recipients(conn, [(r.id, json.loads(r.recipients_json))
                                                 for r in rows], bcc)
            return [Claimed(
                id=r.id, mandant=r.mandant, path=r.path, file_name=r.file_name,
                sha256=r.sha256, doctype=r.doctype, docno=r.docno, customer=r.customer,
                fields=json.loads(r.fields_json), recipients=_valid(r.recipients_json),
                message_id=r.message_id, first_attempt_at=r.first_attempt_at,
                transient_failures=r.transient_failures,
                # a deferred entry always has a transient failure; a pending one none
                previous_state=State.DEFERRED if r.transient_failures else State.PENDING,
                deliveries=tuple(recipients[r.id]), account_stops=r.account_stops,
            ) for r in rows]

    def _recipients(self, conn: Connection, entries: Sequence[tuple[int, list[str]]],
                    bcc: Sequence[str]) -> dict[int, list[Recipient]]:
        """Every recipient of these entries, after adding the missing ones as pending
        (a Bcc that is also a customer address is not added twice)."""
        D = self.t.delivery.c
        ids = [entry_id for entry_id, _ in entries]
        known = {(r.entry_id, r.role, r.address.lower()) for r in conn.execute(
            select(D.entry_id, D.role, D.address).where(D.entry_id.in_(padded(ids))))}
        missing = []
        copies = [a for a in (parse_address(b) for b in bcc) if a is not None]
        for entry_id, stored in entries:
            parsed = [(x, parse_address(x)) for x in stored]
            to = [a for _, a in parsed if a is not None]
            customers = {a.envelope.lower() for a in to}
            wanted: list[tuple[Role, str, str, DState, str | None]] = [
                (Role.TO, a.envelope, a.name, DState.PENDING, None) for a in to]
            wanted += [(Role.TO, x, "", DState.REFUSED, INVALID) for x, a in parsed if a is None]
            wanted += [(Role.BCC, b.envelope, b.name, DState.PENDING, None) for b in copies
                       if b.envelope.lower() not in customers]
            for role, address, name, state, reply in wanted:
                key = (entry_id, role.value, address.lower())
                if key not in known:
                    known.add(key)
                    missing.append({"entry_id": entry_id, "role": role.value,
                                    "address": address, "name": name, "state": state.value,
                                    "reply": reply, "at": None})
        if missing:
            conn.execute(insert(self.t.delivery), missing)
        out: dict[int, list[Recipient]] = {entry_id: [] for entry_id in ids}
        for r in conn.execute(select(self.t.delivery).where(D.entry_id.in_(padded(ids)))
                              .order_by(D.id)):
            out[r.entry_id].append(Recipient(r.address, Role(r.role), DState(r.state),
                                             r.reply, r.at, r.name))
        return out

    def _finishing(self, event: Event, entry_id: int | BindParameter[int],
                   worker: str | BindParameter[str] | None,
                   now: datetime | BindParameter[datetime], **values: Any) -> Update:
        """A claim ends: only the claiming worker's, only from `sending`."""
        E = self.E
        return self._transition(event, E.id == entry_id, E.state == State.SENDING.value,
                                E.claimed_by == worker, claimed_by=None, lease_until=None,
                                updated_at=now, **values)

    def _finished(self, event: Event, keys: tuple[str, ...]) -> Update:
        """`finish`'s UPDATE for `event` setting the columns `keys`, built once per
        shape (a handful: the events that end an attempt, with or without a reason),
        its values bound at execution as `b_<column>`, with `b_id`, `b_worker`, `b_now`.
        Built per mail it cost more than SQLite's work."""
        statement = self._finish_shapes.get((event, keys))
        if statement is None:
            E = self.E
            now = bindparam("b_now", type_=E.updated_at.type)
            extra = {"transient_failures": E.transient_failures + 1} \
                if event is Event.TRANSIENT else {}
            statement = self._finishing(
                event, bindparam("b_id"), bindparam("b_worker"), now,
                first_attempt_at=func.coalesce(E.first_attempt_at, now),
                **{k: bindparam(f"b_{k}", type_=E[k].type) for k in keys}, **extra)
            self._finish_shapes[(event, keys)] = statement
        return statement

    @mapped
    def finish(self, claimed: Claimed, worker: str, event: Event, now: datetime,
               result: Finish) -> bool:
        """Record one attempt and the entry's new state in one commit.

        Returns False if the entry was no longer this worker's claim.
        """
        refused_json = json.dumps(result.refused, ensure_ascii=False) if result.refused else None
        offered = {(r.address, r.role) for r in claimed.deliveries if r.due}
        values: dict[str, Any] = {"attention": result.attention}
        if target(event) is State.SENT:
            values.update(sent_at=now, refused_json=refused_json, next_attempt_at=None,
                          reason=None, last_error=(f"refused: {', '.join(result.refused)}"
                                                   if result.refused else None))
        else:
            values.update(last_error=result.reason or f"{result.code or ''} {result.reply}".strip(),
                          next_attempt_at=result.next_attempt_at)
            if result.reason is not None:
                values["reason"] = result.reason
        statement = self._finished(event, tuple(values))
        with self.engine.begin() as conn:  # Core, statements built once: this runs per mail
            if conn.execute(statement, {"b_id": claimed.id, "b_worker": worker, "b_now": now,
                                        **{f"b_{k}": v for k, v in values.items()}}
                            ).rowcount != 1:
                return False
            conn.execute(self._insert_attempt, {
                "entry_id": claimed.id, "at": now, "server": result.server,
                "outcome": result.outcome, "code": result.code, "reply": result.reply,
                "refused_json": refused_json, "message_id": claimed.message_id,
                "recipients_json": json.dumps(  # those this attempt was for: the send log
                    [[r.address, r.role.value, r.state.value, r.reply]
                     for r in result.recipients if (r.address, r.role) in offered],
                    ensure_ascii=False)})
            if result.recipients:  # (a bounce read meanwhile is newer: it stays)
                conn.execute(self._set_delivery, [
                    {"b_entry": claimed.id, "b_role": r.role.value, "b_address": r.address,
                     "b_state": r.state.value, "b_reply": r.reply, "b_at": r.at}
                    for r in result.recipients])
        return True

    @mapped
    def renew(self, claimed: Claimed, worker: str, lease_until: datetime) -> bool:
        """Extend this worker's claim right before its DATA; False if the claim is no
        longer this worker's (its lease ran out and another process recovered it):
        the mail must then not be sent."""
        E = self.E
        with self.engine.begin() as conn:
            return bool(conn.execute(
                update(self.t.entry)
                .where(E.id == claimed.id, E.state == State.SENDING.value,
                       E.claimed_by == worker)
                .values(lease_until=lease_until)).rowcount)

    @mapped
    def unclaim(self, claims: Sequence[Claimed], worker: str, now: datetime,
                stopped_by: int | None = None) -> None:
        """Give entries back untouched (the run stopped before their DATA, or for
        their account); `stopped_by`, the entry whose reply stopped it, counts that."""
        with self.engine.begin() as conn:
            for c in claims:
                event = (Event.UNCLAIM_RETRY if c.previous_state is State.DEFERRED
                         else Event.UNCLAIM_FRESH)
                extra = {"account_stops": self.E.account_stops + 1} if c.id == stopped_by else {}
                conn.execute(self._finishing(event, c.id, worker, now, **extra))

    @mapped
    def recover(self, stale: StaleClaim, now: datetime, reason: str) -> bool:
        """A claim that a crash left behind becomes `deferred`, its attempt noted."""
        E = self.E
        with self.engine.begin() as conn:
            n = conn.execute(self._finishing(
                Event.INTERRUPTED, stale.entry_id, stale.worker or None, now,
                last_error=reason, next_attempt_at=now,
                first_attempt_at=func.coalesce(E.first_attempt_at,
                                               literal(now, E.first_attempt_at.type)),
                transient_failures=E.transient_failures + 1)).rowcount
            if n != 1:
                return False
            conn.execute(self._insert_attempt, {
                "entry_id": stale.entry_id, "at": now, "server": "", "outcome": "interrupted",
                "code": None, "reply": reason, "refused_json": None})
        return True

    # -- history ----------------------------------------------------------------------------

    @mapped
    def reveal(self, entry_id: int, unread: str, sha256: str) -> bool:
        """A history entry's content, read at last, in place of its unread mark."""
        E = self.E
        try:
            with self.engine.begin() as conn:
                return bool(conn.execute(update(self.t.entry).where(
                    E.id == entry_id, E.sha256 == unread).values(sha256=sha256)).rowcount)
        except IntegrityError:  # the same path with this content is recorded already
            return False
