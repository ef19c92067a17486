"""The archive's odd corners, on real folders: names that are not UTF-8, symlinks,
and mandants whose folders overlap (one folder told apart by pattern, or nested)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pytest

from tests.helpers import Site, open_outbox, write_site
from tests.test_run import SETTLE, by_path, history, running, site_in, wait_until
from tikos_outbox import runner
from tikos_outbox.config import load_config
from tikos_outbox.core.naming import Owners, compile_pattern, decode_name, owner
from tikos_outbox.core.views import FileSeen
from tikos_outbox.samples import make_pdf
from tikos_outbox.scanner import IncrementalScanner, reachable, rel_path
from tikos_outbox.watcher import Watcher

MUELLER = b"M\xfcller"  # "Müller" in Latin-1, as an unzip of a Windows archive leaves it


def raw_folder(parent: Path, name: bytes) -> bytes:
    """A folder whose name is these bytes (skips where names must be valid text)."""
    if sys.platform == "win32":
        pytest.skip("Windows names are UTF-16 text: there are no undecodable bytes")
    path = os.path.join(os.fsencode(parent), name)
    try:
        os.mkdir(path)
    except OSError as exc:
        pytest.skip(f"this file system refuses names that are not UTF-8: {exc}")
    return path


def write_raw(path: bytes, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def entries(site: Site, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert site.cli("list", "--json", "--limit", "1000") == 0
    return list(json.loads(capsys.readouterr().out))


# -- names that are not valid UTF-8 ---------------------------------------------------------


def test_names_read_as_utf8_else_as_latin1() -> None:
    assert decode_name(MUELLER) == "Müller"
    assert decode_name("Müller".encode()) == "Müller"
    assert decode_name(b"RE_1_4711.pdf") == "RE_1_4711.pdf"
    assert decode_name(b"\xed\xb3\xbc") == "í³¼"  # an encoded surrogate is not UTF-8 either


def test_a_folder_named_in_latin1_and_the_files_beside_it_are_recorded_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, watch={"baseline": False}, mandants=[
        {"id": 1, "pattern": r"^(?P<doctype>RE)_(?P<docno>\d+)_(?P<customer>\d+).*\.pdf$"}])
    folder = site.mandant_folder()
    mueller = raw_folder(folder, MUELLER)
    write_raw(os.path.join(mueller, b"RE_1_4711.pdf"), make_pdf(["Müller"]))
    write_raw(os.path.join(os.fsencode(folder), b"RE_3_4711_K\xf6ln.pdf"), make_pdf(["Köln"]))
    (folder / "RE_2_4711.pdf").write_bytes(make_pdf(["beside"]))
    (folder / "Köln").mkdir()  # valid UTF-8 stays as it is
    (folder / "Köln" / "RE_4_4711.pdf").write_bytes(make_pdf(["utf-8"]))

    assert site.cli("scan") == 0
    rows = {r["path"]: r for r in entries(site, capsys)}
    assert set(rows) == {"Müller/RE_1_4711.pdf", "RE_2_4711.pdf", "RE_3_4711_Köln.pdf",
                         "Köln/RE_4_4711.pdf"}
    assert {r["state"] for r in rows.values()} == {"pending"}
    assert rows["RE_3_4711_Köln.pdf"]["file_name"] == "RE_3_4711_Köln.pdf"
    assert rows["Müller/RE_1_4711.pdf"]["docno"] == "1"

    capsys.readouterr()
    assert site.cli("scan", "--json") == 0  # the same names again: nothing new
    report = json.loads(capsys.readouterr().out)
    assert report["files_seen"] == 4 and report["recorded"] == {} and report["errors"] == []
    assert len(entries(site, capsys)) == 4


def test_the_scanner_gives_readable_names_and_the_real_path(tmp_path: Path) -> None:
    mueller = raw_folder(tmp_path, MUELLER)
    write_raw(os.path.join(mueller, b"RE_1_4711.pdf"), b"%PDF-1.4\n%%EOF\n")
    scanner = IncrementalScanner(tmp_path)
    [seen] = list(scanner.scan(time.time_ns()))
    assert (seen.rel_path, seen.name) == ("Müller/RE_1_4711.pdf", "RE_1_4711.pdf")
    assert os.fsencode(seen.abs_path) == os.path.join(mueller, b"RE_1_4711.pdf")
    with open(seen.abs_path, "rb") as f:  # the real path opens the file
        assert f.read() == b"%PDF-1.4\n%%EOF\n"
    assert rel_path(tmp_path, seen.abs_path) == seen.rel_path  # the watcher's mapping agrees
    assert [s.rel_path for s in scanner.scan(time.time_ns(), full=True)] == [seen.rel_path]


def test_a_latin1_name_that_reads_like_its_neighbour_is_left_out_and_reported(
        tmp_path: Path) -> None:
    """Two folders "Müller", one in UTF-8 and one in Latin-1, would give their files
    the same rel_path: the outbox could not tell them apart. The UTF-8 one is
    listed, the other is reported until one of them is renamed."""
    mueller = raw_folder(tmp_path, MUELLER)
    write_raw(os.path.join(mueller, b"RE_1_4711.pdf"), b"latin-1")
    (tmp_path / "Müller").mkdir()
    (tmp_path / "Müller" / "RE_1_4711.pdf").write_bytes(b"utf-8")
    (tmp_path / "RE_2_4711.pdf").write_bytes(b"beside")
    scanner = IncrementalScanner(tmp_path)
    for _ in range(2):
        errors: list[str] = []
        seen = list(scanner.scan(time.time_ns(), full=True, errors=errors))
        assert sorted(s.rel_path for s in seen) == ["Müller/RE_1_4711.pdf", "RE_2_4711.pdf"]
        assert [s.abs_path for s in seen if s.rel_path.startswith("M")] == [
            str(tmp_path / "Müller" / "RE_1_4711.pdf")]
        [error] = errors
        assert "Müller" in error and "rename" in error
    latin1 = os.fsdecode(os.path.join(mueller, b"RE_1_4711.pdf"))
    assert not reachable(tmp_path, latin1)  # an event for it is left out too
    assert reachable(tmp_path, str(tmp_path / "Müller" / "RE_1_4711.pdf"))
    assert not reachable(tmp_path, str(tmp_path / ".Trash" / "RE_1_4711.pdf"))  # not listed


@pytest.mark.parametrize("mode", ["events", "polling"])
def test_run_starts_and_records_documents_in_a_latin1_folder(tmp_path: Path, mode: str) -> None:
    site = site_in(tmp_path, mode)
    folder = site.mandant_folder()
    mueller = raw_folder(folder, MUELLER)
    write_raw(os.path.join(mueller, b"RE_1_4711.pdf"), make_pdf(["history"]))
    os.utime(os.path.join(mueller, b"RE_1_4711.pdf"), (1_764_000_000, 1_764_000_000))
    history(folder / "RE_2_4711.pdf")
    with running(site) as svc:  # the start-up pass (the baseline) gets through
        rows = by_path(svc)
        assert {p: v[0].state for p, v in rows.items()} == {
            "Müller/RE_1_4711.pdf": "skipped", "RE_2_4711.pdf": "skipped"}
        write_raw(os.path.join(mueller, b"RE_5_4711.pdf"), make_pdf(["new in Müller"]))
        (folder / "RE_6_4711.pdf").write_bytes(make_pdf(["new beside"]))
        rows = wait_until(lambda: (r := by_path(svc)) and len(r) == 4 and r)
        assert rows["Müller/RE_5_4711.pdf"][0].state == "pending"
        assert rows["Müller/RE_5_4711.pdf"][0].file_name == "RE_5_4711.pdf"
        assert rows["RE_6_4711.pdf"][0].state == "pending"
        assert all(len(v) == 1 for v in rows.values())


# -- symlinks -------------------------------------------------------------------------------


def make_links(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A mandant folder (itself reached through a symlink, as on many servers) with
    links to files outside and inside it. Returns (mandant folder, its real
    folder, the secret outside)."""
    if sys.platform == "win32":
        pytest.skip("symlinks need special rights on Windows")
    outside = tmp_path / "etc"
    outside.mkdir()
    secret = outside / "shadow"
    secret.write_bytes(b"root:$6$secret:19000:0:99999:7:::\n")
    (outside / "RE_98_9.pdf").write_bytes(b"%PDF-1.4 outside\n%%EOF\n")
    real = tmp_path / "srv" / "M1"
    real.mkdir(parents=True)
    root = tmp_path / "M1"
    root.symlink_to(real, target_is_directory=True)
    (real / "RE_1_4711.pdf").write_bytes(b"%PDF-1.4 inside\n%%EOF\n")
    (real / "RE_92_9.pdf").symlink_to(secret)
    (real / "RE_93_9.pdf").symlink_to("RE_1_4711.pdf")  # inside, relative
    (real / "RE_94_9.pdf").symlink_to(root / "RE_1_4711.pdf")  # inside, through the root's link
    (real / "RE_95_9.pdf").symlink_to("../../etc/shadow")  # outside, relative
    (real / "RE_96_9.pdf").symlink_to(tmp_path / "nowhere.pdf")  # outside, dangling
    (real / "linked").symlink_to(outside, target_is_directory=True)  # a folder: not followed
    (real / "sub").mkdir()
    (real / "sub" / "RE_97_9.pdf").symlink_to(secret)
    return root, real, secret


