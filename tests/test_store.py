"""The store contract: the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Update, event, text, update

from tikos_outbox.core import intake
from tikos_outbox.core.bounces import Kind, Notice
from tikos_outbox.core.recipients import DState, Role
from tikos_outbox.core.states import TRANSITIONS, Event, Refusal, State, sources, target
from tikos_outbox.core.views import (
    BouncedEntry,
    Claimed,
    Finish,
    ListFilter,
    NewDocument,
    Recording,
)
from tikos_outbox.store import Store
from tikos_outbox.store.engine import current_revision, head_revision

NOW = datetime(2026, 11, 26, 9, tzinfo=UTC)
OK = Finish(server="s", outcome="delivered", code=250, reply="ok")


def doc(n: int, path: str | None = None, sha: str | None = None) -> NewDocument:
    return NewDocument(mandant=1, path=path or f"RE_{n}_4711.pdf", file_name=f"RE_{n}_4711.pdf",
                       sha256=sha or f"{n:064x}", size=100 + n, mtime_ns=1_764_000_000_000_000_000,
                       doctype="RE", docno=str(n), customer="4711",
                       fields={"docno": str(n), "customer": "4711"},
                       data=b"%PDF-" + bytes([n % 256]))


def add(store: Store, d: NewDocument, baseline: bool = False) -> int | None:
    decide = intake.bind(sha256=d.sha256, baseline=baseline, problem=None, no_address=None)
    [recorded] = store.commands.record_many(
        [Recording(d, decide, f"<{d.sha256[:8]}@x.example>")], NOW)
    if recorded is None:
        return None
    assert store.commands.set_recipients(recorded.entry_id, ["kunde@example.org"], NOW)
    return recorded.entry_id


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    assert s.migrated and not Store(store_url).migrated  # a second open finds it current
    yield s
    s.close()


def test_record_is_idempotent_and_keeps_a_copy(store: Store) -> None:
    first = add(store, doc(1))
    assert first == 1
    assert add(store, doc(1)) is None  # same path, same content
    q = store.queries
    assert q.load_copy(doc(1).sha256) == doc(1).data
    assert q.known_among(1, ["RE_1_4711.pdf", "RE_2_4711.pdf"]) == {
        "RE_1_4711.pdf": (101, 1_764_000_000_000_000_000)}
    assert q.counts()["pending"] == 1


def test_concurrent_recording_of_one_document_is_a_no_op_not_an_error(store_url: str) -> None:
    stores = [Store(store_url) for _ in range(4)]
    results: list[int | None] = []
    barrier = threading.Barrier(4)

    def worker(s: Store) -> None:
        barrier.wait()
        results.append(add(s, doc(7)))

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r for r in results if r is not None) == [1]
    assert stores[0].queries.counts()["pending"] == 1
    for s in stores:
        s.close()


def test_claims_are_atomic_across_workers(store_url: str) -> None:
    main = Store(store_url)
    for n in range(1, 101):
        add(main, doc(n))
    stores = [Store(store_url) for _ in range(4)]
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def worker(i: int, s: Store) -> None:
        barrier.wait()
        mine = claimed.setdefault(f"w{i}", [])
        while batch := s.commands.claim_due(NOW, f"w{i}", NOW + timedelta(minutes=15), 3):
            mine.extend(c.id for c in batch)
            for c in batch:
                assert s.commands.finish(c, f"w{i}", Event.DELIVERED, NOW, OK)

    threads = [threading.Thread(target=worker, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for ids in claimed.values() for i in ids]
    assert sorted(every) == list(range(1, 101))  # each exactly once
    assert main.queries.counts()["sent"] == 100
    for s in [main, *stores]:
        s.close()


def test_finish_records_the_attempt_and_guards_the_claim(store: Store) -> None:
    add(store, doc(1))
    cmd, q = store.commands, store.queries
    [c] = cmd.claim_due(NOW, "w1", NOW + timedelta(minutes=5), 10)
    assert c.previous_state is State.PENDING and c.recipients == ["kunde@example.org"]
    assert not cmd.finish(c, "w2", Event.DELIVERED, NOW, OK)  # not w2's claim
    assert cmd.finish(c, "w1", Event.TRANSIENT, NOW, Finish(
        server="s:25", outcome="transient", code=451, reply="later",
        next_attempt_at=NOW + timedelta(minutes=30)))
    view = q.get_entry(1)
    assert view is not None and view.state == "deferred" and view.last_error == "451 later"
    assert view.next_attempt_at == NOW + timedelta(minutes=30)
    assert [a.code for a in view.attempts] == [451]
    assert cmd.claim_due(NOW, "w1", NOW, 10) == []  # back-off not over
    [c2] = cmd.claim_due(NOW, "w1", NOW, 10, force_before=NOW + timedelta(seconds=1))
    assert c2.previous_state is State.DEFERRED
    cmd.unclaim([c2], "w1", NOW)
    assert q.get_entry(1).state == "deferred"  # type: ignore[union-attr]


def test_the_first_attempt_is_kept_in_utc_whatever_the_clocks_offset(store: Store) -> None:
    """Its time decides when a deferred invoice is given up (`lifetime`): a wall-clock
    time stored as UTC would move that by the offset (found in review: a plain
    DateTime inside COALESCE skipped the UTC conversion)."""
    berlin = timezone(timedelta(hours=1))
    cmd = store.commands
    for n, end in ((1, "finish"), (2, "recover")):
        add(store, doc(n))
        first = (NOW + timedelta(minutes=n)).astimezone(berlin)  # 10:0n+01:00 = 09:0n UTC
        [c] = cmd.claim_due(first, "w1", first + timedelta(minutes=5), 10)
        if end == "finish":
            assert cmd.finish(c, "w1", Event.TRANSIENT, first, Finish(
                server="s", outcome="transient", code=451, reply="later", next_attempt_at=first))
        else:
            [stale] = store.queries.stale_claims(first + timedelta(minutes=6), lambda w: False)
            assert cmd.recover(stale, first, "interrupted")
        later = first + timedelta(hours=1)
        [again] = cmd.claim_due(later, "w2", later + timedelta(minutes=5), 10)
        assert (again.id, again.first_attempt_at, again.transient_failures) == (n, first, 1), end
        assert again.first_attempt_at is not None and again.first_attempt_at.utcoffset() == \
            timedelta(0)
        cmd.finish(again, "w2", Event.DELIVERED, later, OK)


def test_expired_lease_is_recovered_as_interrupted(store: Store) -> None:
    add(store, doc(1))
    cmd, q = store.commands, store.queries
    cmd.claim_due(NOW, "otherhost:1", NOW + timedelta(minutes=5), 10)
    assert q.stale_claims(NOW, lambda w: False) == []  # lease still running
    later = NOW + timedelta(minutes=6)
    [stale] = q.stale_claims(later, lambda w: False)
    assert (stale.entry_id, stale.worker) == (1, "otherhost:1")
    assert cmd.recover(stale, later, "interrupted — may have been delivered")
    assert not cmd.recover(stale, later, "again")  # only once
    view = q.get_entry(1)
    assert view is not None and view.state == "deferred"
    assert view.attempts[0].outcome == "interrupted"
    [again] = cmd.claim_due(later, "w2", later + timedelta(minutes=5), 10)
    assert again.message_id == "<00000000@x.example>"  # the same Message-ID


def test_admin_events_queries_and_purge(store: Store) -> None:
    for n in range(1, 5):
        add(store, doc(n))
    cmd, q = store.commands, store.queries
    results = cmd.move([1, 2, 99], Event.HOLD, NOW, reason="held")
    assert {i: (r.ok, r.refusal) for i, r in results.items()} == {
        1: (True, None), 2: (True, None), 99: (False, Refusal.NO_SUCH_ENTRY)}
    again = cmd.move([1], Event.HOLD, NOW)[1]
    assert again.refusal is Refusal.NOT_ALLOWED and "cannot take the event" in again.explain()
    assert q.ids_in_state(State.HELD) == [1, 2]
    assert [v.id for v in q.list_entries(ListFilter(states=("held",)))] == [2, 1]
    assert [v.id for v in q.list_entries(ListFilter(docno="3"))] == [3]
    for c in cmd.claim_due(NOW, "w", NOW + timedelta(minutes=5), 10):
        cmd.finish(c, "w", Event.DELIVERED, NOW, OK)
    assert cmd.purge(NOW + timedelta(days=1), NOW) == 2  # the copies of 3 and 4
    assert q.load_copy(doc(3).sha256) is None
    assert q.load_copy(doc(1).sha256) is not None  # held: kept
    cmd.set_meta("k", "v1", NOW)
    cmd.set_meta("k", "v2", NOW)
    assert q.get_meta("k") == "v2"


def delivered(c: Claimed, refused: tuple[str, ...] = ()) -> Finish:
    """The attempt's result as the delivery use case records it."""
    return replace(OK, recipients=tuple(
        replace(r, state=DState.REFUSED if r.address in refused else DState.DELIVERED,
                reply="550 no" if r.address in refused else "250 ok", at=NOW)
        for r in c.deliveries))


