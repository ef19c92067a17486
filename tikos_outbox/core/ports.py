"""The boundaries the use cases talk to, as Protocols. Adapters implement them
(`store`, `smtp`, `lookup`, `files`); the composition root (`wiring`) plugs them
together. Tests use the real adapters against real servers and a fake clock only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from tikos_outbox.core.bounces import Notice, Report
from tikos_outbox.core.console import ActionView, Found, Move, Search, SendLogLine, WebUser
from tikos_outbox.core.einvoice import EInvoice
from tikos_outbox.core.pacing import AccountState, Limits, Pause, Reserved
from tikos_outbox.core.replies import Reply, SendResult, Stop
from tikos_outbox.core.settings import BounceSettings, SmtpSettings
from tikos_outbox.core.states import Event, MoveResult, State
from tikos_outbox.core.views import (
    BouncedEntry,
    Claimed,
    EntryView,
    FileSeen,
    Finish,
    ListFilter,
    Recorded,
    Recording,
    StaleClaim,
    Unresolved,
)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait; a fake clock just advances."""
        ...


class RecipientLookup(Protocol):
    def lookup(self, mandant: int, fields: dict[str, str]) -> list[str]:
        """The raw address values for a document (may hold several separated by ';' or ',').

        Raises LookupUnavailable when the source cannot be asked right now.
        """
        ...


class LookupUnavailable(Exception):
    """The address source (SQL Server, CSV file) cannot be read right now."""


class StoreError(Exception):
    """The outbox database failed (locked, read-only, full, unreachable)."""


class StoreUnavailable(StoreError):
    """The outbox database cannot be opened or brought up to date at all."""


class MailboxUnavailable(Exception):
    """The bounce mailbox cannot be reached, logged in to or read right now."""


class SecretUnavailable(Exception):
    """A stored secret cannot be decrypted: the key file is missing or does not fit."""


class Mailer(Protocol):
    """One SMTP server, one reused connection."""

    @property
    def server(self) -> str: ...

    @property
    def last_greeting(self) -> str: ...

    def open(self) -> str:
        """Connect, secure and log in; raises RunStopped."""
        ...

    def accepts_8bit(self) -> bool:
        """Whether the server takes 8-bit bodies (8BITMIME); connects if needed."""
        ...

    def probe_sender(self, sender: str) -> Reply:
        """MAIL FROM and RSET, nothing sent: the server's answer to the sender."""
        ...

    def send(self, sender: str, recipients: Sequence[str], message: bytes,
             smtputf8: bool = False, envid: str | None = None) -> SendResult:
        """Hand one message over (`smtputf8`: it has UTF-8 headers; `envid`: ask for
        delivery status notifications naming the mail, where the server offers DSN);
        raises RunStopped only if (re)connecting fails."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Mailer: ...

    def __exit__(self, *exc: object) -> None: ...


#: Gives a fresh OAuth2 access token; `force` asks for a new one even if cached.
TokenSource = Callable[[bool], str]

#: A Mailer for these settings, its secrets decrypted only now (raises SecretUnavailable).
MailerFactory = Callable[[SmtpSettings], Mailer]


class SendingAccounts(Protocol):
    """Every sending account's pacing slot, quota log and cool-down, in the outbox
    database: one budget for every process and worker that sends with the account."""

    def pause(self, account: str, limits: Limits, now: datetime,
              force: bool = False) -> Pause | None:
        """Why the account may not send now, if so (nothing counted or changed)."""
        ...

    def reserve(self, account: str, limits: Limits, recipients: int, now: datetime,
                force: bool = False) -> Reserved | Pause:
        """A slot for one mail to `recipients` addresses, counted at once; or why the
        account may not send (a quota, or a cool-down unless `force`)."""
        ...

    def release(self, slot: Reserved) -> None:
        """The mail of this slot was not offered after all: it does not count."""
        ...

    def cool(self, account: str, stop: Stop, reason: str, now: datetime,
             after_s: float | None = None) -> Pause:
        """The provider said slow down (or blocked the account): rest, doubling on
        repeats; a session problem is noted (status, report) until a mail goes through."""
        ...

    def cleared(self, account: str, now: datetime) -> None:
        """A mail went through after a cool-down: the next slow-down starts afresh."""
        ...

    def states(self, now: datetime) -> list[AccountState]: ...


class DocumentFiles(Protocol):
    """Reading documents from the archive."""

    def read(self, seen: FileSeen, limit: int, within: Path) -> bytes:
        """The whole file as it was listed; OSError if it cannot be read completely now
        (locked, changed since it was listed, or a link out of `within`)."""
        ...

    def sha256(self, path: str) -> str:
        """The content hash of a file too large to keep in memory."""
        ...

    def archive_copy(self, path: str, sha256: str, within: Path) -> bytes | None:
        """The file's bytes if it still has exactly this content (and is not a link
        out of `within`), else None."""
        ...

    def sha256_if_unchanged(self, path: str, size: int, mtime_ns: int, within: Path
                            ) -> str | None:
        """The content hash of a file that still has this size and modification
        time; None when it has another now; OSError when it cannot be read."""
        ...


class EInvoices(Protocol):
    """Reading a document's e-invoice data (ZUGFeRD, Factur-X, XRechnung)."""

    def in_pdf(self, data: bytes, name: str = "") -> EInvoice | None:
        """The e-invoice embedded in a complete PDF, or None for a plain PDF."""
        ...

    def in_xml(self, data: bytes) -> tuple[EInvoice | None, str | None]:
        """An e-invoice XML file's data, or why the file is not one."""
        ...


