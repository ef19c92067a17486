"""`tikos-outbox demo`: the whole path on this machine, nothing configured.

A temporary archive with generated PDFs, an SQLite outbox, a capture SMTP
server on loopback that writes every mail it receives into a folder, one
scan and one flush through the real commands, and a short report.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tikos_outbox.credentials import create_key_file
from tikos_outbox.samples import make_pdf


class CaptureHandler:
    """aiosmtpd handler: every accepted message becomes one .eml file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        path = self.folder / f"{self.count:03d}.eml"
        rcpts = ", ".join(envelope.rcpt_tos)
        path.write_bytes(f"X-Envelope-To: {rcpts}\r\n".encode() + envelope.original_content)
        return "250 2.0.0 Ok: captured as " + path.name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


DEMO_CONFIG = """\
[outbox]
database = "outbox.db"
key_file = "tikos-outbox.key"

[schedule]
timezone = "Europe/Berlin"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
auth = "anonymous"
max_per_minute = 0

[sender]
address = "rechnung@musterwaescherei.example"
name = "Musterwäscherei GmbH"
reply_to = "info@musterwaescherei.example"

[watch]
settle_s = 0

[recipients]
csv = "recipients.csv"

[[mandant]]
id = 1
name = "Musterwäscherei Nord"
folder = "archive/M1"
pattern = '^(?P<doctype>RE|LS)_(?P<docno>\\d+)_(?P<customer>\\d+)\\.pdf$'
"""

RECIPIENTS = """mandant;customer;email
1;4711;einkauf@hotel-adler.example; buchhaltung@hotel-adler.example
1;4712;kueche@gasthof-sonne.example
"""


def run_demo(main: Callable[[list[str]], int], keep: bool = False) -> int:
    """The demo, running each step through `main` (the CLI's entry point)."""
    from aiosmtpd.controller import Controller

    base = Path(tempfile.mkdtemp(prefix="tikos-outbox-demo-"))
    mail_dir = base / "captured-mail"
    mail_dir.mkdir()
    archive = base / "archive" / "M1"
    archive.mkdir(parents=True)
    handler = CaptureHandler(mail_dir)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        config = base / "tikos-outbox.toml"
        config.write_text(DEMO_CONFIG.format(port=port), encoding="utf-8")
        (base / "recipients.csv").write_text(RECIPIENTS.replace("; ", ","), encoding="utf-8")
        create_key_file(base / "tikos-outbox.key")
        # history that was there before the first start: recorded, never mailed
        (archive / "2025").mkdir()
        (archive / "2025" / "RE_9001_4711.pdf").write_bytes(make_pdf(["Rechnung 9001"]))
        print(f"demo folder: {base}\n")
        print("$ tikos-outbox scan        (first start: what is there is the baseline)")
        main(["--config", str(config), "scan"])
        docs = {
            "RE_10001_4711.pdf": ["Musterwäscherei GmbH", "Rechnung 10001", "Kunde 4711"],
            "LS_20001_4711.pdf": ["Musterwäscherei GmbH", "Lieferschein 20001", "Kunde 4711"],
            "RE_10002_4712.pdf": ["Musterwäscherei GmbH", "Rechnung 10002", "Kunde 4712"],
            "RE_10003_4799.pdf": ["Musterwäscherei GmbH", "Rechnung 10003", "Kunde 4799"],
        }
        for name, lines in docs.items():
            (archive / name).write_bytes(make_pdf(lines))
        print("\n$ tikos-outbox scan        (TIKOS wrote four new documents)")
        main(["--config", str(config), "scan"])
        print("\n$ tikos-outbox flush")
        rc = main(["--config", str(config), "flush"])
        print("\n$ tikos-outbox list")
        main(["--config", str(config), "list"])
        print("\nWhat the capture server received:")
        for path in sorted(mail_dir.glob("*.eml")):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            attachments = [p.get_filename() for p in msg.iter_attachments()]
            print(f"  {path.name}: to {msg['X-Envelope-To']} | {msg['Subject']}"
                  f" | attached: {', '.join(str(a) for a in attachments)}")
        if keep:
            print(f"\nLook at: {mail_dir} (the mails), {base / 'outbox.db'} (the outbox),"
                  f" {config} (the config)")
            print(f"Try:     tikos-outbox --config {config} status")
        else:
            print("\nThe demo folder was removed; `tikos-outbox demo --keep` keeps it to look"
                  " around (the mails, the outbox, the config).")
        return rc
    finally:
        controller.stop()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
        sys.stdout.flush()