def test_requeue_gives_a_sent_entry_a_new_message_id_and_keeps_the_others(store: Store) -> None:
    add(store, doc(1))
    add(store, doc(2))
    cmd, q = store.commands, store.queries
    [c1] = cmd.claim_due(NOW, "w", NOW + timedelta(minutes=5), 1, bcc=["kopie@x.example"])
    assert [(r.address, r.role, r.state) for r in c1.deliveries] == [
        ("kunde@example.org", Role.TO, DState.PENDING),
        ("kopie@x.example", Role.BCC, DState.PENDING)]
    cmd.finish(c1, "w", Event.DELIVERED, NOW, delivered(c1))
    cmd.move([2], Event.HOLD, NOW, reason="held")
    results = cmd.requeue({1: "<new1@x>", 2: "<new2@x>"}, NOW)
    assert all(r.ok for r in results.values())
    one, two = q.get_entry(1), q.get_entry(2)
    assert one is not None and two is not None
    assert (one.state, one.message_id, one.sent_at, one.recipients) == (
        "pending", "<new1@x>", None, None)
    assert (two.state, two.message_id) == ("pending", "<00000000@x.example>")
    assert one.deliveries == []  # a resend starts afresh


def test_requeue_of_a_partly_refused_entry_keeps_who_has_it(store: Store) -> None:
    add(store, doc(1))
    cmd, q = store.commands, store.queries
    cmd.set_recipients(1, ["a@x.example", "b@x.example"], NOW)
    [c] = cmd.claim_due(NOW, "w", NOW + timedelta(minutes=5), 1)
    cmd.finish(c, "w", Event.DELIVERED, NOW, delivered(c, refused=("b@x.example",)))
    assert cmd.requeue({1: "<new@x>"}, NOW)[1].ok
    view = q.get_entry(1)
    assert view is not None and view.message_id == "<00000000@x.example>"  # the same mail
    assert [(d.address, d.state) for d in view.deliveries] == [("a@x.example", "delivered")]
    cmd.set_recipients(1, ["a@x.example", "b-neu@x.example"], NOW)  # corrected in TIKOS
    [again] = cmd.claim_due(NOW, "w", NOW + timedelta(minutes=5), 1)
    assert again.due == ["b-neu@x.example"]  # a@ has it: not again


