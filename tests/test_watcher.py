"""The watcher's parts on real folders: network detection, the incremental scanner,
outages, a burst, and a kill -9 with files arriving while the service is down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_run import SETTLE, by_path, history, running, site_in, wait_until
from tikos_outbox.core.settings import WatchMode
from tikos_outbox.samples import make_pdf
from tikos_outbox.scanner import FolderError, IncrementalScanner, is_network_path
from tikos_outbox.watcher import choose_mode


def test_auto_mode_polls_network_paths(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw 0 0\n"
        "//fileserver/SoCom$ /mnt/socom cifs ro,vers=3.0 0 0\n"
        "nas:/export /mnt/nfs nfs4 rw 0 0\n"
        "tmpfs /mnt/socom/tmp tmpfs rw 0 0\n"
        "smbnetfs /home/admin/smb fuse.smbnetfs rw 0 0\n"
        "gvfsd-fuse /run/user/1000/gvfs fuse.gvfsd-fuse rw 0 0\n", encoding="utf-8")
    assert is_network_path(Path("/home/admin/smb/fileserver/SoCom$"), str(mounts))
    assert is_network_path(Path("/run/user/1000/gvfs/smb-share:server=fs,share=socom$"),
                           str(mounts))
    assert is_network_path(Path("/mnt/socom/Archiv/M1"), str(mounts))
    assert is_network_path(Path("/mnt/nfs/x"), str(mounts))
    assert not is_network_path(Path("/mnt/socom/tmp/x"), str(mounts))  # the closer mount wins
    assert not is_network_path(Path("/srv/archiv"), str(mounts))
    assert is_network_path(Path("\\\\fileserver\\SoCom$\\Archiv"))
    assert choose_mode(WatchMode.AUTO, Path("//fileserver/SoCom$/Archiv")) == "polling"
    assert choose_mode(WatchMode.EVENTS, Path("//fileserver/SoCom$/Archiv")) == "events"
    assert choose_mode(WatchMode.AUTO, tmp_path) == "events"


def make_tree(root: Path, dirs: int, per_dir: int) -> None:
    for d in range(dirs):
        folder = root / f"{2000 + d}" / "11"
        folder.mkdir(parents=True)
        for f in range(per_dir):
            (folder / f"RE_{d}{f:04d}_4711.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    old = time.time() - 3600
    for path, _, names in os.walk(root):
        for name in [*names, ""]:
            os.utime(os.path.join(path, name) if name else path, (old, old))


def test_an_unchanged_pass_lists_no_folder_and_new_files_are_found(tmp_path: Path) -> None:
    make_tree(tmp_path, dirs=5, per_dir=40)
    scanner = IncrementalScanner(tmp_path)
    now = time.time_ns()
    assert len(list(scanner.scan(now))) == 200
    assert scanner.listed == 11  # root, 5 years, 5 months
    assert list(scanner.scan(now)) == []
    assert scanner.listed == 0  # one stat per folder, nothing listed
    new = tmp_path / "2003" / "11" / "RE_new_4711.pdf"
    new.write_bytes(b"%PDF-1.4\n%%EOF\n")
    found = list(scanner.scan(time.time_ns() + 10**10))
    assert scanner.listed == 1
    assert len(found) == 41 and new.name in {f.name for f in found}  # that folder, listed
    # a file rewritten in place does not touch its folder: the full pass finds it
    target = tmp_path / "2001" / "11" / "RE_10001_4711.pdf"
    target.write_bytes(b"%PDF-1.4\n changed %%EOF\n")
    # (rewriting an existing file leaves its folder's mtime as it was)
    assert list(scanner.scan(time.time_ns() + 10**10)) == []
    full = list(scanner.scan(time.time_ns() + 10**10, full=True))
    assert len(full) == 201 and scanner.listed == 11  # the caller asks the outbox


def test_a_folder_listed_in_the_same_tick_as_its_change_is_listed_again(tmp_path: Path) -> None:
    (tmp_path / "RE_1_4711.pdf").write_bytes(b"x")
    scanner = IncrementalScanner(tmp_path, granularity_s=2)
    list(scanner.scan(time.time_ns()))  # the folder changed just now: not trusted yet
    list(scanner.scan(time.time_ns()))
    assert scanner.listed == 1
    list(scanner.scan(time.time_ns() + 3 * 10**9))  # now it is trusted
    list(scanner.scan(time.time_ns() + 3 * 10**9))
    assert scanner.listed == 0


def test_a_missing_root_is_a_folder_error_and_the_cache_is_dropped(tmp_path: Path) -> None:
    root = tmp_path / "share"
    root.mkdir()
    (root / "RE_1_4711.pdf").write_bytes(b"x")
    scanner = IncrementalScanner(root)
    list(scanner.scan(time.time_ns() + 10**10))
    root.rename(tmp_path / "away")
    with pytest.raises(FolderError, match="cannot read folder"):
        list(scanner.scan(time.time_ns()))
    (tmp_path / "away").rename(root)
    assert len(list(scanner.scan(time.time_ns() + 10**10))) == 1  # a complete pass again


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["events", "polling"])
def test_a_burst_of_2000_files_is_recorded_exactly_once(tmp_path: Path, mode: str) -> None:
    site = site_in(tmp_path, mode)
    folder = site.mandant_folder()
    with running(site) as svc:
        for i in range(2000):
            (folder / f"RE_{i}_4711.pdf").write_bytes(make_pdf([str(i)]))
        rows = wait_until(lambda: (r := by_path(svc)) and len(r) == 2000 and r, timeout=120)
        assert all(len(v) == 1 and v[0].state == "pending" for v in rows.values())


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["events", "polling"])
def test_kill_9_and_restart_records_what_arrived_while_down(tmp_path: Path, mode: str) -> None:
    site = site_in(tmp_path, mode)
    folder = site.mandant_folder()
    history(folder / "RE_1_4711.pdf")
    cmd = [sys.executable, "-m", "tikos_outbox", "--config", str(site.config), "run"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from tests.helpers import open_outbox

        svc = open_outbox(site)
        wait_until(lambda: svc.monitor.status().as_json()["service"]["running"], timeout=30)
        (folder / "RE_2_4711.pdf").write_bytes(make_pdf(["live"]))
        wait_until(lambda: "RE_2_4711.pdf" in by_path(svc), timeout=30)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for i in range(3, 13):
        (folder / f"RE_{i}_4711.pdf").write_bytes(make_pdf([f"while down {i}"]))
    time.sleep(SETTLE)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rows = wait_until(lambda: (r := by_path(svc)) and len(r) == 12 and r, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert rows["RE_1_4711.pdf"][0].state == "skipped"  # the baseline, once
    assert {rows[f"RE_{i}_4711.pdf"][0].state for i in range(2, 13)} == {"pending"}, [
        (p, v[0].state, v[0].reason) for p, v in rows.items()]
    assert all(len(v) == 1 for v in rows.values())
    svc.store.close()


def test_the_start_up_pass_fills_the_polling_scanner(tmp_path: Path) -> None:
    """`run` lists the archive once at start: the scan goes through the polling
    scanner, whose next pass then lists nothing; files still being written are
    handed over to be watched until they settle."""
    from tests.helpers import open_outbox, write_site

    site = write_site(tmp_path, watch={"baseline": False, "settle_s": 60})
    make_tree(site.mandant_folder(), dirs=3, per_dir=5)
    (site.mandant_folder() / "RE_9_4711.pdf").write_bytes(make_pdf(["fresh"]))
    old = time.time() - 3600
    os.utime(site.mandant_folder(), (old, old))  # the folder itself changed long ago
    svc = open_outbox(site)
    scanner = IncrementalScanner(site.mandant_folder())
    report = svc.scan(scanners={1: scanner})
    assert report.files_seen == 16 and scanner.listed == 7
    assert [seen.name for _, seen in report.waiting_files] == ["RE_9_4711.pdf"]
    assert list(scanner.scan(time.time_ns() + 10**10)) == [] and scanner.listed == 0
    svc.store.close()
