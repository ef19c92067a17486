"""The daily report: after the last run of a day, the entries that were not sent."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Sequence
from datetime import date, tzinfo

from tikos_outbox.core.message import Mail, build_message, envelope, make_message_id
from tikos_outbox.core.pacing import Pause
from tikos_outbox.core.ports import (
    Clock,
    MailerFactory,
    OutboxCommands,
    OutboxQueries,
    SecretUnavailable,
    SendingAccounts,
)
from tikos_outbox.core.replies import Outcome, RunStopped, classify, explain
from tikos_outbox.core.settings import Config
from tikos_outbox.core.views import EntryView, ListFilter

log = logging.getLogger("tikos_outbox")

MAX_LISTED = 200


class DailyReport:
    def __init__(self, config: Config, queries: OutboxQueries, commands: OutboxCommands,
                 accounts: SendingAccounts, mailers: MailerFactory, clock: Clock) -> None:
        self.config = config
        self.queries = queries
        self.commands = commands
        self.accounts = accounts
        self.mailers = mailers
        self.clock = clock

    def problems(self) -> list[EntryView]:
        """Every entry that needs an administrator's move, oldest first: skipped for no
        or an invalid address, failed, held, partly refused, expired."""
        rows = self.queries.list_entries(ListFilter(attention=True, limit=MAX_LISTED + 1))
        return sorted(rows, key=lambda v: v.id)

    def send(self, day: date) -> bool:
        """Mail `[report] to` the problems of a local day, once. Returns True when a
        report was sent; none is sent when all went well."""
        to = self.config.report.to
        key = f"report:{day.isoformat()}"
        if not to or self.queries.get_meta(key):
            return False
        rows = self.problems()
        now = self.clock.now()
        states = self.accounts.states(now)
        paused = [(a.name, pause) for a in states if (pause := a.pause(now)) is not None]
        stopped = [(a.name, a.problem) for a in states if a.problem is not None]
        if not rows and not paused and not stopped:
            self.commands.set_meta(key, "nothing to report", now)
            return False
        sender = self.config.sender
        mail = Mail(sender_address=sender.address, sender_name=sender.name or "tikos-outbox",
                    reply_to=None, to=tuple(to),
                    subject=f"tikos-outbox: {_count(rows)} Dokument(e) brauchen Aufmerksamkeit"
                            f" ({day:%d.%m.%Y})",
                    body=report_text(day, rows, self.config.window.tz, paused, stopped),
                    filename="",
                    pdf=None,
                    message_id=make_message_id(uuid.uuid4().hex, sender.address),
                    date=now.astimezone(self.config.window.tz))
        try:
            with self.mailers(self.config.smtp) as mailer:
                result = mailer.send(*envelope(mail), build_message(mail).as_bytes())
        except (RunStopped, SecretUnavailable) as exc:
            log.error("daily report not sent: %s", exc)
            return False
        if classify(result.reply) is not Outcome.DELIVERED:
            log.error("daily report not sent: %s", explain(result.reply))
            return False
        self.commands.set_meta(key, f"sent to {', '.join(to)}", now)
        log.info("daily report sent to %s: %d problem(s)", ", ".join(to), len(rows))
        return True


def _count(rows: list[EntryView]) -> str:
    return f"mehr als {MAX_LISTED}" if len(rows) > MAX_LISTED else str(len(rows))


def report_text(day: date, rows: list[EntryView], tz: tzinfo,
                paused: Sequence[tuple[str, Pause]] = (),
                stopped: Sequence[tuple[str, str]] = ()) -> str:
    """The report's body, for the office: the sending accounts that wait (a block for
    spam first), then each entry with what to do."""
    lines = [f"tikos-outbox auf {socket.gethostname()}, {day:%d.%m.%Y}: {_count(rows)}"
             " Dokument(e) erreichen den Kunden nicht ohne Ihr Zutun.", ""]
    for name, problem in stopped:
        lines.append(f"DRINGEND: Der Versand mit {name} ist gestoppt, bis die IT die"
                     " Einstellungen (Absender, Anmeldung, Servername) berichtigt; danach"
                     f" tikos-outbox check --smtp und flush. Antwort des Servers: {problem}")
        lines.append("")
    for name, pause in sorted(paused, key=lambda p: not p[1].blocked):
        until = f"{pause.until.astimezone(tz):%d.%m.%Y %H:%M}"
        if pause.blocked:
            lines.append(f"DRINGEND: Der Anbieter hat das Versandkonto {name} wegen"
                         " Spamverdachts gesperrt. Es geht nichts mehr hinaus, bis die IT"
                         " das Konto beim Anbieter freischalten lässt (Microsoft 365:"
                         " Defender-Portal, Restricted entities); danach"
                         f" tikos-outbox flush. Antwort des Servers: {pause.reason}")
        else:
            lines.append(f"Versand mit {name} pausiert bis {until} (geht danach von selbst"
                         f" weiter): {pause.reason}")
        lines.append("")
    for v in rows[:MAX_LISTED]:
        lines.append(f"- Eintrag {v.id} ({v.state}, aufgenommen"
                     f" {v.created_at.astimezone(tz):%d.%m.%Y %H:%M}), Mandant {v.mandant},"
                     f" {v.path}:")
        lines.append(f"  {v.attention}")
    if len(rows) > MAX_LISTED:
        lines.append("- … und weitere: tikos-outbox list --attention --limit 1000")
    lines += ["", "Einzelheiten: tikos-outbox show NR; alle offenen: tikos-outbox list"
                  " --attention. Dieser Bericht kommt jeden Tag nach dem letzten Versandlauf,"
                  " solange etwas offen ist."]
    return "\n".join(lines) + "\n"
