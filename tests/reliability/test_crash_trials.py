"""Crash trials: SIGKILL at chosen moments of a send run, a scan and a migration.
After a restart every document is recorded exactly once and delivered; only the
mails in flight at a crash may arrive twice (counted); the database is intact.

Each kill waits for an event from the child (the test server holding or having
accepted its k-th mail; the outbox holding k entries; the database created or at
the head revision), never for a wall-clock delay, so the counts are reproducible."""

from __future__ import annotations

import collections
import email
import email.policy
import random
import sqlite3
import subprocess
import sys
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Behaviour, Cert, Site, write_site
from tests.test_crash import (
    IN_DATA,
    crash_plan,
    crash_send_run,
    gated_server,
    sigkill,
    unsent,
    wait_for,
)
from tikos_outbox.samples import make_pdf

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SEED = 20261126


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from tikos_outbox.store import migrations_dir

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return str(ScriptDirectory.from_config(cfg).get_current_head())


HEAD = _head()


def cli(site: Site, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tikos_outbox", "--config", str(site.config),
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def read_only(db: Path, sql: str) -> Any:
    """The first value `sql` reads from the database while a child may be writing
    it; None while there is none to read (no file, no table, no row yet).

    Opened read-only, and only once the child has switched the file to WAL (header
    bytes 18-19): the switch needs the file to itself, and in WAL mode a reader
    never blocks the writer."""
    try:
        with db.open("rb") as f:
            header = f.read(20)
    except FileNotFoundError:
        return None
    if header[18:20] != b"\x02\x02":
        return None
    try:
        with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=1)) as conn:
            row = conn.execute(sql).fetchone()
    except sqlite3.DatabaseError:  # e.g. no such table yet
        return None
    return row[0] if row else None


def entries(db: Path) -> int:
    return int(read_only(db, "SELECT count(*) FROM entry") or 0)


def holds(db: Path, k: int) -> bool:
    return entries(db) >= k


def revision(db: Path) -> str | None:
    value = read_only(db, "SELECT version_num FROM alembic_version")
    return None if value is None else str(value)


def at_head(db: Path) -> bool:
    return revision(db) == HEAD


def test_sigkill_during_send_runs(tmp_path: Path, cert: Cert) -> None:
    rng = random.Random(SEED)
    n, trials = 300, 50
    srv, handler = gated_server(cert, Behaviour(stall_s=0.05))
    with srv:
        site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False})
        for i in range(n):
            (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([str(i)]))
        assert site.cli("scan") == 0
        plan = crash_plan(rng, trials, most=4)  # at most 200 of the 300 before the last run
        kills = 0
        for when, through in plan:
            assert unsent(tmp_path / "outbox.db") >= through + 1
            kills += crash_send_run(lambda: cli(site, "flush"), handler, when, through)
        final = cli(site, "flush")
        assert final.wait(timeout=300) == 0
        received = [str(email.message_from_bytes(r.data, policy=email.policy.default)
                        ["Message-ID"]) for r in srv.received]
    in_data = sum(when == IN_DATA for when, _ in plan)
    counts = collections.Counter(received)
    duplicates = sum(c - 1 for c in counts.values())
    with sqlite3.connect(tmp_path / "outbox.db") as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM entry GROUP BY state").fetchall())
        interrupted = conn.execute(
            "SELECT count(*) FROM attempt WHERE outcome = 'interrupted'").fetchone()[0]
    print(f"\ncrash trials (send): {trials} trials, {kills} SIGKILLs, {n} documents,"
          f" {len(counts)} delivered, 0 lost, {duplicates} duplicates,"
          f" {interrupted} interrupted claims recovered")
    assert kills == trials  # every kill landed while the run was sending
    assert len(counts) == n and states == {"sent": n}  # nothing lost
    assert duplicates <= kills  # at most the one mail in flight per crash
    assert duplicates <= trials - in_data  # and only if the server had accepted it
    assert interrupted >= in_data  # each mail held in DATA was left claimed, then recovered
    assert integrity(tmp_path / "outbox.db") == "ok"


def test_sigkill_during_a_scan_of_1000_files(tmp_path: Path) -> None:
    """The first scan is killed as soon as it has created the outbox (while it
    migrates it), each later one once the outbox holds k entries (k drawn beyond
    what it held before, up to 800: a batch or more is still to come)."""
    rng = random.Random(SEED + 1)
    site = write_site(tmp_path, watch={"baseline": False})
    for i in range(1000):
        (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(
            make_pdf([str(i)], padding=rng.randint(20_000, 80_000)))
    db = tmp_path / "outbox.db"
    proc = cli(site, "scan")
    wait_for(proc, "outbox database created by the scan", db.exists)
    kills, trials = int(sigkill(proc)), 1
    while trials < 10 and (before := entries(db)) < 800:
        k = before + rng.randint(1, min(200, 800 - before))
        proc = cli(site, "scan")
        wait_for(proc, f"outbox holding {k} entries", partial(holds, db, k))
        kills += sigkill(proc)
        trials += 1
    assert cli(site, "scan").wait(timeout=300) == 0
    with sqlite3.connect(tmp_path / "outbox.db") as conn:
        rows = conn.execute("SELECT path, count(*) FROM entry GROUP BY path").fetchall()
        states = {s for (s,) in conn.execute("SELECT DISTINCT state FROM entry")}
    print(f"\ncrash trials (scan): {kills} SIGKILLs during a scan of 1,000 files;"
          f" {len(rows)} recorded, each once")
    assert kills == trials  # every kill landed while the scan ran
    assert kills >= 3
    assert len(rows) == 1000 and {c for _, c in rows} == {1}
    assert states == {"pending"}
    assert integrity(tmp_path / "outbox.db") == "ok"


def test_sigkill_during_the_migration(tmp_path: Path) -> None:
    """`migrate` on fresh databases, killed either as soon as it has created the
    database file (the migration under way, not committed) or once the head
    revision is committed (the command not finished yet); in a seeded order."""
    rng = random.Random(SEED + 2)
    plan = ["created"] * 10 + ["committed"] * 5
    rng.shuffle(plan)
    kills = uncommitted = 0
    for trial, when in enumerate(plan):
        site = write_site(tmp_path / f"t{trial}")
        db = tmp_path / f"t{trial}" / "outbox.db"
        proc = cli(site, "migrate")
        if when == "created":
            wait_for(proc, "database file created by migrate", db.exists)
        else:
            wait_for(proc, "head revision committed by migrate", partial(at_head, db))
        kills += sigkill(proc)
        uncommitted += revision(db) != HEAD  # killed before the migration committed
        assert cli(site, "migrate").wait(timeout=60) == 0
        assert cli(site, "status", "--json").wait(timeout=60) == 0
        assert integrity(db) == "ok"
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
                (HEAD,)]
    print(f"\ncrash trials (migrate): {kills} of {len(plan)} runs killed before they finished,"
          f" {uncommitted} of them before the migration committed;"
          " every rerun reached the head revision")
    assert kills == len(plan)  # every kill landed while `migrate` ran
    assert kills >= 5
    assert uncommitted >= 1
