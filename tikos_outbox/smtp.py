"""The Mailer on smtplib: TLS modes, authentication, connection reuse.

Every smtplib, ssl and socket error is turned into a :class:`Reply` here, at
the boundary; nothing above this module catches smtplib's exceptions.
A failure before any mail was handed over raises :class:`RunStopped`.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import smtplib
import socket
import ssl
from collections.abc import Sequence

from tikos_outbox.core.ports import TokenSource
from tikos_outbox.core.replies import Reply, RunStopped, SendResult, Stage, closes_connection
from tikos_outbox.core.settings import Auth, Security, SmtpSettings

log = logging.getLogger("tikos_outbox.smtp")

#: An address whose local part is not ASCII, to a server without SMTPUTF8 (RFC 6531
#: §3.5: 553 5.6.7); said here, so that nothing non-ASCII goes on the wire.
NO_SMTPUTF8 = ("5.6.7 this server does not offer SMTPUTF8, which an address with"
               " non-ASCII characters before the @ needs (in the envelope or in To)")


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """The system's trusted CAs plus `ca_file`; no checks only if verify_tls = false."""
    ctx = ssl.create_default_context()
    if settings.ca_file is not None:
        ctx.load_verify_locations(cafile=str(settings.ca_file))
    if not settings.verify_tls:
        log.warning("TLS certificate checks are off for %s (verify_tls = false in the config)",
                    settings.server)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _text(resp: bytes | str) -> str:
    if isinstance(resp, bytes):
        resp = resp.decode("utf-8", "replace")
    return " ".join(resp.split())


def _b64(value: str | bytes) -> str:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return base64.b64encode(raw).decode("ascii")


