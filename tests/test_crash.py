"""Crash safety and concurrency with real processes: SIGKILL mid-run, two flushes at once."""

from __future__ import annotations

import collections
import os
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

pytestmark = pytest.mark.slow


def message_ids(srv: SmtpServer) -> list[str]:
    import email
    import email.policy

    return [str(email.message_from_bytes(r.data, policy=email.policy.default)["Message-ID"])
            for r in srv.received]


def flush_process(site: Site) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tikos_outbox", "--config", str(site.config),
                             "flush"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_site(tmp_path: Path, srv: SmtpServer, n: int) -> Site:
    site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False})
    for i in range(n):
        (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([f"Nr. {i}"]))
    assert site.cli("scan") == 0
    return site


def test_sigkill_in_the_middle_loses_nothing_and_duplicates_at_most_one_per_crash(
        tmp_path: Path, cert: Cert) -> None:
    rng = random.Random(20261126)
    n = 60
    with SmtpServer(cert, "none", behaviour=Behaviour(stall_s=0.02)) as srv:
        site = make_site(tmp_path, srv, n)
        kills = 0
        for _ in range(40):
            proc = flush_process(site)
            time.sleep(rng.uniform(0.3, 1.2))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            if len(set(message_ids(srv))) == n:
                break
        # a last, uninterrupted run delivers whatever is left
        final = flush_process(site)
        assert final.wait(timeout=120) == 0, final.stderr.read() if final.stderr else ""
        ids = message_ids(srv)
    assert kills >= 3
    assert len(set(ids)) == n  # every document delivered
    duplicates = sum(c - 1 for c in collections.Counter(ids).values())
    assert duplicates <= kills  # only mails in flight at a crash arrive twice
    db = site.root / "outbox.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        states = dict(conn.execute("SELECT state, count(*) FROM entry GROUP BY state").fetchall())
        assert states == {"sent": n}
        interrupted = conn.execute(
            "SELECT count(*) FROM attempt WHERE outcome = 'interrupted'").fetchone()[0]
        assert interrupted >= 1


def test_two_flushes_at_the_same_moment_send_each_document_once(
        tmp_path: Path, cert: Cert) -> None:
    n = 80
    with SmtpServer(cert, "none", behaviour=Behaviour(stall_s=0.005)) as srv:
        site = make_site(tmp_path, srv, n)
        procs = [flush_process(site) for _ in range(2)]
        codes = [p.wait(timeout=120) for p in procs]
        ids = message_ids(srv)
    assert codes == [0, 0]
    assert len(ids) == n and len(set(ids)) == n
    assert len({r.peer for r in srv.received}) >= 2  # both processes really sent


def test_python_m_entry_point(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "tikos_outbox", "--help"], capture_output=True,
                         text=True, check=True, env={**os.environ, "COLUMNS": "100"})
    assert "tikos-outbox" in out.stdout and "flush" in out.stdout
