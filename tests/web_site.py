"""A laundry's outbox for the web console's tests: documents recorded from a real
folder and sent to a real SMTP server on loopback, so that the console shows sent,
failed, held and pending entries with real attempts; and its two users."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.helpers import Behaviour, Cert, FakeClock, Site, SmtpServer, open_outbox, write_site
from tikos_outbox.core.console import WebRole, WebUser
from tikos_outbox.core.views import ListFilter
from tikos_outbox.samples import make_pdf
from tikos_outbox.usecases.intake import FirstPass
from tikos_outbox.usecases.users import hash_password
from tikos_outbox.wiring import Outbox

BERLIN = ZoneInfo("Europe/Berlin")
ADMIN, VIEWER = ("anna", "Anna-Passwort-1"), ("ben", "Ben-Passwort-22")
#: the tests' users get a cheap scrypt cost (it is part of the stored hash, so login
#: checks with it); `user add` stores the full cost, which test_web_cli checks
TEST_COST = 2**10
XSS_REPLY = "550 5.1.1 <script>alert('x')</script> no such user"


@dataclass
class Console:
    site: Site
    outbox: Outbox
    clock: FakeClock
    pdfs: dict[str, bytes]  # docno -> the file's bytes
    smtp: SmtpServer  # still running: later sends go to it
    behaviour: Behaviour  # what it answers (a test may change it)

    def write(self, path: Path, data: bytes) -> None:
        """A file of the archive, written a minute before the fake clock's now (the
        real clock may be past it: then the file would not have settled yet)."""
        path.write_bytes(data)
        settled = self.clock.now().timestamp() - 60
        os.utime(path, (settled, settled))

    def entry_of(self, docno: str) -> int:
        [view] = [v for v in self.outbox.admin.entries(ListFilter(limit=10_000))
                  if v.docno == docno]
        return view.id


@contextmanager
def console_site(root: Path, cert: Cert, extra: str = "") -> Iterator[Console]:
    """Five documents: 10021 sent, 10022 failed (its address refused, with a reply that
    would be a script in a page), 10023 sent to two addresses, 10024 held by an admin,
    10025 pending. The clock stands at 3 December 2026, 10:00 in Berlin. The SMTP
    server and the outbox stay open for the block."""
    behaviour = Behaviour(rcpt_replies={"weg@kunden.example": XSS_REPLY})
    with SmtpServer(cert, "none", behaviour=behaviour) as srv:
        console = _fill(root, srv, behaviour, extra)
        try:
            yield console
        finally:
            console.outbox.close()


def _fill(root: Path, srv: SmtpServer, behaviour: Behaviour, extra: str) -> Console:
    site = write_site(root, smtp={"port": srv.port}, watch={"baseline": False},
                      recipients='csv = "recipients.csv"', extra=extra)
    (root / "recipients.csv").write_text(
        "mandant;customer;email\n1;4711;buchhaltung@hotel-adler.example\n"
        "1;4712;weg@kunden.example\n"
        "1;4716;einkauf@pflegeheim.example;leitung@pflegeheim.example\n"
        "1;4717;kueche@klinik.example\n", encoding="utf-8")
    folder = site.mandant_folder()
    pdfs: dict[str, bytes] = {}
    for docno, customer in (("10021", "4711"), ("10022", "4712"), ("10023", "4716"),
                            ("10024", "4717")):
        data = make_pdf([f"Rechnung {docno}", f"Kunde {customer}"])
        (folder / f"RE_{docno}_{customer}.pdf").write_bytes(data)
        os.utime(folder / f"RE_{docno}_{customer}.pdf", (1764000000, 1764000000))
        pdfs[docno] = data
    clock = FakeClock(datetime(2026, 12, 3, 10, 0, tzinfo=BERLIN))
    outbox = open_outbox(site, clock)
    outbox.scan(FirstPass.NONE)
    console = Console(site, outbox, clock, pdfs, srv, behaviour)
    outbox.admin.hold([console.entry_of("10024")], "cli:root")
    report = outbox.delivery.send_due(force=True)
    assert report.sent == 2, report
    data = make_pdf(["Rechnung 10025", "Kunde 4711"])
    console.write(folder / "RE_10025_4711.pdf", data)
    pdfs["10025"] = data
    outbox.scan(FirstPass.NONE)
    for name, password, role in ((*ADMIN, WebRole.ADMIN), (*VIEWER, WebRole.VIEWER)):
        now = clock.now()
        assert outbox.store.console.add_user(
            WebUser(name, role, hash_password(password, n=TEST_COST), now, now), "cli:root")
    return console
