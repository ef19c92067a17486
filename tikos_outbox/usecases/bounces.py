"""One pass over the bounce mailbox: each new message read (never marked read),
a bounce matched to its entry and recipient and recorded, then moved to the
processed folder. Everything else stays where it is, as it was.

The pass remembers how far it read (per folder and UIDVALIDITY, in the outbox's
meta table), moving that mark only past messages it has finished with: a bounce
recorded but not yet moved (the connection broke) is read again next time, and
recording it again changes nothing."""

from __future__ import annotations

import email
import email.policy
import json
import logging
from dataclasses import dataclass, field

from tikos_outbox.core.addresses import Address
from tikos_outbox.core.bounces import Kind, Notice, Report
from tikos_outbox.core.ports import (
    BounceParser,
    BounceRecords,
    Clock,
    Mailbox,
    MailboxFactory,
    MailboxUnavailable,
    OutboxCommands,
    OutboxQueries,
    SecretUnavailable,
)
from tikos_outbox.core.recipients import Role
from tikos_outbox.core.settings import Config
from tikos_outbox.core.views import BouncedEntry

log = logging.getLogger("tikos_outbox")

LAST_PASS = "bounces:last_pass"
LAST_ERROR = "bounces:last_error"


@dataclass
class BouncePass:
    """What one pass did, for the CLI (`bounces --json`) and the log."""

    read: int = 0  # new messages looked at
    bounced: list[str] = field(default_factory=list)  # "entry 7: addr: diagnostic"
    delayed: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # bounces for no entry of ours
    unreadable: list[str] = field(default_factory=list)  # from a mail system, not readable
    moved: int = 0
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        return {"read": self.read, "bounced": self.bounced, "delayed": self.delayed,
                "unmatched": self.unmatched, "unreadable": self.unreadable,
                "moved": self.moved, "error": self.error}

    def summary(self) -> str:
        return (f"{self.read} new message(s) read: {len(self.bounced)} bounced, "
                f"{len(self.delayed)} delayed, {len(self.unmatched)} for no entry of ours,"
                f" {len(self.unreadable)} not readable; {self.moved} moved")


