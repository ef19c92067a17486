"""The Mailer on smtplib: TLS modes, authentication, connection reuse.

Every smtplib, ssl and socket error is turned into a :class:`Reply` here, at
the boundary; nothing above this module catches smtplib's exceptions.
A failure before any mail was handed over raises :class:`RunStopped`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import select
import smtplib
import socket
import ssl
import time
from collections.abc import Sequence

from tikos_outbox.core.bounces import xtext
from tikos_outbox.core.ports import TokenSource
from tikos_outbox.core.replies import (
    Reply,
    RunStopped,
    SendResult,
    Stage,
    Stop,
    closes_connection,
    stop_for,
)
from tikos_outbox.core.settings import Security, SmtpSettings
from tikos_outbox.smtp_login import login, lost_reply, reply_text
from tikos_outbox.smtp_pipeline import (
    data_refused,
    nobody_taken,
    offers_pipelining,
    pipelined,
    positive,
    rcpt_outcome,
    send_data,
)
from tikos_outbox.tls import tls_context as shared_tls_context

log = logging.getLogger("tikos_outbox.smtp")

#: An address whose local part is not ASCII, to a server without SMTPUTF8 (RFC 6531
#: §3.5: 553 5.6.7); said here, so that nothing non-ASCII goes on the wire.
NO_SMTPUTF8 = ("5.6.7 this server does not offer SMTPUTF8, which an address with"
               " non-ASCII characters before the @ needs (in the envelope or in To)")


#: a connection idle this long is asked (NOOP) whether it still lives before a mail
IDLE_CHECK_S = 20.0


@functools.cache
def default_helo_name() -> str | None:
    """This host's fully qualified name, as the resolver gives it; None if it has no
    domain, and smtplib then says its address literal, like [192.0.2.7] (RFC 5321
    §4.1.4), which every server takes as a name."""
    name = socket.getfqdn()
    return name if "." in name and name != "localhost" else None


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """The system's trusted CAs plus `ca_file`; no checks only if verify_tls = false."""
    return shared_tls_context(settings.ca_file, settings.verify_tls, settings.server)


