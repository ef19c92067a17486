"""Builds the e-mail for one document: headers, text body, the PDF attached.

Nothing from a file name, a template field or a TIKOS value can add a header
or a recipient: addresses are checked one by one, and every text that goes
into a header has its line breaks and control characters replaced first.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from tikos_outbox.core.addresses import clean_text, is_valid_address, split_addresses
from tikos_outbox.core.templates import TemplateError, render, template_fields

__all__ = ["Mail", "TemplateError", "build_message", "clean_text", "is_valid_address",
           "make_message_id", "message_bytes", "render", "split_addresses",
           "template_fields"]

@dataclass(frozen=True)
class Mail:
    """Everything that makes the message of one document."""

    sender_address: str
    sender_name: str
    reply_to: str | None
    to: tuple[str, ...]
    subject: str
    body: str
    filename: str
    pdf: bytes | None  # None: a text-only mail (the daily report)
    message_id: str
    date: datetime


def build_message(mail: Mail) -> EmailMessage:
    """The RFC 5322 message: UTF-8 text body, the PDF attached under its file name."""
    for addr in (mail.sender_address, *mail.to, *([mail.reply_to] if mail.reply_to else [])):
        if not is_valid_address(addr):
            raise ValueError(f"'{clean_text(addr)}' is not a valid e-mail address")
    if not mail.to:
        raise ValueError("a message needs at least one recipient")
    msg = EmailMessage(policy=policy.SMTP)
    local, domain = mail.sender_address.rsplit("@", 1)
    msg["From"] = Address(display_name=clean_text(mail.sender_name), username=local, domain=domain)
    msg["To"] = ", ".join(mail.to)
    if mail.reply_to:
        msg["Reply-To"] = mail.reply_to
    msg["Subject"] = clean_text(mail.subject)
    msg["Date"] = format_datetime(mail.date)
    msg["Message-ID"] = mail.message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    msg["X-Mailer"] = "tikos-outbox"
    msg.set_content(mail.body, subtype="plain", charset="utf-8")
    if mail.pdf is None:
        return msg
    msg.add_attachment(
        mail.pdf,
        maintype="application",
        subtype="pdf",
        filename=clean_text(mail.filename) or "document.pdf",
    )
    return msg


def message_bytes(mail: Mail) -> bytes:
    """The message as it goes on the wire (CRLF line ends); the same bytes as
    `build_message(mail).as_bytes()`, without the email package encoding the PDF
    one line at a time: the structure is built with a 12-byte stand-in, whose
    base64 line is then replaced by the PDF's base64 lines."""
    if mail.pdf is None:
        return build_message(mail).as_bytes()
    marker = secrets.token_bytes(12)
    raw = build_message(replace(mail, pdf=marker)).as_bytes()
    stand_in = b"\r\n" + base64.b64encode(marker) + b"\r\n"
    assert raw.count(stand_in) == 1
    encoded = base64.b64encode(mail.pdf)
    lines = b"\r\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
    return raw.replace(stand_in, b"\r\n" + lines + (b"\r\n" if lines else b""), 1)


def make_message_id(unique: str, sender_address: str) -> str:
    """A Message-ID in the sender's domain: `<unique@domain>`."""
    domain = sender_address.rsplit("@", 1)[-1] if "@" in sender_address else "tikos-outbox"
    return f"<{unique}@{domain}>"
