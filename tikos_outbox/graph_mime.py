"""The MIME of a mail as Microsoft Graph takes it: the addresses of this attempt in
its headers (Graph mails what To, Cc and Bcc say), and the message split from its
attachment when the attachment goes on its own. The body's bytes are never touched."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import getaddresses


def _header_block(message: bytes) -> tuple[list[bytes], bytes]:
    """The header lines (each with its folded continuation) and the rest, untouched."""
    head, sep, body = message.partition(b"\r\n\r\n")
    lines: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and lines:
            lines[-1] += b"\r\n" + line
        else:
            lines.append(line)
    return lines, sep + body


def addressed(message: bytes, recipients: Sequence[str]) -> bytes:
    """The message as Graph must get it: Graph mails the addresses in its To, Cc and Bcc
    headers, so a recipient of this attempt that is not in To (the laundry's copy) is
    put in Bcc, and one in To that is not due (it has the mail) leaves To. The body's
    bytes are not touched."""
    lines, rest = _header_block(message)
    to_lines = [ln for ln in lines if ln[:3].lower() == b"to:"]
    to_text = b" ".join(ln[3:] for ln in to_lines).decode("utf-8", "replace")
    to = [addr for _, addr in getaddresses([to_text.replace("\r\n", "")])]
    due = {r.lower() for r in recipients}
    keep_to = [a for a in to if a.lower() in due]
    bcc = [r for r in recipients if r.lower() not in {a.lower() for a in to}]
    out = [ln for ln in lines if ln[:4].lower() != b"bcc:"]
    if len(keep_to) != len(to):
        out = [ln for ln in out if ln[:3].lower() != b"to:"]
        out.append(b"To: " + ", ".join(keep_to).encode("utf-8"))
    if bcc:
        out.append(b"Bcc: " + ", ".join(bcc).encode("utf-8"))
    return b"\r\n".join(out) + rest


def split_attachment(mime: bytes) -> tuple[bytes, str, str, bytes]:
    """The message without its (last) attachment, and that attachment's name, type
    and bytes: the draft is made from the first, the second is uploaded."""
    msg = email.message_from_bytes(mime, policy=email.policy.SMTP)
    assert isinstance(msg, EmailMessage)
    parts = list(msg.iter_attachments())
    if not parts:
        raise ValueError("no attachment to upload")
    part = parts[-1]
    assert isinstance(part, EmailMessage)
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    name, ctype = str(part.get_filename() or "document.pdf"), part.get_content_type()
    payload = msg.get_payload()
    assert isinstance(payload, list)
    msg.set_payload([p for p in payload if p is not part])
    return msg.as_bytes(), name, ctype, data
