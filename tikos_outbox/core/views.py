"""The typed values that cross the outbox's boundary: what is recorded, what a
send run claims, and what the administrator sees. No I/O here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from tikos_outbox.core.bounces import Kind
from tikos_outbox.core.einvoice import EInvoice
from tikos_outbox.core.intake import Decision, Prior
from tikos_outbox.core.recipients import Recipient, Role
from tikos_outbox.core.states import State


@dataclass(frozen=True)
class FileSeen:
    """A candidate file as a listing saw it: nothing read yet."""

    abs_path: str
    rel_path: str  # '/'-separated, relative to the mandant folder
    name: str
    size: int
    mtime_ns: int
    #: a symlink whose real target lies outside the mandant folder: that target (the
    #: file is not to be read; size and mtime are the link's own). None otherwise.
    link_target: str | None = None


@dataclass(frozen=True)
class NewDocument:
    mandant: int
    path: str
    file_name: str
    sha256: str
    size: int
    mtime_ns: int
    doctype: str
    docno: str
    customer: str
    fields: dict[str, str]
    data: bytes | None  # None: no copy is kept (too large, or not read)
    einvoice: EInvoice | None = None  # its e-invoice data; None: a plain PDF (or not read)


#: decide(same_path, same_content) -> Decision | None: the identity rules, bound to one file
Decide = Callable[[list[Prior], Prior | None], Decision | None]


@dataclass(frozen=True)
class Recording:
    """A settled file to record, with its addresses when they were looked up."""

    doc: NewDocument
    decide: Decide
    message_id: str
    recipients: list[str] | None = None
    notices: tuple[str, ...] = ()  # what the office should know if it goes out (facts)


@dataclass(frozen=True)
class Recorded:
    """An entry that recording created."""

    entry_id: int
    decision: Decision


@dataclass(frozen=True)
class Claimed:
    """An entry a send run has taken (state `sending`)."""

    id: int
    mandant: int
    path: str
    file_name: str
    sha256: str
    doctype: str
    docno: str
    customer: str
    fields: dict[str, str]
    recipients: list[str]  # the customer's addresses: the To of the message
    message_id: str
    first_attempt_at: datetime | None
    transient_failures: int
    previous_state: State
    deliveries: tuple[Recipient, ...] = ()  # every recipient with its state
    account_stops: int = 0  # runs its mail stopped for the account (see Delivery)

    @property
    def due(self) -> list[str]:
        """The envelope of this attempt: only the recipients still due."""
        return [r.address for r in self.deliveries if r.due]


@dataclass(frozen=True)
class BounceView:
    """One recipient in one report read from the bounce mailbox."""

    at: datetime
    address: str
    kind: Kind
    status: str
    diagnostic: str


@dataclass(frozen=True)
class BouncedEntry:
    """The entry a bounce is about: its customer and its recipients' addresses."""

    id: int
    customer: str
    recipients: tuple[tuple[str, Role], ...]
    by_envid: bool = False  # found by the ENVID we gave (not only by a Message-ID)


@dataclass(frozen=True)
class AttemptView:
    at: datetime
    server: str
    outcome: str
    code: int | None
    reply: str
    refused: dict[str, str] | None


@dataclass
class EntryView:
    """An entry as the administrator sees it."""

    id: int
    state: str
    mandant: int
    path: str
    file_name: str
    sha256: str
    size: int
    doctype: str
    docno: str
    customer: str
    recipients: list[str] | None
    refused: dict[str, str] | None
    reason: str | None
    last_error: str | None
    message_id: str
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    attempt_count: int
    attention: str | None = None
    problem: str | None = None
    needs_force: bool = False
    attempts: list[AttemptView] = field(default_factory=list)
    deliveries: list[Recipient] = field(default_factory=list)
    stored_copy: bool = False
    bounces: list[BounceView] = field(default_factory=list)
    einvoice: EInvoice | None = None
    notices: list[str] = field(default_factory=list)  # worded, in the config's language


@dataclass(frozen=True)
class ListFilter:
    states: tuple[str, ...] = ()
    mandant: int | None = None
    since: datetime | None = None
    customer: str | None = None
    docno: str | None = None
    changed_since: datetime | None = None
    attention: bool = False  # only entries that need attention
    noticed: bool = False  # only entries with notices (sent anyway, but look at them)
    after_id: int | None = None  # only entries with a higher number
    oldest_first: bool = False  # the lowest numbers first (the limit keeps the oldest)
    limit: int = 50


@dataclass(frozen=True)
class StaleClaim:
    """An entry left in `sending`: its lease ran out, or its worker is gone."""

    entry_id: int
    worker: str
    lease_until: datetime | None


@dataclass(frozen=True)
class Unresolved:
    """A pending entry whose addresses were not looked up yet."""

    entry_id: int
    mandant: int
    fields: dict[str, str]
    buyer_email: str | None = None  # the e-invoice's BT-49 ([recipients] source)


@dataclass(frozen=True)
class Finish:
    """How a send attempt ends for an entry: what the server said, each
    recipient's new state, and what the office must do now."""

    server: str
    outcome: str
    code: int | None
    reply: str
    refused: dict[str, str] | None = None  # this attempt's refusals at RCPT
    next_attempt_at: datetime | None = None
    reason: str | None = None
    recipients: tuple[Recipient, ...] = ()
    attention: str | None = None