def check_links(seen: dict[str, FileSeen], root: Path, real: Path, secret: Path) -> None:
    assert set(seen) == {"RE_1_4711.pdf", "RE_92_9.pdf", "RE_93_9.pdf", "RE_94_9.pdf",
                         "RE_95_9.pdf", "RE_96_9.pdf", "sub/RE_97_9.pdf"}
    shadow = os.path.realpath(secret)
    for rel, target in (("RE_92_9.pdf", shadow), ("RE_95_9.pdf", shadow),
                        ("RE_96_9.pdf", os.path.realpath(secret.parent.parent / "nowhere.pdf")),
                        ("sub/RE_97_9.pdf", shadow)):
        link = os.lstat(root / rel)  # the link's own stat: the target is not touched
        assert (seen[rel].link_target, seen[rel].size, seen[rel].mtime_ns) == (
            target, link.st_size, link.st_mtime_ns), rel
    inside = os.stat(real / "RE_1_4711.pdf")
    for rel in ("RE_1_4711.pdf", "RE_93_9.pdf", "RE_94_9.pdf"):  # ordinary files
        assert (seen[rel].link_target, seen[rel].size, seen[rel].mtime_ns) == (
            None, inside.st_size, inside.st_mtime_ns), rel


def test_the_scanner_marks_links_to_outside_the_folder_and_does_not_follow_them(
        tmp_path: Path) -> None:
    root, real, secret = make_links(tmp_path)
    seen = {s.rel_path: s for s in IncrementalScanner(root).scan(time.time_ns())}
    check_links(seen, root, real, secret)


