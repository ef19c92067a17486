"""The outbox tables, declared once. Alembic's migrations in `migrations/` create exactly
these; the store reads them back from the database (`store/tables.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from tikos_outbox.store.types import UTCDateTime

metadata = SQLModel.metadata


def _when(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime, nullable=nullable, index=index))


class Entry(SQLModel, table=True):
    """One document: mailed once, to all its recipients."""

    __tablename__ = "entry"
    __table_args__ = (UniqueConstraint("mandant", "path", "sha256", name="uq_entry_document"),)

    id: int | None = Field(default=None, primary_key=True)
    mandant: int  # few values: no index of its own (see migration 0002)
    path: str = Field(index=True)  # relative to the mandant folder, '/'-separated
    file_name: str
    sha256: str = Field(index=True, max_length=64)
    size: int = Field(index=True)  # history files of a new one's size are read (History)
    mtime_ns: int = Field(sa_column=Column(BigInteger, nullable=False))
    doctype: str = Field(default="")
    docno: str = Field(default="", index=True)
    customer: str = Field(default="", index=True)
    fields_json: str = Field(default="{}")  # all named groups of the pattern
    state: str = Field(index=True)
    reason: str | None = None  # why skipped/held/failed, in words
    recipients_json: str | None = None  # None: not looked up yet
    refused_json: str | None = None  # recipients the server refused, with its reply
    message_id: str
    created_at: datetime = _when(nullable=False, index=True)
    updated_at: datetime = _when(nullable=False)
    sent_at: datetime | None = _when(index=True)
    first_attempt_at: datetime | None = _when()
    next_attempt_at: datetime | None = _when(index=True)
    transient_failures: int = 0
    # runs this entry's mail stopped for its account ("slow down", "spam"): a second
    # time, an ambiguous reply is taken as this mail's own fate
    account_stops: int = 0
    last_error: str | None = None
    claimed_by: str | None = None
    lease_until: datetime | None = _when()
    # what the office must do, in one line ({id} stands for the entry's number);
    # None when nothing: `list --attention` and the daily report read it
    attention: str | None = Field(default=None, index=True)
    # why the file itself cannot be mailed as it is (truncated, not a PDF, too large,
    # empty, a link out of the folder, encrypted); kept when an admin holds/releases
    problem: str | None = None
    needs_force: bool = False  # `release` needs --force: the file is not a mailable PDF
    # the document's e-invoice data as JSON (core.einvoice.EInvoice); None: a plain PDF
    einvoice: str | None = None
    einvoice_valid: bool | None = None  # its verdict alone, for the counts in `status`
    # what the office should know about an entry that goes out anyway (JSON list of
    # facts, worded when read): not a valid e-invoice, another buyer address in it
    notices: str | None = None


class Attempt(SQLModel, table=True):
    """One SMTP attempt for an entry, kept for good."""

    __tablename__ = "attempt"

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="entry.id", index=True)
    at: datetime = _when(nullable=False, index=True)
    server: str
    outcome: str  # delivered | transient | permanent | interrupted
    code: int | None = None
    reply: str = ""
    refused_json: str | None = None
    # what this attempt settled for each recipient: JSON [[address, role, state, reply]]
    # (the send log: a later requeue resets the deliveries, this stays)
    recipients_json: str | None = None
    message_id: str | None = None  # the mail's Message-ID then (a resend gets a new one)


class Delivery(SQLModel, table=True):
    """One recipient of an entry: its role, its own state and the server's last reply."""

    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("entry_id", "role", "address", name="uq_delivery"),)

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="entry.id", index=True)
    role: str  # to (the customer's address) | bcc (the laundry's copy)
    address: str  # the envelope address
    name: str = ""  # the display name in To
    state: str  # pending | deferred | delivered | refused | bounced
    reply: str | None = None
    at: datetime | None = _when(index=True)


class Bounce(SQLModel, table=True):
    """One recipient in one report from the bounce mailbox (read once: unique by the
    report's Message-ID and the address)."""

    __tablename__ = "bounce"
    __table_args__ = (UniqueConstraint("source", "address", name="uq_bounce_report"),)

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="entry.id", index=True)
    address: str
    kind: str  # failed | delayed
    status: str  # RFC 3463, e.g. 5.1.1; "" when the report gives none
    diagnostic: str  # the remote server's words
    source: str = Field(max_length=400)  # the report's Message-ID
    at: datetime = _when(nullable=False)  # when it was read


class Blob(SQLModel, table=True):
    """The outbox's own copy of a document's bytes, by content."""

    __tablename__ = "blob"

    sha256: str = Field(primary_key=True, max_length=64)
    size: int
    data: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    purged_at: datetime | None = _when()


class Meta(SQLModel, table=True):
    """Small facts the service keeps: baseline done, last run, heartbeat, last error."""

    __tablename__ = "meta"

    key: str = Field(primary_key=True, max_length=200)
    value: str
    updated_at: datetime = _when(nullable=False)


class Account(SQLModel, table=True):
    """A sending account (server and login): its pacing slot and its cool-down,
    shared by every process that sends with it."""

    __tablename__ = "account"

    name: str = Field(primary_key=True, max_length=400)
    next_slot_at: datetime | None = _when()  # the earliest moment the next mail may go
    cool_until: datetime | None = _when()  # the provider said slow down (or blocked)
    cool_level: int = 0  # slow-downs in a row: each doubles the cool-down
    cool_kind: str | None = None  # a core.replies.Stop value
    cool_reason: str | None = None
    quota_until: datetime | None = _when()  # a configured quota is used up until then
    quota_reason: str | None = None
    updated_at: datetime = _when(nullable=False)


class AccountSend(SQLModel, table=True):
    """One mail counted against an account's quotas (kept for a day and an hour)."""

    __tablename__ = "account_send"
    __table_args__ = (Index("ix_account_send_account_at", "account", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(max_length=400)
    at: datetime = _when(nullable=False)
    recipients: int


class WebUser(SQLModel, table=True):
    """A person who may log in to the web console: a role, and a memory-hard hash of
    the password (scrypt), never the password."""

    __tablename__ = "web_user"

    name: str = Field(primary_key=True, max_length=200)
    role: str  # admin | viewer
    password_hash: str = Field(max_length=400)
    created_at: datetime = _when(nullable=False)
    # sessions begun before this moment are no longer valid (new password, role change)
    valid_from: datetime = _when(nullable=False)


class Action(SQLModel, table=True):
    """One administrator's move, kept for good: who, when, what, on which entry."""

    __tablename__ = "action"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _when(nullable=False, index=True)
    actor: str = Field(max_length=200)  # web:anna, cli:root
    action: str = Field(max_length=40)  # requeue | hold | release | user_add | …
    entry_id: int | None = Field(default=None, index=True)
    detail: str = ""