def _lost(stage: Stage, exc: BaseException) -> Reply:
    # smtplib reports a read timeout as "Connection unexpectedly closed: timed out"
    if isinstance(exc, TimeoutError | socket.timeout) or "timed out" in str(exc):
        return Reply(stage, None, "timed out waiting for the server", lost=True)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return Reply(stage, None, "the server closed the connection", lost=True)
    return Reply(stage, None, f"connection lost: {exc}", lost=True)


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
        self._local_hostname = local_hostname or socket.gethostname() or "localhost"
        self._conn: smtplib.SMTP | None = None
        self._sent_on_conn = 0
        self.connections_opened = 0
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
            raise RunStopped(Reply(Stage.CONNECT, exc.smtp_code, _text(exc.smtp_error))) from None
        except ssl.SSLError as exc:
            raise RunStopped(Reply(Stage.TLS, None, _tls_text(exc))) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise RunStopped(_connect_failure(exc, s.host, s.port)) from None
        try:
            self._handshake(conn, ctx)
            self._login(conn)
        except RunStopped:
            _quietly_close(conn)
            raise
        self._conn = conn
        self._sent_on_conn = 0
        self.connections_opened += 1
        return self.last_greeting

    def _handshake(self, conn: smtplib.SMTP, ctx: ssl.SSLContext | None) -> None:
        try:
            code, resp = conn.ehlo()
            if code != 250:
                code, resp = conn.helo()
                if code != 250:
                    raise RunStopped(Reply(Stage.CONNECT, code, _text(resp)))
            self.last_greeting = _text(resp).split(" ")[0] if resp else ""
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
                    raise RunStopped(Reply(Stage.TLS, code, _text(resp)))
                conn.ehlo()
        except ssl.SSLError as exc:
            raise RunStopped(Reply(Stage.TLS, None, _tls_text(exc))) from None
        except smtplib.SMTPResponseException as exc:
            raise RunStopped(Reply(Stage.TLS, exc.smtp_code, _text(exc.smtp_error))) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise RunStopped(_lost(Stage.CONNECT, exc)) from None

    def _login(self, conn: smtplib.SMTP) -> None:
        s = self.settings
        if s.auth is Auth.ANONYMOUS:
            return
        user = s.username or ""
        if not conn.has_extn("auth"):
            raise RunStopped(Reply(
                Stage.AUTH, None,
                "the server offers no login (AUTH) on this connection"
                + ("; many servers offer it only after STARTTLS"
                   if s.security is Security.NONE else "")))
        mechanisms = conn.esmtp_features.get("auth", "").upper().split()
        try:
            if s.auth is Auth.OAUTH2:
                self._login_xoauth2(conn, user, mechanisms)
            elif "PLAIN" in mechanisms:
                # RFC 4616, UTF-8; smtplib.login would only take ASCII passwords
                code, resp = conn.docmd("AUTH", "PLAIN " + _b64(f"\0{user}\0{self._password}"))
                _expect(code, resp, 235)
            elif "LOGIN" in mechanisms:
                code, resp = conn.docmd("AUTH", "LOGIN")
                _expect(code, resp, 334)
                code, resp = conn.docmd(_b64(user))
                _expect(code, resp, 334)
                code, resp = conn.docmd(_b64(self._password or ""))
                _expect(code, resp, 235)
            else:
                raise RunStopped(Reply(
                    Stage.AUTH, None,
                    f"the server offers no login method this program supports"
                    f" (offered: {' '.join(mechanisms) or 'none'}; supported: PLAIN, LOGIN)"))
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            raise RunStopped(_lost(Stage.AUTH, exc)) from None

    def _login_xoauth2(self, conn: smtplib.SMTP, user: str, mechanisms: Sequence[str]) -> None:
        if "XOAUTH2" not in mechanisms:
            raise RunStopped(Reply(Stage.AUTH, None,
                                   "the server does not offer XOAUTH2 on this connection"))
        if self._token_source is None:
            raise RunStopped(Reply(Stage.AUTH, None, "no OAuth2 token source configured"))
        for attempt in range(2):
            token = self._token_source(attempt > 0)
            sasl = f"user={user}\x01auth=Bearer {token}\x01\x01"
            code, resp = conn.docmd("AUTH", "XOAUTH2 " + _b64(sasl))
            if code == 334:  # RFC 7628 error challenge: send an empty line, get the final reply
                code, resp = conn.docmd("")
            if code == 235:
                return
            if attempt == 0 and code in (535, 334):
                continue  # the cached token may have been revoked: one fresh try
            break
        raise RunStopped(Reply(Stage.AUTH, code, _text(resp)))

    def close(self) -> None:
        if self._conn is not None:
            _quietly_close(self._conn)
            self._conn = None

    # -- sending ------------------------------------------------------------------------------

    def send(self, sender: str, recipients: Sequence[str], message: bytes,
             smtputf8: bool = False) -> SendResult:
        """Hand one message over (`smtputf8`: its headers are UTF-8, RFC 6532). Raises
        RunStopped only if (re)connecting fails."""
        if self._conn is None or self._sent_on_conn >= self.settings.max_per_connection:
            self.open()
        conn = self._conn
        assert conn is not None
        result = self._transaction(conn, sender, recipients, message, smtputf8)
        self._sent_on_conn += 1
        if closes_connection(result.reply):
            self.close()
        elif result.reply.code is None or not 200 <= result.reply.code < 300:
            try:
                conn.rset()
            except (OSError, smtplib.SMTPException):
                self.close()
        return result

    def _transaction(
        self, conn: smtplib.SMTP, sender: str, recipients: Sequence[str], message: bytes,
        smtputf8: bool,
    ) -> SendResult:
        stage = Stage.MAIL
        utf8 = conn.has_extn("smtputf8")
        if (smtputf8 or not sender.isascii()) and not utf8:  # not a byte of it on the wire
            return SendResult(Reply(Stage.MAIL, 553, NO_SMTPUTF8))
        refused: dict[str, Reply] = {r: Reply(Stage.RCPT, 553, NO_SMTPUTF8)
                                     for r in recipients if not r.isascii() and not utf8}
        try:
            options = ["SMTPUTF8"] if utf8 and (smtputf8 or not all(
                a.isascii() for a in (sender, *recipients))) else []
            code, resp = conn.mail(sender, options)
            if code != 250:
                return SendResult(Reply(Stage.MAIL, code, _text(resp)))
            stage = Stage.RCPT
            accepted: list[str] = []
            replies: list[Reply] = list(refused.values())
            for rcpt in recipients:
                if rcpt in refused:
                    continue
                code, resp = conn.rcpt(rcpt)
                if code in (250, 251):
                    accepted.append(rcpt)
                else:
                    reply = Reply(Stage.RCPT, code, _text(resp))
                    refused[rcpt] = reply
                    replies.append(reply)
                    if code == 421:
                        return SendResult(reply, refused)
            if not accepted:
                transient = [r for r in replies if r.code is not None and r.code < 500]
                return SendResult((transient or replies)[0], refused)
            stage = Stage.DATA
            try:
                code, resp = conn.data(message)
            except smtplib.SMTPDataError as exc:  # the answer to DATA itself was not 354
                return SendResult(Reply(Stage.DATA, exc.smtp_code, _text(exc.smtp_error)),
                                  refused, accepted)
            return SendResult(Reply(Stage.DATA, code, _text(resp)), refused, accepted)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            return SendResult(_lost(stage, exc))
        except smtplib.SMTPResponseException as exc:
            return SendResult(Reply(stage, exc.smtp_code, _text(exc.smtp_error)))


def _expect(code: int, resp: bytes, wanted: int) -> None:
    if code != wanted:
        raise RunStopped(Reply(Stage.AUTH, code, _text(resp)))


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
