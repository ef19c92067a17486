"""Reading a message from the bounce mailbox: is it a bounce, for which mail, for
which recipients, and what did the remote server say?

RFC 3464 delivery-status reports are read with the email package, which parses
`message/delivery-status` into its header blocks. The many bounces that are not
RFC 3464 (old Exchange, Exim, qmail, and freemail providers' own formats) are
read by flufl.bounce's detectors, a maintained library made for exactly this;
the diagnostic and the original Message-ID are then looked for in the text.

What is never a bounce, and is left where it is: an out-of-office reply or any
other auto-reply, a read receipt (`disposition-notification`), a customer's
answer — anything not from a mail system or without a failed recipient."""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from email.message import EmailMessage, Message
from email.utils import getaddresses

from flufl.bounce import all_failures

from tikos_outbox.core.bounces import Kind, Notice, Report, unxtext

#: the senders of bounces: RFC 5321 §4.5.5 gives them the null sender, and their
#: From names a mail system (Postfix, Exim, Exchange/Microsoft 365, Gmail, GMX,
#: web.de, T-Online: MAILER-DAEMON, postmaster, "Mail Delivery System",
#: "Mail Delivery Subsystem", "Microsoft Outlook" with a MicrosoftExchange… address)
_SYSTEM_LOCAL = re.compile(r"^(mailer-daemon|mailer_daemon|mail-daemon|mailerdaemon|postmaster"
                           r"|mdaemon|microsoftexchange[0-9a-f]*|mail\.delivery)$", re.I)
#: display names of mail systems, as a whole (a company "Nordic Mail Delivery AB" is none)
_SYSTEM_NAMES = frozenset({"mail delivery system", "mail delivery subsystem", "mailer-daemon",
                           "mail delivery service", "microsoft outlook", "postmaster",
                           "mail administrator", "e-mail-zustellsystem", "mail-zustellung"})
_HEADER_TYPES = ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers")
_MID_LINE = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]+>)", re.I | re.M)
#: an SMTP reply in a bounce's words: with an enhanced status code (RFC 3463), or after
#: the words mail systems put before one ("said:", "reason:", "SMTP error …:", "smtp;")
_SMTP_LINE = re.compile(r"\b([45]\d\d)[ -]#?([45]\.\d{1,3}\.\d{1,3})\b[^\n]{0,300}"
                        r"|(?:said|reason|error[^\n]{0,60}|smtp;)\s*:?\s*([45]\d\d)\b[^\n]{0,300}",
                        re.I)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
MAX_CANDIDATES = 20
MAX_TEXT = 200_000  # characters of a bounce's text the heuristics read
MAX_LINE = 1_000
MAX_DIAGNOSTIC = 300


