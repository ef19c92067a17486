"""One pass over the archive: every enabled mandant's folder listed, what has
settled recorded in batches; what was there before the first start is history."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from tikos_outbox.core.naming import Owners
from tikos_outbox.core.ports import Clock, FolderLister, FolderUnavailable
from tikos_outbox.core.settings import Config, Mandant
from tikos_outbox.core.views import FileSeen
from tikos_outbox.usecases.intake import (
    BATCH_BYTES,
    BATCH_FILES,
    HISTORY_BATCH,
    NOT_READY,
    FirstPass,
    Intake,
)

log = logging.getLogger("tikos_outbox")

LISTED_CHUNK = 500  # files asked about at once ("does the outbox have these?")
#: a file that stays empty this long was not written by a slow writer: it is recorded
#: (and held, "the file is empty"), not waited for for ever
EMPTY_AFTER_S = 600.0
PROGRESS_EVERY = 1000
LOG_EVERY = 20_000


@dataclass
class ScanReport:
    files_seen: int = 0
    recorded: dict[str, int] = field(default_factory=dict)
    waiting: int = 0  # not settled yet, taken at a later pass
    history: int = 0  # recorded as history: modified before the first pass, never mailed
    new: int = 0  # recorded as new documents (to send, held or skipped for a reason)
    errors: list[str] = field(default_factory=list)
    unavailable: dict[int, str] = field(default_factory=dict)  # mandant -> why not listed
    waiting_files: list[tuple[int, FileSeen]] = field(default_factory=list)  # (mandant, file)

    def count(self, seen: FileSeen, state: str | None, history: bool) -> None:
        if state == NOT_READY:
            self.errors.append(f"{seen.rel_path}: cannot be read yet")
        elif state is not None:
            self.recorded[state] = self.recorded.get(state, 0) + 1
            if history:
                self.history += 1
            else:
                self.new += 1


Progress = Callable[[ScanReport], None]


class _MandantPass:
    """The files of one mandant's listing, on their way into the outbox."""

    def __init__(self, intake: Intake, m: Mandant, wall_s: float, report: ScanReport,
                 owners: Owners) -> None:
        self.intake = intake
        self.m = m
        self.owners = owners
        self.wall_s = wall_s
        self.settle_s = intake.config.watch.settle_s
        self.report = report
        self.batch: list[FileSeen] = []
        self.batch_bytes = 0  # of the files to be read: history files are not
        self.batch_read = 0
        # the history of a first pass is written in one statement: bigger transactions
        self.batch_files = BATCH_FILES if intake.first_pass_done(m) else HISTORY_BATCH

    def take(self, listed: list[FileSeen]) -> None:
        """Files of this mandant (a nested mandant's are its own) that the outbox does
        not have as they are now go to the batch."""
        mine = [f for f in listed if self.owners.owns(self.m.id, f.rel_path)]
        for seen in self.intake.unknown(self.m, mine):
            age_s = self.wall_s - seen.mtime_ns / 1e9
            if age_s < (EMPTY_AFTER_S if seen.size == 0 else self.settle_s):
                self.report.waiting += 1
                self.report.waiting_files.append((self.m.id, seen))
            else:
                self.batch.append(seen)
                if not self.intake.is_history(self.m, seen):
                    self.batch_read += 1
                    self.batch_bytes += seen.size
                if (len(self.batch) >= self.batch_files or self.batch_read >= BATCH_FILES
                        or self.batch_bytes >= BATCH_BYTES):
                    self.record()

    def record(self) -> None:
        states = self.intake.ingest_many(self.m, self.batch)
        for seen, state in zip(self.batch, states, strict=True):
            self.report.count(seen, state, self.intake.is_history(self.m, seen))
            if state == NOT_READY:  # `run` tries it again, less and less often
                self.report.waiting_files.append((self.m.id, seen))
        self.batch = []
        self.batch_bytes = self.batch_read = 0


def scan(intake: Intake, clock: Clock, listers: Mapping[int, FolderLister],
         mode: FirstPass = FirstPass.FOLLOW, since: datetime | None = None,
         progress: Progress | None = None) -> ScanReport:
    """One pass over every enabled mandant's folder, recording what has settled.

    History — a file modified before the moment a mandant's first pass began —
    is recorded as skipped, never mailed, whenever it turns up. `mode` FOLLOW
    fixes that moment at the very first pass (if the config's baseline is on);
    HISTORY (`--baseline`) takes everything there now, NONE (`--no-baseline`)
    nothing; `since` moves the moment to that instant. Only a complete listing
    completes the first pass. `progress` is called every 1,000 files; a plain
    log line is written every 20,000. `listers` list each mandant's folder (the
    service's polling scanners, so that their next pass lists only what changed).
    """
    config: Config = intake.config
    report = ScanReport()
    owners = Owners.of(config.mandants)  # disabled ones too: they keep their files
    for m in config.enabled_mandants:
        wall_s = clock.now().timestamp()
        intake.begin_pass(m, mode, since)
        one = _MandantPass(intake, m, wall_s, report, owners)
        errors: list[str] = []
        try:
            _feed(one, listers[m.id].scan(int(wall_s * 1e9), full=True, errors=errors),
                  report, progress)
        except FolderUnavailable as exc:
            report.errors.append(f"mandant {m.id} ({m.name}): {exc.strerror}")
            report.unavailable[m.id] = exc.strerror or str(exc)
            log.error("mandant %d (%s): %s", m.id, m.name, exc.strerror)
            continue
        finally:
            report.errors += errors
        if not errors:
            intake.complete_first_pass(m)
        elif not intake.first_pass_done(m):
            log.warning("mandant %d: the folder could not be listed completely (%s); its first"
                        " pass completes once it can", m.id, errors[0])
    intake.resolve_recipients()
    return report


def _feed(one: _MandantPass, files: Iterable[FileSeen], report: ScanReport,
          progress: Progress | None) -> None:
    listed: list[FileSeen] = []
    for seen in files:
        report.files_seen += 1
        listed.append(seen)
        if len(listed) >= LISTED_CHUNK:
            one.take(listed)
            listed = []
        if report.files_seen % PROGRESS_EVERY == 0:
            if progress is not None:
                progress(report)
            if report.files_seen % LOG_EVERY == 0:
                log.info("scanning: %d files seen, %d new so far", report.files_seen,
                         sum(report.recorded.values()))
    one.take(listed)
    one.record()
