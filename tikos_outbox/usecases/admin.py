"""The administrator's moves and views: list, show, requeue, hold, release, purge."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from tikos_outbox.core import attention
from tikos_outbox.core.console import Move
from tikos_outbox.core.intake import is_unread
from tikos_outbox.core.message import make_message_id
from tikos_outbox.core.ports import Clock, ConsoleRecords, OutboxCommands, OutboxQueries
from tikos_outbox.core.settings import Config
from tikos_outbox.core.states import Event, MoveResult, Refusal, State
from tikos_outbox.core.views import EntryView, ListFilter
from tikos_outbox.usecases.history import History

log = logging.getLogger("tikos_outbox")

HELD_BY_ADMIN = "held by the administrator"
DONE = {Move.REQUEUE: "requeued", Move.HOLD: "held", Move.RELEASE: "released",
        Move.RELEASE_FORCED: "released despite its file problem"}


class Administration:
    def __init__(self, config: Config, queries: OutboxQueries, commands: OutboxCommands,
                 clock: Clock, records: ConsoleRecords, history: History) -> None:
        self.config = config
        self.records = records  # the audit log: who moved which entry, and when
        self.history = history
        self.queries = queries
        self.commands = commands
        self.clock = clock

    # -- views ------------------------------------------------------------------------------

    def entries(self, flt: ListFilter) -> list[EntryView]:
        return self.queries.list_entries(flt)

    def entry(self, entry_id: int) -> EntryView | None:
        return self.queries.get_entry(entry_id)

    def ids_in_state(self, state: State, since: datetime | None = None) -> list[int]:
        return self.queries.ids_in_state(state, since)

    # -- moves ------------------------------------------------------------------------------

    def requeue(self, ids: Iterable[int], actor: str, resend: bool = True
                ) -> dict[int, MoveResult]:
        """Back to pending, addresses looked up again. A sent entry is a deliberate
        resend and gets a new Message-ID; attempts are kept. Without `resend` (the
        console, unless its box was ticked) an entry whose document the customer has
        already is refused, as decided in the store's transaction."""
        fresh: dict[int, str] = {}
        unknown: dict[int, MoveResult] = {}
        for entry_id in ids:
            view = self.queries.get_entry(entry_id)
            if view is not None and is_unread(view.sha256):  # history: read it now, as
                self.history.read_entries(view.mandant, [entry_id])  # it was seen then
                view = self.queries.get_entry(entry_id)
                if view is not None and is_unread(view.sha256):  # changed, or unreadable
                    unknown[entry_id] = MoveResult(entry_id, Event.REQUEUE, State(view.state),
                                                   Refusal.CONTENT_UNKNOWN)
                    continue
            m = self.config.mandant(view.mandant) if view is not None else None
            sender = m.sender.address if m else self.config.sender.address
            fresh[entry_id] = make_message_id(uuid.uuid4().hex, sender)
        moved = self.commands.requeue(fresh, self.clock.now(), resend) if fresh else {}
        return self._logged({**moved, **unknown}, Move.REQUEUE, actor)

    def hold(self, ids: Iterable[int], actor: str) -> dict[int, MoveResult]:
        """Stop entries; why they were held when recorded stays shown (`problem`)."""
        return self._logged(self.commands.move(list(ids), Event.HOLD, self.clock.now(),
                                               reason=HELD_BY_ADMIN,
                                               attention=attention.held(HELD_BY_ADMIN)),
                            Move.HOLD, actor)

    def release(self, ids: Iterable[int], actor: str, force: bool = False
                ) -> dict[int, MoveResult]:
        """Let held entries be sent. One whose file is not a mailable PDF (truncated,
        not a PDF, too large, empty) is released only with `force`, and then the
        recorded bytes are sent, never others."""
        return self._logged(self.commands.move(list(ids), Event.RELEASE, self.clock.now(),
                                               force=force),
                            Move.RELEASE_FORCED if force else Move.RELEASE, actor)

    def purge(self, older_than_days: int | None = None) -> int:
        """Remove the stored copies of documents sent more than `keep_days` ago (the
        entries and their history stay), and give the space back to the disk."""
        days = older_than_days if older_than_days is not None else self.config.outbox.keep_days
        now = self.clock.now()
        n = self.commands.purge(now - timedelta(days=days), now)
        if n:
            self.commands.compact()
        log.info("purged %d stored document copies older than %d days", n, days)
        return n

    def _logged(self, results: dict[int, MoveResult], move: Move, actor: str
                ) -> dict[int, MoveResult]:
        done = [entry_id for entry_id, res in results.items() if res.ok]
        for entry_id in done:
            log.info("entry %d %s by the administrator (%s)", entry_id, DONE[move], actor)
        if done:
            self.records.record(actor, move, done, "", self.clock.now())
        return results
