"""One pass over the archive: every enabled mandant's folder listed, what has
settled recorded in batches, the baseline on a mandant's first pass."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from tikos_outbox.core.ports import Clock, FolderLister, FolderUnavailable
from tikos_outbox.core.settings import Config, Mandant
from tikos_outbox.core.views import FileSeen
from tikos_outbox.usecases.intake import BATCH_BYTES, BATCH_FILES, NOT_READY, Intake

log = logging.getLogger("tikos_outbox")

LISTED_CHUNK = 500  # files asked about at once ("does the outbox have these?")
PROGRESS_EVERY = 1000
LOG_EVERY = 20_000


@dataclass
class ScanReport:
    files_seen: int = 0
    recorded: dict[str, int] = field(default_factory=dict)
    waiting: int = 0  # not settled yet, taken at a later pass
    errors: list[str] = field(default_factory=list)
    waiting_files: list[tuple[int, FileSeen]] = field(default_factory=list)  # (mandant, file)

    def count(self, seen: FileSeen, state: str | None) -> None:
        if state == NOT_READY:
            self.errors.append(f"{seen.abs_path}: cannot be read yet")
        elif state is not None:
            self.recorded[state] = self.recorded.get(state, 0) + 1


Progress = Callable[[ScanReport], None]


class _MandantPass:
    """The files of one mandant's listing, on their way into the outbox."""

    def __init__(self, intake: Intake, m: Mandant, first: bool, since: datetime | None,
                 wall_s: float, report: ScanReport) -> None:
        self.intake = intake
        self.m = m
        self.first = first
        self.since_s = since.timestamp() if first and since is not None else None
        self.wall_s = wall_s
        self.settle_s = intake.config.watch.settle_s
        self.report = report
        self.batch: list[FileSeen] = []
        self.batch_bytes = 0

    def take(self, listed: list[FileSeen]) -> None:
        """Files the outbox does not have as they are now go to the batch."""
        for seen in self.intake.unknown(self.m, listed):
            age_s = self.wall_s - seen.mtime_ns / 1e9
            if seen.size == 0 or age_s < self.settle_s:
                self.report.waiting += 1
                self.report.waiting_files.append((self.m.id, seen))
            elif self.since_s is not None and seen.mtime_ns / 1e9 >= self.since_s:
                # newer than --since: recorded normally, not as the baseline
                self.report.count(seen, self.intake.ingest(self.m, seen, baseline=False))
            else:
                self.batch.append(seen)
                self.batch_bytes += seen.size
                if len(self.batch) >= BATCH_FILES or self.batch_bytes >= BATCH_BYTES:
                    self.record()

    def record(self) -> None:
        states = self.intake.ingest_many(self.m, self.batch, self.first)
        for seen, state in zip(self.batch, states, strict=True):
            self.report.count(seen, state)
        self.batch = []
        self.batch_bytes = 0


def scan(intake: Intake, clock: Clock, listers: Mapping[int, FolderLister],
         baseline: bool | None = None, since: datetime | None = None,
         progress: Progress | None = None) -> ScanReport:
    """One pass over every enabled mandant's folder, recording what has settled.

    `baseline`: None follows the config (only the very first pass of a mandant);
    True/False force it. `since`: with a baseline, files modified at or after
    this instant are still recorded normally. `progress` is called every 1,000
    files; a plain log line is written every 20,000. `listers` list each
    mandant's folder (the service's polling scanners, so that their next pass
    lists only what changed).
    """
    config: Config = intake.config
    report = ScanReport()
    for m in config.enabled_mandants:
        first = intake.baseline_due(m) if baseline is None else baseline
        wall_s = clock.now().timestamp()
        one = _MandantPass(intake, m, first, since, wall_s, report)
        try:
            _feed(one, listers[m.id].scan(int(wall_s * 1e9), full=True, errors=report.errors),
                  report, progress)
        except FolderUnavailable as exc:
            report.errors.append(f"mandant {m.id} ({m.name}): {exc.strerror}")
            log.error("mandant %d (%s): %s", m.id, m.name, exc.strerror)
            continue
        if first and baseline is None:
            intake.mark_baseline_done(m)
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
