"""Builds the e-mail for one document: headers, text body, the PDF attached.

Nothing from a file name, a template field or a TIKOS value can add a header
or a recipient: addresses are checked one by one and their headers written by
`header_value`, and every text that goes into a header has its line breaks,
control characters and encoded words taken out first (`header_text`).
"""

from __future__ import annotations

import base64
import functools
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from email import errors, policy
from email.header import Header
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime

from tikos_outbox.core.addresses import (
    Address,
    clean_text,
    header_text,
    header_value,
    is_valid_address,
    parse_address,
    parse_addresses,
    split_addresses,
)
from tikos_outbox.core.templates import TemplateError, render, template_fields

__all__ = ["Address", "Mail", "TemplateError", "build_message", "clean_text", "envelope",
           "header_text", "is_valid_address", "make_message_id", "message_bytes", "needs_smtputf8",
           "parse_address", "parse_addresses", "render", "split_addresses", "template_fields"]

@dataclass(frozen=True)
class Mail:
    """Everything that makes the message of one document."""

    sender_address: str
    sender_name: str
    reply_to: str | None
    #: an Address, or a string with one address in any form `parse_address` takes
    to: tuple[str | Address, ...]
    subject: str
    body: str
    filename: str
    pdf: bytes | None  # None: a text-only mail (the daily report)
    message_id: str
    date: datetime


def _address(value: str | Address) -> Address:
    if isinstance(value, Address):
        return value  # checked when it was made
    found = parse_address(value) if isinstance(value, str) else None
    if found is None:
        raise ValueError(f"'{clean_text(str(value))}' is not a valid e-mail address")
    return found


def _addresses(mail: Mail) -> tuple[Address, list[Address], Address | None]:
    """(sender, recipients, reply-to), checked; ValueError if one is invalid."""
    if not is_valid_address(mail.sender_address, smtputf8=True):
        raise ValueError(f"'{clean_text(mail.sender_address)}' is not a valid e-mail address")
    sender = Address(mail.sender_address, mail.sender_name)
    to = [_address(a) for a in mail.to]
    reply_to = _address(mail.reply_to) if mail.reply_to else None
    if not to:
        raise ValueError("a message needs at least one recipient")
    return sender, to, reply_to


def needs_smtputf8(mail: Mail) -> bool:
    """Whether the message can only go where the server offers SMTPUTF8 (RFC 6531):
    the sender, a recipient or the Reply-To has a non-ASCII local part. An IDN
    domain alone does not need it: it goes as its A-label. ValueError if an
    address is invalid."""
    return _utf8(*_addresses(mail))


def _utf8(sender: Address, to: list[Address], reply_to: Address | None) -> bool:
    return any(a.needs_smtputf8 for a in (sender, *to, *([reply_to] if reply_to else [])))


def envelope(mail: Mail) -> tuple[str, list[str]]:
    """(MAIL FROM, [RCPT TO, ...]) of the message: the envelope forms (domains as
    A-labels); duplicate recipients once. ValueError if an address is invalid."""
    sender, to, _ = _addresses(mail)
    rcpts = list(dict.fromkeys(a.envelope for a in to))
    return sender.envelope, rcpts