def test_an_admin_move_on_an_entry_being_sent_is_refused(store: Store) -> None:
    add(store, doc(1))
    [c] = store.commands.claim_due(NOW, "w", NOW + timedelta(minutes=5), 1)
    for ev in (Event.HOLD, Event.RELEASE, Event.SKIP):
        res = store.commands.move([1], ev, NOW, reason="x")[1]
        assert res.refusal is Refusal.BUSY and "being sent right now" in res.explain()
    assert store.commands.requeue({1: "<n@x>"}, NOW)[1].refusal is Refusal.BUSY
    assert store.commands.finish(c, "w", Event.DELIVERED, NOW, OK)  # the claim is intact
    assert store.queries.get_entry(1).state == "sent"  # type: ignore[union-attr]


def test_every_update_of_the_state_column_is_guarded_by_the_table(store: Store) -> None:
    """Walk every statement the store sends while every event happens at least once:
    each UPDATE that sets `state` names its event, sets that event's target, and is
    guarded by exactly that event's sources."""
    from tikos_outbox.store.recording import EVENT_OPTION

    seen: set[Event] = set()

    @event.listens_for(store.engine, "before_execute")
    def watch(_conn: Any, clause: Any, *_args: Any) -> None:
        if not (isinstance(clause, Update) and clause.table.name == "entry"):
            return
        compiled = clause.compile()
        if "state" not in {getattr(k, "key", k) for k in clause._values or {}}:
            return
        name = clause.get_execution_options().get(EVENT_OPTION)
        assert name is not None, f"a state change outside the transition table: {compiled}"
        ev = Event(name)
        guard = re.search(r"entry\.state IN \(__\[POSTCOMPILE_(\w+)\]\)", str(compiled))
        assert guard is not None, f"an unguarded state change: {compiled}"
        assert set(compiled.params[guard.group(1)]) == {s.value for s in sources(ev)}
        assert compiled.params["state"] == target(ev).value
        seen.add(ev)

    cmd = store.commands
    for n in range(1, 7):
        add(store, doc(n))
    add(store, doc(8, path="RE_1_4711.pdf"))  # supersedes entry 1: SKIP
    cmd.move([2], Event.HOLD, NOW, reason="h")
    cmd.move([2], Event.RELEASE, NOW)
    cmd.requeue({2: "<r@x>"}, NOW)
    cmd.set_recipients(2, ["kunde@example.org"], NOW)  # no state change: not an event
    outcome = {2: Event.DELIVERED, 3: Event.TRANSIENT, 4: Event.PERMANENT, 5: Event.EXPIRE}
    for c in cmd.claim_due(NOW, "w", NOW + timedelta(minutes=1), 10):  # CLAIM
        if c.id in outcome:
            cmd.finish(c, "w", outcome[c.id], NOW, OK)
        else:
            cmd.unclaim([c], "w", NOW)  # UNCLAIM_FRESH (6, 7)
    cmd.claim_due(NOW, "gone:1", NOW, 1, force_before=NOW + timedelta(1))  # 3
    for stale in store.queries.stale_claims(NOW + timedelta(seconds=1), lambda w: True):
        assert cmd.recover(stale, NOW, "interrupted")  # INTERRUPTED
    [c3] = cmd.claim_due(NOW, "w", NOW, 1, force_before=NOW + timedelta(1))
    cmd.unclaim([c3], "w", NOW)  # UNCLAIM_RETRY
    to = store.queries.get_entry(2).deliveries  # type: ignore[union-attr]
    with store.engine.begin() as conn:  # as a send that went through leaves them
        conn.execute(update(store.tables.delivery).values(state="delivered"))
    store.bounces.record(BouncedEntry(2, "4711", tuple((d.address, d.role) for d in to)),
                         "<bounce@mx>", [Notice(d.address, Kind.FAILED, "5.1.1", "550 5.1.1")
                                         for d in to], NOW)  # BOUNCE
    assert store.queries.get_entry(2).state == "bounced"  # type: ignore[union-attr]
    assert seen == set(Event), set(Event) - seen
    assert {e for (_, e) in TRANSITIONS} == set(Event)