class BounceReader:
    def __init__(self, config: Config, queries: OutboxQueries, commands: OutboxCommands,
                 records: BounceRecords, mailboxes: MailboxFactory, parser: BounceParser,
                 clock: Clock) -> None:
        self.config = config
        self.queries = queries
        self.commands = commands
        self.records = records
        self.mailboxes = mailboxes
        self.parser = parser
        self.clock = clock

    def run(self) -> BouncePass:
        """One pass; a mailbox that cannot be read is said in `error` (and in status)."""
        out = BouncePass()
        s = self.config.bounces
        try:
            with self.mailboxes(s) as box:
                key = f"bounces:seen:{s.server}/{s.folder}"
                mark = self.queries.get_meta(key) or ""
                validity, _, last = mark.partition(":")
                start = int(last) if validity == str(box.uidvalidity) and last.isdigit() else 0
                uids = box.uids_after(start)
                sniff = self.parser.looks_like_bounce
                candidates = {uid for uid, head in box.headers(uids) if sniff(head)}
                holding = False  # a message before this one is not finished: keep the mark
                for uid in uids:
                    out.read += 1
                    finished = uid not in candidates or self._guarded(box, uid, out)
                    holding = holding or not finished
                    if not holding:
                        self.commands.set_meta(key, f"{box.uidvalidity}:{uid}",
                                               self.clock.now())
        except (MailboxUnavailable, SecretUnavailable) as exc:
            out.error = str(exc)
            log.error("bounces: %s", exc)
            self._note(LAST_ERROR, str(exc))
            return out
        self._note(LAST_PASS, out.summary())
        self.commands.set_meta(LAST_ERROR, "", self.clock.now())
        if out.read:
            log.info("bounces: %s", out.summary())
        return out

    def _note(self, key: str, text: str) -> None:
        now = self.clock.now()
        self.commands.set_meta(key, json.dumps({"at": now.isoformat(), "text": text}), now)

    def _guarded(self, box: Mailbox, uid: int, out: BouncePass) -> bool:
        """One message; one that breaks the reading (a hostile or broken MIME
        structure) is left in the mailbox and said, and the pass goes on past it."""
        try:
            return self._one(box, uid, out)
        except MailboxUnavailable:
            raise
        except Exception as exc:  # any message: it must not stop the rest
            log.debug("bounce message %d could not be read", uid, exc_info=True)
            line = (f"message {uid}: could not be read ({type(exc).__name__}); left in the"
                    " mailbox")
            out.unreadable.append(line)
            log.warning("bounces: %s", line)
            return True

    def _one(self, box: Mailbox, uid: int, out: BouncePass) -> bool:
        """One message that may be a bounce; True when finished with (recorded and
        moved, or left as it is for good)."""
        raw = box.message(uid)
        if raw is None:
            return True  # gone meanwhile (the office moved it)
        report = self.parser.read_report(raw)
        if report is None:
            return _leave(out.unreadable, uid, raw, "from a mail system, but no bounce could"
                          " be read from it", logging.WARNING)
        entry = self.records.entry_for(report.envid, report.message_ids)
        if entry is None:
            return _leave(out.unmatched, uid, raw, "a bounce for a mail that is not in the"
                          " outbox", logging.INFO)
        notices = _ours(entry, report)
        if not notices:
            return _leave(out.unmatched, uid, raw, f"a bounce for entry {entry.id}, but for"
                          f" {', '.join(n.address for n in report.notices)}, none of its"
                          " recipients", logging.WARNING)
        self.records.record(entry, report.source, notices, self.clock.now())
        for n in notices:
            line = f"entry {entry.id}: {n.address}: {n.diagnostic}"
            (out.bounced if n.kind is Kind.FAILED else out.delayed).append(line)
            log.warning("bounces: %s %s", "bounced" if n.kind is Kind.FAILED else "delayed",
                        line)
        try:
            box.move(uid, self.config.bounces.processed_folder)
        except MailboxUnavailable as exc:
            log.error("bounces: message %d is recorded but could not be moved to %s: %s;"
                      " tried again at the next pass", uid,
                      self.config.bounces.processed_folder, exc)
            return False
        out.moved += 1
        return True


def _leave(found: list[str], uid: int, raw: bytes, what: str, level: int) -> bool:
    """A message that stays in the mailbox as it is, said in the pass and the log."""
    line = f"message {uid} ({_subject(raw)}): {what}; left in the mailbox"
    found.append(line)
    log.log(level, "bounces: %s", line)
    return True


def _key(address: str) -> str:
    """One form for comparing: the local part in lower case, the domain as A-labels
    (a report may give `müller.de` as `xn--mller-kva.de`)."""
    try:
        return Address(address).envelope.lower()
    except ValueError:
        return address.strip().lower()


def _ours(entry: BouncedEntry, report: Report) -> list[Notice]:
    """The report's notices for this entry's recipients, with each address as the
    entry holds it. An RFC 3464 report that names our ENVID and one address the entry
    does not hold (the customer's server forwarded it on) is for the entry's one
    customer address, if it has exactly one; nothing weaker is."""
    held = {_key(a): a for a, _ in entry.recipients}
    out = [Notice(held[_key(n.address)], n.kind, n.status, n.diagnostic)
           for n in report.notices if _key(n.address) in held]
    customers = [a for a, role in entry.recipients if role is Role.TO]
    if not out and entry.by_envid and report.standard and len(report.notices) == 1 \
            and len(customers) == 1:
        n = report.notices[0]
        out = [Notice(customers[0], n.kind, n.status,
                      f"{n.diagnostic} (reported for {n.address})")]
    return out


def _subject(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    subject, sender = (" ".join("".join(c if c.isprintable() else " " for c in str(v)).split())
                       for v in (msg.get("Subject", ""), msg.get("From", "?")))
    return f"\"{subject[:120]}\" from {sender[:120]}"
