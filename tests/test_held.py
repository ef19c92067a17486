"""Held for a reason: what the file is stays visible, an unmailable file is released
only on purpose, and nothing but the recorded, complete document is ever mailed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Cert, Site, SmtpServer, attachment_of, write_site
from tikos_outbox.samples import make_pdf


def show(site: Site, capsys: pytest.CaptureFixture[str], entry_id: int) -> dict[str, Any]:
    capsys.readouterr()
    assert site.cli("show", str(entry_id), "--json") == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def site_on(tmp_path: Path, srv: SmtpServer, **watch: Any) -> Site:
    return write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False, **watch})


def test_releasing_a_file_that_is_not_a_pdf_needs_force_and_says_why(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = site_on(tmp_path, srv)
        (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(b"PK\x03\x04 a zip, not a pdf")
        assert site.cli("scan") == 0
        capsys.readouterr()
        assert site.cli("release", "1") == 1
        out = capsys.readouterr().out
        assert "cannot be mailed as it is (not a PDF file" in out
        assert "release --force 1" in out
        entry = show(site, capsys, 1)
        assert entry["state"] == "held" and "release --force 1" in entry["attention"]
        assert site.cli("flush") == 0 and srv.received == []  # still held: nothing mailed
        assert site.cli("requeue", "1") == 1  # no way around --force
        assert site.cli("flush") == 0 and srv.received == []
        assert site.cli("release", "--force", "1") == 0
        site.cli("flush")
        # forced: exactly the recorded bytes, nothing else
        assert [attachment_of(r.data) for r in srv.received] == [b"PK\x03\x04 a zip, not a pdf"]


def test_hold_and_release_keep_why_the_file_was_held(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = site_on(tmp_path, srv)
        full = make_pdf(["ok"])
        (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(full[: len(full) // 2])
        assert site.cli("scan") == 0
        reason = show(site, capsys, 1)["reason"]
        assert "incomplete PDF" in reason
        assert site.cli("release", "--force", "1") == 0
        assert site.cli("hold", "1") == 0
        entry = show(site, capsys, 1)
        assert entry["reason"] == "held by the administrator"
        assert entry["problem"] == reason  # the original reason is still shown
        capsys.readouterr()
        assert site.cli("show", "1") == 0
        assert f"held for:    {reason}" in capsys.readouterr().out


def test_a_too_large_file_released_sends_the_archive_file_never_an_empty_one(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    """Round one: releasing an entry held as larger than the limit mailed a 0-byte PDF."""
    with SmtpServer(cert, "none") as srv:
        site = site_on(tmp_path, srv, max_size_mb=0.05)
        big = make_pdf(["big"], padding=80_000)
        path = site.mandant_folder() / "RE_1_4711.pdf"
        path.write_bytes(big)
        assert site.cli("scan") == 0
        assert "larger than the limit" in show(site, capsys, 1)["reason"]
        assert show(site, capsys, 1)["stored_copy"] is False  # not copied into the outbox
        assert site.cli("release", "1") == 1  # not without --force
        assert site.cli("release", "--force", "1") == 0
        assert site.cli("flush") == 0
        assert [attachment_of(r.data) for r in srv.received] == [big]  # the whole file
        # the archive file changed meanwhile: nothing is mailed, the entry says why
        (site.mandant_folder() / "RE_2_4711.pdf").write_bytes(make_pdf(["b"], padding=80_000))
        assert site.cli("scan") == 0
        (site.mandant_folder() / "RE_2_4711.pdf").write_bytes(b"")
        assert site.cli("release", "--force", "2") == 0
        assert site.cli("flush") == 1
        entry = show(site, capsys, 2)
        assert entry["state"] == "failed" and "archive file is gone or changed" in entry[
            "last_error"]
        assert "die Datei im Archiv prüfen" in entry["attention"]  # not "the address"
        assert len(srv.received) == 1


def test_a_new_version_of_a_held_document_is_held_too(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    """Round one: TIKOS rewrote a document the admin had held, and the new version was
    mailed at the next run."""
    with SmtpServer(cert, "none") as srv:
        site = site_on(tmp_path, srv)
        path = site.mandant_folder() / "RE_1_4711.pdf"
        path.write_bytes(make_pdf(["first"]))
        assert site.cli("scan") == 0
        assert site.cli("hold", "1") == 0
        path.write_bytes(make_pdf(["rewritten"]))
        assert site.cli("scan") == 0
        assert site.cli("flush") == 0
        assert srv.received == []
        new = show(site, capsys, 2)
        assert new["state"] == "held" and new["reason"] == "a new version of entry 1, which is held"
        assert show(site, capsys, 1)["reason"] == "superseded by entry 2"


def test_a_file_that_stays_empty_is_held_after_a_while(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    """Round one: a PDF that stayed 0 bytes (TIKOS crashed while writing) was never
    recorded, held or reported; `scan` said "still being written" for ever."""
    with SmtpServer(cert, "none") as srv:
        site = site_on(tmp_path, srv)
        path = site.mandant_folder() / "RE_1_4711.pdf"
        path.write_bytes(b"")
        capsys.readouterr()
        assert site.cli("scan") == 0
        assert "1 file(s) still being written" in capsys.readouterr().out
        stale = time.time() - 601  # empty for more than ten minutes
        os.utime(path, (stale, stale))
        assert site.cli("scan") == 0
        entry = show(site, capsys, 1)
        assert (entry["state"], entry["reason"]) == ("held", "the file is empty")
        assert "release --force 1" in entry["attention"]
        assert site.cli("release", "--force", "1") == 0
        assert site.cli("flush") == 1  # an empty document is never mailed
        assert srv.received == []
        assert "empty (0 bytes)" in show(site, capsys, 1)["last_error"]


def test_a_link_out_of_the_mandant_folder_is_held_and_never_read(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    """Round one: `RE_92_9.pdf -> /etc/shadow` landed in the outbox database and was
    mailed on release; a link to another mandant's PDF was mailed automatically."""
    secret = tmp_path / "outside" / "shadow"
    secret.parent.mkdir()
    secret.write_bytes(b"root:$6$not-for-customers:19000:0:99999:7:::\n%PDF-\n%%EOF\n")
    with SmtpServer(cert, "none") as srv:
        site = site_on(tmp_path / "site", srv)
        link = site.mandant_folder() / "RE_92_4711.pdf"
        link.symlink_to(secret)
        assert site.cli("scan") == 0
        entry = show(site, capsys, 1)
        assert entry["state"] == "held" and entry["stored_copy"] is False
        assert "a link to a file outside the mandant folder" in entry["reason"]
        assert str(secret) in entry["reason"]
        assert b"not-for-customers" not in (tmp_path / "site" / "outbox.db").read_bytes()
        assert site.cli("release", "1") == 1  # not without --force
        assert site.cli("release", "--force", "1") == 0
        assert site.cli("flush") == 1
        assert srv.received == []  # never mailed, even forced
        assert show(site, capsys, 1)["state"] == "failed"


def test_nested_mandant_folders_record_each_document_once_for_its_owner(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Round one: with one mandant folder inside another, every document was recorded
    for both and mailed twice."""
    site = write_site(tmp_path, watch={"baseline": False}, mandants=[
        {"id": 1, "name": "Nord", "folder": "archive/M1"},
        {"id": 2, "name": "Filiale", "folder": "archive/M1/Filiale"}])
    (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(make_pdf(["1"]))
    (site.mandant_folder() / "Filiale" / "RE_2_4711.pdf").write_bytes(make_pdf(["2"]))
    assert site.cli("scan") == 0
    capsys.readouterr()
    assert site.cli("list", "--json") == 0
    rows = sorted((r["mandant"], r["path"]) for r in json.loads(capsys.readouterr().out))
    assert rows == [(1, "RE_1_4711.pdf"), (2, "RE_2_4711.pdf")]
