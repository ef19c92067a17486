"""Crash trials: SIGKILL at random moments of a send run, a scan and a migration.
After a restart every document is recorded exactly once and delivered; only the
mails in flight at a crash may arrive twice (counted); the database is intact."""

from __future__ import annotations

import collections
import email
import email.policy
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import Behaviour, Cert, Site, SmtpServer, write_site
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


def kill_at_random(site: Site, rng: random.Random, lo: float, hi: float, *args: str) -> bool:
    """Start a command and SIGKILL it after a random delay; True if it was killed."""
    proc = cli(site, *args)
    time.sleep(rng.uniform(lo, hi))
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return killed


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def test_sigkill_during_send_runs(tmp_path: Path, cert: Cert) -> None:
    rng = random.Random(SEED)
    n, trials = 300, 50
    with SmtpServer(cert, "none", behaviour=Behaviour(stall_s=0.05)) as srv:
        site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False})
        for i in range(n):
            (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([str(i)]))
        assert site.cli("scan") == 0
        kills = sum(kill_at_random(site, rng, 0.3, 1.6, "flush") for _ in range(trials))
        final = cli(site, "flush")
        assert final.wait(timeout=300) == 0
        received = [str(email.message_from_bytes(r.data, policy=email.policy.default)
                        ["Message-ID"]) for r in srv.received]
    counts = collections.Counter(received)
    duplicates = sum(c - 1 for c in counts.values())
    with sqlite3.connect(tmp_path / "outbox.db") as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM entry GROUP BY state").fetchall())
        interrupted = conn.execute(
            "SELECT count(*) FROM attempt WHERE outcome = 'interrupted'").fetchone()[0]
    print(f"\ncrash trials (send): {trials} trials, {kills} SIGKILLs, {n} documents,"
          f" {len(counts)} delivered, 0 lost, {duplicates} duplicates,"
          f" {interrupted} interrupted claims recovered")
    assert kills >= 40
    assert len(counts) == n and states == {"sent": n}  # nothing lost
    assert duplicates <= kills  # at most the one mail in flight per crash
    assert integrity(tmp_path / "outbox.db") == "ok"


def test_sigkill_during_a_scan_of_1000_files(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    site = write_site(tmp_path, watch={"baseline": False})
    for i in range(1000):
        (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(
            make_pdf([str(i)], padding=rng.randint(20_000, 80_000)))
    kills = sum(kill_at_random(site, rng, 0.4, 2.0, "scan") for _ in range(10))
    assert cli(site, "scan").wait(timeout=300) == 0
    with sqlite3.connect(tmp_path / "outbox.db") as conn:
        rows = conn.execute("SELECT path, count(*) FROM entry GROUP BY path").fetchall()
        states = {s for (s,) in conn.execute("SELECT DISTINCT state FROM entry")}
    print(f"\ncrash trials (scan): {kills} SIGKILLs during a scan of 1,000 files;"
          f" {len(rows)} recorded, each once")
    assert kills >= 3
    assert len(rows) == 1000 and {c for _, c in rows} == {1}
    assert states == {"pending"}
    assert integrity(tmp_path / "outbox.db") == "ok"


def test_sigkill_during_the_migration(tmp_path: Path) -> None:
    """`migrate` on fresh databases, killed at random moments inside the time one
    uninterrupted `migrate` takes (measured first), so that kills land while it runs."""
    rng = random.Random(SEED + 2)
    probe = write_site(tmp_path / "probe")
    started = time.monotonic()
    assert cli(probe, "migrate").wait(timeout=60) == 0
    took = time.monotonic() - started
    kills = 0
    for trial in range(15):
        site = write_site(tmp_path / f"t{trial}")
        kills += kill_at_random(site, rng, 0.5 * took, took, "migrate")
        assert cli(site, "migrate").wait(timeout=60) == 0
        assert cli(site, "status", "--json").wait(timeout=60) == 0
        db = tmp_path / f"t{trial}" / "outbox.db"
        assert integrity(db) == "ok"
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
                (HEAD,)]
    print(f"\ncrash trials (migrate): {kills} of 15 runs killed before they finished;"
          " every rerun reached the head revision")
    assert kills >= 5