def test_the_schema_check_is_one_query_and_alembic_agrees_on_the_head(store: Store) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from tikos_outbox.store import migrations_dir

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head()
    assert current_revision(store.engine) == head_revision()


def test_the_migrations_create_exactly_the_models_schema(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from tikos_outbox.models import metadata

    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []


def test_database_errors_leave_the_store_as_its_own(tmp_path: Any) -> None:
    from tikos_outbox.core.ports import StoreError, StoreUnavailable

    url = f"sqlite:///{tmp_path}/outbox.db"
    s = Store(url)
    with s.engine.begin() as conn:
        conn.execute(text("DROP TABLE meta"))
    with pytest.raises(StoreError, match="no such table: meta"):
        s.queries.get_meta("heartbeat")
    s.close()
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreUnavailable, match="cannot be used"):
        Store(f"sqlite:///{tmp_path}/dir.db")


def test_a_hold_racing_a_claim_on_postgresql_never_overwrites_it(pg_url: str) -> None:
    """Two connections: a send run's claim holds the row (uncommitted) while an
    admin's hold arrives. PostgreSQL makes the hold wait, then re-checks its
    guard against the committed claim: the hold is refused, the claim stands."""
    s = Store(pg_url)
    add(s, doc(1))
    claim = s.engine.connect()
    tx = claim.begin()
    claim.execute(text("UPDATE entry SET state = 'sending', claimed_by = 'w' WHERE id = 1"
                       " AND state IN ('deferred', 'pending')"))
    holding = threading.Event()
    result: dict[str, Any] = {}

    def admin() -> None:
        holding.set()
        result["hold"] = s.commands.move([1], Event.HOLD, NOW, reason="by admin")[1]

    t = threading.Thread(target=admin)
    t.start()
    holding.wait()
    with s.engine.connect() as probe:  # wait until the hold is blocked on the row lock
        while t.is_alive() and not probe.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()")).scalar():
            probe.rollback()
            t.join(0.01)
    tx.commit()
    t.join()
    claim.close()
    assert result["hold"].refusal is Refusal.BUSY
    view = s.queries.get_entry(1)
    assert view is not None and view.state == "sending"
    s.close()


