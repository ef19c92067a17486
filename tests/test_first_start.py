"""The first start: what is history (modified before the first pass began) is
recorded and never mailed, whatever the flag, the settling or the share did."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Site, write_site
from tests.test_run import by_path, running, site_in, wait_until
from tikos_outbox.samples import make_pdf

DAY = 86400


def entries(site: Site, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    capsys.readouterr()
    assert site.cli("list", "--json", "--limit", "1000") == 0
    return {r["path"]: r for r in json.loads(capsys.readouterr().out)}


def scan_json(site: Site, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    capsys.readouterr()
    site.cli("scan", "--json", *args)
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def old(path: Path, days: float = 400) -> None:
    t = time.time() - days * DAY
    os.utime(path, (t, t))


@pytest.mark.parametrize("flag", ["--no-baseline", "--baseline", "--since"])
def test_each_first_start_flag_counts_as_the_first_pass(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    """Round one: after `scan --no-baseline` (or --baseline, --since) the first pass
    was never marked done, so the next document was recorded as baseline: lost."""
    site = write_site(tmp_path)
    folder = site.mandant_folder()
    (folder / "RE_1_4711.pdf").write_bytes(make_pdf(["alt"]))
    old(folder / "RE_1_4711.pdf", 30)
    args = [flag, "2026-01-01"] if flag == "--since" else [flag]
    first = scan_json(site, capsys, *args)
    assert first["history"] + first["new"] == 1
    (folder / "RE_2_4711.pdf").write_bytes(make_pdf(["neu"]))  # TIKOS writes an invoice
    later = scan_json(site, capsys)
    assert (later["history"], later["new"]) == (0, 1)
    rows = entries(site, capsys)
    assert rows["RE_2_4711.pdf"]["state"] == "pending"
    expected = {"--no-baseline": "pending", "--baseline": "skipped", "--since": "pending"}
    assert rows["RE_1_4711.pdf"]["state"] == expected[flag]  # 30 days old: after 2026-01-01


def test_since_divides_history_from_new_by_modification_time(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path)
    folder = site.mandant_folder()
    for n, age in ((1, 400), (2, 3)):
        (folder / f"RE_{n}_4711.pdf").write_bytes(make_pdf([str(n)]))
        old(folder / f"RE_{n}_4711.pdf", age)
    since = time.strftime("%d.%m.%Y", time.localtime(time.time() - 10 * DAY))
    report = scan_json(site, capsys, "--since", since)
    assert (report["history"], report["new"]) == (1, 1)
    rows = entries(site, capsys)
    assert rows["RE_1_4711.pdf"]["state"] == "skipped"
    assert rows["RE_2_4711.pdf"]["state"] == "pending"


def test_since_decides_also_without_the_baseline_and_after_the_first_pass(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, watch={"baseline": False})
    folder = site.mandant_folder()
    assert site.cli("scan") == 0  # a first pass: nothing is history
    (folder / "RE_1_4711.pdf").write_bytes(make_pdf(["400 days old"]))
    old(folder / "RE_1_4711.pdf")
    since = time.strftime("%Y-%m-%d", time.localtime(time.time() - 10 * DAY))
    report = scan_json(site, capsys, "--since", since)
    assert (report["history"], report["new"]) == (1, 0)
    assert entries(site, capsys)["RE_1_4711.pdf"]["state"] == "skipped"


def test_files_still_settling_at_the_first_start_are_history_once_they_settle(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Round one: an archive restored just before the first start was still settling
    at the first pass and was queued for mailing at the next one."""
    site = write_site(tmp_path, watch={"settle_s": 60})
    folder = site.mandant_folder()
    for n in range(1, 6):  # a copy still going on: written a moment ago
        (folder / f"RE_{n}_4711.pdf").write_bytes(make_pdf([str(n)]))
    first = scan_json(site, capsys)
    assert first["waiting"] == 5 and first["history"] == first["new"] == 0
    for n in range(1, 6):  # the copy tool finishes, setting the files' original times
        old(folder / f"RE_{n}_4711.pdf", 2)
    later = scan_json(site, capsys)
    assert (later["history"], later["new"]) == (5, 0)
    assert {r["state"] for r in entries(site, capsys).values()} == {"skipped"}


