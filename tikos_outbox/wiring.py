"""The composition root: the one place that builds the store, the adapters and
the use cases from a config. The CLI, the service loop, the tests and the
benchmarks all open an outbox here."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from time import monotonic, sleep
from typing import TYPE_CHECKING

from tikos_outbox.core.ports import Clock, MailerFactory, RecipientLookup, TokenSource
from tikos_outbox.core.settings import Config
from tikos_outbox.files import ArchiveFiles
from tikos_outbox.store import Store
from tikos_outbox.usecases.admin import Administration
from tikos_outbox.usecases.monitoring import Monitor
from tikos_outbox.workers import worker_id

if TYPE_CHECKING:
    from tikos_outbox.scanner import IncrementalScanner
    from tikos_outbox.usecases.bounces import BounceReader
    from tikos_outbox.usecases.console import Console
    from tikos_outbox.usecases.delivery import Delivery
    from tikos_outbox.usecases.history import History
    from tikos_outbox.usecases.intake import FirstPass, Intake
    from tikos_outbox.usecases.report import DailyReport
    from tikos_outbox.usecases.scan import Progress, ScanReport
    from tikos_outbox.usecases.users import Users


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return monotonic()

    def sleep(self, seconds: float) -> None:
        sleep(seconds)


@dataclass
class Outbox:
    """An open outbox with its use cases, each built on first use."""

    config: Config
    store: Store
    clock: Clock
    worker: str
    stop: threading.Event
    lookup_override: RecipientLookup | None = None
    token_source: TokenSource | None = None
    files: ArchiveFiles = field(default_factory=ArchiveFiles)

    @cached_property
    def monitor(self) -> Monitor:
        return Monitor(self.config, self.store.queries, self.store.commands,
                       self.store.accounts, self.clock, self.worker)

    @cached_property
    def admin(self) -> Administration:
        return Administration(self.config, self.store.queries, self.store.commands,
                              self.clock, self.store.console, self.history)

    @cached_property
    def history(self) -> History:
        from tikos_outbox.usecases.history import History

        return History(self.config, self.store.queries, self.store.commands, self.files)

    @cached_property
    def console(self) -> Console:
        from tikos_outbox.usecases.console import Console

        return Console(self.config, self.store.queries, self.store.console, self.files,
                       self.monitor, self.clock, self.history)

    @cached_property
    def users(self) -> Users:
        from tikos_outbox.usecases.users import Users

        return Users(self.store.console, self.clock)

    # The adapters and use cases below are imported on first use: `status`, `list`
    # and `show` load no SMTP, ODBC or watcher code and answer at once.

    @cached_property
    def lookup(self) -> RecipientLookup:
        from tikos_outbox.lookup import make_lookup

        return self.lookup_override or make_lookup(self.config.recipients)

    @cached_property
    def mailers(self) -> MailerFactory:
        from tikos_outbox.mailers import Mailers

        return Mailers(self.config.outbox.key_file, self.clock, self.token_source)

    @cached_property
    def intake(self) -> Intake:
        from tikos_outbox.einvoices import EInvoiceReader
        from tikos_outbox.usecases.intake import Intake

        return Intake(self.config, self.store.queries, self.store.commands, self.lookup,
                      self.files, self.clock, self.monitor, EInvoiceReader(), self.history)

    @cached_property
    def delivery(self) -> Delivery:
        from tikos_outbox.usecases.compose import Composer
        from tikos_outbox.usecases.delivery import Delivery
        from tikos_outbox.workers import dead_worker

        return Delivery(self.config, self.store.queries, self.store.commands,
                        self.store.accounts, self.intake,
                        Composer(self.config, self.store.queries, self.files), self.mailers,
                        self.clock, self.monitor, self.worker, dead_worker, self.stop)

    @cached_property
    def report(self) -> DailyReport:
        from tikos_outbox.usecases.report import DailyReport

        return DailyReport(self.config, self.store.queries, self.store.commands,
                           self.store.accounts, self.mailers, self.clock)

    @cached_property
    def bounces(self) -> BounceReader:
        from tikos_outbox.dsn import Parser
        from tikos_outbox.mailers import Mailboxes, Mailers
        from tikos_outbox.usecases.bounces import BounceReader

        mailers = self.mailers
        assert isinstance(mailers, Mailers)
        return BounceReader(self.config, self.store.queries, self.store.commands,
                            self.store.bounces, Mailboxes(mailers, self.config.smtp),
                            Parser(), self.clock)

    def scan(self, mode: FirstPass | None = None, since: datetime | None = None,
             progress: Progress | None = None,
             scanners: Mapping[int, IncrementalScanner] | None = None) -> ScanReport:
        """One pass over the archive (see usecases.scan), through `scanners` where
        given (the service's own), else through new ones."""
        from tikos_outbox.scanner import IncrementalScanner
        from tikos_outbox.usecases.intake import FirstPass
        from tikos_outbox.usecases.scan import scan

        listers = {m.id: (scanners or {}).get(m.id) or IncrementalScanner(m.folder)
                   for m in self.config.enabled_mandants}
        return scan(self.intake, self.clock, listers, mode=mode or FirstPass.FOLLOW,
                    since=since, progress=progress)

    def close(self) -> None:
        self.store.close()


def open_outbox(config: Config, *, clock: Clock | None = None,
                lookup: RecipientLookup | None = None, token_source: TokenSource | None = None,
                worker: str | None = None, stop: threading.Event | None = None) -> Outbox:
    """Open the outbox of a config: the database migrated if it is behind, the
    adapters ready. Raises StoreError in an administrator's words."""
    csv = config.recipients.csv
    store = Store(config.outbox.database, config.outbox.busy_timeout_s,
                  config.outbox.language, csv.name if csv and not config.recipients.sql_dsn
                  else "TIKOS")
    return Outbox(config=config, store=store, clock=clock or SystemClock(),
                  worker=worker or worker_id(), stop=stop or threading.Event(),
                  lookup_override=lookup, token_source=token_source)
