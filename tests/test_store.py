"""The store contract: the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from tikos_outbox.core import intake
from tikos_outbox.core.states import Event, State
from tikos_outbox.store import ListFilter, NewDocument, Store

NOW = datetime(2026, 11, 26, 9, tzinfo=UTC)


def doc(n: int, path: str | None = None, sha: str | None = None) -> NewDocument:
    return NewDocument(mandant=1, path=path or f"RE_{n}_4711.pdf", file_name=f"RE_{n}_4711.pdf",
                       sha256=sha or f"{n:064x}", size=100 + n, mtime_ns=1_764_000_000_000_000_000,
                       doctype="RE", docno=str(n), customer="4711",
                       fields={"docno": str(n), "customer": "4711"},
                       data=b"%PDF-" + bytes([n % 256]))


def add(store: Store, d: NewDocument, baseline: bool = False) -> int | None:
    def decide(same_path: list[intake.Prior], same: intake.Prior | None) -> intake.Decision | None:
        return intake.decide(sha256=d.sha256, same_path=same_path, same_content=same,
                             baseline=baseline, problem=None)

    recorded = store.record(d, decide, f"<{d.sha256[:8]}@x.example>", NOW)
    if recorded is None:
        return None
    store.set_recipients(recorded[0], ["kunde@example.org"], NOW)
    return recorded[0]


@pytest.fixture
def store(store_url: str) -> Store:
    s = Store(store_url)
    s.migrate()
    s.migrate()  # idempotent
    yield s  # type: ignore[misc]
    s.close()


def test_record_is_idempotent_and_keeps_a_copy(store: Store) -> None:
    first = add(store, doc(1))
    assert first == 1
    assert add(store, doc(1)) is None  # same path, same content
    assert store.load_copy(doc(1).sha256) == doc(1).data
    assert store.known_among(1, ["RE_1_4711.pdf", "RE_2_4711.pdf"]) == {
        "RE_1_4711.pdf": (101, 1_764_000_000_000_000_000)}
    assert store.counts()["pending"] == 1


def test_concurrent_recording_of_one_document_is_a_no_op_not_an_error(store_url: str) -> None:
    stores = [Store(store_url) for _ in range(4)]
    stores[0].migrate()
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
    assert stores[0].counts()["pending"] == 1
    for s in stores:
        s.close()


def test_claims_are_atomic_across_workers(store_url: str) -> None:
    main = Store(store_url)
    main.migrate()
    for n in range(1, 101):
        add(main, doc(n))
    stores = [Store(store_url) for _ in range(4)]
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def worker(i: int, s: Store) -> None:
        barrier.wait()
        mine = claimed.setdefault(f"w{i}", [])
        while batch := s.claim_due(NOW, f"w{i}", NOW + timedelta(minutes=15), 3):
            mine.extend(c.id for c in batch)
            for c in batch:
                assert s.finish(c, f"w{i}", Event.DELIVERED, NOW, server="s", outcome="delivered",
                                code=250, reply="ok")

    threads = [threading.Thread(target=worker, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for ids in claimed.values() for i in ids]
    assert sorted(every) == list(range(1, 101))  # each exactly once
    assert main.counts()["sent"] == 100
    for s in [main, *stores]:
        s.close()


def test_finish_records_the_attempt_and_guards_the_claim(store: Store) -> None:
    add(store, doc(1))
    [c] = store.claim_due(NOW, "w1", NOW + timedelta(minutes=5), 10)
    assert c.previous_state is State.PENDING and c.recipients == ["kunde@example.org"]
    assert not store.finish(c, "w2", Event.DELIVERED, NOW, server="s", outcome="delivered",
                            code=250, reply="ok")  # not w2's claim
    assert store.finish(c, "w1", Event.TRANSIENT, NOW, server="s:25", outcome="transient",
                        code=451, reply="later", next_attempt_at=NOW + timedelta(minutes=30))
    view = store.get_entry(1)
    assert view is not None and view.state == "deferred" and view.last_error == "451 later"
    assert view.next_attempt_at == NOW + timedelta(minutes=30)
    assert [a["code"] for a in view.attempts] == [451]
    assert store.claim_due(NOW, "w1", NOW, 10) == []  # back-off not over
    [c2] = store.claim_due(NOW, "w1", NOW, 10, force_before=NOW + timedelta(seconds=1))
    assert c2.previous_state is State.DEFERRED
    store.unclaim([c2], "w1", NOW)
    assert store.get_entry(1).state == "deferred"  # type: ignore[union-attr]


def test_expired_lease_is_recovered_as_interrupted(store: Store) -> None:
    add(store, doc(1))
    store.claim_due(NOW, "otherhost:1", NOW + timedelta(minutes=5), 10)
    assert store.stale_claims(NOW, lambda w: False) == []  # lease still running
    later = NOW + timedelta(minutes=6)
    assert store.stale_claims(later, lambda w: False) == [(1, "otherhost:1")]
    assert store.recover(1, "otherhost:1", later, "interrupted — may have been delivered")
    view = store.get_entry(1)
    assert view is not None and view.state == "deferred"
    assert view.attempts[0]["outcome"] == "interrupted"
    [again] = store.claim_due(later, "w2", later + timedelta(minutes=5), 10)
    assert again.message_id == "<00000000@x.example>"  # the same Message-ID


def test_admin_events_queries_and_purge(store: Store) -> None:
    for n in range(1, 5):
        add(store, doc(n))
    assert store.apply([1, 2, 99], Event.HOLD, NOW, reason="held") == {
        1: "ok", 2: "ok", 99: "no such entry"}
    assert "cannot take the event" in store.apply([1], Event.HOLD, NOW)[1]
    assert store.ids_in_state(State.HELD) == [1, 2]
    assert [v.id for v in store.list_entries(ListFilter(states=("held",)))] == [2, 1]
    assert [v.id for v in store.list_entries(ListFilter(docno="3"))] == [3]
    for c in store.claim_due(NOW, "w", NOW + timedelta(minutes=5), 10):
        store.finish(c, "w", Event.DELIVERED, NOW, server="s", outcome="delivered", code=250,
                     reply="ok")
    assert store.purge(NOW + timedelta(days=1), NOW) == 2  # the copies of 3 and 4
    assert store.load_copy(doc(3).sha256) is None
    assert store.load_copy(doc(1).sha256) is not None  # held: kept
    store.set_meta("k", "v1", NOW)
    store.set_meta("k", "v2", NOW)
    assert store.get_meta("k") == "v2"


def test_the_migrations_create_exactly_the_models_schema(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from tikos_outbox.models import metadata

    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []
