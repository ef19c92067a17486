"""What the web console reads and writes, as values: its users and their roles,
the administrators' moves, a search, a day's mails, a line of the send log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from tikos_outbox.core.views import EntryView


class WebRole(StrEnum):
    ADMIN = "admin"  # searches and reads, requeues, holds, releases, sees the audit log
    VIEWER = "viewer"  # searches and reads

    @property
    def may_act(self) -> bool:
        return self is WebRole.ADMIN


@dataclass(frozen=True)
class WebUser:
    name: str
    role: WebRole
    password_hash: str
    created_at: datetime
    valid_from: datetime  # sessions begun before this are void


class Move(StrEnum):
    """What an administrator did (the audit log's `action`)."""

    REQUEUE = "requeue"
    HOLD = "hold"
    RELEASE = "release"
    RELEASE_FORCED = "release_forced"
    USER_ADD = "user_add"
    USER_REMOVE = "user_remove"
    USER_PASSWORD = "user_password"


@dataclass(frozen=True)
class ActionView:
    at: datetime
    actor: str  # web:anna, cli:root
    action: Move
    entry_id: int | None
    detail: str = ""


@dataclass(frozen=True)
class Search:
    """The console's search: one text (a document number, a customer number, part of
    an address or a file name), the state, the mandant, a range of recording days
    (instants: the laundry's midnights, resolved by the caller) and the page."""

    text: str = ""
    state: str | None = None
    mandant: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    page: int = 1
    per_page: int = 50

    @property
    def offset(self) -> int:
        return (max(self.page, 1) - 1) * self.per_page


@dataclass(frozen=True)
class Found:
    entries: list[EntryView]
    more: bool  # a next page exists


@dataclass(frozen=True)
class SendLogLine:
    """One recipient of one document as the send log ("Versandnachweis") states it."""

    at: datetime
    entry_id: int
    mandant: int
    doctype: str
    docno: str
    customer: str
    file_name: str
    sha256: str
    message_id: str
    address: str
    role: str
    state: str
    reply: str


@dataclass(frozen=True)
class DayCount:
    day: date
    sent: int