class Mailer:
    """One SMTP server, one reused connection, reopened after `max_per_connection`."""

    def __init__(
        self,
        settings: SmtpSettings,
        password: str | None = None,
        token_source: TokenSource | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.settings = settings
        self._password = password
        self._token_source = token_source
        self._local_hostname = local_hostname or settings.helo_name or default_helo_name()
        self._conn: smtplib.SMTP | None = None
        self._sent_on_conn = 0
        self._idle_since = 0.0
        self.connections_opened = 0
        self.reconnects = 0  # connections found dead before a mail and opened anew
        self.pipelined = 0  # transactions sent with PIPELINING
        self.last_greeting: str = ""

    def __enter__(self) -> Mailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def server(self) -> str:
        return self.settings.server

    # -- connection ---------------------------------------------------------------------------

    def open(self) -> str:
        """Connect, secure and log in; returns what the server said. Raises RunStopped."""
        self.close()
        s = self.settings
        ctx = tls_context(s) if s.security in (Security.SSL, Security.STARTTLS) else None
        try:
            conn: smtplib.SMTP
            if s.security is Security.SSL:
                conn = smtplib.SMTP_SSL(s.host, s.port, local_hostname=self._local_hostname,
                                        timeout=s.timeout_s, context=ctx)
            else:
                conn = smtplib.SMTP(s.host, s.port, local_hostname=self._local_hostname,
                                    timeout=s.timeout_s)
        except smtplib.SMTPConnectError as exc:
            raise RunStopped(Reply(Stage.CONNECT, exc.smtp_code, reply_text(exc.smtp_error))
                             ) from None
        except ssl.SSLError as exc:
            raise RunStopped(Reply(Stage.TLS, None, _tls_text(exc))) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise RunStopped(_connect_failure(exc, s.host, s.port)) from None
        try:
            self._handshake(conn, ctx)
            login(conn, self.settings, self._password, self._token_source)
        except RunStopped:
            _quietly_close(conn)
            raise
        self._conn = conn
        self._sent_on_conn = 0
        self._idle_since = time.monotonic()
        self.connections_opened += 1
        return self.last_greeting

    def _handshake(self, conn: smtplib.SMTP, ctx: ssl.SSLContext | None) -> None:
        try:
            code, resp = conn.ehlo()
            if code != 250:
                ehlo_code, ehlo_resp = code, resp
                code, resp = conn.helo()
                if code != 250:  # the EHLO answer says why; HELO's is often just 502
                    said = ehlo_code if ehlo_code >= 400 else code
                    text = reply_text(ehlo_resp if ehlo_code >= 400 else resp)
                    raise RunStopped(Reply(Stage.EHLO, said,
                                           f"{text} (the name given: {conn.local_hostname})"))
            self.last_greeting = reply_text(resp).split(" ")[0] if resp else ""
            if self.settings.security is Security.STARTTLS:
                if not conn.has_extn("starttls"):
                    raise RunStopped(Reply(
                        Stage.TLS, None,
                        "the server does not offer STARTTLS; not sending in plain text"
                        " (set security = \"ssl\" for port 465, or ask the provider)"))
                try:
                    code, resp = conn.starttls(context=ctx)
                except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                    raise RunStopped(Reply(Stage.TLS, None, "the server closed the connection"
                                           f" during the TLS handshake ({exc})", lost=True)
                                     ) from None
                if code != 220:
                    raise RunStopped(Reply(Stage.TLS, code, reply_text(resp)))
                conn.ehlo()
        except ssl.SSLError as exc:
            raise RunStopped(Reply(Stage.TLS, None, _tls_text(exc))) from None
        except smtplib.SMTPResponseException as exc:
            raise RunStopped(Reply(Stage.TLS, exc.smtp_code, reply_text(exc.smtp_error))) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise RunStopped(lost_reply(Stage.CONNECT, exc)) from None

    def close(self) -> None:
        if self._conn is not None:
            _quietly_close(self._conn)
            self._conn = None

    # -- sending ------------------------------------------------------------------------------

    def accepts_8bit(self) -> bool:
        """Whether the server takes 8-bit bodies (8BITMIME, RFC 6152); connects first
        if needed (raises RunStopped)."""
        return self._connection().has_extn("8bitmime")

    def probe_sender(self, sender: str) -> Reply:
        """MAIL FROM `sender`, RCPT TO the sender itself, RSET: nothing is sent, but
        the server says whether this login may send as it (`check --smtp`; Postfix
        answers its sender restrictions at RCPT). Connects first (raises RunStopped)."""
        conn = self._connection()
        try:
            code, resp = conn.mail(sender)
            reply = Reply(Stage.MAIL, code, reply_text(resp))
            if code == 250:
                code, resp = conn.rcpt(sender)
                rcpt = Reply(Stage.RCPT, code, reply_text(resp))
                if code == 421 or stop_for(rcpt) is not None:
                    reply = rcpt  # about the sender or the session, not the address
            if code != 421:
                conn.rset()
        except (OSError, smtplib.SMTPException) as exc:
            reply = lost_reply(Stage.MAIL, exc)
        if closes_connection(reply):
            self.close()
        return reply

    def _connection(self) -> smtplib.SMTP:
        """The open connection, checked; reopened when used up, closed by the server
        while we waited, or not answering a NOOP after a long idle."""
        if (self._conn is not None and self._sent_on_conn < self.settings.max_per_connection
                and not self._alive(self._conn)):
            log.info("the connection to %s was closed by the server while idle; opening a"
                     " new one", self.server)
            self.reconnects += 1
            self.close()
        if self._conn is None or self._sent_on_conn >= self.settings.max_per_connection:
            self.open()
        assert self._conn is not None
        return self._conn

    def _alive(self, conn: smtplib.SMTP) -> bool:
        sock = conn.sock
        if sock is None:
            return False
        try:
            # anything to read now is unasked for: a 421 "timeout" before the close, or EOF
            if (isinstance(sock, ssl.SSLSocket) and sock.pending()) or select.select(
                    [sock], [], [], 0)[0]:
                return False
            if time.monotonic() - self._idle_since >= IDLE_CHECK_S:
                return conn.noop()[0] == 250
        except (OSError, ValueError, smtplib.SMTPException):
            return False
        return True

    def send(self, sender: str, recipients: Sequence[str], message: bytes,
             smtputf8: bool = False, envid: str | None = None) -> SendResult:
        """Hand one message over (`smtputf8`: its headers are UTF-8, RFC 6532). Raises
        RunStopped only if (re)connecting fails.

        A connection that turns out dead at MAIL FROM, before anything was offered,
        is opened anew and the mail goes again on it, once."""
        conn = self._connection()
        reused = self._sent_on_conn > 0
        result = self._transaction(conn, sender, recipients, message, smtputf8, envid)
        if reused and result.reply.stage is Stage.MAIL and closes_connection(result.reply) \
                and stop_for(result.reply) is not Stop.THROTTLE:
            log.info("the connection to %s was lost before MAIL FROM (%s); sending again on"
                     " a new one", self.server, result.reply)
            self.reconnects += 1
            self.close()
            conn = self._connection()
            result = self._transaction(conn, sender, recipients, message, smtputf8, envid)
        self._sent_on_conn += 1
        if closes_connection(result.reply) or conn.sock is None:  # None: closed in DATA
            self.close()
        elif result.reply.code is None or not 200 <= result.reply.code < 300:
            try:
                if conn.rset()[0] != 250:  # a 421 here ends the session, too
                    self.close()
            except (OSError, smtplib.SMTPException):
                self.close()
        self._idle_since = time.monotonic()
        return result

    def _transaction(
        self, conn: smtplib.SMTP, sender: str, recipients: Sequence[str], message: bytes,
        smtputf8: bool, envid: str | None = None,
    ) -> SendResult:
        stage = Stage.MAIL
        utf8 = conn.has_extn("smtputf8")
        if not sender.isascii() and not utf8:  # not a byte of it on the wire
            return SendResult(Reply(Stage.MAIL, 553, NO_SMTPUTF8))
        if smtputf8 and not utf8:
            return SendResult(Reply(Stage.DATA, 553, NO_SMTPUTF8))
        too_big = _over_size(conn, len(message))
        if too_big is not None:
            return SendResult(too_big)
        refused: dict[str, Reply] = {r: Reply(Stage.RCPT, 553, NO_SMTPUTF8)
                                     for r in recipients if not r.isascii() and not utf8}
        try:
            options = ["SMTPUTF8"] if utf8 and (smtputf8 or not all(
                a.isascii() for a in (sender, *recipients))) else []
            if conn.has_extn("size"):
                options.append(f"SIZE={len(message)}")  # RFC 1870: refused before upload
            if not message.isascii():
                if not conn.has_extn("8bitmime"):  # the caller builds 7-bit ones for these
                    return SendResult(Reply(Stage.DATA, 554, NO_8BITMIME))
                options.append("BODY=8BITMIME")  # RFC 6152
            dsn = envid is not None and conn.has_extn("dsn")
            if dsn:  # RFC 3461: bounces name the mail (ENVID) and return headers only
                options += ["RET=HDRS", f"ENVID={xtext(envid or '')}"]
            rcpts = [(r, _notify(r) if dsn else []) for r in recipients if r not in refused]
            if self.settings.pipelining and offers_pipelining(conn):
                self.pipelined += 1
                return pipelined(conn, self.server, sender, options, rcpts, message, refused)
            code, resp = conn.mail(sender, options)
            if not positive(code):
                return SendResult(Reply(Stage.MAIL, code, reply_text(resp)))
            stage = Stage.RCPT
            accepted: list[str] = []
            for rcpt, rcpt_options in rcpts:
                code, resp = conn.rcpt(rcpt, rcpt_options)
                session = rcpt_outcome(rcpt, code, resp, accepted, refused)
                if session is not None:
                    return SendResult(session)  # about the session: no recipient's fate
            if not accepted:
                return SendResult(nobody_taken(refused), refused)
            stage = Stage.DATA
            code, resp = conn.docmd("DATA")
            if code != 354:
                return SendResult(data_refused(code, resp), refused, accepted)
            return SendResult(send_data(conn, message), refused, accepted)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:  # smtplib's errors are
            return SendResult(lost_reply(stage, exc))  # OSErrors: a line too long, too


def _notify(rcpt: str) -> list[str]:
    """A failure or a delay is reported back (never a success: RFC 3461 NOTIFY), with
    the address as we gave it (ORCPT; an address in UTF-8 goes without, RFC 6533)."""
    return ["NOTIFY=FAILURE,DELAY"] + ([f"ORCPT=rfc822;{xtext(rcpt)}"] if rcpt.isascii() else [])


NO_8BITMIME = ("5.6.3 this server does not take 8-bit messages (no 8BITMIME); the message"
               " must be sent 7-bit")


def _over_size(conn: smtplib.SMTP, size: int) -> Reply | None:
    """A message larger than the server's advertised SIZE (RFC 1870) fails here,
    before a byte of it is uploaded."""
    try:
        limit = int(conn.esmtp_features.get("size", "0").split()[0] or 0)
    except (ValueError, IndexError):
        return None
    if limit <= 0 or size <= limit:
        return None
    return Reply(Stage.DATA, 552, f"5.3.4 the message is {size / 1048576:.1f} MB, more than"
                                  f" the {limit / 1048576:.1f} MB this server takes (its"
                                  " SIZE limit); nothing was uploaded")


def _quietly_close(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError, smtplib.SMTPException):
        conn.quit()
    with contextlib.suppress(OSError):
        conn.close()


def _tls_text(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the server's certificate is not trusted: {exc.verify_message or exc.reason}"
    return f"TLS handshake failed: {exc.reason or exc}"


def _connect_failure(exc: BaseException, host: str, port: int) -> Reply:
    if isinstance(exc, socket.gaierror):
        return Reply(Stage.CONNECT, None, f"host name {host} not found ({exc})", lost=True)
    if isinstance(exc, ConnectionRefusedError):
        return Reply(Stage.CONNECT, None, f"{host}:{port} refused the connection", lost=True)
    if isinstance(exc, TimeoutError | socket.timeout):
        return Reply(Stage.CONNECT, None, f"{host}:{port} did not answer in time", lost=True)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return Reply(Stage.CONNECT, None, f"{host}:{port} closed the connection at once",
                     lost=True)
    return Reply(Stage.CONNECT, None, f"cannot connect to {host}:{port}: {exc}", lost=True)