def test_a_file_found_later_with_an_old_time_is_history_the_rules_price(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that turns up after the first start with a modification time before
    it is taken as history (the README says so): recorded, with the reason."""
    site = write_site(tmp_path)
    folder = site.mandant_folder()
    assert site.cli("scan") == 0  # the first pass: an empty archive
    (folder / "RE_7_4711.pdf").write_bytes(make_pdf(["copied in with its old time"]))
    old(folder / "RE_7_4711.pdf", 20)
    assert site.cli("scan") == 0
    row = entries(site, capsys)["RE_7_4711.pdf"]
    assert (row["state"], row["reason"]) == ("skipped",
                                             "baseline: in the archive before the first start")
    assert site.cli("requeue", "1") == 0  # the way to send it after all
    assert entries(site, capsys)["RE_7_4711.pdf"]["state"] == "pending"


@pytest.mark.parametrize("mode", ["events", "polling"])
def test_the_share_down_at_the_first_start_never_mails_the_old_archive(
        tmp_path: Path, mode: str) -> None:
    """Round one: with the share down at the first start (service up before the
    network), the first pass counted as done and, when the share came back, the
    whole existing archive was mailed."""
    site = site_in(tmp_path, mode)
    folder = site.mandant_folder()
    shutil.rmtree(folder)
    with running(site) as svc:
        assert svc.monitor.status().first_pass_waiting == [1]
        staged = tmp_path / "share"
        staged.mkdir()
        for n in range(1, 21):  # invoices of last year, on the share all along
            (staged / f"RE_{n}_4711.pdf").write_bytes(make_pdf([str(n)]))
            old(staged / f"RE_{n}_4711.pdf")
        (staged / "RE_99_4711.pdf").write_bytes(make_pdf(["new, while it was away"]))
        shutil.move(str(staged), str(folder))  # the share is back
        rows = wait_until(lambda: (r := by_path(svc)) and len(r) == 21 and r, timeout=60)
        states = {path: views[-1].state for path, views in rows.items()}
        assert states.pop("RE_99_4711.pdf") == "pending"
        assert set(states.values()) == {"skipped"}  # history, never mailed
        assert all(views[-1].attention is None for views in rows.values())
        wait_until(lambda: svc.monitor.status().first_pass_waiting == [], timeout=30)


def test_a_first_pass_writes_its_history_in_few_statements_and_what_it_reads_in_small_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """History is not read, so its bytes do not close a batch: 600 history files of
    200 KB go in one statement, without RETURNING. Files that are read (a first pass
    without history) still go 200 a transaction, so that `run` never waits long."""
    from sqlalchemy import Engine, event

    writes: list[tuple[int, bool, str]] = []  # (transaction, executemany, statement)
    commits = [0]

    def seen(_c: Any, _cur: Any, statement: str, _p: Any, _x: Any, many: bool) -> None:
        if statement.lstrip().startswith("INSERT INTO entry"):
            writes.append((commits[0], many, statement))

    def committed(_conn: Any) -> None:
        commits[0] += 1

    event.listen(Engine, "before_cursor_execute", seen)
    event.listen(Engine, "commit", committed)
    try:
        site = write_site(tmp_path)
        folder = site.mandant_folder()
        for n in range(600):
            with open(folder / f"RE_{n}_4711.pdf", "wb") as f:
                f.truncate(200_000)  # sparse: its size is what counts, it is never read
            old(folder / f"RE_{n}_4711.pdf")
        assert scan_json(site, capsys, "--baseline")["history"] == 600
        history = list(writes)
        writes.clear()
        fresh = write_site(tmp_path / "fresh")
        for n in range(250):
            (fresh.mandant_folder() / f"RE_{n}_4711.pdf").write_bytes(make_pdf([str(n)]))
            old(fresh.mandant_folder() / f"RE_{n}_4711.pdf")
        assert scan_json(fresh, capsys, "--no-baseline")["new"] == 250
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
        event.remove(Engine, "commit", committed)
    assert [many for _, many, _ in history] == [True], history
    assert "RETURNING" not in history[0][2].upper()
    per_transaction = sorted({t for t, _, _ in writes})
    assert len(writes) == 250 and len(per_transaction) == 2, per_transaction
