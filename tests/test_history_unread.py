"""The first start reads no file contents (#19): history files are recorded by
name, size and time only, and read when it matters. The identity rules still
hold: a copy of a history file under another name is a duplicate, a requeued one
sends the file as the first start saw it, and once the background reading has
read a file, a copy of it with a new time is nothing new. A history file that
changed before it was read is held: what it was is not known."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import Cert, Site, SmtpServer, attachment_of, open_outbox, write_site
from tikos_outbox.core.views import ListFilter
from tikos_outbox.samples import make_pdf
from tikos_outbox.usecases.intake import FirstPass
from tikos_outbox.wiring import Outbox

OPENED: list[str] = []  # archive files opened by this process while a test listens
_LISTENING: list[Path] = []


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _LISTENING and isinstance(args[0], str | bytes | os.PathLike):
        path = os.fsdecode(args[0])  # type: ignore[arg-type]
        if path.startswith(str(_LISTENING[0])):
            OPENED.append(os.path.basename(path))


sys.addaudithook(_hook)  # an audit hook cannot be removed: it listens only when asked


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[list[str]]:
    """The names of the archive files this process opens during the test."""
    OPENED.clear()
    _LISTENING[:] = [tmp_path / "archive"]
    yield OPENED
    _LISTENING.clear()


def history_site(tmp_path: Path, port: int = 25) -> tuple[Site, Outbox, dict[str, bytes]]:
    """Twelve invoices of last year, of different sizes; the first start takes them
    as history."""
    site = write_site(tmp_path, smtp={"port": port}, watch={"baseline": True})
    folder = site.mandant_folder()
    files: dict[str, bytes] = {}
    then = time.time() - 300 * 86400
    for i in range(12):
        name = f"RE_{500 + i}_4711.pdf"
        files[name] = make_pdf([f"Rechnung {500 + i}", "x" * (40 * i)])
        (folder / name).write_bytes(files[name])
        os.utime(folder / name, (then, then))
    outbox = open_outbox(site)
    return site, outbox, files


def entry(outbox: Outbox, path: str) -> dict[str, object]:
    [view] = [v for v in outbox.admin.entries(ListFilter(limit=1000)) if v.path == path]
    return {"id": view.id, "state": view.state, "reason": view.reason, "sha": view.sha256}


def test_the_first_start_opens_no_history_file(tmp_path: Path, opened: list[str]) -> None:
    _site, outbox, files = history_site(tmp_path)
    opened.clear()  # (writing them opened them)
    report = outbox.scan(FirstPass.FOLLOW)
    assert report.recorded == {"skipped": 12}
    assert opened == []  # listed and recorded; not one opened
    for name in files:
        e = entry(outbox, name)
        assert e["state"] == "skipped" and str(e["sha"]).startswith("unread:")
    outbox.close()


def test_a_copy_of_a_history_file_under_another_name_is_still_a_duplicate(
        tmp_path: Path, opened: list[str]) -> None:
    site, outbox, files = history_site(tmp_path)
    outbox.scan(FirstPass.FOLLOW)
    copy = site.mandant_folder() / "RE_900_4711.pdf"
    copy.write_bytes(files["RE_507_4711.pdf"])  # TIKOS writes an old invoice again
    opened.clear()
    outbox.scan(FirstPass.FOLLOW)
    assert entry(outbox, "RE_900_4711.pdf")["state"] == "skipped"
    assert entry(outbox, "RE_900_4711.pdf")["reason"] == \
        f"duplicate of entry {entry(outbox, 'RE_507_4711.pdf')['id']}"
    # the new file, and the one history file of its size, were read; no other
    assert sorted(set(opened)) == ["RE_507_4711.pdf", "RE_900_4711.pdf"]
    assert not str(entry(outbox, "RE_507_4711.pdf")["sha"]).startswith("unread:")
    outbox.close()


def test_a_requeued_history_entry_sends_the_file_as_the_first_start_saw_it(
        tmp_path: Path, cert: Cert) -> None:
    with SmtpServer(cert, "none") as srv:
        _site, outbox, files = history_site(tmp_path, srv.port)
        outbox.scan(FirstPass.FOLLOW)
        e = entry(outbox, "RE_503_4711.pdf")
        assert outbox.admin.requeue([int(str(e["id"]))], "cli:root")[int(str(e["id"]))].ok
        assert outbox.delivery.send_due(force=True).sent == 1
        assert attachment_of(srv.received[0].data) == files["RE_503_4711.pdf"]
        outbox.close()


def test_a_history_file_changed_before_it_was_read_is_held_not_mailed(
        tmp_path: Path, cert: Cert) -> None:
    with SmtpServer(cert, "none") as srv:
        site, outbox, files = history_site(tmp_path, srv.port)
        outbox.scan(FirstPass.FOLLOW)
        path = site.mandant_folder() / "RE_504_4711.pdf"
        path.write_bytes(files["RE_504_4711.pdf"])  # the same bytes, a new time
        outbox.scan(FirstPass.FOLLOW)
        views = [v for v in outbox.admin.entries(ListFilter(limit=100))
                 if v.path == "RE_504_4711.pdf"]
        assert [v.state for v in views] == ["held", "skipped"]
        assert "changed since the first start" in str(views[0].reason)
        assert views[0].attention is not None  # the office is told, and decides
        assert outbox.delivery.send_due(force=True).sent == 0 and not srv.received
        outbox.close()


def test_once_read_in_the_background_the_old_rules_hold_again(tmp_path: Path) -> None:
    site, outbox, _files = history_site(tmp_path)
    outbox.scan(FirstPass.FOLLOW)
    changed = site.mandant_folder() / "RE_511_4711.pdf"
    changed.write_bytes(b"%PDF-1.4 another\n%%EOF\n")  # changed before it was read
    assert outbox.history.read_some(100) == 11
    unread = [v for v in outbox.admin.entries(ListFilter(limit=100))
              if v.sha256.startswith(("unread:", "unknown:"))]
    assert [(v.path, v.sha256.split(":")[0]) for v in unread] == [("RE_511_4711.pdf",
                                                                   "unknown")]
    assert outbox.history.read_some(100) == 0  # nothing is read twice
    touched = site.mandant_folder() / "RE_502_4711.pdf"
    os.utime(touched)  # a copy with a new time: the same content, read this time
    outbox.scan(FirstPass.FOLLOW)
    assert [v.state for v in outbox.admin.entries(ListFilter(limit=100))
            if v.path == "RE_502_4711.pdf"] == ["skipped"]  # nothing new
    outbox.scan(FirstPass.FOLLOW)
    assert next(v.state for v in outbox.admin.entries(ListFilter(limit=100))
            if v.path == "RE_511_4711.pdf") == "held"
    outbox.close()


def test_a_share_that_is_down_leaves_the_history_unread_not_unknown(tmp_path: Path) -> None:
    """The background reader meets a missing folder (share down, empty mount point):
    nothing is marked changed; back, it reads everything, and a copy is a duplicate."""
    site, outbox, files = history_site(tmp_path)
    outbox.scan(FirstPass.FOLLOW)
    folder = site.mandant_folder()
    away = folder.with_name("M1-away")
    folder.rename(away)
    folder.mkdir()  # an empty mount point
    assert outbox.history.read_some(100) == 0
    assert outbox.history.read_some(100) == 0  # and again next turn
    assert outbox.store.queries.unread_count() == 12
    folder.rmdir()
    away.rename(folder)
    assert outbox.history.read_some(100) == 12
    assert outbox.store.queries.unread_count() == 0
    (folder / "RE_901_4711.pdf").write_bytes(files["RE_505_4711.pdf"])
    outbox.scan(FirstPass.FOLLOW)
    assert entry(outbox, "RE_901_4711.pdf")["state"] == "skipped"
    outbox.close()


def test_a_copy_arriving_while_its_original_cannot_be_read_waits(tmp_path: Path) -> None:
    site, outbox, files = history_site(tmp_path)
    outbox.scan(FirstPass.FOLLOW)
    folder = site.mandant_folder()
    original = folder / "RE_506_4711.pdf"
    locked = folder.parent / "locked.pdf"
    original.rename(locked)
    os.symlink("/etc/hostname", original)  # unreadable now: a link out of the folder
    os.utime(original, follow_symlinks=False, ns=(0, 0))
    (folder / "RE_902_4711.pdf").write_bytes(files["RE_506_4711.pdf"])
    outbox.scan(FirstPass.FOLLOW)
    assert [v for v in outbox.admin.entries(ListFilter(limit=100))
            if v.path == "RE_902_4711.pdf"] == []  # not recorded yet: it waits
    original.unlink()
    locked.rename(original)
    outbox.scan(FirstPass.FOLLOW)
    assert entry(outbox, "RE_902_4711.pdf")["state"] == "skipped"  # a duplicate
    outbox.close()


def test_a_copy_in_the_same_batch_as_its_history_is_a_duplicate(tmp_path: Path) -> None:
    """`scan --since`: last week's files are new, older ones history, in one batch."""
    site, outbox, files = history_site(tmp_path)
    copy = site.mandant_folder() / "RE_903_4711.pdf"
    copy.write_bytes(files["RE_508_4711.pdf"])  # written now: new
    outbox.scan(FirstPass.HISTORY, since=datetime.now(UTC) - timedelta(days=7))
    assert entry(outbox, "RE_508_4711.pdf")["state"] == "skipped"
    assert entry(outbox, "RE_903_4711.pdf")["state"] == "skipped"
    assert str(entry(outbox, "RE_903_4711.pdf")["reason"]).startswith("duplicate of entry")
    outbox.close()


def test_requeueing_a_history_file_that_changed_is_refused_in_words(tmp_path: Path) -> None:
    site, outbox, _files = history_site(tmp_path)
    outbox.scan(FirstPass.FOLLOW)
    e = int(str(entry(outbox, "RE_509_4711.pdf")["id"]))
    (site.mandant_folder() / "RE_509_4711.pdf").write_bytes(b"%PDF-1.4 anders\n%%EOF\n")
    result = outbox.admin.requeue([e], "cli:root")[e]
    assert not result.ok and "the version to send is not known" in result.explain()
    assert entry(outbox, "RE_509_4711.pdf")["state"] == "skipped"
    assert outbox.monitor.status().history_unread == 11  # the changed one is unknown now
    outbox.close()
