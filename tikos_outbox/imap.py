"""The bounce mailbox over IMAP (imaplib, RFC 3501): TLS (implicit or STARTTLS),
a password (SASL PLAIN, UTF-8) or XOAUTH2, messages read without marking them
read (BODY.PEEK), and a processed bounce moved (RFC 6851 MOVE; else COPY, then
flagged deleted and expunged by UID only, RFC 4315) — never deleted outright."""

from __future__ import annotations

import base64
import imaplib
import logging
import re
import socket
import ssl
from collections.abc import Iterator, Sequence

from tikos_outbox.core.ports import MailboxUnavailable, TokenSource
from tikos_outbox.core.settings import Auth, BounceSettings, ImapSecurity
from tikos_outbox.credentials import SecretText
from tikos_outbox.tls import tls_context

log = logging.getLogger("tikos_outbox")

BATCH = 200  # UIDs per FETCH
_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<delim>"[^"]*"|NIL) ')
_FETCHED_UID = re.compile(rb"UID (\d+)")


def mutf7(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501 §5.1.3): `Rückläufer` ->
    `R&APw-ckl&AOQ-ufer`."""
    out, run = [], ""

    def flush() -> None:
        nonlocal run
        if run:
            b64 = base64.b64encode(run.encode("utf-16-be")).decode("ascii").rstrip("=")
            out.append("&" + b64.replace("/", ",") + "-")
            run = ""

    for c in name:
        if " " <= c <= "~":
            flush()
            out.append("&-" if c == "&" else c)
        else:
            run += c
    flush()
    return "".join(out)


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapMailbox:
    """One session with the bounce mailbox: `with ImapMailbox(...) as box:`."""

    def __init__(self, settings: BounceSettings, password: SecretText | None = None,
                 tokens: TokenSource | None = None) -> None:
        self.s = settings
        self._password = password
        self._tokens = tokens
        self._conn: imaplib.IMAP4 | None = None
        self.uidvalidity = 0
        self._caps: set[str] = set()
        self._delimiter = "/"

    # -- session ---------------------------------------------------------------------------

    def __enter__(self) -> ImapMailbox:
        s = self.s
        where = f"the bounce mailbox {s.server}"
        try:
            ctx = tls_context(s.ca_file, s.verify_tls, s.server)
            host = s.imap_host or ""
            if s.imap_security is ImapSecurity.SSL:
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(host, s.imap_port, ssl_context=ctx,
                                                        timeout=s.timeout_s)
            else:
                conn = imaplib.IMAP4(host, s.imap_port, timeout=s.timeout_s)
                conn.starttls(ssl_context=ctx)
            self._conn = conn
            self._login(conn)
            self._caps = {c.upper() for c in self._capabilities(conn)}
            self._delimiter = self._find_delimiter(conn)
            typ, _ = conn.select(self._name(s.folder))
            if typ != "OK":
                raise MailboxUnavailable(f"{where}: there is no folder {s.folder!r}"
                                         " ([bounces] folder)")
            self.uidvalidity = self._uidvalidity(conn)
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise MailboxUnavailable(f"{where}: its TLS certificate is not trusted"
                                     f" ({exc.verify_message}); give its CA in [bounces]"
                                     " ca_file") from None
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
            self.close()
            raise MailboxUnavailable(f"{where} cannot be reached: {_words(exc)}") from None
        except MailboxUnavailable:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.state == "SELECTED":
                conn.close()
            conn.logout()
        except (OSError, imaplib.IMAP4.error, ssl.SSLError):
            pass

    def _login(self, conn: imaplib.IMAP4) -> None:
        s, user = self.s, self.s.username or ""
        try:
            if s.auth is Auth.OAUTH2:
                assert self._tokens is not None
                token = self._tokens(False)
                conn.authenticate("XOAUTH2",
                                  lambda _: f"user={user}\x01auth=Bearer {token}\x01\x01".encode())
                return
            password = self._password or ""
            if "AUTH=PLAIN" in {c.upper() for c in conn.capabilities}:  # UTF-8 (RFC 4616)
                conn.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())
            elif password.isascii() and user.isascii():
                conn.login(user, password)
            else:
                raise MailboxUnavailable(
                    f"the bounce mailbox {s.server} offers no AUTH=PLAIN, and LOGIN cannot"
                    " carry the umlauts in the user name or password")
        except imaplib.IMAP4.error as exc:
            raise MailboxUnavailable(
                f"the bounce mailbox {s.server} refused the login of {user}: {_words(exc)}"
                " (check [bounces] username and the password: `tikos-outbox secret set"
                " bounce-password`)") from None

    @staticmethod
    def _capabilities(conn: imaplib.IMAP4) -> Sequence[str]:
        typ, data = conn.capability()
        if typ == "OK" and data and isinstance(data[0], bytes):
            return data[0].decode("ascii", "replace").split()
        return list(conn.capabilities)

    @staticmethod
    def _find_delimiter(conn: imaplib.IMAP4) -> str:
        typ, data = conn.list('""', '""')
        if typ == "OK" and data and isinstance(data[0], bytes):
            m = _LIST.match(data[0])
            if m and m.group("delim") != b"NIL":
                return m.group("delim").strip(b'"').decode("ascii", "replace") or "/"
        return "/"

    @staticmethod
    def _uidvalidity(conn: imaplib.IMAP4) -> int:
        _, data = conn.response("UIDVALIDITY")
        for item in data or []:
            if isinstance(item, bytes) and item.isdigit():
                return int(item)
        return 0

    @property
    def conn(self) -> imaplib.IMAP4:
        if self._conn is None:
            raise MailboxUnavailable("the bounce mailbox session is closed")
        return self._conn

    # -- messages --------------------------------------------------------------------------

    def uids_after(self, last: int) -> list[int]:
        """The UIDs of the folder's messages newer than `last`, oldest first."""
        _, data = self._uid("SEARCH", f"UID {last + 1}:*")
        first = data[0] if data else b""
        found = [int(x) for x in first.split()] if isinstance(first, bytes) else []
        return sorted(u for u in found if u > last)  # n:* always returns the newest one

    def headers(self, uids: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        """Each message's header, without marking it read."""
        yield from self._fetch(uids, "BODY.PEEK[HEADER]")

    def message(self, uid: int) -> bytes | None:
        """A message's bytes, without marking it read (None: it is gone)."""
        return next((raw for _, raw in self._fetch([uid], "BODY.PEEK[]")), None)

    def _fetch(self, uids: Sequence[int], what: str) -> Iterator[tuple[int, bytes]]:
        for i in range(0, len(uids), BATCH):
            chunk = ",".join(str(u) for u in uids[i:i + BATCH])
            _, data = self._uid("FETCH", chunk, f"(UID {what})")
            items = list(data or [])
            for i, item in enumerate(items):
                if isinstance(item, tuple) and len(item) == 2:
                    # the UID before the literal, or after it (the order is the server's)
                    after = items[i + 1] if i + 1 < len(items) else b""
                    m = _FETCHED_UID.search(item[0]) or _FETCHED_UID.search(
                        after if isinstance(after, bytes) else b"")
                    if m:
                        yield int(m.group(1)), item[1]

    def _name(self, folder: str) -> str:
        """A configured folder name ("a/b") as this server writes it, quoted."""
        return _quote(mutf7(folder.replace("/", self._delimiter)))

    def move(self, uid: int, folder: str) -> None:
        """Into `folder` (created if missing); never deleted outright."""
        name = self._name(folder)
        try:
            typ, _ = self.conn.create(name)  # NO when it exists: fine
            if typ == "OK":
                self.conn.subscribe(name)
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
            raise MailboxUnavailable(f"the bounce mailbox {self.s.server} cannot create the"
                                     f" folder {folder!r}: {_words(exc)}") from None
        if "MOVE" in self._caps:
            self._uid("MOVE", str(uid), name)
            return
        self._uid("COPY", str(uid), name)
        self._uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
        if "UIDPLUS" in self._caps:  # expunge this one only, not others' deletions
            self._uid("EXPUNGE", str(uid))

    def _uid(self, command: str, *args: str) -> tuple[str, list[bytes | tuple[bytes, bytes]]]:
        try:
            typ, data = self.conn.uid(command, *args)
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
            raise MailboxUnavailable(f"the bounce mailbox {self.s.server} failed:"
                                     f" {_words(exc)}") from None
        if typ != "OK":
            raise MailboxUnavailable(f"the bounce mailbox {self.s.server} said no to"
                                     f" {command}: {_words(data)}")
        return typ, data


def _words(exc: object) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "no answer in time"
    if isinstance(exc, list):
        return " ".join(x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
                        for x in exc) or "no reason given"
    text = str(exc)
    if isinstance(exc, bytes):
        text = exc.decode("utf-8", "replace")
    return text.removeprefix("b'").removesuffix("'") or type(exc).__name__