def read_report(raw: bytes) -> Report | None:
    """The bounce in a raw message, or None when it is no bounce (or tells nothing
    to act on: a success notice, a report without a failed or delayed recipient)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    if msg.get_content_type() == "multipart/report" and \
            msg.get_param("report-type", "", header="content-type") != "delivery-status":
        return None  # a read receipt, a feedback (spam complaint) or a DMARC report
    source = str(msg.get("Message-ID", "")).strip() or \
        "sha256:" + hashlib.sha256(raw).hexdigest()
    status = _status_part(msg)
    if status is not None:
        envid, notices = _rfc3464(status)
        if not notices:
            return None
        return Report(source, envid, _original_ids(msg), tuple(notices), standard=True)
    if not _from_mail_system(msg):
        return None
    notices = _heuristic(raw, _text(msg))
    if not notices:
        return None
    return Report(source, None, _original_ids(msg), tuple(notices), standard=False)


def _from_mail_system(msg: EmailMessage) -> bool:
    """From a mail system's address or exact name, and sent as machines send bounces
    (the null sender of RFC 5321 §4.5.5, or Auto-Submitted, or Exim's header)."""
    by_machine = (str(msg.get("Return-Path", "")).strip() in ("<>", "")
                  and "Return-Path" in msg) or \
        str(msg.get("Auto-Submitted", "no")).strip().lower() != "no" or \
        "X-Failed-Recipients" in msg
    for name, addr in getaddresses([str(v) for v in msg.get_all("From", [])]):
        local = addr.rsplit("@", 1)[0]
        if _SYSTEM_LOCAL.match(local) or (by_machine and _clean(name).lower() in _SYSTEM_NAMES):
            return True
    return False


def _clean(text: str) -> str:
    """One line without control characters (a header or diagnostic shown to people)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _status_part(msg: EmailMessage) -> Message | None:
    """The `message/delivery-status` part of an RFC 3464 report (the email package
    gives it as a list of header blocks: the message's, then one per recipient)."""
    if msg.get_content_type() != "multipart/report":
        return None
    for part in msg.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            return part
    return None


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str):  # a malformed part the parser left as text
        text = payload.replace("\r\n", "\n")
        return [email.message_from_string(b.strip() + "\n", policy=email.policy.default)
                for b in re.split(r"\n\s*\n", text) if b.strip()]
    return []


def _rfc3464(part: Message) -> tuple[str | None, list[Notice]]:
    blocks = _blocks(part)
    if not blocks:
        return None, []
    envid_raw = blocks[0].get("Original-Envelope-Id")
    envid = unxtext(str(envid_raw).strip()) if envid_raw else None
    notices = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        action = str(block.get("Action", "")).strip().lower()
        kind = {"failed": Kind.FAILED, "delayed": Kind.DELAYED}.get(action)
        address = _typed_address(block.get("Original-Recipient")) \
            or _typed_address(block.get("Final-Recipient"))
        if kind is None or not address:
            continue
        status = str(block.get("Status", "")).strip()
        diagnostic = _clean(str(block.get("Diagnostic-Code", "")))
        if ";" in diagnostic:
            diagnostic = diagnostic.split(";", 1)[1].strip()  # "smtp; 550 …" -> "550 …"
        notices.append(Notice(address, kind, status if _STATUS.fullmatch(status) else "",
                              diagnostic[:MAX_DIAGNOSTIC] or _status_words(status)))
    return envid, notices


def _typed_address(value: object) -> str:
    """`rfc822; user@example.org` (RFC 3464 §2.3.2) -> `user@example.org`."""
    if value is None:
        return ""
    text = str(value).strip()
    if ";" in text:
        kind, text = text.split(";", 1)
        if kind.strip().lower() not in ("rfc822", "utf-8"):
            return ""
    return unxtext(text.strip().strip("<>"))


def _status_words(status: str) -> str:
    return f"status {status}" if status else "no reason given"


def _heuristic(raw: bytes, text: str) -> list[Notice]:
    """A bounce that is not RFC 3464: the failed and delayed addresses as
    flufl.bounce's detectors find them, each with the SMTP reply near it."""
    msg = email.message_from_bytes(raw)  # flufl.bounce reads the compat32 API
    temporary, permanent = all_failures(msg)
    found: dict[str, Kind] = {}
    for kind, addresses in ((Kind.DELAYED, temporary), (Kind.FAILED, permanent)):
        for a in addresses:
            found[a.decode("utf-8", "replace").strip("<>")] = kind
    for header in msg.get_all("X-Failed-Recipients", []):  # Exim's, and others'
        for _, addr in getaddresses([str(header)]):
            found.setdefault(addr, Kind.FAILED)
    if not found:
        found = _address_with_reply(text, _own_addresses(msg))
    out = []
    for address, kind in found.items():
        reply, status = _reply_near(text, address)
        out.append(Notice(address, kind, status, reply or "no reason given"))
    return out


_ADDRESS = re.compile(r"<?([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
                      r"@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63})>?")
#: where a bounce's own words end and the returned mail begins
_RETURNED = re.compile(r"copy of the message|original message|returned message|ursprüngliche"
                       r"|kopfzeilen|^\s*(message-id|received|return-path):", re.I | re.M)


def _own_addresses(msg: Message) -> set[str]:
    values = [str(v) for h in ("From", "To", "Reply-To") for v in msg.get_all(h, [])]
    return {a.lower() for _, a in getaddresses(values)}


def _address_with_reply(text: str, own: set[str]) -> dict[str, Kind]:
    """A mail system's bounce in any wording (German providers' own, Exchange 2007's
    plain text): an address in the bounce's own words with an SMTP reply on its line
    or the next three; 5xx failed, 4xx delayed. The returned mail is not read."""
    end = _RETURNED.search(text)
    lines = text[:end.start() if end else len(text)].splitlines()
    found: dict[str, Kind] = {}
    for i, line in enumerate(lines):
        for address in _ADDRESS.findall(line):
            if address.lower() in own or address in found:
                continue
            reply = _SMTP_LINE.search("\n".join(lines[i:i + 4]))
            if reply:
                code = _reply_of(reply)[0]
                found[address] = Kind.FAILED if code.startswith("5") else Kind.DELAYED
    return found


def _reply_of(m: re.Match[str]) -> tuple[str, str, str]:
    """(code, enhanced status or "", the reply from its code on) of an _SMTP_LINE match."""
    if m.group(1):
        return m.group(1), m.group(2), m.group(0)
    return m.group(3), "", m.string[m.start(3):m.end()]


def _reply_near(text: str, address: str) -> tuple[str, str]:
    """The SMTP reply on the address's line or the next three (or anywhere, failing
    that); without one, the words after the address, with a status code near it."""
    lines = text.splitlines()
    named = [i for i, line in enumerate(lines) if address.lower() in line.lower()]
    at = next((i for i in named if _STATUS.search("\n".join(lines[i:i + 4]))),
              named[0] if named else None)
    windows = ([lines[at:at + 4]] if at is not None else []) + [lines]
    for window in windows:
        m = _SMTP_LINE.search("\n".join(window))
        if m:
            _, status, reply = _reply_of(m)
            line = _clean(reply).rstrip(">")[:MAX_DIAGNOSTIC]
            if not status and (s := _STATUS.search(line)):
                status = s.group(0)
            return line, status
    if at is None:
        return "", ""
    near = "\n".join(lines[at:at + 4])
    words = next((_clean(w) for w in lines[at + 1:at + 4] if w.strip()), "")
    code = _STATUS.search(near)
    return words[:MAX_DIAGNOSTIC], code.group(0) if code else ""


def looks_like_bounce(raw: bytes) -> bool:
    """From a mail system, or a delivery-status report: a message the office should
    hear about when `read_report` could not make sense of it."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return _from_mail_system(msg) or (
        msg.get_content_type() == "multipart/report"
        and msg.get_param("report-type", "", header="content-type") == "delivery-status")


def _text(msg: EmailMessage) -> str:
    """Every text part of the bounce, decoded (an unknown charset as Latin-1), at most
    MAX_TEXT characters, lines longer than MAX_LINE cut (for the heuristics)."""
    chunks = []
    for part in msg.walk():
        if part.get_content_maintype() == "text" or part.get_content_type() in _HEADER_TYPES:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                chunks.append(_decode(payload, part.get_content_charset()))
    text = "\n".join(chunks)[:MAX_TEXT]
    return "\n".join(line[:MAX_LINE] for line in text.splitlines())


def _decode(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", "replace")
    except LookupError:  # "unknown-8bit" and other names no codec has
        return data.decode("latin-1")


def _original_ids(msg: EmailMessage) -> tuple[str, ...]:
    """The original mail's Message-ID as the bounce returns it, the most certain
    first: the Message-ID field of the returned headers or message, then a
    Message-ID line in the returned copy below the bounce's own words (Exim's "copy
    of the message"). Never References or In-Reply-To, never any other <…@…>: a
    bounce of someone's answer to our mail must not count as a bounce of our mail."""
    out: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                out.append(str(inner[0].get("Message-ID", "")).strip())
        elif ctype in _HEADER_TYPES:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                out += _MID_LINE.findall(_decode(payload, part.get_content_charset())[:MAX_TEXT])
    if not out and msg.get_content_maintype() == "text":
        text = _text(msg)
        returned = _RETURNED.search(text)
        if returned:
            out += _MID_LINE.findall(text[returned.start():])
    own = str(msg.get("Message-ID", "")).strip()
    unique = [m for m in dict.fromkeys(o for o in out if o.startswith("<")) if m != own]
    return tuple(unique[:MAX_CANDIDATES])


class Parser:
    """The BounceParser port, for the use case."""

    read_report = staticmethod(read_report)
    looks_like_bounce = staticmethod(looks_like_bounce)