def test_the_migration_carries_existing_entries_over_to_per_recipient_delivery(
        store_url: str) -> None:
    """An outbox of the first round (revision 0002) upgraded: sent entries' recipients
    are delivered (the refused ones refused), failed ones refused, and what needs
    attention says so."""
    from alembic import command
    from alembic.config import Config

    from tikos_outbox.store import migrations_dir
    from tikos_outbox.store.engine import make_engine

    engine = make_engine(store_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    rows = [  # id, state, recipients, refused, reason, last_error
        (1, "sent", ["a@x.example", "b@x.example"], {"b@x.example": "550 5.1.1 unknown"},
         None, "refused: b@x.example"),
        (2, "failed", ["c@x.example"], None, "The server refused the recipient: 550 no",
         "The server refused the recipient: 550 no"),
        (3, "held", None, None, "incomplete PDF (no %%EOF at the end)", None),
        (4, "skipped", None, None, "no e-mail address found for customer 4711", None),
        (5, "pending", ["d@x.example"], None, None, None),
    ]
    with engine.begin() as conn:
        for entry_id, state, rcpt, refused, reason, last_error in rows:
            conn.execute(text(
                "INSERT INTO entry (id, mandant, path, file_name, sha256, size, mtime_ns,"
                " doctype, docno, customer, fields_json, state, reason, recipients_json,"
                " refused_json, message_id, created_at, updated_at, sent_at,"
                " transient_failures, last_error) VALUES (:id, 1, :p, :p, :h, 1, 1, 'RE',"
                " '1', '4711', '{}', :s, :r, :rc, :rf, :m, :t, :t, :sent, 0, :e)"),
                {"id": entry_id, "p": f"RE_{entry_id}_4711.pdf", "h": f"{entry_id:064x}",
                 "s": state, "r": reason, "rc": json.dumps(rcpt) if rcpt else None,
                 "rf": json.dumps(refused) if refused else None, "m": f"<{entry_id}@x>",
                 "t": NOW.replace(tzinfo=None), "e": last_error,
                 "sent": NOW.replace(tzinfo=None) if state == "sent" else None})
    engine.dispose()
    s = Store(store_url)
    assert s.migrated
    q = s.queries
    views = {i: q.get_entry(i) for i in range(1, 6)}
    assert all(v is not None for v in views.values())
    one, two, three, four, five = (views[i] for i in range(1, 6))
    assert one is not None and two is not None and three is not None
    assert four is not None and five is not None
    assert [(d.address, d.state.value, d.reply) for d in one.deliveries] == [
        ("a@x.example", "delivered", None), ("b@x.example", "refused", "550 5.1.1 unknown")]
    assert one.attention is not None and "b@x.example abgelehnt" in one.attention
    assert [(d.address, d.state.value) for d in two.deliveries] == [("c@x.example", "refused")]
    assert two.attention is not None and "`tikos-outbox requeue 2`" in two.attention
    assert three.attention is not None and three.attention.startswith("angehalten")
    assert three.problem == "incomplete PDF (no %%EOF at the end)" and three.needs_force
    assert four.attention is not None and four.attention.startswith("Kunde 4711: keine")
    assert five.deliveries == [] and five.attention is None  # rows come with its first send
    assert q.attention_count() == 4
    s.close()


def test_a_claim_taken_over_after_its_lease_is_not_renewed(store: Store) -> None:
    """A slow run whose lease ran out: another process recovered the entry, so the
    first one must not send it (renew before DATA says no)."""
    add(store, doc(1))
    cmd, q = store.commands, store.queries
    [c] = cmd.claim_due(NOW, "slow:1", NOW + timedelta(minutes=1), 1)
    assert cmd.renew(c, "slow:1", NOW + timedelta(minutes=10))
    later = NOW + timedelta(minutes=11)
    [stale] = q.stale_claims(later, lambda w: False)
    assert cmd.recover(stale, later, "interrupted")
    assert not cmd.renew(c, "slow:1", later + timedelta(minutes=10))


def test_copying_an_outbox_keeps_who_has_the_mail(store_url: str, tmp_path: Any) -> None:
    from tikos_outbox.store.copy import copy_outbox

    old_url = f"sqlite:///{tmp_path}/old.db"
    old = Store(old_url)
    add(old, doc(1))
    old.commands.set_recipients(1, ["a@x.example", "b@x.example"], NOW)
    [c] = old.commands.claim_due(NOW, "w", NOW + timedelta(minutes=5), 1)
    cmd_finish = replace(OK, recipients=tuple(
        replace(r, state=DState.DELIVERED if r.address == "a@x.example" else DState.DEFERRED)
        for r in c.deliveries))
    old.commands.finish(c, "w", Event.TRANSIENT, NOW, cmd_finish)
    old.close()
    new = Store(store_url)
    assert copy_outbox(old_url, new) == 1
    [again] = new.commands.claim_due(NOW, "w2", NOW + timedelta(minutes=5), 1,
                                     force_before=NOW + timedelta(1))
    assert again.due == ["b@x.example"]  # a@ has it: not again after the move
    new.close()


def test_a_database_url_without_its_driver_is_one_clear_error() -> None:
    from tikos_outbox.core.ports import StoreUnavailable

    with pytest.raises(StoreUnavailable, match=r"postgresql\+pg8000://u:\*\*\*@h/x cannot be"):
        Store("postgresql+pg8000://u:secretpw@h/x")


def test_einvoice_facts_notices_and_counts_round_trip(store: Store) -> None:
    from tikos_outbox.core import attention
    from tikos_outbox.core.einvoice import Format, Syntax, judged

    valid = judged(Format.FACTURX, Syntax.CII, "urn:cen.eu:en16931:2017", None,
                   buyer_email="einkauf@hotel.example", attachment="factur-x.xml",
                   number="7")
    minimum = judged(Format.FACTURX, Syntax.CII, "urn:factur-x.eu:1p0:minimum", None)
    note = attention.einvoice_sent("4711", "3", "2027-01-01", {"why": "plain"})
    ids = []
    for n, found, notices in [(1, valid, ()), (2, minimum, ()), (3, None, (note,))]:
        d = replace(doc(n), einvoice=found)
        decide = intake.bind(sha256=d.sha256, baseline=False, problem=None)
        [rec] = store.commands.record_many([Recording(d, decide, f"<{n}@x>", None, notices)],
                                           NOW)
        assert rec is not None
        ids.append(rec.entry_id)
    ls = replace(doc(4), doctype="LS")  # not an invoice type: not counted
    add(store, ls)
    view = store.queries.get_entry(ids[0])
    assert view is not None and view.einvoice == valid and view.notices == []
    third = store.queries.get_entry(ids[2])
    assert third is not None and third.einvoice is None
    assert third.notices == [attention.for_entry(note, ids[2])]
    assert [v.id for v in store.queries.list_entries(ListFilter(noticed=True))] == [ids[2]]
    assert store.queries.einvoice_counts(NOW - timedelta(days=1), ["RE"]) == {
        "valid": 1, "invalid": 1, "none": 1}
    assert store.queries.einvoice_counts(NOW + timedelta(seconds=1), ["RE"]) == {
        "valid": 0, "invalid": 0, "none": 0}
    [unresolved] = [u for u in store.queries.unresolved() if u.entry_id == ids[0]]
    assert unresolved.buyer_email == "einkauf@hotel.example"


def test_history_is_recorded_in_bulk_unread_then_read_once(store: Store) -> None:
    """The first pass's history in one statement (on both engines): recorded once,
    unread, found by size, and its content put in place of the mark only while the
    mark is still the one the store holds."""
    from dataclasses import replace

    history = [replace(doc(n, sha=intake.unread_sha(100 + n, 1_764_000_000_000_000_000)),
                       data=None) for n in range(1, 6)]
    def items(run: int) -> list[Recording]:
        return [Recording(d, intake.bind(sha256=d.sha256, baseline=True, problem=None),
                          f"<h{d.docno}.{run}@x>") for d in history]

    sent: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: sent.append(statement))
    assert store.commands.record_history(items(1), NOW) == {d.path for d in history}
    assert sent and not [s for s in sent if "RETURNING" in s.upper()], sent  # not wanted
    assert store.commands.record_history(items(2), NOW) == set()  # recorded as they are
    assert store.queries.counts()["skipped"] == 5
    [(entry_id, path, size, _)] = store.queries.unread_history(1, sizes=[103])
    assert (path, size) == ("RE_3_4711.pdf", 103)
    view = store.queries.get_entry(entry_id)  # written through the driver: as it was given
    assert view is not None and (view.state, view.message_id, view.created_at,
                                 view.updated_at, view.needs_force, view.docno) == (
        "skipped", "<h3.1@x>", NOW, NOW, False, "3")
    add(store, doc(9))  # the ordinary way, through SQLAlchemy's own parameters
    with store.engine.connect() as conn:  # the same stored form (SQLite: the same text)
        raw = conn.exec_driver_sql("SELECT DISTINCT created_at, needs_force FROM entry").all()
    assert len(raw) == 1, raw
    assert len(store.queries.unread_history(1, sizes=[101, 102, 999])) == 2
    mark = intake.unread_sha(103, 1_764_000_000_000_000_000)
    assert store.commands.reveal(entry_id, mark, "ab" * 32)
    assert not store.commands.reveal(entry_id, mark, "cd" * 32)  # read once
    assert store.queries.unread_history(1, sizes=[103]) == []
    assert len(store.queries.unread_history(1, limit=10)) == 4