class _Headers(HeaderRegistry):
    """The email package's header registry, each header's class made once.

    The standard registry makes a new class for every header of every message
    (`type(...)` in `HeaderRegistry.__getitem__`), some thirty a mail, each freed
    only by the cyclic garbage collector: the soak's probe found them piling up
    between collections. Here the class is remembered per kind of header; a header
    registered later with `map_to_type` still gets its own. (With the boundary chosen
    below: 2.3 -> 1.5 ms to build a mail with a 100 KB PDF.)"""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[type[object], type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        cls = self.registry.get(name.lower(), self.default_class)
        made = self._made.get(cls)
        if made is None:
            made = self._made[cls] = super().__getitem__(name)
        return made


_POLICIES = {utf8: (policy.SMTPUTF8 if utf8 else policy.SMTP).clone(
    refold_source="none", header_factory=_Headers()) for utf8 in (False, True)}


def _boundary(*texts: str) -> str:
    """A MIME boundary that none of the texts contains. Chosen here, the email
    package does not compile a new regular expression per message to look for its
    own in the parts (the base64 and quoted-printable parts cannot hold '=_')."""
    while True:
        # 96 random bits; short enough that Content-Type stays one line, as before
        boundary = f"=_tikos_{secrets.token_hex(12)}"
        if not any(boundary in text for text in texts):
            return boundary


def _set_addresses(msg: EmailMessage, header: str, addresses: list[Address],
                   utf8: bool) -> None:
    """Set an address header as `header_value` writes it; read back with the email
    package's parser first, it must hold exactly these addresses."""
    value = header_value(header, addresses, utf8=utf8)
    parsed = msg.policy.header_factory(header, value.replace("\n", ""))  # type: ignore[attr-defined]
    found = [(a.username, a.domain) for a in parsed.addresses]
    wanted = [(a.local, a.domain if utf8 else a.ascii_domain) for a in addresses]
    defects = [d for d in parsed.defects  # RFC 6532 allows what this one flags
               if not (utf8 and isinstance(d, errors.NonASCIILocalPartDefect))]
    if found != wanted or defects:
        raise ValueError(f"the {header} header cannot be written safely")
    msg.set_raw(header, value)


def build_message(mail: Mail, seven_bit: bool = False) -> EmailMessage:
    """The RFC 5322 message: UTF-8 text body, the PDF attached under its file name.

    A message whose addresses need SMTPUTF8 is written with UTF-8 headers
    (policy SMTPUTF8); every other one has ASCII headers only. The text goes 8-bit
    where it has umlauts (for a server with 8BITMIME), or quoted-printable with
    `seven_bit` (for one without)."""
    sender, to, reply_to = _addresses(mail)
    utf8 = _utf8(sender, to, reply_to)
    # refold_source "none": the address headers, stored as written, go out so
    msg = EmailMessage(policy=_POLICIES[utf8])
    _set_addresses(msg, "From", [sender], utf8)
    _set_addresses(msg, "To", to, utf8)
    if reply_to is not None:
        _set_addresses(msg, "Reply-To", [reply_to], utf8)
    msg["Subject"] = header_text(mail.subject)
    msg["Date"] = format_datetime(mail.date)
    msg["Message-ID"] = mail.message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    msg["X-Mailer"] = "tikos-outbox"
    msg.set_content(mail.body, subtype="plain", charset="utf-8",
                    cte="quoted-printable" if seven_bit else None)
    if mail.pdf is None:
        return msg
    filename = header_text(mail.filename) or "document.pdf"
    # an XRechnung file goes as what it is (RFC 7303), base64 like the PDF: byte for byte
    subtype = "xml" if filename.lower().endswith(".xml") else "pdf"
    msg.add_attachment(mail.pdf, maintype="application", subtype=subtype, filename=filename)
    msg.set_boundary(_boundary(mail.body))
    part = list(msg.iter_attachments())[-1]
    # older Outlook reads only Content-Type's name, and an umlaut there only as an
    # encoded word (what Outlook and Thunderbird send themselves); the message's own
    # MIME-Version is enough (RFC 2045 §4), none in the part
    name = filename if filename.isascii() else Header(filename, "utf-8").encode(
        maxlinelen=998)
    raw = {k.lower(): v for k, v in part.raw_items()}
    for key in list(raw):
        del part[key]
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    part.set_raw("Content-Type", f'application/{subtype}; name="{quoted}"')
    part.set_raw("Content-Transfer-Encoding", raw["content-transfer-encoding"])
    part.set_raw("Content-Disposition", raw["content-disposition"])
    return msg


def message_bytes(mail: Mail, seven_bit: bool = False) -> bytes:
    """The message as it goes on the wire (CRLF line ends); the same bytes as
    `build_message(mail).as_bytes()`, without the email package encoding the PDF
    one line at a time: the structure is built with a 12-byte stand-in, whose
    base64 line is then replaced by the PDF's base64 lines."""
    if mail.pdf is None:
        return build_message(mail, seven_bit).as_bytes()
    marker = secrets.token_bytes(12)
    raw = build_message(replace(mail, pdf=marker), seven_bit).as_bytes()
    stand_in = b"\r\n" + base64.b64encode(marker) + b"\r\n"
    assert raw.count(stand_in) == 1
    # lines of 76 characters, each ended (RFC 2045 §6.8)
    lines = base64.encodebytes(mail.pdf).replace(b"\n", b"\r\n")
    return raw.replace(stand_in, b"\r\n" + lines, 1)


def make_message_id(unique: str, sender_address: str) -> str:
    """A Message-ID in the sender's domain: `<unique@domain>`."""
    return f"<{unique}@{_id_domain(sender_address)}>"


@functools.lru_cache(maxsize=256)
def _id_domain(sender_address: str) -> str:
    """The domain of the Message-IDs of a sender (remembered: one per document)."""
    if is_valid_address(sender_address, smtputf8=True):
        return Address(sender_address).ascii_domain  # an IDN domain as its A-label
    if "@" in sender_address:
        return sender_address.rsplit("@", 1)[-1]
    return "tikos-outbox"
