"""Bounces: what a mail server reports back about a mail it had accepted.

A report names the mail (by the ENVID we gave, or the Message-ID in the headers it
returns) and, per recipient, a permanent failure or a delay with the remote
server's diagnostic. Reading reports (core-free: tikos_outbox.dsn), finding the
entry and recording the outcome (usecases.bounces) use these types."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: RFC 3461 ENVID: xtext, at most 100 characters
MAX_ENVID = 100


class Kind(StrEnum):
    FAILED = "failed"  # permanent: the mailbox does not exist, is blocked, ...
    DELAYED = "delayed"  # still being tried by the customer's side


@dataclass(frozen=True)
class Notice:
    """One recipient in one report."""

    address: str
    kind: Kind
    status: str  # the enhanced status code (RFC 3463), e.g. "5.1.1"; "" if none
    diagnostic: str  # the remote server's words, e.g. "550 5.1.1 user unknown"


@dataclass(frozen=True)
class Report:
    """A bounce read from the mailbox."""

    source: str  # the bounce's own Message-ID (or a digest of it): read once
    envid: str | None  # the ENVID we sent, as given back (RFC 3464 Original-Envelope-Id)
    message_ids: tuple[str, ...]  # the original mail's Message-ID candidates, best first
    notices: tuple[Notice, ...]
    standard: bool  # an RFC 3464 delivery-status report (else a heuristic reading)


def envid_for(message_id: str) -> str:
    """The ENVID for a mail: the unique part of its Message-ID, which the report
    gives back (RFC 3461 §4.4); it fits 100 characters of xtext."""
    unique = message_id.strip("<>").split("@", 1)[0]
    return unique[:MAX_ENVID]


def xtext(value: str) -> str:
    """RFC 3461 §4: `+`, `=` and everything outside ! to ~ as +XX."""
    return "".join(c if "!" <= c <= "~" and c not in "+=" else f"+{ord(c):02X}"
                   for c in value)


def unxtext(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] == "+" and _hex(value[i + 1:i + 3]):
            out.append(chr(int(value[i + 1:i + 3], 16)))
            i += 3
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _hex(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789ABCDEFabcdef" for c in s)