def test_only_the_send_log_of_an_account_without_limits_is_committed_without_waiting_for_the_disk(
        store: Store) -> None:
    """Per mail, a month-end through a local server without limits commits the send
    log and then the outcome; only the first may skip the wait for the disk (the
    second, which keeps a mail from being sent twice, writes it too). A paced account's
    slot, and every other write, waits."""
    from tikos_outbox.core.pacing import Limits

    engine = store.engine
    durable: list[tuple[str, bool]] = []  # (the transaction's first write, durable)
    writes: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if m := re.match(r'\s*(?:INSERT INTO|UPDATE|DELETE FROM)\s+"?(\w+)', statement):
            writes.append(m.group(1))

    @event.listens_for(engine, "commit")
    def _commit(conn: Any) -> None:
        cur = conn.connection.dbapi_connection.cursor()
        if engine.dialect.name == "sqlite":
            cur.execute("PRAGMA synchronous")
            waits = cur.fetchone()[0] == 2  # FULL
        else:
            cur.execute("SHOW synchronous_commit")
            waits = cur.fetchone()[0] == "on"
        cur.close()
        if writes:
            durable.append((writes[0], waits))
        writes.clear()

    store.accounts.reserve("unlimited", Limits(), 1, NOW)
    store.accounts.reserve("paced", Limits(per_minute=10), 1, NOW)
    store.accounts.reserve("counted", Limits(per_day=100), 1, NOW)
    store.accounts.reserve("unlimited", Limits(), 1, NOW)  # the same connection, again
    add(store, doc(1))
    assert durable[:4] == [("account", False), ("account", True), ("account", True),
                           ("account", False)]
    assert durable[4:] and all(waits for _, waits in durable[4:]), durable
    assert [a.sent_last_hour for a in store.accounts.states(NOW + timedelta(minutes=1))] == [
        1, 1, 2]  # counted, paced, unlimited: status still counts every send


def test_an_in_list_of_any_length_takes_one_of_a_few_statement_shapes(store: Store) -> None:
    """A folder that grows by one file at a time is asked about with one more path each
    time: every new length was a statement of its own, prepared again and kept in each
    SQLite connection's statement cache (the soak's native memory growth)."""
    from tikos_outbox.store.engine import SHAPES, padded

    assert padded([]) == [] and padded([7]) == [7] and padded([1, 2, 3]) == [1, 2, 3, 3]
    assert padded(range(501)) == list(range(501))  # beyond the chunk: as it is
    add(store, doc(1))
    statements: set[str] = set()

    @event.listens_for(store.engine, "before_cursor_execute")
    def _seen(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        statements.add(statement)

    for n in range(1, 301):
        paths = [f"RE_{i}_4711.pdf" for i in range(1, n + 1)]
        assert store.queries.known_among(1, paths) == {
            "RE_1_4711.pdf": (101, 1_764_000_000_000_000_000)}
    asked = {s for s in statements if "entry.path IN" in s}
    assert 1 < len(asked) <= len(SHAPES), len(asked)