class FolderUnavailable(OSError):
    """The mandant folder itself cannot be read (gone, no permission, network down)."""


class FolderLister(Protocol):
    """Lists a mandant folder: every candidate file with its stat, nothing read."""

    def scan(self, wall_ns: int, full: bool = False,
             errors: list[str] | None = None) -> Iterator[FileSeen]:
        """The files of the folders that changed (of all when `full`); problems with
        single entries go to `errors`. Raises FolderUnavailable."""
        ...


class Notes(Protocol):
    """Where the use cases leave what the administrator should see in `status`."""

    def note_error(self, text: str) -> None: ...

    def resolved(self, prefix: str) -> None:
        """The last error, if it begins with `prefix`, is over: status stops showing it."""
        ...


class OutboxQueries(Protocol):
    """Reads: typed views, no change."""

    def get_meta(self, key: str) -> str | None: ...

    def known_among(self, mandant: int, paths: Sequence[str]
                    ) -> dict[str, tuple[int, int]]: ...

    def unresolved(self, limit: int = 500) -> list[Unresolved]: ...

    def ids_in_state(self, state: State, since: datetime | None = None) -> list[int]: ...

    def due_outside(self, mandants: set[int]) -> list[tuple[int, int]]: ...

    def stale_claims(self, now: datetime, dead_worker: Callable[[str], bool]
                     ) -> list[StaleClaim]: ...

    def load_copy(self, sha256: str) -> bytes | None: ...

    def counts(self) -> dict[str, int]: ...

    def attention_count(self) -> int: ...

    def einvoice_counts(self, since: datetime, doctypes: Sequence[str]) -> dict[str, int]: ...

    def list_entries(self, flt: ListFilter) -> list[EntryView]: ...

    def get_entry(self, entry_id: int) -> EntryView | None: ...

    def unread_history(self, mandant: int, sizes: Collection[int] | None = None,
                       ids: Sequence[int] | None = None, limit: int | None = None,
                       after_id: int = 0) -> list[tuple[int, str, int, int]]: ...

    def unread_count(self) -> int: ...


