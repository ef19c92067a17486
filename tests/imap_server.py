"""A loopback IMAP stand-in (implicit TLS) for Exchange Online's bounce mailbox with
XOAUTH2 only: it takes the login when the bearer token is one it was told to
accept (the token for Exchange Online's scope, as Exchange does), answers NO
otherwise, and has an empty INBOX. Enough of RFC 3501 for one pass of
`tikos-outbox bounces`; it keeps each login's user and token."""

from __future__ import annotations

import base64
import socketserver
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.helpers import Cert, serving_tls

CAPS = "IMAP4rev1 AUTH=XOAUTH2"


@dataclass
class ImapState:
    accept: set[str] = field(default_factory=set)  # the tokens that may log in
    logins: list[tuple[str, str, bool]] = field(default_factory=list)  # user, token, taken


class _Session(socketserver.StreamRequestHandler):
    state: ImapState

    def _say(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        self._say(f"* OK [CAPABILITY {CAPS}] stand-in ready")
        while line := self.rfile.readline():
            tag, _, rest = line.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            if command == "UID":
                command, _, args = args.partition(" ")
                command = "UID " + command.upper()
            if not self._answer(tag, command, args):
                return

    def _answer(self, tag: str, command: str, args: str) -> bool:
        if command == "CAPABILITY":
            self._say(f"* CAPABILITY {CAPS}")
        elif command == "AUTHENTICATE" and args.upper() == "XOAUTH2":
            self._say("+ ")
            raw = base64.b64decode(self.rfile.readline().strip()).decode("utf-8", "replace")
            parts = dict(p.split("=", 1) for p in raw.split("\x01") if "=" in p)
            token = parts.get("auth", "").removeprefix("Bearer ")
            taken = token in self.state.accept
            self.state.logins.append((parts.get("user", ""), token, taken))
            if not taken:
                self._say(f"{tag} NO AUTHENTICATE failed.")
                return True
        elif command == "LIST":
            self._say('* LIST (\\Noselect) "/" ""')
        elif command in ("SELECT", "EXAMINE"):
            self._say("* 0 EXISTS")
            self._say("* OK [UIDVALIDITY 7] UIDs valid")
            self._say(f"{tag} OK [READ-WRITE] {command} completed.")
            return True
        elif command == "UID SEARCH":
            self._say("* SEARCH")
        elif command == "LOGOUT":
            self._say("* BYE the stand-in says goodbye")
            self._say(f"{tag} OK LOGOUT completed.")
            return False
        elif command not in ("CLOSE", "NOOP"):
            self._say(f"{tag} BAD {command} is not known here")
            return True
        self._say(f"{tag} OK {command} completed.")
        return True


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def imap_server(cert: Cert, accept: set[str]) -> Iterator[tuple[int, ImapState]]:
    """The stand-in on 127.0.0.1; yields its port and its state."""
    state = ImapState(accept=set(accept))
    handler: Any = type("Session", (_Session,), {"state": state})
    srv = _Server(("127.0.0.1", 0), handler)
    with serving_tls(srv, cert):
        yield srv.server_address[1], state
