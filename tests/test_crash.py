"""Crash safety and concurrency with real processes: SIGKILL mid-run, two flushes at once.

Every SIGKILL waits for something the child demonstrably did (the test server
holding its DATA, or having accepted its k-th mail), never for a wall-clock delay,
so that what is killed, and how often, does not depend on the machine's load."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    Behaviour,
    Cert,
    Handler,
    MeetingHandler,
    Site,
    SmtpServer,
    write_site,
)
from tikos_outbox.samples import make_pdf

pytestmark = pytest.mark.slow

POLL_S = 0.01  # how often a wait for the child looks again
DEADLINE_S = 120.0  # a wait for the child that takes longer fails the test


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


# -- waiting for the child, killing it ---------------------------------------------------------

def stderr_of(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    return proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""


def wait_for(proc: subprocess.Popen[bytes], what: str, done: Callable[[], bool],
             deadline_s: float = DEADLINE_S) -> None:
    """Return once `done()` holds. Fails the test (with the child's stderr) if the
    child exits first or nothing happens within the deadline."""
    deadline = time.monotonic() + deadline_s
    while not done():
        if proc.poll() is not None:
            pytest.fail(f"the child exited with {proc.returncode} before {what}:\n"
                        f"{stderr_of(proc)}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {deadline_s:.0f} s:\n{stderr_of(proc)}")
        time.sleep(POLL_S)


def sigkill(proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL the child; True if that is what ended it (it was still running)."""
    proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=DEADLINE_S) == -signal.SIGKILL


def unsent(db: Path) -> int:
    """Entries not yet sent, read-only (between runs, no child running)."""
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM entry WHERE state != 'sent'")
                   .fetchone()[0])


# -- a test server that holds a DATA until the test has killed the client ----------------------

class Gate:
    """Lets the first `through` DATA commands of a run be answered and holds every
    later one until released, so the child cannot get past that mail alive."""

    def __init__(self, through: int) -> None:
        self.through = through
        self.calls = 0  # counted on the server's event loop only
        self.answered = threading.Event()  # the `through`-th mail was accepted
        self.holding = threading.Event()  # a later DATA is held: its mail is in flight
        self.released = threading.Event()


class GatedHandler(Handler):
    """The helpers' handler with a gate that the test arms for one child at a time."""

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(behaviour)
        self.gate: Gate | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        gate = self.gate
        if gate is None:
            return await super().handle_DATA(server, session, envelope)
        gate.calls += 1
        if gate.calls > gate.through:
            gate.holding.set()
            while not gate.released.is_set():  # aiosmtpd cancels this when the client dies
                await asyncio.sleep(POLL_S)
            return "451 4.3.0 held for a crash test"
        reply = await super().handle_DATA(server, session, envelope)
        if gate.calls == gate.through:
            gate.answered.set()
        return reply


def gated_server(cert: Cert, behaviour: Behaviour) -> tuple[SmtpServer, GatedHandler]:
    srv = SmtpServer(cert, "none", behaviour=behaviour,
                     wrap_handler=lambda h: GatedHandler(h.b))
    assert isinstance(srv.handler, GatedHandler)
    return srv, srv.handler


IN_DATA = "in DATA"  # killed while the server holds a mail's DATA: nothing can arrive twice
AFTER_REPLY = "after a reply"  # killed just after the server accepted a mail: it may


def crash_send_run(start: Callable[[], subprocess.Popen[bytes]], handler: GatedHandler,
                   when: str, through: int) -> bool:
    """Start a send run and SIGKILL it `when` mail `through` (+1 in DATA) is reached;
    True if the kill ended it."""
    gate = handler.gate = Gate(through)
    proc = start()
    try:
        if when == IN_DATA:
            wait_for(proc, f"DATA of mail {through + 1} of the run", gate.holding.is_set)
        else:
            wait_for(proc, f"the server accepting mail {through} of the run",
                     gate.answered.is_set)
        return sigkill(proc)
    finally:
        gate.released.set()
        handler.gate = None
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def crash_plan(rng: random.Random, trials: int, most: int) -> list[tuple[str, int]]:
    """As many kills in DATA as after a reply, in a seeded order, each at a mail
    between the first and the `most`-th of its run."""
    modes = [IN_DATA, AFTER_REPLY] * (trials // 2) + [IN_DATA] * (trials % 2)
    rng.shuffle(modes)
    return [(m, rng.randint(0 if m == IN_DATA else 1, most)) for m in modes]


def test_sigkill_in_the_middle_loses_nothing_and_duplicates_at_most_one_per_crash(
        tmp_path: Path, cert: Cert) -> None:
    rng = random.Random(20261126)
    n, trials = 60, 12
    srv, handler = gated_server(cert, Behaviour(stall_s=0.02))
    with srv:
        site = make_site(tmp_path, srv, n)
        db = site.root / "outbox.db"
        plan = crash_plan(rng, trials, most=3)
        kills = 0
        for when, through in plan:
            # a run sends every unsent entry: the mail the kill waits for is one of them
            assert unsent(db) >= through + 1
            kills += crash_send_run(lambda: flush_process(site), handler, when, through)
        # a last, uninterrupted run delivers whatever is left
        final = flush_process(site)
        assert final.wait(timeout=120) == 0, final.stderr.read() if final.stderr else ""
        ids = message_ids(srv)
    in_data = sum(when == IN_DATA for when, _ in plan)
    assert kills == trials  # every kill landed while the run was sending
    assert len(set(ids)) == n  # every document delivered
    duplicates = sum(c - 1 for c in collections.Counter(ids).values())
    assert duplicates <= kills  # only mails in flight at a crash arrive twice
    assert duplicates <= trials - in_data  # and only if the server had accepted them
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        states = dict(conn.execute("SELECT state, count(*) FROM entry GROUP BY state").fetchall())
        assert states == {"sent": n}
        interrupted = conn.execute(
            "SELECT count(*) FROM attempt WHERE outcome = 'interrupted'").fetchone()[0]
    print(f"\ncrash (flush): {kills} SIGKILLs ({in_data} in DATA, {trials - in_data} after a"
          f" reply), {n} documents delivered, {duplicates} duplicates,"
          f" {interrupted} interrupted claims recovered")
    assert interrupted >= 1
    assert interrupted >= in_data  # each mail held in DATA was left claimed


def test_two_flushes_at_the_same_moment_send_each_document_once(
        tmp_path: Path, cert: Cert) -> None:
    n = 80
    with SmtpServer(cert, "none", behaviour=Behaviour(stall_s=0.005),
                    wrap_handler=lambda h: MeetingHandler(h.b)) as srv:
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
