"""Intake: a settled file becomes an outbox entry, by the identity rules, with
its customer's addresses looked up."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tikos_outbox.core import attention
from tikos_outbox.core import intake as rules
from tikos_outbox.core.addresses import parse_address, parse_addresses
from tikos_outbox.core.einvoice import Action, EInvoice, shortfall, shortfall_facts
from tikos_outbox.core.message import make_message_id
from tikos_outbox.core.naming import is_xml_name, parse_name
from tikos_outbox.core.pdf import encrypted_reason, incomplete_reason
from tikos_outbox.core.ports import (
    Clock,
    DocumentFiles,
    EInvoices,
    LookupUnavailable,
    Notes,
    OutboxCommands,
    OutboxQueries,
    RecipientLookup,
)
from tikos_outbox.core.settings import Config, Mandant, RecipientSource
from tikos_outbox.core.states import Event, State
from tikos_outbox.core.views import FileSeen, NewDocument, Recording
from tikos_outbox.usecases.history import History

log = logging.getLogger("tikos_outbox")

NOT_READY = "not-ready"  # the file could not be read completely; try again later
LOOKUP_REST_S = 60  # the address source is not asked for this long after it failed
FIRST_PASS = "first_pass:{}"  # meta: when the mandant's first pass began, or NO_HISTORY
DONE = "baseline:{}"  # meta: the mandant's folder was listed completely once
NO_HISTORY = "none"


class FirstPass(StrEnum):
    """How a pass treats what is already in the archive."""

    FOLLOW = "follow"  # the config: history before the very first pass (baseline = true)
    HISTORY = "history"  # `scan --baseline`: what is there now is history
    NONE = "none"  # `scan --no-baseline`: nothing is history, everything is mailed
BATCH_FILES = 200  # files recorded in one transaction
HISTORY_BATCH = 5000  # … on a first pass, whose history files are not read
BATCH_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Addresses:
    """What the lookup gave: the valid addresses, or why there are none. Both
    empty: the source cannot be asked now, and the entry waits for a later run."""

    valid: list[str]
    no_address: str | None = None
    attention: str | None = None  # with no_address: what the office must do
    invalid: tuple[str, ...] = ()  # pieces beside valid ones that are no address

    @property
    def stored(self) -> list[str]:
        """What the entry keeps as its customer's recipients: the valid addresses, and
        the invalid pieces beside them, which become refused recipients (so the office
        sees them) and are never offered to a server."""
        return [*self.valid, *self.invalid]

    @property
    def unavailable(self) -> bool:
        return not self.valid and self.no_address is None


class Intake:
    def __init__(self, config: Config, queries: OutboxQueries, commands: OutboxCommands,
                 lookup: RecipientLookup, files: DocumentFiles, clock: Clock,
                 notes: Notes, einvoices: EInvoices, history: History) -> None:
        self.config = config
        self.queries = queries
        self.commands = commands
        self.lookup = lookup
        self.files = files
        self.clock = clock
        self.notes = notes
        self.einvoices = einvoices
        self.history = history  # the history files the first start did not read
        self._cutoffs: dict[int, float | None] = {}
        self._done: set[int] = set()
        self._unreadable: set[str] = set()  # said once each, until it can be read
        self._uniques: Iterator[str] = iter(())
        # after the address source failed (a hung SQL Server times out), it is not
        # asked again for a while: one timeout per pass, not one per document
        self._lookup_rests_until = -1e18

    # -- history: what was in the archive before the first start ----------------------------

    def history_cutoff(self, m: Mandant) -> float | None:
        """Files modified before this instant (epoch seconds) are history: recorded as
        skipped, never mailed. None: nothing is history."""
        if m.id not in self._cutoffs:
            value = (self.queries.get_meta(FIRST_PASS.format(m.id))
                     or self.queries.get_meta(DONE.format(m.id)))  # an outbox of round one
            self._cutoffs[m.id] = (None if value in (None, NO_HISTORY)
                                   else datetime.fromisoformat(str(value)).timestamp())
        return self._cutoffs[m.id]

    def begin_pass(self, m: Mandant, mode: FirstPass, since: datetime | None = None) -> None:
        """Before a pass over the mandant's folder: at its very first one (or when the
        administrator says so) the moment that divides history from new documents
        is fixed — whether or not the folder can be listed now."""
        key = FIRST_PASS.format(m.id)
        if since is not None and mode is not FirstPass.NONE:
            mode = FirstPass.HISTORY  # `--since`: older than that date is history, always
        if mode is FirstPass.FOLLOW:
            if self.queries.get_meta(key) or self.queries.get_meta(DONE.format(m.id)):
                return
            mode = FirstPass.HISTORY if self.config.watch.baseline else FirstPass.NONE
        now = self.clock.now()
        value = (since or now).isoformat() if mode is FirstPass.HISTORY else NO_HISTORY
        self.commands.set_meta(key, value, now)
        self._cutoffs.pop(m.id, None)
        log.info("mandant %d: %s", m.id, "files modified before " + value +
                 " are history (recorded, never mailed)" if mode is FirstPass.HISTORY
                 else "no file is taken as history")

    def first_pass_done(self, m: Mandant) -> bool:
        """Whether the mandant's folder has been listed completely once."""
        return self.queries.get_meta(DONE.format(m.id)) is not None

    def complete_first_pass(self, m: Mandant) -> None:
        """A complete listing of the folder went through (idempotent)."""
        if m.id not in self._done:
            if not self.first_pass_done(m):
                now = self.clock.now()
                self.commands.set_meta(DONE.format(m.id), now.isoformat(), now)
                log.info("mandant %d: the first complete pass over %s is done", m.id, m.folder)
            self._done.add(m.id)

    def is_history(self, m: Mandant, seen: FileSeen) -> bool:
        cutoff = self.history_cutoff(m)
        return cutoff is not None and seen.mtime_ns / 1e9 < cutoff

    # -- recording --------------------------------------------------------------------------

    def _cannot_read(self, m: Mandant, seen: FileSeen, exc: OSError) -> None:
        """One line per file (not one per retry), and in `status` when it is not a
        writer's lock: the service account may lack the right to read it."""
        why = exc.strerror or str(exc)
        if seen.abs_path in self._unreadable:
            log.debug("mandant %d: still cannot read %s: %s", m.id, seen.rel_path, why)
            return
        self._unreadable.add(seen.abs_path)
        if isinstance(exc, PermissionError):
            line = (f"Cannot read {seen.abs_path}: {why}; the account tikos-outbox runs as"
                    " needs read access to the archive. Tried again, less and less often")
            log.error("mandant %d: %s", m.id, line)
            self.notes.note_error(line)
        else:
            log.warning("mandant %d: cannot read %s yet (%s); trying again", m.id,
                        seen.rel_path, why)

    def unknown(self, m: Mandant, files: Sequence[FileSeen]) -> list[FileSeen]:
        """Those of `files` that the outbox does not hold with this size and mtime."""
        known = self.queries.known_among(m.id, [f.rel_path for f in files])
        return [f for f in files if known.get(f.rel_path) != (f.size, f.mtime_ns)]

    def ingest(self, mandant: Mandant, seen: FileSeen) -> str | None:
        """Record one settled file; see ingest_many."""
        return self.ingest_many(mandant, [seen])[0]

    def ingest_many(self, mandant: Mandant, files: Sequence[FileSeen]) -> list[str | None]:
        """Record settled files of one mandant in one transaction; returns each new
        entry's state, None where there was nothing to record (already known, not
        a document), or NOT_READY where the file could not be read completely
        (locked, changed while it was read): it is to be tried again."""
        prepared: list[tuple[int, Recording]] = []
        results: list[str | None] = [None] * len(files)
        late = self.first_pass_done(mandant)
        for index, seen in enumerate(files):
            try:
                item = self._prepare(mandant, seen, self.is_history(mandant, seen))
            except OSError as exc:
                self._cannot_read(mandant, seen, exc)
                results[index] = NOT_READY
                continue
            self._unreadable.discard(seen.abs_path)
            if item is not None:
                prepared.append((index, item))
        if not late:  # the first pass: its history, unread, in one statement
            unread = [(i, item) for i, item in prepared if rules.is_unread(item.doc.sha256)]
            if unread:
                done_paths = self.commands.record_history([item for _, item in unread],
                                                          self.clock.now())
                for index, item in unread:
                    if item.doc.path in done_paths:
                        results[index] = State.SKIPPED.value
                log.debug("%d files recorded as history", len(done_paths))
                prepared = [(i, item) for i, item in prepared
                            if not rules.is_unread(item.doc.sha256)]
        # a new file may be a history file under another name (this batch's too): the
        # unread history files of the new ones' sizes are read first (the duplicate
        # rule compares contents), in one query for the batch
        try:
            self.history.read_of_sizes(mandant, {item.doc.size for i, item in prepared
                                                 if files[i].link_target is None
                                                 and not rules.is_unread(item.doc.sha256)})
        except OSError as exc:  # one of them cannot be read now: the new ones wait
            for index, _item in prepared:
                self._cannot_read(mandant, files[index], OSError(
                    exc.errno, f"a history file of its size cannot be read to compare"
                               f" ({exc.strerror or exc})"))
                results[index] = NOT_READY
            return results
        if not prepared:
            return results
        recorded = self.commands.record_many([item for _, item in prepared], self.clock.now())
        for (index, item), done in zip(prepared, recorded, strict=True):
            if done is None:
                continue
            decision = done.decision
            history = decision.state is State.SKIPPED and self.is_history(mandant, files[index])
            if history and late:  # the rule's price: say it where an admin looks
                log.warning("entry %d skipped as history, though found only after the first"
                            " pass: %s was modified before the first start; if it is a new"
                            " document: tikos-outbox requeue %d", done.entry_id,
                            item.doc.path, done.entry_id)
            else:
                log.log(logging.DEBUG if history else logging.INFO, "entry %d %s: %s%s",
                        done.entry_id, decision.state, item.doc.path,
                        f" ({decision.reason})" if decision.reason else "")
            for old in decision.supersede:
                log.info("entry %d skipped: superseded by entry %d", old, done.entry_id)
            results[index] = decision.state.value
        return results

    def _unique(self) -> str:
        """32 random hex digits for a Message-ID, as random as uuid4's, drawn 4 KB at
        a time: one system call per 256 documents (the first pass of a big archive
        made one per history file)."""
        unique = next(self._uniques, None)
        if unique is None:
            block = os.urandom(4096).hex()
            self._uniques = iter([block[i:i + 32] for i in range(0, len(block), 32)])
            unique = next(self._uniques)
        return unique

    def _prepare(self, mandant: Mandant, seen: FileSeen, baseline: bool) -> Recording | None:
        doc = parse_name(mandant.pattern, seen.name)
        if doc is None:
            return None
        watch = self.config.watch
        data: bytes | None = None
        einvoice: EInvoice | None = None
        if seen.link_target is not None:  # never read: it may be any file on the server
            problem: str | None = (f"a link to a file outside the mandant folder"
                                   f" ({seen.link_target}); it is not read and not mailed:"
                                   " replace the link in the archive by the document itself")
            blocks = True
            sha = rules.sha256_of(f"link:{seen.link_target}".encode())
        elif baseline:  # history: recorded as skipped; read only when it matters (History)
            problem, blocks = None, False
            sha = rules.unread_sha(seen.size, seen.mtime_ns)
        elif seen.size > watch.max_size_bytes:  # not kept: the archive file is sent if forced
            problem = (
                f"larger than the limit of {watch.max_size_mb:g} MB"
                f" ({seen.size / 1048576:.1f} MB); providers reject such mails")
            blocks = True
            sha = self.files.sha256(seen.abs_path)
        else:
            data = self.files.read(seen, watch.max_size_bytes, mandant.folder)
            sha = rules.sha256_of(data)
            if is_xml_name(seen.name):  # an XRechnung file of its own
                einvoice, problem = (self.einvoices.in_xml(data) if data
                                     else (None, "the file is empty"))
            else:
                problem = incomplete_reason(data)
                if problem is None and (problem := encrypted_reason(data)) is None:
                    einvoice = self.einvoices.in_pdf(data, seen.rel_path)
            blocks = problem is not None and not problem.startswith(rules.ENCRYPTED_REASON)
        notices: list[str] = []
        rule: tuple[str, rules.RuleLine] | None = None
        if problem is None and not baseline:
            rule = self._einvoice_rule(doc.doctype, doc.docno, doc.customer, einvoice, notices)
        found = (self.addresses_for(mandant.id, doc.fields,
                                    einvoice.buyer_email if einvoice else None, notices)
                 if not baseline and problem is None and rule is None else Addresses([]))
        new = NewDocument(
            mandant=mandant.id, path=seen.rel_path, file_name=seen.name, sha256=sha,
            size=seen.size, mtime_ns=seen.mtime_ns, doctype=doc.doctype, docno=doc.docno,
            customer=doc.customer, fields=doc.fields, data=data, einvoice=einvoice,
        )
        decide = rules.bind(sha256=sha, baseline=baseline, problem=problem,
                            problem_blocks=blocks, no_address=found.no_address,
                            no_address_attention=found.attention,
                            einvoice=rule[0] if rule else None,
                            einvoice_line=rule[1] if rule else None)
        message_id = make_message_id(self._unique(), mandant.sender.address)
        return Recording(new, decide, message_id, found.stored or None, tuple(notices))

    def _einvoice_rule(self, doctype: str, docno: str, customer: str,
                       einvoice: EInvoice | None, notices: list[str],
                       ) -> tuple[str, rules.RuleLine] | None:
        """`[einvoice]`: an invoice that must be an e-invoice and is none is held (the
        reason and the office's line returned; the identity rules decide first) or
        goes out with a notice."""
        rule = self.config.einvoice
        today = self.clock.now().astimezone(self.config.window.tz).date()
        if (einvoice is not None and einvoice.valid_invoice) or not rule.applies(doctype, today):
            return None
        assert rule.required_from is not None
        since, why = rule.required_from.isoformat(), shortfall_facts(einvoice)
        if rule.action is Action.HOLD:
            def line(sent_as: int | None) -> str:
                return attention.einvoice_held(customer, docno, since, why, sent_as)

            return f"{rules.EINVOICE_REASON}: {shortfall(einvoice)}", line
        log.warning("%s %s of customer %s is %s, but goes out ([einvoice] action = warn)",
                    doctype, docno, customer, shortfall(einvoice))
        notices.append(attention.einvoice_sent(customer, docno, since, why))
        return None

    # -- addresses --------------------------------------------------------------------------

    def addresses_for(self, mandant_id: int, fields: dict[str, str], buyer: str | None,
                      notices: list[str] | None = None) -> Addresses:
        """The addresses to mail a document to: the e-invoice's buyer address (BT-49)
        with `[recipients] source = "einvoice"`, else (or without a usable one) the
        lookup's; a BT-49 that the lookup does not have is noted."""
        buyer_address = parse_address(buyer) if buyer else None
        if buyer and buyer_address is None:
            log.warning("customer %s: the e-invoice's buyer address %r is no valid e-mail"
                        " address", fields.get("customer", "?"), buyer)
        if buyer_address and self.config.recipients.source is RecipientSource.EINVOICE:
            return Addresses([buyer_address.display])
        found = self.addresses(mandant_id, fields)
        known = {a.addr.casefold() for a in parse_addresses(found.valid)[0]}
        if buyer_address and found.valid and buyer_address.addr.casefold() not in known:
            if notices is not None:
                notices.append(attention.buyer_mismatch(
                    fields.get("customer", "?"), fields.get("docno", "?"), buyer_address.addr,
                    sorted(known), ", ".join(found.valid)))
            log.warning("customer %s: the e-invoice names %s as the buyer's address (BT-49),"
                        " the lookup %s", fields.get("customer", "?"), buyer_address.addr,
                        ", ".join(found.valid))
        return found

    def addresses(self, mandant_id: int, fields: dict[str, str]) -> Addresses:
        """The customer's valid addresses, why there are none, or neither when the
        source cannot be asked now (the entry then waits, pending, for a later run)."""
        if self.clock.monotonic() < self._lookup_rests_until:
            return Addresses([])  # recorded now, looked up at a later run
        try:
            values = self.lookup.lookup(mandant_id, fields)
        except LookupUnavailable as exc:
            self._lookup_rests_until = self.clock.monotonic() + LOOKUP_REST_S
            log.warning("addresses not looked up yet: %s; not asked again for %d s, the"
                        " documents are recorded and looked up at a later run", exc,
                        LOOKUP_REST_S)
            self.notes.note_error(f"Address lookup: {exc}")
            return Addresses([])
        found, rejected = parse_addresses(values)
        valid = [a.display for a in found]  # stored with the display name, for To
        customer = fields.get("customer", "?")
        if rejected:
            log.warning("customer %s: ignored invalid address value(s): %s", customer,
                        "; ".join(rejected))
        if valid:
            return Addresses(valid, invalid=tuple(rejected))
        reason = f"{attention.NO_ADDRESS_REASON} {customer}"
        if rejected:
            reason += f" (invalid: {'; '.join(rejected)})"
        return Addresses([], reason, attention.no_address(customer, rejected))

    def resolve_recipients(self) -> int:
        """Look up the addresses of pending entries that have none yet (the source
        was unreachable, or the entry was requeued); returns how many were resolved.
        An unreachable source leaves them pending for a later run. What the lookup
        notices (an e-invoice's other buyer address) is added to the entry."""
        done = 0
        while batch := self.queries.unresolved():
            for item in batch:
                notices: list[str] = []
                found = self.addresses_for(item.mandant, item.fields, item.buyer_email,
                                           notices)
                if found.unavailable:
                    return done
                now = self.clock.now()
                if found.valid:
                    self.commands.set_recipients(item.entry_id, found.stored, now, notices)
                elif self.commands.move([item.entry_id], Event.SKIP, now,
                                        reason=found.no_address,
                                        attention=found.attention)[item.entry_id].ok:
                    log.info("entry %d skipped: %s", item.entry_id, found.no_address)
                done += 1
        return done
