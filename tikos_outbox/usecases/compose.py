"""The mail of a claimed entry: the template filled, sender and recipients, the PDF."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tikos_outbox.core.intake import sha256_of
from tikos_outbox.core.message import Mail, message_bytes, needs_smtputf8, render
from tikos_outbox.core.ports import DocumentFiles, OutboxQueries
from tikos_outbox.core.settings import Config, Mandant
from tikos_outbox.core.views import Claimed

GONE = "the stored copy was purged and the archive file is gone or changed"
EMPTY = "the recorded document is empty (0 bytes); nothing was sent"


def mail_for(config: Config, m: Mandant, c: Claimed, pdf: bytes, now: datetime) -> Mail:
    """The mail for a claimed entry: template, sender, recipients, attachment."""
    local_now = now.astimezone(config.window.tz)
    fields = {name: "" for name in m.pattern.groupindex}
    fields.update(c.fields)
    fields.update(
        doctype=c.doctype, docno=c.docno, customer=c.customer, mandant=str(m.id),
        mandant_name=m.name, sender_name=m.sender.name, sender_address=m.sender.address,
        file_name=c.file_name, date=local_now.strftime("%d.%m.%Y"),
    )
    template = config.template(c.doctype)
    body = render(template.body, fields)
    if m.sender.signature:  # RFC 3676 §4.3: "-- " on a line of its own before it
        body = body.rstrip("\n") + "\n\n-- \n" + render(m.sender.signature, fields) + "\n"
    return Mail(
        sender_address=m.sender.address, sender_name=m.sender.name,
        reply_to=m.sender.reply_to, to=tuple(c.recipients),  # with their display names
        subject=render(template.subject, fields), body=body,
        filename=c.file_name, pdf=pdf, message_id=c.message_id, date=local_now,
    )


@dataclass(frozen=True)
class Built:
    data: bytes
    smtputf8: bool  # it has UTF-8 headers: only for a server that offers SMTPUTF8

    @property
    def eight_bit(self) -> bool:
        """Whether it needs a server with 8BITMIME (or must be built 7-bit)."""
        return not self.data.isascii()


class Composer:
    """Builds the message bytes of claimed entries from the outbox's own copy (or
    the archive file, if it is unchanged)."""

    def __init__(self, config: Config, queries: OutboxQueries, files: DocumentFiles) -> None:
        self.config = config
        self.queries = queries
        self.files = files

    def document(self, m: Mandant, c: Claimed) -> bytes | None:
        """Exactly the recorded bytes: the outbox's copy, or the archive file while it
        still has the recorded content; None when neither has them."""
        data = self.queries.load_copy(c.sha256)
        if data is not None and sha256_of(data) == c.sha256:
            return data
        return self.files.archive_copy(str(m.folder / c.path), c.sha256, m.folder)

    def build(self, m: Mandant, c: Claimed, now: datetime, seven_bit: bool = False
              ) -> Built | str:
        """The message of a claimed entry, or why it cannot be sent; `seven_bit` for a
        server without 8BITMIME (the text quoted-printable)."""
        data = self.document(m, c)
        if data is None:
            return GONE
        if not data:
            return EMPTY
        try:
            mail = mail_for(self.config, m, c, data, now)
            return Built(message_bytes(mail, seven_bit), needs_smtputf8(mail))
        except ValueError as exc:  # an address or template value that cannot be mailed
            return f"the message cannot be built: {exc}"