@pytest.mark.parametrize("mode", ["events", "polling"])
def test_the_watcher_marks_links_to_outside_the_folder(
        tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the watcher hands to the intake, from events and from its polls: the
    intake (a spy here, which records nothing) gets the link with its target."""
    site = write_site(tmp_path / "site", watch={"mode": mode, "settle_s": 0})
    root, real, secret = make_links(tmp_path)
    site.mandant_folder().rmdir()
    site.mandant_folder().symlink_to(root, target_is_directory=True)  # archive/M1 -> M1
    svc = open_outbox(site)
    handed: dict[str, FileSeen] = {}

    def spy(mandant: Any, files: list[FileSeen], baseline: bool = False) -> list[str | None]:
        handed.update((f.rel_path, f) for f in files)
        return [None] * len(files)

    monkeypatch.setattr(svc.intake, "ingest_many", spy)
    watcher = Watcher(svc.intake, svc.monitor, svc.clock)
    try:
        watcher.start()
        if mode == "events":  # the links are made again while the observer watches
            for path in sorted(real.rglob("*.pdf")):
                if path.is_symlink():
                    target = os.readlink(path)
                    path.unlink()
                    path.symlink_to(target)
            (real / "RE_1_4711.pdf").write_bytes(b"%PDF-1.4 inside\n%%EOF\n")
            # an event path through the symlinked folder is not followed either
            watcher.on_event_path(str(site.mandant_folder() / "linked" / "RE_98_9.pdf"))
        else:
            watcher.poll()

        def all_handed() -> bool:
            watcher.process()
            return len(handed) >= 7

        wait_until(all_handed)
        watcher.process()
        check_links(handed, site.mandant_folder(), real, secret)
    finally:
        watcher.stop()
        svc.store.close()


def test_events_come_from_a_mandant_folder_that_is_a_symlink(tmp_path: Path) -> None:
    """/srv/archiv -> /mnt/daten/archiv: a watch on the link itself sees nothing
    (watchdog does not follow it); the folder is watched at its real path."""
    if sys.platform == "win32":
        pytest.skip("symlinks need special rights on Windows")
    site = site_in(tmp_path, "events")
    real = tmp_path / "daten" / "M1"
    real.mkdir(parents=True)
    site.mandant_folder().rmdir()
    site.mandant_folder().symlink_to(real, target_is_directory=True)
    with running(site) as svc:
        (real / "RE_1_4711.pdf").write_bytes(make_pdf(["via the real path"]))
        (site.mandant_folder() / "RE_2_4711.pdf").write_bytes(make_pdf(["via the link"]))
        rows = wait_until(lambda: (r := by_path(svc)) and len(r) == 2 and r)
        assert {p: [v.state for v in views] for p, views in rows.items()} == {
            "RE_1_4711.pdf": ["pending"], "RE_2_4711.pdf": ["pending"]}


# -- overlapping mandant folders ------------------------------------------------------------

P1 = r"^(?P<doctype>RE)_1_(?P<docno>\d+)_(?P<customer>\d+)\.pdf$"
P2 = r"^(?P<doctype>RE)_2_(?P<docno>\d+)_(?P<customer>\d+)\.pdf$"


def test_the_owner_of_a_file_is_the_deepest_matching_folder_then_the_first() -> None:
    any_pdf, only_re = compile_pattern(r"^.*\.pdf$"), compile_pattern(r"^RE_")
    claims = [
        (1, "/srv/archiv", compile_pattern(P1)),
        (2, "/srv/archiv", compile_pattern(P2)),
        (3, "/srv/archiv/filiale", only_re),
        (4, "/srv/archiv/filiale/", any_pdf),  # the same folder as 3, written otherwise
        (5, "/srv/archiv/x/../filiale/2026", only_re),
        (6, "/srv/archiv2", any_pdf),  # a prefix of the letters is not a parent folder
    ]
    owners = Owners(claims)
    cases = {
        "/srv/archiv/RE_1_7_4711.pdf": 1,
        "/srv/archiv/2026/11/RE_2_8_4711.pdf": 2,
        "/srv/archiv/RE_3_9_4711.pdf": None,  # no pattern matches
        "/srv/archiv/RE_1_7_4711.pdf.tmp": None,  # not a candidate at all
        "/srv/archiv/filiale/RE_1_7_4711.pdf": 3,  # deeper wins, the first of equal folders
        "/srv/archiv/filiale/LS_1_4711.pdf": 4,  # 3 does not match: 4, on the same folder
        "/srv/archiv/filiale/2026/RE_1_7_4711.pdf": 5,
        "/srv/archiv/filiale/2026/LS_1.pdf": 4,
        "/srv/archiv2/RE_1_7_4711.pdf": 6,
        "/srv/archiv": None,
        "/srv/other/RE_1_7_4711.pdf": None,
    }
    for path, expected in cases.items():
        assert owner(claims, PurePosixPath(path)) == expected, path
        assert owners.owner(PurePosixPath(path)) == expected, path
    # owns: the scan's question for each file of a mandant's listing
    assert owners.owns(1, "RE_1_7_4711.pdf") and not owners.owns(2, "RE_1_7_4711.pdf")
    assert not owners.owns(1, "filiale/RE_1_7_4711.pdf") and owners.owns(3, "RE_1_7_4711.pdf")
    assert owners.owns(4, "2026/LS_1.pdf") and owners.owns(5, "RE_1_7_4711.pdf")
    assert not owners.owns(99, "RE_1_7_4711.pdf")
    # Windows paths ignore case
    win = [(1, PureWindowsPath("C:/Archiv"), any_pdf), (2, PureWindowsPath("c:/archiv/FILIALE"),
                                                        any_pdf)]
    assert owner(win, PureWindowsPath("C:\\ARCHIV\\Filiale\\x.pdf")) == 2
    assert Owners(win).owns(2, "x.pdf") and not Owners(win).owns(1, "filiale/x.pdf")


class _Trace:
    """What the service's watcher did, in order: passes over every folder and
    recording rounds (a spy on the real Watcher)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps: list[str] = []
        trace = self

        class Traced(Watcher):
            def poll(self, everything: bool = False, full: bool = False) -> None:
                super().poll(everything, full)
                if everything:
                    trace.steps.append("pass")

            def process(self) -> int:
                n = super().process()
                trace.steps.append("process")
                return n

        monkeypatch.setattr(runner, "Watcher", Traced)

    def settled_since(self, mark: int) -> bool:
        """A pass over every folder, then a recording round, since step `mark`."""
        later = self.steps[mark:]
        return "pass" in later and "process" in later[later.index("pass"):]

    def wait_for_two_passes(self) -> None:
        mark = len(self.steps)
        wait_until(lambda: self.settled_since(mark))
        mark = len(self.steps)
        wait_until(lambda: self.settled_since(mark))


def recorded(svc: Any) -> dict[str, list[int]]:
    return {path: [v.mandant for v in views] for path, views in by_path(svc).items()}


@pytest.fixture
def trace(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Trace]:
    yield _Trace(monkeypatch)


@pytest.mark.parametrize("mode", ["events", "polling"])
def test_one_folder_two_mandants_told_apart_by_pattern(tmp_path: Path, mode: str) -> None:
    """In events mode the events alone must do it (the hourly passes are far off);
    a file can never be recorded for the mandant whose pattern does not match."""
    site = write_site(tmp_path, mandants=[
        {"id": 1, "name": "Nord", "folder": "archive/shared", "pattern": P1},
        {"id": 2, "name": "Süd", "folder": "archive/shared", "pattern": P2}],
        watch={"mode": mode, "settle_s": SETTLE, "poll_interval_s": 0.1})
    folder = site.archive / "shared"
    with running(site) as svc:
        for i in range(5):
            (folder / f"RE_1_{i}_4711.pdf").write_bytes(make_pdf(["Nord", str(i)]))
            (folder / f"RE_2_{i}_4711.pdf").write_bytes(make_pdf(["Süd", str(i)]))
        rows = wait_until(lambda: (r := by_path(svc)) and len(r) == 10 and r)
        assert recorded(svc) == {**{f"RE_1_{i}_4711.pdf": [1] for i in range(5)},
                                 **{f"RE_2_{i}_4711.pdf": [2] for i in range(5)}}
        assert {v[0].state for v in rows.values()} == {"pending"}
        assert {tuple(v[0].recipients) for p, v in rows.items() if p.startswith("RE_2")} == {
            ("kunde2@example.org",)}  # mandant 2's own customer list


@pytest.mark.parametrize("mode", ["events", "polling"])
def test_nested_folders_each_document_once_for_its_owner(
        tmp_path: Path, mode: str, trace: _Trace) -> None:
    """Mandant 2's folder lies inside mandant 1's; mandant 2 takes only RE."""
    site = write_site(tmp_path, mandants=[
        {"id": 1, "folder": "archive/M1"},
        {"id": 2, "folder": "archive/M1/filiale",
         "pattern": r"^(?P<doctype>RE)_(?P<docno>\d+)_(?P<customer>\d+)\.pdf$"}],
        watch={"mode": mode, "settle_s": SETTLE, "poll_interval_s": 0.1,
               "full_scan_minutes": 0.01, "reconcile_minutes": 0.01})
    outer = site.archive / "M1"
    inner = outer / "filiale"
    (inner / "2026").mkdir()
    (outer / "2026").mkdir()
    with running(site) as svc:
        (outer / "RE_1_4711.pdf").write_bytes(make_pdf(["outer"]))
        (outer / "2026" / "LS_2_4711.pdf").write_bytes(make_pdf(["outer deeper"]))
        (inner / "RE_3_4711.pdf").write_bytes(make_pdf(["inner"]))
        (inner / "2026" / "RE_4_4711.pdf").write_bytes(make_pdf(["inner deeper"]))
        (inner / "LS_5_4711.pdf").write_bytes(make_pdf(["not mandant 2's pattern"]))
        expected = {"RE_1_4711.pdf": [1], "2026/LS_2_4711.pdf": [1], "RE_3_4711.pdf": [2],
                    "2026/RE_4_4711.pdf": [2], "filiale/LS_5_4711.pdf": [1]}
        wait_until(lambda: set(recorded(svc)) >= set(expected))
        trace.wait_for_two_passes()  # later passes over both folders add nothing
        assert recorded(svc) == expected


def test_overlapping_folders_and_the_owner_helper_on_a_real_listing(tmp_path: Path) -> None:
    """What the scan asks for each file of a mandant's listing: listing both
    folders gives every file twice, `Owners.owns` keeps each once."""
    site = write_site(tmp_path, mandants=[
        {"id": 1, "folder": "archive/M1"}, {"id": 2, "folder": "archive/M1/filiale"}])
    config = load_config(site.config)
    (site.archive / "M1" / "filiale").mkdir(exist_ok=True)
    (site.archive / "M1" / "RE_1_4711.pdf").write_bytes(b"x")
    (site.archive / "M1" / "filiale" / "RE_2_4711.pdf").write_bytes(b"x")
    owners = Owners.of(config.mandants)
    kept = sorted((m.id, s.rel_path) for m in config.mandants
                  for s in IncrementalScanner(m.folder).scan(time.time_ns())
                  if owners.owns(m.id, s.rel_path))
    assert kept == [(1, "RE_1_4711.pdf"), (2, "RE_2_4711.pdf")]
