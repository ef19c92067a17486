"""SMTP AUTH (RFC 4954): PLAIN and LOGIN with UTF-8 passwords, XOAUTH2 (RFC 7628);
and a server's answer or a lost connection as a :class:`Reply`."""

from __future__ import annotations

import base64
import smtplib
import socket
from collections.abc import Sequence

from tikos_outbox.core.ports import TokenSource
from tikos_outbox.core.replies import Reply, RunStopped, Stage
from tikos_outbox.core.settings import Auth, Security, SmtpSettings


def reply_text(resp: bytes | str) -> str:
    if isinstance(resp, bytes):
        resp = resp.decode("utf-8", "replace")
    return " ".join(resp.split())


def _b64(value: str | bytes) -> str:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return base64.b64encode(raw).decode("ascii")


def lost_reply(stage: Stage, exc: BaseException) -> Reply:
    # smtplib reports a read timeout as "Connection unexpectedly closed: timed out"
    if isinstance(exc, TimeoutError | socket.timeout) or "timed out" in str(exc):
        return Reply(stage, None, "timed out waiting for the server", lost=True)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return Reply(stage, None, "the server closed the connection", lost=True)
    return Reply(stage, None, f"connection lost: {exc}", lost=True)


def login(conn: smtplib.SMTP, s: SmtpSettings, password: str | None,
          token_source: TokenSource | None) -> None:
    """Log in as the settings say (PLAIN or LOGIN with UTF-8 passwords, XOAUTH2);
    raises RunStopped with the server's answer."""
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
            _login_xoauth2(conn, user, mechanisms, token_source)
        elif "PLAIN" in mechanisms:
            # RFC 4616, UTF-8; smtplib.login would only take ASCII passwords
            code, resp = conn.docmd("AUTH", "PLAIN " + _b64(f"\0{user}\0{password}"))
            _expect(code, resp, 235)
        elif "LOGIN" in mechanisms:
            code, resp = conn.docmd("AUTH", "LOGIN")
            _expect(code, resp, 334)
            code, resp = conn.docmd(_b64(user))
            _expect(code, resp, 334)
            code, resp = conn.docmd(_b64(password or ""))
            _expect(code, resp, 235)
        else:
            raise RunStopped(Reply(
                Stage.AUTH, None,
                f"the server offers no login method this program supports"
                f" (offered: {' '.join(mechanisms) or 'none'}; supported: PLAIN, LOGIN)"))
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        raise RunStopped(lost_reply(Stage.AUTH, exc)) from None

def _login_xoauth2(conn: smtplib.SMTP, user: str, mechanisms: Sequence[str],
                   token_source: TokenSource | None) -> None:
    if "XOAUTH2" not in mechanisms:
        raise RunStopped(Reply(Stage.AUTH, None,
                               "the server does not offer XOAUTH2 on this connection"))
    if token_source is None:
        raise RunStopped(Reply(Stage.AUTH, None, "no OAuth2 token source configured"))
    for attempt in range(2):
        token = token_source(attempt > 0)
        sasl = f"user={user}\x01auth=Bearer {token}\x01\x01"
        code, resp = conn.docmd("AUTH", "XOAUTH2 " + _b64(sasl))
        if code == 334:  # RFC 7628 error challenge: send an empty line, get the final reply
            code, resp = conn.docmd("")
        if code == 235:
            return
        if attempt == 0 and code in (535, 334):
            continue  # the cached token may have been revoked: one fresh try
        break
    raise RunStopped(Reply(Stage.AUTH, code, reply_text(resp)))


def _expect(code: int, resp: bytes, wanted: int) -> None:
    if code != wanted:
        raise RunStopped(Reply(Stage.AUTH, code, reply_text(resp)))
