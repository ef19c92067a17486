"""What the web console shows: the overview, a search, one entry with its history,
its document, and the send log. The moves go through `Administration`, as the
CLI's do; nothing here writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from tikos_outbox.core.console import ActionView, DayCount, Found, Search, SendLogLine
from tikos_outbox.core.intake import is_unread
from tikos_outbox.core.ports import Clock, ConsoleRecords, DocumentFiles, OutboxQueries
from tikos_outbox.core.settings import Config
from tikos_outbox.core.views import EntryView, ListFilter
from tikos_outbox.usecases.history import History
from tikos_outbox.usecases.monitoring import Monitor, Status

CHART_DAYS = 30
ATTENTION_SHOWN = 50


@dataclass(frozen=True)
class Overview:
    status: Status
    attention: list[EntryView]  # the newest that need attention (status counts them all)
    days: list[DayCount]  # mails sent per day, oldest first, today last


@dataclass(frozen=True)
class Document:
    file_name: str
    media_type: str
    data: bytes


class Console:
    def __init__(self, config: Config, queries: OutboxQueries, records: ConsoleRecords,
                 files: DocumentFiles, monitor: Monitor, clock: Clock,
                 history: History) -> None:
        self.history = history
        self.config = config
        self.queries = queries
        self.records = records
        self.files = files
        self.monitor = monitor
        self.clock = clock

    @property
    def today(self) -> date:
        return self.clock.now().astimezone(self.config.window.tz).date()

    def midnight(self, day: date) -> datetime:
        """The laundry's midnight at the start of `day`, as an instant."""
        return datetime.combine(day, time(), self.config.window.tz)

    def overview(self) -> Overview:
        first = self.today - timedelta(days=CHART_DAYS - 1)
        tz = self.config.window.tz
        per_day = Counter(t.astimezone(tz).date()
                          for t in self.records.delivered_times(self.midnight(first)))
        days = [DayCount(first + timedelta(days=i), per_day.get(first + timedelta(days=i), 0))
                for i in range(CHART_DAYS)]
        return Overview(self.monitor.status(),
                        self.queries.list_entries(ListFilter(attention=True,
                                                             limit=ATTENTION_SHOWN)), days)

    def search(self, s: Search) -> Found:
        return self.records.search(s)

    def entry(self, entry_id: int) -> tuple[EntryView, list[ActionView]] | None:
        view = self.queries.get_entry(entry_id)
        if view is None:
            return None
        return view, self.records.actions(entry_id)

    def actions(self, limit: int = 500) -> list[ActionView]:
        return self.records.actions(None, limit)

    def document(self, entry_id: int) -> Document | None:
        """The document as recorded: the outbox's copy, else the archive's file when it
        still has the recorded content. None: neither is there."""
        view = self.queries.get_entry(entry_id)
        if view is not None and is_unread(view.sha256):  # history: read it now, if it
            self.history.read_entries(view.mandant, [entry_id])  # is as it was then
            view = self.queries.get_entry(entry_id)
        if view is None or is_unread(view.sha256):
            return None
        data = self.queries.load_copy(view.sha256)
        m = self.config.mandant(view.mandant)
        if data is None and m is not None:
            data = self.files.archive_copy(str(m.folder / view.path), view.sha256, m.folder)
        if data is None:
            return None
        xml = view.file_name.lower().endswith(".xml")
        return Document(view.file_name, "application/xml" if xml else "application/pdf", data)

    def send_log(self, first: date, last: date) -> Iterator[SendLogLine]:
        """The send log of the days `first` to `last`, both included."""
        return self.records.send_log(self.midnight(first),
                                     self.midnight(last + timedelta(days=1)))
