"""The send log as CSV for Excel ("Versandnachweis"): UTF-8 with a byte order mark
(so that Excel reads the umlauts), semicolons (a German Excel's list separator),
one line per recipient and document, times in the laundry's zone."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date, tzinfo

from tikos_outbox.core.attention import Language
from tikos_outbox.core.console import SendLogLine
from tikos_outbox.web.texts import delivery_word, role_word

HEADER_DE = ["Zeit", "Mandant", "Belegart", "Belegnummer", "Kunde", "Datei", "Empfänger",
             "Rolle", "Zustellung", "Antwort des Servers", "Message-ID", "SHA-256", "Eintrag"]
HEADER_EN = ["Time", "Mandant", "Type", "Document number", "Customer", "File", "Recipient",
             "Role", "Delivery", "Server's reply", "Message-ID", "SHA-256", "Entry"]
#: a cell that begins so is a formula to Excel: it is written with a leading apostrophe
#: (OWASP, "CSV Injection")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_name(first: date, last: date) -> str:
    return f"versandnachweis-{first:%Y-%m-%d}-bis-{last:%Y-%m-%d}.csv"


def csv_lines(lines: Iterable[SendLogLine], tz: tzinfo, language: Language) -> Iterator[bytes]:
    buffer = io.StringIO()
    out = csv.writer(buffer, delimiter=";", lineterminator="\r\n")

    def flush() -> bytes:
        data = buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
        return data

    out.writerow(HEADER_EN if language is Language.EN else HEADER_DE)
    yield b"\xef\xbb\xbf" + flush()
    for i, line in enumerate(lines, 1):
        at = line.at.astimezone(tz).strftime("%d.%m.%Y %H:%M:%S")
        out.writerow([at, line.mandant, _cell(line.doctype), _cell(line.docno),
                      _cell(line.customer), _cell(line.file_name), _cell(line.address),
                      role_word(line.role, language), delivery_word(line.state, language),
                      _cell(line.reply), _cell(line.message_id), line.sha256, line.entry_id])
        if i % 500 == 0:
            yield flush()
    yield flush()


def _cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_START) else text
