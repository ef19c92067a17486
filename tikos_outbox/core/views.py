"""The typed values that cross the outbox's boundary: what is recorded, what a
send run claims, and what the administrator sees. No I/O here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from tikos_outbox.core.intake import Decision, Prior
from tikos_outbox.core.states import State


@dataclass(frozen=True)
class FileSeen:
    """A candidate file as a listing saw it: nothing read yet."""

    abs_path: str
    rel_path: str  # '/'-separated, relative to the mandant folder
    name: str
    size: int
    mtime_ns: int


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
    data: bytes


#: decide(same_path, same_content) -> Decision | None: the identity rules, bound to one file
Decide = Callable[[list[Prior], Prior | None], Decision | None]


@dataclass(frozen=True)
class Recording:
    """A settled file to record, with its addresses when they were looked up."""

    doc: NewDocument
    decide: Decide
    message_id: str
    recipients: list[str] | None = None


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
    recipients: list[str]
    message_id: str
    first_attempt_at: datetime | None
    transient_failures: int
    previous_state: State


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
    attempts: list[AttemptView] = field(default_factory=list)
    stored_copy: bool = False


@dataclass(frozen=True)
class ListFilter:
    states: tuple[str, ...] = ()
    mandant: int | None = None
    since: datetime | None = None
    customer: str | None = None
    docno: str | None = None
    changed_since: datetime | None = None
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


@dataclass(frozen=True)
class Finish:
    """How a send attempt ends for an entry: the event, and what the server said."""

    server: str
    outcome: str
    code: int | None
    reply: str
    refused: dict[str, str] | None = None
    next_attempt_at: datetime | None = None
    reason: str | None = None