class OutboxCommands(Protocol):
    """Writes: every change of an entry's state is one guarded UPDATE derived
    from the transition table."""

    def set_meta(self, key: str, value: str, now: datetime) -> None: ...

    def record_many(self, items: Sequence[Recording], now: datetime
                    ) -> list[Recorded | None]: ...

    def record_history(self, items: Sequence[Recording], now: datetime) -> set[str]: ...

    def set_recipients(self, entry_id: int, recipients: list[str], now: datetime,
                       notices: Sequence[str] = ()) -> bool: ...

    def move(self, ids: Sequence[int], event: Event, now: datetime, reason: str | None = None,
             attention: str | None = None, force: bool = False) -> dict[int, MoveResult]: ...

    def requeue(self, new_message_ids: Mapping[int, str], now: datetime,
                resend: bool = True) -> dict[int, MoveResult]: ...

    def claim_due(self, now: datetime, worker: str, lease_until: datetime, limit: int,
                  mandant: int | None = None, force_before: datetime | None = None,
                  bcc: Sequence[str] = ()) -> list[Claimed]: ...

    def finish(self, claimed: Claimed, worker: str, event: Event, now: datetime,
               result: Finish) -> bool: ...

    def renew(self, claimed: Claimed, worker: str, lease_until: datetime) -> bool: ...

    def unclaim(self, claims: Sequence[Claimed], worker: str, now: datetime,
                stopped_by: int | None = None) -> None: ...

    def recover(self, stale: StaleClaim, now: datetime, reason: str) -> bool: ...

    def purge(self, sent_before: datetime, now: datetime) -> int: ...

    def compact(self) -> None: ...

    def reveal(self, entry_id: int, unread: str, sha256: str) -> bool: ...


class Mailbox(Protocol):
    """One session with the bounce mailbox's folder (imap.ImapMailbox)."""

    uidvalidity: int

    def __enter__(self) -> Mailbox: ...

    def __exit__(self, *exc: object) -> None: ...

    def uids_after(self, last: int) -> list[int]: ...

    def headers(self, uids: Sequence[int]) -> Iterator[tuple[int, bytes]]: ...

    def message(self, uid: int) -> bytes | None: ...

    def move(self, uid: int, folder: str) -> None: ...


#: a Mailbox for the [bounces] settings; raises MailboxUnavailable, SecretUnavailable
MailboxFactory = Callable[[BounceSettings], Mailbox]


class BounceParser(Protocol):
    """Reads messages from the bounce mailbox (tikos_outbox.dsn)."""

    def read_report(self, raw: bytes) -> Report | None:
        """The bounce in a message, or None when it is none."""
        ...

    def looks_like_bounce(self, raw: bytes) -> bool:
        """From a mail system or a delivery-status report (headers suffice)."""
        ...


class BounceRecords(Protocol):
    """Bounces in the outbox (store.bounces)."""

    def entry_for(self, envid: str | None, message_ids: Sequence[str]
                  ) -> BouncedEntry | None: ...

    def record(self, entry: BouncedEntry, source: str, notices: Sequence[Notice],
               now: datetime) -> bool: ...


class ConsoleRecords(Protocol):
    """The web console's users, the audit log and its reads (store.console)."""

    def user(self, name: str) -> WebUser | None: ...

    def users(self) -> list[WebUser]: ...

    def add_user(self, user: WebUser, actor: str) -> bool: ...

    def set_password(self, name: str, password_hash: str, now: datetime,
                     actor: str) -> bool: ...

    def remove_user(self, name: str, now: datetime, actor: str) -> bool: ...

    def record(self, actor: str, move: Move, entry_ids: Sequence[int | None], detail: str,
               now: datetime) -> None: ...

    def actions(self, entry_id: int | None = None, limit: int = 200) -> list[ActionView]: ...

    def search(self, s: Search) -> Found: ...

    def delivered_times(self, since: datetime) -> list[datetime]: ...

    def send_log(self, since: datetime, until: datetime) -> Iterator[SendLogLine]: ...
