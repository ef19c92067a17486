"""The daily report: after the last run of a day, the entries that were not sent."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, tzinfo

from tikos_outbox.core.attention import Language
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
#: meta: the highest entry number whose notices a sent report listed
NOTICED = "report:noticed"


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

    def noticed(self) -> list[EntryView]:
        """The entries with notices (sent anyway, but look at them) that no sent report
        listed yet, oldest first. One whose addresses are not looked up yet (that
        lookup may add a notice) holds back those after it until it is."""
        mark = self.queries.get_meta(NOTICED) or ""
        upto = int(mark) if mark.isdigit() else 0
        rows = self.queries.list_entries(ListFilter(noticed=True, after_id=upto,
                                                    oldest_first=True, limit=MAX_LISTED))
        waiting = next((u.entry_id for u in self.queries.unresolved() if u.entry_id > upto),
                       None)
        return [v for v in rows if waiting is None or v.id < waiting]

    def send(self, day: date) -> bool:
        """Mail `[report] to` the problems of a local day, once. Returns True when a
        report was sent; none is sent when all went well."""
        to = self.config.report.to
        key = f"report:{day.isoformat()}"
        if not to or self.queries.get_meta(key):
            return False
        rows = self.problems()
        now = self.clock.now()
        tz = self.config.window.tz
        noticed = self.noticed()
        states = self.accounts.states(now)
        paused = [(a.name, pause) for a in states if (pause := a.pause(now)) is not None]
        stopped = [(a.name, a.problem) for a in states if a.problem is not None]
        if not rows and not paused and not stopped and not noticed:
            self.commands.set_meta(key, "nothing to report", now)
            return False
        sender = self.config.sender
        language = self.config.outbox.language
        mail = Mail(sender_address=sender.address, sender_name=sender.name or "tikos-outbox",
                    reply_to=None, to=tuple(to),
                    subject=report_subject(day, rows, language),
                    body=report_text(day, rows, tz, paused, stopped, language, noticed),
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
        if noticed:  # each entry's notices are in one report: the next lists those after it
            self.commands.set_meta(NOTICED, str(noticed[-1].id), now)
        log.info("daily report sent to %s: %d problem(s)", ", ".join(to), len(rows))
        return True


def _count(rows: list[EntryView], more: str) -> str:
    return f"{more} {MAX_LISTED}" if len(rows) > MAX_LISTED else str(len(rows))


@dataclass(frozen=True)
class Wording:
    """The report's sentences in one language; the "what to do" lines come in the
    same language from the store (core.attention)."""

    more: str
    subject: str
    intro: str
    stopped: str
    blocked: str
    paused: str
    noticed: str
    entry: str
    rest: str
    outro: str


WORDING: dict[Language, Wording] = {
    Language.DE: Wording(
        more="mehr als",
        subject="tikos-outbox: {n} Dokument(e) brauchen Aufmerksamkeit ({day})",
        intro="tikos-outbox auf {host}, {day}: {n} Dokument(e) erreichen den Kunden nicht"
              " ohne Ihr Zutun.",
        stopped="DRINGEND: Der Versand mit {name} ist gestoppt, bis die IT die Einstellungen"
                " (Absender, Anmeldung, Servername) berichtigt; danach tikos-outbox check"
                " --smtp und flush. Antwort des Servers: {reason}",
        blocked="DRINGEND: Der Anbieter hat das Versandkonto {name} wegen Spamverdachts"
                " gesperrt. Es geht nichts mehr hinaus, bis die IT das Konto beim Anbieter"
                " freischalten lässt (Microsoft 365: Defender-Portal, Restricted entities);"
                " danach tikos-outbox flush. Antwort des Servers: {reason}",
        paused="Versand mit {name} pausiert bis {until} (geht danach von selbst weiter):"
               " {reason}",
        noticed="Seit dem letzten Bericht aufgenommen, mit Hinweis — bitte prüfen ({n}):",
        entry="- Eintrag {id} ({state}, aufgenommen {created}), Mandant {mandant}, {path}:",
        rest="- … und weitere: tikos-outbox list --attention --limit 1000",
        outro="Einzelheiten: tikos-outbox show NR; alle offenen: tikos-outbox list"
              " --attention. Dieser Bericht kommt jeden Tag nach dem letzten Versandlauf,"
              " solange etwas offen ist."),
    Language.EN: Wording(
        more="more than",
        subject="tikos-outbox: {n} document(s) need attention ({day})",
        intro="tikos-outbox on {host}, {day}: {n} document(s) will not reach the customer"
              " without your move.",
        stopped="URGENT: sending with {name} is stopped until IT corrects the settings"
                " (sender, login, server name); then tikos-outbox check --smtp and flush."
                " The server's reply: {reason}",
        blocked="URGENT: the provider has blocked the sending account {name} as a"
                " suspected spammer. Nothing goes out until IT has the provider unblock it"
                " (Microsoft 365: Defender portal, Restricted entities); then tikos-outbox"
                " flush. The server's reply: {reason}",
        paused="Sending with {name} paused until {until} (resumes by itself): {reason}",
        noticed="Recorded since the last report, with a note — please check ({n}):",
        entry="- Entry {id} ({state}, recorded {created}), mandant {mandant}, {path}:",
        rest="- … and more: tikos-outbox list --attention --limit 1000",
        outro="Details: tikos-outbox show NO; all open ones: tikos-outbox list --attention."
              " This report comes every day after the last send run while anything is"
              " open."),
}


def report_subject(day: date, rows: list[EntryView], language: Language = Language.DE) -> str:
    w = WORDING[language]
    return w.subject.format(n=_count(rows, w.more), day=f"{day:%d.%m.%Y}")


def report_text(day: date, rows: list[EntryView], tz: tzinfo,
                paused: Sequence[tuple[str, Pause]] = (),
                stopped: Sequence[tuple[str, str]] = (),
                language: Language = Language.DE,
                noticed: Sequence[EntryView] = ()) -> str:
    """The report's body, for the office: the sending accounts that wait (a block for
    spam first), then each entry with what to do, then the entries recorded since the
    last report that carry a notice (not a valid e-invoice, another buyer address)."""
    w = WORDING[language]
    lines = [w.intro.format(host=socket.gethostname(), day=f"{day:%d.%m.%Y}",
                            n=_count(rows, w.more)), ""]
    for name, problem in stopped:
        lines += [w.stopped.format(name=name, reason=problem), ""]
    for name, pause in sorted(paused, key=lambda p: not p[1].blocked):
        until = f"{pause.until.astimezone(tz):%d.%m.%Y %H:%M}"
        line = w.blocked if pause.blocked else w.paused
        lines += [line.format(name=name, until=until, reason=pause.reason), ""]
    def entry(v: EntryView) -> str:
        return w.entry.format(id=v.id, state=v.state, mandant=v.mandant, path=v.path,
                              created=f"{v.created_at.astimezone(tz):%d.%m.%Y %H:%M}")

    for v in rows[:MAX_LISTED]:
        lines += [entry(v), f"  {v.attention}"]
    if len(rows) > MAX_LISTED:
        lines.append(w.rest)
    if noticed:
        lines += ["", w.noticed.format(n=len(noticed))]
    for v in noticed:
        lines += [entry(v), *(f"  {line}" for line in v.notices)]
    lines += ["", w.outro]
    return "\n".join(lines) + "\n"
