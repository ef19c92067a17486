"""Notices settled PDFs: watchdog events where they work, our own polling scan
where they do not (network shares), and always the database as the truth.

Events only say "look here"; every candidate is stat'ed, tracked until its
size and mtime stop changing for `settle_s`, then handed to the intake.
A periodic full pass catches whatever an event or a poll missed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import stat as stat_mode
from dataclasses import dataclass
from pathlib import Path, PurePath

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from tikos_outbox.core.naming import Owners, is_candidate, share_hint
from tikos_outbox.core.ports import Clock, Notes, StoreError
from tikos_outbox.core.settings import Mandant, WatchMode
from tikos_outbox.core.settle import SettleTracker
from tikos_outbox.core.states import State
from tikos_outbox.scanner import (
    FileSeen,
    FolderError,
    IncrementalScanner,
    is_network_path,
    outside_target,
    reachable,
    rel_path,
)
from tikos_outbox.usecases.intake import BATCH_FILES, NOT_READY, Intake

log = logging.getLogger("tikos_outbox.watcher")

RETRY_FIRST_S = 1.0  # an unreadable settled file: tried after 1 s, doubling to 5 min
RETRY_MAX_S = 300.0
HELD_WATCH_S = 24 * 3600.0


def choose_mode(configured: WatchMode, folder: Path) -> WatchMode:
    if configured is not WatchMode.AUTO:
        return configured
    return WatchMode.POLLING if is_network_path(folder) else WatchMode.EVENTS


MAX_BACKOFF_S = 300.0


@dataclass
class _FolderState:
    mandant: Mandant
    mode: WatchMode
    scanner: IncrementalScanner
    available: bool = True
    retry_at: float = 0.0  # monotonic: when to look again at an unavailable folder
    backoff_s: float = 0.0


class Watcher:
    """Feeds settled files of all enabled mandants into the intake."""

    def __init__(self, intake: Intake, notes: Notes, clock: Clock) -> None:
        self.intake = intake
        self.notes = notes
        self.clock = clock
        watch = intake.config.watch
        self.tracker = SettleTracker(watch.settle_s)
        self.events: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.folders: dict[int, _FolderState] = {}
        self._tracked: dict[str, tuple[int, str]] = {}  # abs path -> (mandant, rel)
        # a settled file that could not be read: (when to try again, the last wait)
        self._retry: dict[str, tuple[float, float]] = {}
        # held files (a writer paused past settle_s): watched a day, taken again on change
        self._held: dict[str, tuple[int, str, int, int, float]] = {}
        self.observer: BaseObserver | None = None
        self.reconcile_requested = False
        self._store_error_logged = -1e9
        # each file belongs to one mandant (see core.naming.owner), a disabled one too
        self.owners = Owners.of(intake.config.mandants)
        for m in intake.config.enabled_mandants:
            self.folders[m.id] = _FolderState(m, choose_mode(watch.mode, m.folder),
                                              IncrementalScanner(m.folder))

    # -- observer ------------------------------------------------------------------------

    def start(self) -> None:
        for st in self.folders.values():
            log.info("mandant %d (%s): watching %s by %s", st.mandant.id, st.mandant.name,
                     st.mandant.folder, st.mode)
        self._start_observer()

    def _start_observer(self) -> None:
        targets = [st for st in self.folders.values() if st.mode is WatchMode.EVENTS]
        if not targets:
            return
        observer = Observer()
        handlers: dict[tuple[str, str], _Handler] = {}
        for st in targets:
            # watched at its real path: a watch on a symlinked folder sees nothing
            folder = str(st.mandant.folder)
            real = os.path.realpath(folder)
            if not os.path.isdir(real):  # the observer would fail to start at all
                self._unavailable(st, f"cannot watch folder {folder}: it is not there")
                continue
            handler = handlers.setdefault((real, folder), _Handler(self, real, folder))
            try:
                observer.schedule(handler, real, recursive=True)
            except OSError as exc:
                log.error("mandant %d: cannot watch %s: %s; the polling pass covers it until"
                          " it is back", st.mandant.id, st.mandant.folder, exc)
                st.available = False
        observer.daemon = True
        observer.start()
        self.observer = observer

    def observer_alive(self) -> bool:
        return self.observer is None or bool(self.observer.is_alive())

    def check_observer(self) -> None:
        """A watcher thread that died is noticed, logged and restarted, and a
        reconciliation pass makes up for what it may have missed. A watched
        folder that vanished is noticed here too (events say nothing then)."""
        for st in self.folders.values():
            gone = st.available and not os.path.isdir(st.mandant.folder)
            if st.mode is WatchMode.EVENTS and gone:
                self._unavailable(st, f"cannot read folder {st.mandant.folder}: it is gone")
        if self.observer_alive():
            return
        log.error("the file watcher stopped; restarting it and checking all folders")
        self.notes.note_error("The file watcher stopped and was restarted")
        self.restart_observer()
        self.reconcile_requested = True

    def restart_observer(self) -> None:
        self.stop()
        self._start_observer()

    def stop(self) -> None:
        if self.observer is not None:
            try:
                self.observer.stop()
                self.observer.join(timeout=5)
            except Exception:
                log.exception("stopping the file watcher failed")
            self.observer = None

    # -- candidates ----------------------------------------------------------------------

    def on_event_path(self, path: str) -> None:
        """Called from the watchdog thread: only queue it, the loop does the work."""
        self.events.put(path)

    def poll(self, everything: bool = False, full: bool = False) -> None:
        """Look for new or changed files: in the polling folders, or in all folders
        when `everything` (the reconciliation pass). Only folders whose mtime
        changed are listed, unless `full` (the safety-net pass)."""
        for st in self.folders.values():
            if st.mode is WatchMode.POLLING or everything or not st.available:
                self._poll_folder(st, full)

    def _poll_folder(self, st: _FolderState, full: bool) -> None:
        m = st.mandant
        mono = self.clock.monotonic()
        if not st.available and mono < st.retry_at:
            return  # backing off while the share is away
        errors: list[str] = []
        wall_ns = int(self.clock.now().timestamp() * 1e9)
        changed: list[FileSeen] = []
        try:
            for seen in st.scanner.scan(wall_ns, full=full, errors=errors):
                changed.append(seen)
                if len(changed) >= 500:
                    self._track_unknown(st, changed)
            self._track_unknown(st, changed)
        except FolderError as exc:
            self._unavailable(st, exc.strerror or str(exc))
            return
        for e in errors[:5]:
            log.warning("mandant %d: %s", m.id, e)
        if not errors and st.scanner.listed_all:  # a complete listing went through
            self.intake.complete_first_pass(m)
        if not st.available:
            st.available = True
            st.backoff_s = 0.0
            log.warning("mandant %d (%s): folder %s is back; catching up", m.id, m.name,
                        m.folder)
            self.notes.resolved(f"Archive folder of mandant {m.id} unavailable")
            if st.mode is WatchMode.EVENTS:
                self.restart_observer()

    def mark_unavailable(self, mandant: int, why: str) -> None:
        """A folder the start-up pass could not list: said and retried like an outage."""
        self._unavailable(self.folders[mandant], why, said=True)

    def _unavailable(self, st: _FolderState, why: str, said: bool = False) -> None:
        """One log line and a status entry per outage; then retries with back-off."""
        m = st.mandant
        st.backoff_s = min(MAX_BACKOFF_S, st.backoff_s * 2 or self.intake.config.watch
                           .poll_interval_s)
        st.retry_at = self.clock.monotonic() + st.backoff_s
        st.scanner.forget()
        if st.available:
            st.available = False
            why += share_hint(str(m.folder), os.name == "nt")
            if not said:  # (the start-up pass has logged it)
                log.error("mandant %d (%s): %s; retrying until it is back", m.id, m.name, why)
            self.notes.note_error(f"Archive folder of mandant {m.id} unavailable: {why}")

    @property
    def scanners(self) -> dict[int, IncrementalScanner]:
        return {mandant_id: st.scanner for mandant_id, st in self.folders.items()}

    def track(self, files: list[tuple[int, FileSeen]]) -> None:
        """Watch these files (mandant, file) until they settle."""
        for mandant_id, seen in files:
            if mandant_id in self.folders and self.owners.owns(mandant_id, seen.rel_path):
                self._track(mandant_id, seen.abs_path, seen.rel_path)

    def _track_unknown(self, st: _FolderState, files: list[FileSeen]) -> None:
        """Track the files the outbox does not hold as they are (after a first or a
        full listing, most of them it does). Files of the folder that belong to
        another mandant (overlapping folders) are left to that one."""
        m = st.mandant.id
        files[:] = [seen for seen in files if self.owners.owns(m, seen.rel_path)]
        for seen in self.intake.unknown(st.mandant, files):
            self._track(st.mandant.id, seen.abs_path, seen.rel_path)
        files.clear()

    def _track(self, mandant_id: int, abs_path: str, rel: str) -> None:
        self._tracked[abs_path] = (mandant_id, rel)

    def _event_to_candidate(self, path: str) -> None:
        """Track an event's path for the one mandant it belongs to, if it is one
        that a listing of that mandant's folder would give."""
        for st in self.folders.values():
            rel = rel_path(st.mandant.folder, path)
            if rel is not None:
                break
        else:
            return
        if not is_candidate(rel.rsplit("/", 1)[-1]):
            return
        mandant_id = self.owners.owner(PurePath(st.mandant.folder, rel))
        owner = self.folders.get(mandant_id) if mandant_id is not None else None
        if owner is None:
            return  # no pattern matches, or it is a disabled mandant's file
        folder = owner.mandant.folder
        rel = rel_path(folder, path)
        if rel is not None and reachable(folder, path):
            self._track(owner.mandant.id, path, rel)

    def process(self) -> int:
        """Stat every candidate; hand over those that have settled. Returns how many
        entries were recorded."""
        while True:
            try:
                self._event_to_candidate(self.events.get_nowait())
            except queue.Empty:
                break
        mono = self.clock.monotonic()
        wall = self.clock.now().timestamp()
        self._look_at_held(mono)
        settled: dict[int, list[FileSeen]] = {}
        for abs_path, (mandant_id, rel) in list(self._tracked.items()):
            if abs_path in self._retry and mono < self._retry[abs_path][0]:
                continue  # could not be read: waits its back-off
            try:
                stat = os.lstat(abs_path)
                target = None
                if stat_mode.S_ISLNK(stat.st_mode):
                    folder = self.folders[mandant_id].mandant.folder
                    target = outside_target(abs_path, os.path.realpath(folder))
                    if target is None:  # a link within the folder: an ordinary file
                        stat = os.stat(abs_path)
            except OSError:
                self._drop(abs_path)  # removed before it settled
                continue
            if target is None and not stat_mode.S_ISREG(stat.st_mode):
                self._drop(abs_path)
                continue
            if self.tracker.observe(abs_path, stat.st_size, stat.st_mtime_ns, mono, wall):
                settled.setdefault(mandant_id, []).append(FileSeen(
                    abs_path, rel, rel.rsplit("/", 1)[-1], stat.st_size, stat.st_mtime_ns,
                    link_target=target))
        recorded = 0
        for mandant_id, files in settled.items():
            st = self.folders[mandant_id]
            for i in range(0, len(files), BATCH_FILES):
                chunk = files[i:i + BATCH_FILES]
                try:
                    states = self.intake.ingest_many(st.mandant, chunk)
                except StoreError as exc:
                    self._store_failed(exc)  # the files stay tracked and are tried again
                    return recorded
                for seen, state in zip(chunk, states, strict=True):
                    if state == NOT_READY:  # locked by the writer, changing, or no right
                        _, wait = self._retry.get(seen.abs_path, (0.0, RETRY_FIRST_S / 2))
                        wait = min(RETRY_MAX_S, wait * 2)
                        self._retry[seen.abs_path] = (mono + wait, wait)
                        continue
                    recorded += state is not None
                    self._drop(seen.abs_path)
                    if state == State.HELD.value:
                        self._held[seen.abs_path] = (mandant_id, seen.rel_path, seen.size,
                                                     seen.mtime_ns, mono + HELD_WATCH_S)
        return recorded

    def _store_failed(self, exc: StoreError) -> None:
        """The outbox cannot record now (disk full, locked, read-only): one line a
        minute, not one per file; the documents wait in the archive meanwhile."""
        now = self.clock.monotonic()
        if now - self._store_error_logged < 60:
            return
        self._store_error_logged = now
        text = str(exc).removeprefix("the outbox database failed: ")
        log.error("cannot record new documents in the outbox database: %s; %d file(s) wait"
                  " in the archive and are recorded when it works again", text, self.waiting)
        with contextlib.suppress(StoreError):
            self.notes.note_error(f"Cannot record new documents: {text}")

    def _look_at_held(self, mono: float) -> None:
        for abs_path, (mandant_id, rel, size, mtime_ns, until) in list(self._held.items()):
            st = os.stat(abs_path) if os.path.exists(abs_path) else None
            changed = st is not None and (st.st_size, st.st_mtime_ns) != (size, mtime_ns)
            if changed or st is None or mono > until:  # done with it
                del self._held[abs_path]
            if changed and abs_path not in self._tracked:
                log.info("mandant %d: %s, held, changed: taken again", mandant_id, rel)
                self._track(mandant_id, abs_path, rel)

    def _drop(self, abs_path: str) -> None:
        self._tracked.pop(abs_path, None)
        self._retry.pop(abs_path, None)
        self.tracker.forget(abs_path)

    @property
    def waiting(self) -> int:
        return len(self._tracked)


class _Handler(FileSystemEventHandler):
    """watchdog event handler: every event is only a hint to look at a path. The
    folder is watched at its real path; event paths are given below the folder
    as configured, as the scanner gives them."""

    def __init__(self, watcher: Watcher, real: str, folder: str) -> None:
        super().__init__()
        self.watcher = watcher
        self.real = real
        self.folder = folder

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                # a folder moved in or created with files: list it on the next full pass
                self.watcher.reconcile_requested = True
            return
        path = getattr(event, "dest_path", "") or event.src_path
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if self.real != self.folder and path.startswith(self.real + os.sep):
            path = self.folder + path[len(self.real):]
        if event.event_type in ("created", "modified", "moved", "closed"):
            self.watcher.on_event_path(path)
