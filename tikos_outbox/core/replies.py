"""What an SMTP server's answer means for an entry.

The SMTP adapter turns every answer, exception and lost connection into a
:class:`Reply`; this module alone decides what follows from it (RFC 5321
§4.2.1: 2yz done, 4yz transient, 5yz permanent; RFC 3463 enhanced codes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class Stage(StrEnum):
    CONNECT = "connect"  # TCP connect and greeting
    TLS = "tls"  # STARTTLS or the implicit TLS handshake
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


class Outcome(StrEnum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Reply:
    """One answer of the server, or what happened instead of one.

    `code` is None when there was no answer at all: the connection was lost,
    timed out or was refused (`lost` is then True).
    """

    stage: Stage
    code: int | None
    text: str
    lost: bool = False

    def __str__(self) -> str:
        return f"{self.code} {self.text}" if self.code is not None else self.text


_TOO_MANY_RECIPIENTS = re.compile(r"too many recipients|5\.5\.3", re.IGNORECASE)
# Microsoft: basic authentication switched off for SMTP AUTH in the tenant.
_BASIC_AUTH_OFF = re.compile(r"\b5\.7\.(?:30|3|139)\b")


def classify(reply: Reply) -> Outcome:
    """Delivered, transient or permanent: what this reply means for the entry."""
    if reply.code is None or reply.lost:
        return Outcome.TRANSIENT
    if 200 <= reply.code < 300:
        return Outcome.DELIVERED
    if 400 <= reply.code < 500:
        return Outcome.TRANSIENT
    if reply.code == 552 and _TOO_MANY_RECIPIENTS.search(reply.text):
        # RFC 5321 §4.5.3.1.10: old servers answer "too many recipients" with 552.
        return Outcome.TRANSIENT
    if 500 <= reply.code < 600:
        return Outcome.PERMANENT
    return Outcome.TRANSIENT  # a code outside the RFC: do not give up on it


def closes_connection(reply: Reply) -> bool:
    """Whether the connection is unusable after this reply (421 or lost)."""
    return reply.lost or reply.code == 421


def basic_auth_disabled(reply: Reply) -> bool:
    """Whether a rejected password login means the provider turned basic auth off."""
    return reply.stage is Stage.AUTH and bool(_BASIC_AUTH_OFF.search(reply.text))


def explain(reply: Reply) -> str:
    """One line for an administrator: what failed, in the server's own words."""
    where = {
        Stage.CONNECT: "Could not connect to the SMTP server",
        Stage.TLS: "TLS with the SMTP server failed",
        Stage.AUTH: "SMTP login rejected by the server",
        Stage.MAIL: "The server refused the sender",
        Stage.RCPT: "The server refused the recipient",
        Stage.DATA: "The server refused the message",
    }[reply.stage]
    line = f"{where}: {reply}"
    if basic_auth_disabled(reply):
        line += (
            " — basic authentication (user and password) is switched off for this"
            " mailbox's tenant; use auth = \"oauth2\" (see the README, section OAuth2)"
        )
    return line


@dataclass(frozen=True)
class SendResult:
    """What the server said to one message: the final reply, and per recipient."""

    reply: Reply
    refused: dict[str, Reply] = field(default_factory=dict)  # address -> its RCPT reply
    accepted: list[str] = field(default_factory=list)  # the server took these at RCPT


class RunStopped(Exception):
    """The run cannot go on: no connection, TLS failed, or the login was refused."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply
