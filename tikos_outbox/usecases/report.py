"""The daily report: after the last run of a day, the entries that were not sent."""

from __future__ import annotations

import logging
import socket
import uuid
from datetime import date, datetime, timedelta
from datetime import time as dtime

from tikos_outbox.core.message import Mail, build_message, make_message_id
from tikos_outbox.core.ports import (
    Clock,
    MailerFactory,
    OutboxCommands,
    OutboxQueries,
    SecretUnavailable,
)
from tikos_outbox.core.replies import Outcome, RunStopped, classify, explain
from tikos_outbox.core.settings import Config
from tikos_outbox.core.states import State
from tikos_outbox.core.views import EntryView, ListFilter

log = logging.getLogger("tikos_outbox")


class DailyReport:
    def __init__(self, config: Config, queries: OutboxQueries, commands: OutboxCommands,
                 mailers: MailerFactory, clock: Clock) -> None:
        self.config = config
        self.queries = queries
        self.commands = commands
        self.mailers = mailers
        self.clock = clock

    def problems(self, day: date) -> list[EntryView]:
        """The failed and held entries last changed on a local day."""
        start = datetime.combine(day, dtime(0), tzinfo=self.config.window.tz)
        rows = self.queries.list_entries(ListFilter(
            states=(State.FAILED.value, State.HELD.value), changed_since=start, limit=10000))
        return sorted((v for v in rows if v.updated_at < start + timedelta(days=1)),
                      key=lambda v: v.id)

    def send(self, day: date) -> bool:
        """Mail `[report] to` the problems of a local day, once. Returns True when a
        report was sent; none is sent when all went well."""
        to = self.config.report.to
        key = f"report:{day.isoformat()}"
        if not to or self.queries.get_meta(key):
            return False
        rows = self.problems(day)
        now = self.clock.now()
        if not rows:
            self.commands.set_meta(key, "nothing to report", now)
            return False
        sender = self.config.sender
        mail = Mail(sender_address=sender.address, sender_name=sender.name or "tikos-outbox",
                    reply_to=None, to=tuple(to),
                    subject=f"tikos-outbox: {len(rows)} Dokument(e) nicht versendet"
                            f" ({day:%d.%m.%Y})",
                    body=report_text(day, rows), filename="", pdf=None,
                    message_id=make_message_id(uuid.uuid4().hex, sender.address),
                    date=now.astimezone(self.config.window.tz))
        try:
            with self.mailers(self.config.smtp) as mailer:
                result = mailer.send(sender.address, list(to), build_message(mail).as_bytes())
        except (RunStopped, SecretUnavailable) as exc:
            log.error("daily report not sent: %s", exc)
            return False
        if classify(result.reply) is not Outcome.DELIVERED:
            log.error("daily report not sent: %s", explain(result.reply))
            return False
        self.commands.set_meta(key, f"sent to {', '.join(to)}", now)
        log.info("daily report sent to %s: %d problem(s)", ", ".join(to), len(rows))
        return True


def report_text(day: date, rows: list[EntryView]) -> str:
    lines = [f"tikos-outbox on {socket.gethostname()}: {len(rows)} document(s) were not"
             f" sent on {day:%d.%m.%Y}.", ""]
    for v in rows:
        why = v.last_error if v.state == State.FAILED.value else v.reason
        lines.append(f"- entry {v.id} ({v.state}), mandant {v.mandant}, {v.path},"
                     f" customer {v.customer}: {why or 'no reason recorded'}")
    lines += ["", "Details: tikos-outbox show ID; to send again: tikos-outbox requeue ID"
                  " (failed) or tikos-outbox release ID (held)."]
    return "\n".join(lines) + "\n"
