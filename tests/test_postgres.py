"""PostgreSQL for larger sites: several workers on one queue, moving an SQLite outbox over."""

from __future__ import annotations

import collections
import email
import email.policy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Behaviour, Cert, Site, SmtpServer, write_site
from tikos_outbox.samples import make_pdf

pytestmark = pytest.mark.slow


def pg_site(root: Path, url: str, port: int) -> Site:
    site = write_site(root, smtp={"port": port}, watch={"baseline": False})
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace('database = "outbox.db"', f'database = "{url}"'),
                           encoding="utf-8")
    return site


def test_two_flush_processes_on_one_postgresql_outbox_send_each_document_once(
        tmp_path: Path, cert: Cert, pg_url: str) -> None:
    n = 200
    with SmtpServer(cert, "none", behaviour=Behaviour(stall_s=0.002)) as srv:
        site = pg_site(tmp_path, pg_url, srv.port)
        for i in range(n):
            (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([str(i)]))
        assert site.cli("scan") == 0
        cmd = [sys.executable, "-m", "tikos_outbox", "--config", str(site.config), "flush"]
        procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE) for _ in range(2)]
        codes = [p.wait(timeout=300) for p in procs]
        ids = [str(email.message_from_bytes(r.data, policy=email.policy.default)["Message-ID"])
               for r in srv.received]
    assert codes == [0, 0], [p.stderr.read() for p in procs if p.stderr]
    assert len(ids) == n and set(collections.Counter(ids).values()) == {1}
    assert len({r.peer for r in srv.received}) >= 2  # both workers sent


def test_move_an_sqlite_outbox_into_postgresql(
        tmp_path: Path, cert: Cert, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        old = write_site(tmp_path / "old", smtp={"port": srv.port}, watch={"baseline": False})
        for i in range(3):
            (old.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([str(i)]))
        assert old.cli("scan") == 0
        assert old.cli("hold", "3") == 0
        assert old.cli("flush") == 0
        new = pg_site(tmp_path / "new", pg_url, srv.port)
        sqlite_url = f"sqlite:///{(tmp_path / 'old' / 'outbox.db').as_posix()}"
        assert new.cli("migrate", "--copy-from", sqlite_url) == 0
        capsys.readouterr()
        assert new.cli("list", "--json") == 0
        rows = json.loads(capsys.readouterr().out)
        assert [(r["id"], r["state"]) for r in rows] == [(3, "held"), (2, "sent"), (1, "sent")]
        # the copied outbox goes on working: ids continue, the held copy is sent
        assert new.cli("release", "3") == 0
        assert new.cli("flush") == 0
        assert len(srv.received) == 3
        (new.mandant_folder() / "RE_9_4711.pdf").write_bytes(make_pdf(["new"]))
        assert new.cli("scan") == 0
        capsys.readouterr()
        assert new.cli("list", "--json", "--limit", "1") == 0
        assert json.loads(capsys.readouterr().out)[0]["id"] == 4
