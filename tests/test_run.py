"""`run`: the watcher and the send schedule, on real folders, in both watch modes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import (
    Cert,
    FakeClock,
    Site,
    SmtpServer,
    open_outbox,
    service_running,
    write_site,
)
from tikos_outbox.runner import SendScheduler
from tikos_outbox.samples import make_pdf

SETTLE = 0.4


def wait_until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


running = service_running


def by_path(svc: Any) -> dict[str, list[Any]]:
    from tikos_outbox.core.views import ListFilter

    out: dict[str, list[Any]] = {}
    for v in reversed(svc.store.queries.list_entries(ListFilter(limit=100000))):
        out.setdefault(v.path, []).append(v)
    return out


def history(path: Path) -> None:
    """A document that was in the archive long before the first start."""
    path.write_bytes(make_pdf(["history", path.name]))
    old = 1_764_000_000  # 2025-11-24: older than every clock of the tests, real or fake
    os.utime(path, (old, old))


def site_in(tmp_path: Path, mode: str, **watch: Any) -> Site:
    return write_site(tmp_path, watch={"mode": mode, "settle_s": SETTLE, "poll_interval_s": 0.1,
                                       **watch})


@pytest.mark.parametrize("mode", ["events", "polling"])
def test_run_records_new_documents_once_and_complete(tmp_path: Path, mode: str) -> None:
    site = site_in(tmp_path, mode)
    folder = site.mandant_folder()
    history(folder / "RE_1_4711.pdf")
    with running(site) as svc:
        assert by_path(svc)["RE_1_4711.pdf"][0].state == "skipped"  # the baseline
        # a slow writer: the file grows for well over the settle time
        content = make_pdf(["slow"], padding=30_000)
        slow = folder / "RE_2_4711.pdf"
        with open(slow, "wb") as f:
            for i in range(0, len(content), 3000):
                f.write(content[i:i + 3000])
                f.flush()
                time.sleep(SETTLE / 4)
        # a burst, a file removed before it settles, a sub folder created later
        for i in range(100, 300):
            (folder / f"RE_{i}_4711.pdf").write_bytes(make_pdf([str(i)]))
        gone = folder / "RE_3_4711.pdf"
        gone.write_bytes(make_pdf(["gone"]))
        gone.unlink()
        (folder / "2026" / "12").mkdir(parents=True)
        (folder / "2026" / "12" / "LS_5_4711.pdf").write_bytes(make_pdf(["deep"]))
        wait_until(lambda: len(by_path(svc)) == 1 + 1 + 200 + 1)
        rows = by_path(svc)
        [entry] = rows["RE_2_4711.pdf"]
        assert entry.sha256 == hashlib.sha256(content).hexdigest()
        assert entry.state == "pending"
        assert "RE_3_4711.pdf" not in rows
        assert all(len(v) == 1 for v in rows.values())
        assert rows["2026/12/LS_5_4711.pdf"][0].doctype == "LS"


@pytest.mark.parametrize("mode", ["events", "polling"])
def test_restart_catches_up_without_a_second_baseline(tmp_path: Path, mode: str) -> None:
    site = site_in(tmp_path, mode)
    folder = site.mandant_folder()
    history(folder / "RE_1_4711.pdf")
    with running(site):
        pass
    (folder / "RE_2_4711.pdf").write_bytes(make_pdf(["while down"]))  # after the first start
    with running(site) as svc:
        rows = wait_until(lambda: (r := by_path(svc)) and "RE_2_4711.pdf" in r and r)
        assert rows["RE_1_4711.pdf"][0].state == "skipped"
        assert rows["RE_2_4711.pdf"][0].state == "pending"


@pytest.mark.parametrize("mode", ["events", "polling"])
def test_folder_vanishing_and_coming_back(tmp_path: Path, mode: str) -> None:
    """An outage of the share: noticed, shown in status, and on return what arrived
    meanwhile is caught up; in events mode the watcher works again afterwards."""
    site = site_in(tmp_path, mode)
    folder = site.mandant_folder()
    with running(site) as svc:
        away = folder.with_name("away")
        folder.rename(away)
        wait_until(lambda: "unavailable" in (svc.monitor.status().last_error or {})
                   .get("text", ""), timeout=30)
        (away / "RE_8_4711.pdf").write_bytes(make_pdf(["while away"]))
        shutil.move(str(away), str(folder))
        wait_until(lambda: "RE_8_4711.pdf" in by_path(svc), timeout=30)
        (folder / "RE_9_4711.pdf").write_bytes(make_pdf(["after"]))
        wait_until(lambda: "RE_9_4711.pdf" in by_path(svc), timeout=30)


def test_heartbeat_and_clean_stop_on_sigterm(tmp_path: Path) -> None:
    site = site_in(tmp_path, "polling")
    proc = subprocess.Popen([sys.executable, "-m", "tikos_outbox", "--config", str(site.config),
                             "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def status() -> dict[str, Any]:
            out = subprocess.run([sys.executable, "-m", "tikos_outbox", "--config",
                                  str(site.config), "status", "--json"], capture_output=True,
                                 text=True, check=True).stdout
            return dict(json.loads(out))

        wait_until(lambda: status()["service"]["running"])
        (site.mandant_folder() / "RE_9_4711.pdf").write_bytes(make_pdf(["live"]))
        wait_until(lambda: status()["counts"]["pending"] == 1)
        # a second run on the same outbox is refused, and says which one runs
        second = subprocess.run([sys.executable, "-m", "tikos_outbox", "--config",
                                 str(site.config), "run"], capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 2
        assert f"another tikos-outbox run (PID {proc.pid}) already serves" in second.stderr
        assert status()["service"]["running"] is True  # and the first still shows
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert status()["service"]["running"] is False
    log = (tmp_path / "tikos-outbox.log").read_text(encoding="utf-8")
    assert "entry 1 pending: RE_9_4711.pdf" in log and "stopped" in log
    # journald and WinSW see a start and a stop line in the foreground
    assert proc.stdout is not None
    out = proc.stdout.read().decode("utf-8")
    assert f"starting: config {site.config}; log {tmp_path / 'tikos-outbox.log'}" in out
    assert f"watching mandant 1 {site.mandant_folder()} (polling); next send run" in out
    assert out.rstrip().endswith("tikos-outbox stopped")


def test_send_scheduler_runs_once_per_slot_and_skips_slots_passed_during_a_run(
        tmp_path: Path, cert: Cert) -> None:
    with SmtpServer(cert, "none") as srv:
        site = write_site(tmp_path, smtp={"port": srv.port, "max_per_minute": 1},
                          watch={"baseline": False},
                          extra="[schedule]\ntimezone = 'Europe/Berlin'\nevery_minutes = 1\n")
        for i in range(3):
            history(site.mandant_folder() / f"RE_{i}_4711.pdf")
        berlin = ZoneInfo("Europe/Berlin")
        clock = FakeClock(datetime(2026, 11, 26, 9, 30, 30, tzinfo=berlin))
        svc = open_outbox(site, clock)
        svc.scan()
        sched = SendScheduler(svc)
        assert not sched.tick()  # 09:30 passed before the start: no burst of missed runs
        clock.advance(30)  # 09:31
        assert sched.tick()
        sched.join(120)  # the run ends by itself; a hang fails here
        assert not sched.busy
        assert len(srv.received) == 3
        # the throttled run took two minutes: 09:32 and 09:33 are skipped, not doubled
        assert clock.now() >= datetime(2026, 11, 26, 9, 33, tzinfo=berlin)
        assert sched.consumed == datetime(2026, 11, 26, 9, 33, tzinfo=berlin)
        assert not sched.tick()
        clock.advance(60)
        assert sched.tick()  # 09:34: the next slot runs again
        sched.join(120)  # the run ends by itself; a hang fails here
        assert not sched.busy
        # a restart remembers the consumed slot
        assert SendScheduler(svc).consumed == datetime(2026, 11, 26, 9, 34, tzinfo=berlin)
        svc.store.close()


def test_a_clock_going_back_is_noticed() -> None:
    """schedule keeps naive local times; the loop re-plans its jobs when the local
    clock goes back (end of summer time), instead of pausing for an hour."""
    from datetime import timedelta

    from tikos_outbox.runner import BackwardsGuard

    times = iter([datetime(2026, 10, 25, 2, 59, 59), datetime(2026, 10, 25, 3, 0, 0),
                  datetime(2026, 10, 25, 2, 0, 0), datetime(2026, 10, 25, 2, 0, 1),
                  datetime(2026, 10, 25, 2, 0, 1) + timedelta(hours=1)])
    guard = BackwardsGuard(lambda: next(times))
    assert [guard.went_back() for _ in range(4)] == [False, True, False, False]


def test_a_file_held_as_incomplete_is_taken_again_when_its_writer_finishes(
        tmp_path: Path) -> None:
    """Polling: a writer pauses longer than settle_s, the half file is held as an
    incomplete PDF; when the writer finishes, the whole file is recorded within
    seconds, not at the next full pass an hour later."""
    site = site_in(tmp_path, "polling", baseline=False, full_scan_minutes=600)
    pdf = make_pdf(["Rechnung 10023"])
    path = site.mandant_folder() / "RE_10023_4711.pdf"
    with running(site) as svc:
        path.write_bytes(pdf[: len(pdf) // 2])  # the writer stalls here
        wait_until(lambda: [v.state for v in by_path(svc).get(path.name, [])] == ["held"],
                   timeout=30)
        with path.open("ab") as f:
            f.write(pdf[len(pdf) // 2:])  # … and finishes
        wait_until(lambda: "pending" in [v.state for v in by_path(svc).get(path.name, [])],
                   timeout=30)
        old, new = by_path(svc)[path.name]
        assert (old.state, old.reason) == ("skipped", f"superseded by entry {new.id}")
        assert old.problem is not None and "truncated or still being written" in old.problem
