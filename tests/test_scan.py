"""Which files become documents: the rules of the contract, through `scan`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.helpers import Cert, Site, SmtpServer, attachment_of, write_site
from tikos_outbox.samples import make_pdf


def entries(site: Site, capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:  # type: ignore[type-arg]
    capsys.readouterr()
    assert site.cli("list", "--json", "--limit", "1000", *args) == 0
    return list(reversed(json.loads(capsys.readouterr().out)))


def test_first_scan_is_the_baseline_then_new_files_are_pending(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path)
    folder = site.mandant_folder()
    (folder / "RE_1_4711.pdf").write_bytes(make_pdf(["alt"]))
    assert site.cli("scan") == 0
    (folder / "RE_2_4711.pdf").write_bytes(make_pdf(["neu"]))
    assert site.cli("scan") == 0
    rows = entries(site, capsys)
    assert [(r["path"], r["state"]) for r in rows] == [
        ("RE_1_4711.pdf", "skipped"), ("RE_2_4711.pdf", "pending")]
    assert rows[0]["reason"].startswith("baseline")
    assert rows[1]["recipients"] == ["kunde@example.org"]


def test_scan_no_baseline_and_since(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path)
    folder = site.mandant_folder()
    old, new = folder / "RE_1_4711.pdf", folder / "RE_2_4711.pdf"
    old.write_bytes(make_pdf(["alt"]))
    new.write_bytes(make_pdf(["neu"]))
    os.utime(old, (time.time() - 86400 * 10,) * 2)
    since = time.strftime("%Y-%m-%d", time.localtime(time.time() - 86400))
    assert site.cli("scan", "--baseline", "--since", since) == 0
    states = {r["path"]: r["state"] for r in entries(site, capsys)}
    assert states == {"RE_1_4711.pdf": "skipped", "RE_2_4711.pdf": "pending"}


def test_what_is_not_a_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, watch={"baseline": False})
    folder = site.mandant_folder()
    pdf = make_pdf(["x"])
    for name in ("Rechnung.pdf", "RE_1_4711.txt", "~$RE_2_4711.pdf", ".RE_3_4711.pdf",
                 "RE_4_4711.pdf.tmp", "XX_5_4711.pdf"):
        (folder / name).write_bytes(pdf)
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "sub" / "deeper" / "re_6_4711.PDF").write_bytes(pdf)
    assert site.cli("scan") == 0
    rows = entries(site, capsys)
    assert [(r["path"], r["doctype"], r["docno"]) for r in rows] == [
        ("sub/deeper/re_6_4711.PDF", "RE", "6")]


def test_disabled_mandant_is_not_scanned_and_its_pending_entries_are_skipped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, mandants=[{"id": 1}, {"id": 2}], watch={"baseline": False})
    (site.mandant_folder(1) / "RE_1_4711.pdf").write_bytes(make_pdf(["a"]))
    (site.mandant_folder(2) / "RE_2_4711.pdf").write_bytes(make_pdf(["b"]))
    assert site.cli("scan") == 0
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace("id = 2\n", "id = 2\nenabled = false\n"), encoding="utf-8")
    (site.mandant_folder(2) / "RE_3_4711.pdf").write_bytes(make_pdf(["c"]))
    assert site.cli("scan") == 0
    rows = entries(site, capsys)
    assert [r["path"] for r in rows] == ["RE_1_4711.pdf", "RE_2_4711.pdf"]  # RE_3 unseen
    # the send run skips what a disabled mandant still has pending
    assert site.cli("flush") in (0, 1)
    rows = {r["path"]: r for r in entries(site, capsys)}
    assert rows["RE_2_4711.pdf"]["state"] == "skipped"
    assert rows["RE_2_4711.pdf"]["reason"] == "mandant disabled"


def test_identity_rules(tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False})
        folder = site.mandant_folder()
        a = folder / "RE_1_4711.pdf"
        a.write_bytes(make_pdf(["v1"]))
        assert site.cli("scan") == 0
        assert site.cli("scan") == 0  # the same path with the same content: nothing
        assert len(entries(site, capsys)) == 1
        (folder / "copy").mkdir()
        (folder / "copy" / "RE_1_4711.pdf").write_bytes(make_pdf(["v1"]))  # same content
        a.write_bytes(make_pdf(["v2"]))  # new content before it was sent
        assert site.cli("scan") == 0
        rows = entries(site, capsys)
        assert [(r["id"], r["path"], r["state"], r["reason"]) for r in rows] == [
            (1, "RE_1_4711.pdf", "skipped", "superseded by entry 2"),
            (2, "RE_1_4711.pdf", "pending", None),
            (3, "copy/RE_1_4711.pdf", "skipped", "duplicate of entry 1"),
        ]
        assert site.cli("flush") == 0
        assert len(srv.received) == 1 and b"v2" in attachment_of(srv.received[0].data)
        a.write_bytes(make_pdf(["v3"]))  # new content after it was sent
        assert site.cli("scan") == 0
        assert site.cli("flush") == 0
        assert len(srv.received) == 1  # no surprise reprint
        last = entries(site, capsys)[-1]
        assert (last["id"], last["state"]) == (4, "held")
        assert last["reason"] == "changed after it was sent as entry 2"
        assert site.cli("release", "4") == 0
        assert site.cli("flush") == 0
        assert len(srv.received) == 2 and b"v3" in attachment_of(srv.received[1].data)


def test_incomplete_and_oversized_pdfs_are_held_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, watch={"baseline": False, "max_size_mb": 0.05})
    folder = site.mandant_folder()
    full = make_pdf(["ok"])
    (folder / "RE_1_4711.pdf").write_bytes(full[: len(full) // 2])  # truncated
    (folder / "RE_2_4711.pdf").write_bytes(b"PK\x03\x04 not a pdf at all")
    (folder / "RE_3_4711.pdf").write_bytes(make_pdf(["big"], padding=80_000))
    (folder / "RE_4_4711.pdf").write_bytes(b"")  # empty: waits, not recorded
    assert site.cli("scan") == 0
    rows = {r["path"]: r for r in entries(site, capsys)}
    assert rows["RE_1_4711.pdf"]["state"] == "held"
    assert "no %%EOF" in rows["RE_1_4711.pdf"]["reason"]
    assert "no %PDF- header" in rows["RE_2_4711.pdf"]["reason"]
    assert "larger than the limit of 0.05 MB" in rows["RE_3_4711.pdf"]["reason"]
    assert "RE_4_4711.pdf" not in rows
    # the truncated file completes later: the complete version replaces the one held for
    # its file (a document held for another reason would keep the new version held)
    (folder / "RE_1_4711.pdf").write_bytes(full)
    assert site.cli("scan") == 0
    rows2 = [r for r in entries(site, capsys) if r["path"] == "RE_1_4711.pdf"]
    assert [r["state"] for r in rows2] == ["skipped", "pending"]


def test_customer_without_address_is_skipped_with_reason(
        tmp_path: Path, odbc_sqlite: str, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(
        tmp_path, watch={"baseline": False},
        recipients=f"sql_dsn = '{odbc_sqlite}'\n"
                   "sql_query = 'SELECT EMail FROM Kunde WHERE Mandant = ? AND KundenNr = ?'")
    folder = site.mandant_folder()
    for name in ("RE_1_4711.pdf", "RE_2_4713.pdf", "RE_3_9999.pdf"):
        (folder / name).write_bytes(make_pdf([name]))
    assert site.cli("scan") == 0
    rows = {r["path"]: r for r in entries(site, capsys)}
    assert rows["RE_1_4711.pdf"]["recipients"] == [
        "einkauf@hotel-adler.example", "buchhaltung@hotel-adler.example",
        "chef@hotel-adler.example"]
    for path, customer in (("RE_2_4713.pdf", "4713"), ("RE_3_9999.pdf", "9999")):
        assert rows[path]["state"] == "skipped"
        assert rows[path]["reason"] == f"no e-mail address found for customer {customer}"


def test_unreachable_address_database_leaves_entries_pending_until_it_is_back(
        tmp_path: Path, odbc_sqlite: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = odbc_sqlite.split("Database=")[1]
    moved = db + ".away"
    os.rename(db, moved)
    site = write_site(
        tmp_path, watch={"baseline": False},
        recipients=f"sql_dsn = '{odbc_sqlite};NoCreat=1'\n"
                   "sql_query = 'SELECT EMail FROM Kunde WHERE Mandant = ? AND KundenNr = ?'")
    (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(make_pdf(["x"]))
    assert site.cli("scan") == 0
    [row] = entries(site, capsys)
    assert row["state"] == "pending" and row["recipients"] == []
    capsys.readouterr()
    assert site.cli("status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert "Address lookup" in status["last_error"]["text"]
    os.rename(moved, db)
    assert site.cli("scan") == 0
    [row] = entries(site, capsys)
    assert row["state"] == "pending" and len(row["recipients"]) == 3


def test_the_baseline_is_not_copied_and_a_requeued_skipped_entry_uses_the_archive(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    with SmtpServer(cert, "none") as srv:
        site = write_site(tmp_path, smtp={"port": srv.port})
        folder = site.mandant_folder()
        for i in range(5):
            (folder / f"RE_{i}_4711.pdf").write_bytes(make_pdf([f"alt {i}"]))
        assert site.cli("scan") == 0  # the baseline: recorded, never mailed, not copied
        with sqlite3.connect(tmp_path / "outbox.db") as conn:
            assert conn.execute("SELECT count(*) FROM blob").fetchone() == (0,)
        assert site.cli("requeue", "3") == 0  # the admin wants this old one sent after all
        assert site.cli("flush") == 0
        assert len(srv.received) == 1
        # entry 3 is RE_2 (the files are recorded in name order)
        assert attachment_of(srv.received[0].data) == (folder / "RE_2_4711.pdf").read_bytes()
