"""Bad files in the archive: each gets a clear reason on a held entry or a log line,
and the rest of the archive is unaffected."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

from tests.helpers import Cert, SmtpServer, attachment_of, open_outbox, write_site
from tikos_outbox.core.views import FileSeen
from tikos_outbox.samples import make_pdf

pytestmark = pytest.mark.reliability

LOOSE = r"(?s)^(?P<doctype>RE)_(?P<docno>\d+)_(?P<customer>\d+).*\.pdf$"


def listing(site: object, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    capsys.readouterr()
    assert site.cli("list", "--json", "--limit", "500") == 0  # type: ignore[attr-defined]
    return {r["path"]: r for r in json.loads(capsys.readouterr().out)}


def test_bad_files_are_held_with_reasons_and_the_rest_goes_out(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    names = {
        "RE_1_4711 mit Leerzeichen.pdf": "spaces",
        "RE_2_4711_Müller_Wäsche.pdf": "umlauts",
        "RE_3_4711_🧺.pdf": "emoji",
        "RE_4_4711_\"Zitat\"_'x'.pdf": "quotes",
        "RE_5_4711_" + "x" * 200 + ".pdf": "a very long name",
    }
    if sys.platform != "win32":
        names["RE_6_4711_zeile\r\nBcc: evil@example.org.pdf"] = "CR/LF in the name"
    with SmtpServer(cert, "none") as srv:
        site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False},
                          mandants=[{"id": 1, "pattern": LOOSE}])
        folder = site.mandant_folder()
        for name in names:
            (folder / name).write_bytes(make_pdf([name.encode("ascii", "replace").decode()]))
        good = make_pdf(["ok"])
        (folder / "RE_10_4711.pdf").write_bytes(good)
        (folder / "RE_11_4711.pdf").write_bytes(b"")  # empty: waits, never mailed empty
        (folder / "RE_12_4711.pdf").write_bytes(good[:200])  # truncated
        (folder / "RE_13_4711.pdf").write_bytes(b"MZ\x90\x00 an executable named .pdf")
        encrypted = make_pdf(["secret"]).replace(b"/Root 1 0 R", b"/Root 1 0 R /Encrypt 9 0 R")
        (folder / "RE_14_4711.pdf").write_bytes(encrypted)
        with open(folder / "RE_15_4711.pdf", "wb") as f:  # 60 MB
            f.write(make_pdf(["big"], padding=60 * 1024 * 1024))
        (folder / "RE_16_4711.pdf").symlink_to(folder / "RE_17_4711.pdf")  # a symlink loop
        (folder / "RE_17_4711.pdf").symlink_to(folder / "RE_16_4711.pdf")
        (folder / "loop").symlink_to(folder, target_is_directory=True)  # a folder loop
        assert site.cli("scan") == 1  # the symlink loop is reported
        err = capsys.readouterr().err
        assert "RE_16_4711.pdf" in err or "RE_17_4711.pdf" in err
        assert site.cli("flush") == 0
        rows = listing(site, capsys)
    held = {p: r["reason"] for p, r in rows.items() if r["state"] == "held"}
    assert "no %%EOF" in str(held["RE_12_4711.pdf"])
    assert "no %PDF- header" in str(held["RE_13_4711.pdf"])
    assert "encrypted PDF" in str(held["RE_14_4711.pdf"])
    assert "larger than the limit of 20 MB" in str(held["RE_15_4711.pdf"])
    assert "RE_11_4711.pdf" not in rows
    sent = {p for p, r in rows.items() if r["state"] == "sent"}
    assert sent == {*names, "RE_10_4711.pdf"}
    assert len(srv.received) == len(names) + 1
    for r in srv.received:
        msg_head = r.data.split(b"\r\n\r\n")[0]
        assert b"\nBcc:" not in msg_head and r.rcpt_tos == ["kunde@example.org"]
        assert attachment_of(r.data).startswith(b"%PDF-")


def test_a_file_deleted_between_settle_and_read_is_a_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site = write_site(tmp_path, watch={"baseline": False})
    path = site.mandant_folder() / "RE_1_4711.pdf"
    path.write_bytes(make_pdf(["x"]))
    st = path.stat()
    seen = FileSeen(str(path), "RE_1_4711.pdf", path.name, st.st_size, st.st_mtime_ns)
    path.unlink()
    svc = open_outbox(site)
    with caplog.at_level(logging.WARNING, logger="tikos_outbox"):
        assert svc.intake.ingest(svc.config.mandants[0], seen) == "not-ready"
    assert "cannot read" in caplog.text and "RE_1_4711.pdf" in caplog.text
    assert svc.store.queries.counts()["pending"] == 0
    svc.store.close()


def test_a_folder_replaced_by_a_file(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, mandants=[{"id": 1}, {"id": 2}], watch={"baseline": False})
    (site.mandant_folder(2) / "RE_1_4711.pdf").write_bytes(make_pdf(["m2"]))
    folder = site.mandant_folder(1)
    os.rmdir(folder)
    folder.write_bytes(b"not a folder")
    assert site.cli("scan") == 1
    err = capsys.readouterr().err
    assert "mandant 1" in err and "Not a directory" in err
    assert list(listing(site, capsys)) == ["RE_1_4711.pdf"]  # mandant 2 unaffected
