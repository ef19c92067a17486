"""E-invoices (#18): real ZUGFeRD / Factur-X / XRechnung files, made with the factur-x
library, recorded from a real folder and mailed to aiosmtpd: the profile found, the
verdict, the `[einvoice]` rule in both actions, the buyer address (BT-49), and the
attachment byte for byte as recorded."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
from datetime import date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.einvoice_files import (
    einvoice_pdf,
    invoice_xml,
    pdf_with_attachment,
    ubl_xml,
    zugferd1_pdf,
    zugferd1_xml,
)
from tests.helpers import (
    Cert,
    FakeClock,
    Site,
    SmtpServer,
    open_outbox,
    status_json,
    write_site,
)
from tikos_outbox.core.einvoice import Rule, profile_of
from tikos_outbox.core.views import ListFilter
from tikos_outbox.samples import make_pdf
from tikos_outbox.usecases.intake import FirstPass

BERLIN = ZoneInfo("Europe/Berlin")

XPATTERN = r"^(?P<doctype>RE|LS)_(?P<docno>\d+)_(?P<customer>\d+)\.(pdf|xml)$"
CUSTOMERS = "mandant;customer;email\n1;4716;buchhaltung@hotel-post.test\n"
PEPPOL = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"


def site_for(tmp_path: Path, srv: SmtpServer, rule: str = "", recipients: str = "",
             customers: str = CUSTOMERS) -> Site:
    (tmp_path / "kunden.csv").write_text(customers, encoding="utf-8")
    extra = f"\n[einvoice]\n{rule}\n" if rule else ""
    return write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False},
                      recipients=recipients or 'csv = "kunden.csv"',
                      mandants=[{"id": 1, "name": "Nord", "pattern": XPATTERN}], extra=extra)


def show(site: Site, capsys: pytest.CaptureFixture[str], entry_id: int) -> dict[str, Any]:
    capsys.readouterr()
    assert site.cli("show", str(entry_id), "--json") == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def entries(site: Site, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    """Every entry by file name (list --json)."""
    capsys.readouterr()
    assert site.cli("list", "--json", "--limit", "1000") == 0
    return {e["file_name"]: e for e in json.loads(capsys.readouterr().out)}


def attachments(srv: SmtpServer) -> dict[str, EmailMessage]:
    """The attachment part of each received mail, by its file name."""
    out = {}
    for r in srv.received:
        msg = email.message_from_bytes(r.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        [part] = list(msg.iter_attachments())
        assert isinstance(part, EmailMessage)
        out[str(part.get_filename())] = part
    return out


# -- the table of the README: every row ------------------------------------------------------

BAD_SCHEMA = invoice_xml("EN 16931").replace(
    b"<ram:TypeCode>380</ram:TypeCode>", b"<ram:TypeCode>380</ram:TypeCode><ram:Extra/>")

#: file -> (its bytes, (format, profile, valid_invoice) or None, the state after scan)
TABLE: dict[str, tuple[bytes, tuple[str, str, bool] | None, str]] = {
    "RE_1001_4716.pdf": (einvoice_pdf("MINIMUM", "1001"), ("Factur-X", "MINIMUM", False),
                         "pending"),
    "RE_1002_4716.pdf": (einvoice_pdf("BASIC WL", "1002"), ("Factur-X", "BASIC WL", False),
                         "pending"),
    "RE_1003_4716.pdf": (einvoice_pdf("BASIC", "1003"), ("Factur-X", "BASIC", True), "pending"),
    "RE_1004_4716.pdf": (einvoice_pdf("EN 16931", "1004"), ("Factur-X", "EN 16931", True),
                         "pending"),
    "RE_1005_4716.pdf": (einvoice_pdf("EXTENDED", "1005"), ("Factur-X", "EXTENDED", True),
                         "pending"),
    "RE_1006_4716.pdf": (einvoice_pdf("XRECHNUNG", "1006"),
                         ("XRechnung", "XRECHNUNG 3.0", True), "pending"),
    "RE_1007_4716.pdf": (make_pdf(["Rechnung 1007"]), None, "pending"),
    "RE_1008_4716.pdf": (pdf_with_attachment("Stundenzettel.txt", b"Mo 8 h", "1008"), None,
                         "pending"),
    "RE_1009_4716.pdf": (pdf_with_attachment("zugferd-invoice.xml", invoice_xml("EN 16931")),
                         ("ZUGFeRD", "EN 16931", True), "pending"),
    "RE_1010_4716.pdf": (pdf_with_attachment("factur-x.xml", b"<rsm:CrossIndustryInvoice"),
                         ("Factur-X", "?", False), "pending"),
    "RE_1011_4716.pdf": (pdf_with_attachment("factur-x.xml", BAD_SCHEMA),
                         ("Factur-X", "EN 16931", False), "pending"),
    "RE_1012_4716.xml": (ubl_xml("1012"), ("XRechnung", "XRECHNUNG 3.0", True), "pending"),
    "RE_1013_4716.xml": (invoice_xml("XRECHNUNG", "1013"), ("XRechnung", "XRECHNUNG 3.0", True),
                         "pending"),
    "RE_1014_4716.xml": (invoice_xml("XRECHNUNG", "1014")[:200], None, "held"),
    "RE_1015_4716.xml": (b"<?xml version='1.0'?><Lieferschein/>", None, "held"),
    "RE_1016_4716.xml": (ubl_xml("1016", guideline=PEPPOL), ("XML", "PEPPOL BIS 3.0", True),
                         "pending"),
    "RE_1017_4716.pdf": (zugferd1_pdf("comfort", "1017"), ("ZUGFeRD", "1.0 COMFORT", False),
                         "pending"),
    "RE_1018_4716.xml": (zugferd1_xml("extended", "1018"), ("XML", "1.0 EXTENDED", False),
                         "pending"),
}


def test_every_format_and_profile_is_recognised_and_sent_byte_for_byte(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv)
        for name, (data, _, _) in TABLE.items():
            (site.mandant_folder() / name).write_bytes(data)
        assert site.cli("scan") == 0
        listed = entries(site, capsys)
        assert set(listed) == set(TABLE)
        for name, (data, expected, state) in TABLE.items():
            e = listed[name]
            found = e["einvoice"]
            got = (found["format"], found["profile"], found["valid_invoice"]) if found else None
            assert (got, e["state"]) == (expected, state), name
            assert e["sha256"] == hashlib.sha256(data).hexdigest()
        full = show(site, capsys, listed["RE_1012_4716.xml"]["id"])["einvoice"]
        assert full == {"format": "XRechnung", "profile": "XRECHNUNG 3.0",
                        "valid_invoice": True, "buyer_email": "einkauf@hotel-post.test",
                        "syntax": "UBL", "guideline": full["guideline"], "problem": None,
                        "attachment": None, "number": "1012"}
        assert "xrechnung_3.0" in full["guideline"]
        assert "Extra" in listed["RE_1011_4716.pdf"]["einvoice"]["problem"]
        assert "not expected" in listed["RE_1011_4716.pdf"]["einvoice"]["problem"]
        assert "not a well-formed XML" in listed["RE_1014_4716.xml"]["reason"]
        assert "root element is 'Lieferschein'" in listed["RE_1015_4716.xml"]["reason"]
        assert "release --force" in listed["RE_1014_4716.xml"]["attention"]

        assert site.cli("flush") == 0
        mailed = attachments(srv)
        sent = {n for n, (_, _, state) in TABLE.items() if state == "pending"}
        assert set(mailed) == sent  # the broken XML files were not mailed
        for name in sent:
            part = mailed[name]
            assert part.get_content() == TABLE[name][0], name  # the bytes as recorded
            kind = "application/xml" if name.endswith(".xml") else "application/pdf"
            assert part.get_content_type() == kind, name
            assert part["Content-Transfer-Encoding"] == "base64"
        capsys.readouterr()
        assert site.cli("list") == 0
        table = capsys.readouterr().out
        assert "XRechnung XRECHNUNG 3.0 ✓" in table and "Factur-X MINIMUM ✗" in table


def test_show_says_what_the_e_invoice_is_in_words(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv)
        (site.mandant_folder() / "RE_2001_4716.pdf").write_bytes(einvoice_pdf("BASIC WL", "2001"))
        (site.mandant_folder() / "RE_2002_4716.pdf").write_bytes(make_pdf(["x"]))
        assert site.cli("scan") == 0
        capsys.readouterr()
        assert site.cli("show", "1") == 0
        out = capsys.readouterr().out
        assert ("e-invoice:   Factur-X BASIC WL (CII, factur-x.xml in the PDF, invoice number"
                " 2001, buyer address (BT-49) einkauf@hotel-post.test): NOT a valid invoice:"
                " the profile BASIC WL is no e-invoice after EN 16931") in out
        assert site.cli("show", "2") == 0
        assert "e-invoice:   none (a PDF without ZUGFeRD" in capsys.readouterr().out


# -- the rule --------------------------------------------------------------------------------


def test_hold_keeps_invoices_that_are_no_e_invoice_until_released_or_made_again(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv, 'required_from = 2026-01-01\naction = "hold"')
        folder = site.mandant_folder()
        (folder / "RE_3001_4716.pdf").write_bytes(make_pdf(["Rechnung 3001"]))  # plain PDF
        (folder / "RE_3002_4716.pdf").write_bytes(einvoice_pdf("MINIMUM", "3002"))
        (folder / "RE_3003_4716.pdf").write_bytes(einvoice_pdf("EN 16931", "3003"))
        (folder / "LS_3004_4716.pdf").write_bytes(make_pdf(["Lieferschein"]))  # no invoice
        (folder / "RE_3005_4716.pdf").write_bytes(pdf_with_attachment("factur-x.xml",
                                                                      BAD_SCHEMA))
        assert site.cli("scan") == 0
        listed = entries(site, capsys)
        states = {n: e["state"] for n, e in listed.items()}
        assert states == {"RE_3001_4716.pdf": "held", "RE_3002_4716.pdf": "held",
                          "RE_3003_4716.pdf": "pending", "LS_3004_4716.pdf": "pending",
                          "RE_3005_4716.pdf": "held"}
        plain = listed["RE_3001_4716.pdf"]
        assert plain["reason"].startswith("not a valid e-invoice: a PDF without e-invoice data")
        assert plain["attention"] == (
            "Rechnung 3001, Kunde 4716: keine gültige E-Rechnung (nur PDF, ohne"
            " E-Rechnungsdaten (kein ZUGFeRD, keine XRechnung)), ab 01.01.2026 Pflicht — in"
            " TIKOS als E-Rechnung (ZUGFeRD ab Profil BASIC oder XRechnung) neu erzeugen: die"
            f" neue Datei geht von selbst hinaus; oder `tikos-outbox release {plain['id']}`, um sie"
            " trotzdem so zu senden")
        assert "Factur-X MINIMUM ist keine E-Rechnung" in listed["RE_3002_4716.pdf"]["attention"]
        assert "besteht die Schemaprüfung nicht: Element 'Extra'" in (
            listed["RE_3005_4716.pdf"]["attention"])
        assert status_json(site, capsys)["attention"] == 3

        assert site.cli("flush") == 0
        assert set(attachments(srv)) == {"RE_3003_4716.pdf", "LS_3004_4716.pdf"}
        # the office releases the plain PDF on purpose: no --force needed, it is a PDF
        assert site.cli("release", str(plain["id"])) == 0
        assert site.cli("flush") == 0
        assert "RE_3001_4716.pdf" in attachments(srv)
        # TIKOS writes 3002 again, now as an e-invoice: the new file goes out by itself,
        # the held MINIMUM one is superseded
        (folder / "RE_3002_4716.pdf").write_bytes(einvoice_pdf("EXTENDED", "3002"))
        assert site.cli("scan") == 0
        assert site.cli("flush") == 0
        mails = attachments(srv)
        assert mails["RE_3002_4716.pdf"].get_content() == (folder / "RE_3002_4716.pdf").read_bytes()
        capsys.readouterr()
        assert site.cli("list", "--json") == 0
        versions = [(e["state"], e["reason"]) for e in json.loads(capsys.readouterr().out)
                    if e["file_name"] == "RE_3002_4716.pdf"]
        assert [v[0] for v in versions] == ["sent", "skipped"]
        assert versions[1][1].startswith("superseded by entry")
        assert len(srv.received) == 4  # each once


def test_zugferd_1_0_is_recognised_and_is_no_e_invoice(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    """A ZUGFeRD 1.0 invoice (CrossIndustryDocument, valid against its own schema) in a
    PDF as ZUGFeRD-invoice.xml: its profile is named, and it is no e-invoice."""
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv, 'required_from = 2026-01-01\naction = "hold"')
        (site.mandant_folder() / "RE_3201_4716.pdf").write_bytes(zugferd1_pdf("comfort", "3201"))
        assert site.cli("scan") == 0
        entry = show(site, capsys, 1)
        assert entry["einvoice"] == {
            "format": "ZUGFeRD", "profile": "1.0 COMFORT", "valid_invoice": False,
            "buyer_email": None, "syntax": "ZUGFeRD 1.0",
            "guideline": "urn:ferd:CrossIndustryDocument:invoice:1p0:comfort",
            "problem": "the profile 1.0 COMFORT is no e-invoice after EN 16931 (ZUGFeRD 1.0"
                       " is older than the standard)",
            "attachment": "ZUGFeRD-invoice.xml", "number": "3201"}
        assert entry["state"] == "held"
        assert entry["attention"].startswith(
            "Rechnung 3201, Kunde 4716: keine gültige E-Rechnung (ZUGFeRD 1.0 COMFORT ist keine"
            " E-Rechnung nach EN 16931), ab 01.01.2026 Pflicht")
        capsys.readouterr()
        assert site.cli("list") == 0
        assert "ZUGFeRD 1.0 COMFORT ✗" in capsys.readouterr().out


def by_path(site: Site, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    """Every entry by its path in the folder, the newest version of each (list --json)."""
    capsys.readouterr()
    assert site.cli("list", "--json", "--limit", "1000") == 0
    return {e["path"]: e for e in sorted(json.loads(capsys.readouterr().out),
                                         key=lambda e: e["id"])}


def test_the_identity_rules_decide_before_the_hold(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    """The hold only keeps back what would otherwise go out: a copy of a held invoice
    under another path is a duplicate, and a changed version of a sent one is held
    naming the earlier send, so that releasing never mails the customer unawares."""
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv, 'required_from = 2026-01-01\naction = "hold"')
        folder = site.mandant_folder()
        plain = make_pdf(["Rechnung 3101"])
        (folder / "RE_3101_4716.pdf").write_bytes(plain)
        (folder / "RE_3102_4716.pdf").write_bytes(einvoice_pdf("EN 16931", "3102"))
        assert site.cli("scan") == 0 and site.cli("flush") == 0
        first = by_path(site, capsys)["RE_3102_4716.pdf"]["id"]
        (folder / "Kopie").mkdir()
        (folder / "Kopie" / "RE_3101_4716.pdf").write_bytes(plain)  # the same bytes
        (folder / "RE_3102_4716.pdf").write_bytes(make_pdf(["Rechnung 3102", "geändert"]))
        assert site.cli("scan") == 0
        listed = by_path(site, capsys)
        held, sent = listed["RE_3101_4716.pdf"], listed["RE_3102_4716.pdf"]
        copy = listed["Kopie/RE_3101_4716.pdf"]
        assert (copy["state"], copy["reason"]) == ("skipped", f"duplicate of entry {held['id']}")
        assert copy["attention"] is None
        assert sent["state"] == "held"
        assert sent["reason"] == (f"changed after it was sent as entry {first}; not a valid"
                                  " e-invoice: a PDF without e-invoice data (no ZUGFeRD,"
                                  " Factur-X or XRechnung XML)")
        assert sent["attention"] == (
            f"Rechnung 3102, Kunde 4716: geändert, nachdem sie als Eintrag {first} versendet"
            " wurde, und keine gültige E-Rechnung (nur PDF, ohne E-Rechnungsdaten (kein"
            " ZUGFeRD, keine XRechnung)), ab 01.01.2026 Pflicht — in TIKOS als E-Rechnung neu"
            f" erzeugen und die neue Datei freigeben; oder `tikos-outbox release {sent['id']}`,"
            " um diese Fassung trotzdem zu senden (der Kunde bekommt die Rechnung dann ein"
            " zweites Mal)")
        # the office releases what is held: each invoice once, the changed one on purpose
        assert site.cli("release", str(held["id"]), str(sent["id"])) == 0
        assert site.cli("flush") == 0
        names = [attachments_name(r.data) for r in srv.received]
        assert sorted(names) == ["RE_3101_4716.pdf", "RE_3102_4716.pdf", "RE_3102_4716.pdf"]
        # TIKOS writes 3102 again as an e-invoice: held as a changed version (no e-invoice
        # reason), as the line said
        (folder / "RE_3102_4716.pdf").write_bytes(
            einvoice_pdf("EN 16931", "3102", buyer_email="buchhaltung@hotel-post.test"))
        assert site.cli("scan") == 0
        again = by_path(site, capsys)["RE_3102_4716.pdf"]
        assert (again["state"], again["reason"]) == (
            "held", f"changed after it was sent as entry {sent['id']}")


def test_warn_sends_and_the_daily_report_lists_the_invoice(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv, "required_from = 2026-01-01")  # action: warn
        folder = site.mandant_folder()
        (folder / "RE_4001_4716.pdf").write_bytes(make_pdf(["Rechnung 4001"]))
        (folder / "RE_4002_4716.pdf").write_bytes(
            einvoice_pdf("BASIC", "4002", buyer_email="buchhaltung@hotel-post.test"))
        capsys.readouterr()
        assert site.cli("scan") == 0
        assert "RE 4001 of customer 4716 is a PDF without e-invoice data" in (
            capsys.readouterr().err)
        assert site.cli("flush") == 0
        assert set(attachments(srv)) == {"RE_4001_4716.pdf", "RE_4002_4716.pdf"}
        warned = show(site, capsys, 1)
        assert warned["state"] == "sent" and warned["attention"] is None
        [note] = warned["notices"]
        assert note.startswith("Rechnung 4001, Kunde 4716: als keine gültige E-Rechnung"
                               " versendet (nur PDF")
        assert show(site, capsys, 2)["notices"] == []
        assert status_json(site, capsys)["attention"] == 0  # it reached the customer
        with site.config.open("a", encoding="utf-8") as f:
            f.write("\n[report]\nto = ['buero@musterwaescherei.example']\n")
        outbox = open_outbox(site)
        assert outbox.report.send(outbox.clock.now().astimezone(
            outbox.config.window.tz).date())
        outbox.close()
        report = email.message_from_bytes(srv.received[-1].data, policy=email.policy.default)
        assert isinstance(report, EmailMessage)
        body = report.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert "Seit dem letzten Bericht aufgenommen, mit Hinweis — bitte prüfen (1):" in text
        assert "- Eintrag 1 (sent" in text and note in text
        assert "4002" not in text


OFFICE = "buero@musterwaescherei.example"


def report_texts(srv: SmtpServer) -> list[str]:
    """The body of each daily report the office got, in order."""
    out = []
    for r in srv.received:
        if r.rcpt_tos == [OFFICE]:
            msg = email.message_from_bytes(r.data, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            body = msg.get_body(("plain",))
            assert body is not None
            out.append(str(body.get_content()))
    return out


def write(path: Path, data: bytes, clock: FakeClock) -> None:
    """A file TIKOS writes at the clock's time (a minute before it: settled)."""
    path.write_bytes(data)
    then = clock.now().timestamp() - 60
    os.utime(path, (then, then))


def noticed_in(text: str) -> list[int]:
    """The entry numbers a report lists under its notes."""
    part = text.split("mit Hinweis", 1)[1] if "mit Hinweis" in text else ""
    return [int(line.split()[2]) for line in part.splitlines()
            if line.startswith("- Eintrag ")]


def test_every_noted_invoice_is_in_exactly_one_daily_report(
        tmp_path: Path, cert: Cert) -> None:
    """Not only those of the report's day: one recorded after the day's report, or on
    a day without send runs (the weekend), is in the next report; a report that could
    not be sent lists them again."""
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv, "required_from = 2026-01-01")  # action: warn
        with site.config.open("a", encoding="utf-8") as f:
            f.write(f"\n[report]\nto = ['{OFFICE}']\n")
        folder = site.mandant_folder()
        clock = FakeClock(datetime(2026, 11, 26, 10, tzinfo=BERLIN))  # a Thursday
        svc = open_outbox(site, clock)

        def record(docno: str) -> None:
            write(folder / f"RE_{docno}_4716.pdf", make_pdf([f"Rechnung {docno}"]), clock)
            svc.scan(FirstPass.NONE)
            svc.delivery.send_due(force=True)

        record("4101")
        clock.advance(8 * 3600 + 300)  # 18:05, after the day's last run
        assert svc.report.send(date(2026, 11, 26))
        clock.advance(3600)
        record("4102")  # after the report
        clock.advance(2 * 86400)  # Saturday: no send run, no report
        record("4103")
        srv.behaviour.data_reply = "451 4.3.0 try again later"
        clock.advance(2 * 86400)  # Monday 19:05
        assert not svc.report.send(date(2026, 11, 30))  # not sent: nothing is marked
        srv.behaviour.data_reply = None
        assert svc.report.send(date(2026, 11, 30))
        clock.advance(86400)
        assert not svc.report.send(date(2026, 12, 1))  # nothing new: no report
        svc.store.close()
        assert [noticed_in(t) for t in report_texts(srv)] == [[1], [2, 3]]
        assert "Rechnung 4103, Kunde 4716: als keine gültige E-Rechnung" in (
            report_texts(srv)[1])


def test_a_note_the_later_lookup_adds_is_reported_too(tmp_path: Path, cert: Cert) -> None:
    """An invoice whose addresses are looked up only at a later run (the address file
    could not be read at intake) may still get a note then: the report keeps the
    notes after it for the next report instead of passing it by."""
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv, "required_from = 2026-01-01")
        with site.config.open("a", encoding="utf-8") as f:
            f.write(f"\n[report]\nto = ['{OFFICE}']\n")
        folder = site.mandant_folder()
        clock = FakeClock(datetime(2026, 11, 26, 10, tzinfo=BERLIN))
        svc = open_outbox(site, clock)
        (tmp_path / "kunden.csv").rename(tmp_path / "kunden.weg")
        write(folder / "RE_4201_4716.pdf", einvoice_pdf("EN 16931", "4201"), clock)
        write(folder / "RE_4202_4716.pdf", make_pdf(["Rechnung 4202"]), clock)
        svc.scan(FirstPass.NONE)  # recorded, not looked up; 4202 noted: no e-invoice
        clock.advance(8 * 3600)
        svc.delivery.send_due(force=True)  # still no address file
        assert [v.notices != [] for v in svc.store.queries.list_entries(
            ListFilter(oldest_first=True))] == [False, True]
        assert not svc.report.send(date(2026, 11, 26))  # 4202 waits for 4201
        (tmp_path / "kunden.weg").rename(tmp_path / "kunden.csv")
        clock.advance(86400)
        svc.delivery.send_due(force=True)  # 4201 looked up: another buyer address
        assert svc.report.send(date(2026, 11, 27))
        svc.store.close()
        [text] = report_texts(srv)
        assert noticed_in(text) == [1, 2]
        assert "die E-Rechnung nennt einkauf@hotel-post.test" in text


def test_before_required_from_and_without_it_invoices_are_only_counted(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv, 'required_from = 2099-01-01\naction = "hold"')
        folder = site.mandant_folder()
        (folder / "RE_5001_4716.pdf").write_bytes(make_pdf(["Rechnung 5001"]))
        (folder / "RE_5002_4716.pdf").write_bytes(einvoice_pdf("BASIC WL", "5002"))
        (folder / "RE_5003_4716.pdf").write_bytes(einvoice_pdf("EN 16931", "5003"))
        (folder / "RE_5004_4716.xml").write_bytes(ubl_xml("5004"))
        (folder / "LS_5005_4716.pdf").write_bytes(make_pdf(["Lieferschein"]))
        assert site.cli("scan") == 0
        assert {e["state"] for e in entries(site, capsys).values()} == {"pending"}
        st = status_json(site, capsys)
        assert st["attention"] == 0
        e = st["einvoice"]
        assert (e["valid"], e["invalid"], e["none"]) == (2, 1, 1)  # the LS is no invoice
        assert e["doctypes"] == ["RE"] and e["required_from"] == "2099-01-01"
        assert e["action"] == "hold"
        capsys.readouterr()
        assert site.cli("status") == 0
        assert ": 2 valid, 1 not valid, 1 PDF only; from 2099-01-01 the others are held" in (
            capsys.readouterr().out)
        assert site.cli("flush") == 0 and len(srv.received) == 5


# -- the buyer's address (BT-49) -------------------------------------------------------------


def test_a_buyer_address_other_than_tikos_is_noted_and_the_lookup_is_used(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    customers = CUSTOMERS + "1;4717;Einkauf@Hotel-Post.test\n"
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv, customers=customers)
        folder = site.mandant_folder()
        (folder / "RE_6001_4716.pdf").write_bytes(einvoice_pdf("EN 16931", "6001", "4716"))
        (folder / "RE_6002_4717.pdf").write_bytes(einvoice_pdf("EN 16931", "6002", "4717"))
        assert site.cli("scan") == 0
        [note] = show(site, capsys, 1)["notices"]
        assert note == ("Dokument 6001, Kunde 4716: die E-Rechnung nennt einkauf@hotel-post.test"
                        " als Adresse des Käufers (BT-49), der Adressdatei kunden.csv hat"
                        " buchhaltung@hotel-post.test; gesendet an buchhaltung@hotel-post.test"
                        " — die Adresse in der Adressdatei kunden.csv oder in der Rechnung"
                        " berichtigen")
        assert show(site, capsys, 2)["notices"] == []  # the same address, case aside
        assert site.cli("flush") == 0
        assert sorted(r.rcpt_tos[0] for r in srv.received) == [
            "Einkauf@hotel-post.test", "buchhaltung@hotel-post.test"]


def test_a_buyer_address_looked_up_later_is_noted_too(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    """The lookup done at the send run (the address file could not be read at intake)
    and again after a requeue notes another BT-49 on the entry, once."""
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv)
        (tmp_path / "kunden.csv").rename(tmp_path / "kunden.weg")
        (site.mandant_folder() / "RE_6101_4716.pdf").write_bytes(
            einvoice_pdf("EN 16931", "6101"))
        assert site.cli("scan") == 0
        waiting = show(site, capsys, 1)
        assert (waiting["state"], waiting["recipients"], waiting["notices"]) == (
            "pending", [], [])
        (tmp_path / "kunden.weg").rename(tmp_path / "kunden.csv")
        assert site.cli("flush") == 0
        [note] = show(site, capsys, 1)["notices"]
        assert note.startswith("Dokument 6101, Kunde 4716: die E-Rechnung nennt"
                               " einkauf@hotel-post.test als Adresse des Käufers (BT-49)")
        assert srv.received[0].rcpt_tos == ["buchhaltung@hotel-post.test"]
        assert site.cli("requeue", "1") == 0 and site.cli("flush") == 0
        assert len(srv.received) == 2
        assert show(site, capsys, 1)["notices"] == [note]  # looked up again: still once


def test_source_einvoice_mails_the_buyer_address_and_falls_back_to_the_lookup(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv, recipients='source = "einvoice"\ncsv = "kunden.csv"')
        folder = site.mandant_folder()
        (folder / "RE_7001_4716.pdf").write_bytes(einvoice_pdf("EN 16931", "7001"))
        (folder / "RE_7002_4716.pdf").write_bytes(einvoice_pdf("EN 16931", "7002",
                                                               buyer_email=None))
        (folder / "RE_7003_4716.pdf").write_bytes(make_pdf(["Rechnung 7003"]))
        (folder / "RE_7004_4716.pdf").write_bytes(einvoice_pdf("EN 16931", "7004",
                                                               buyer_email="kein Postfach"))
        assert site.cli("scan") == 0
        assert site.cli("flush") == 0
        rcpt = {attachments_name(r.data): r.rcpt_tos for r in srv.received}
        assert rcpt == {"RE_7001_4716.pdf": ["einkauf@hotel-post.test"],
                        "RE_7002_4716.pdf": ["buchhaltung@hotel-post.test"],
                        "RE_7003_4716.pdf": ["buchhaltung@hotel-post.test"],
                        "RE_7004_4716.pdf": ["buchhaltung@hotel-post.test"]}
        # requeued, it is looked up again: still the e-invoice's address
        assert site.cli("requeue", "1") == 0
        assert site.cli("flush") == 0
        assert srv.received[-1].rcpt_tos == ["einkauf@hotel-post.test"]


def attachments_name(data: bytes) -> str:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    [part] = list(msg.iter_attachments())
    return str(part.get_filename())


def test_source_einvoice_alone_needs_no_address_source(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv, recipients='source = "einvoice"')
        folder = site.mandant_folder()
        (folder / "RE_8001_4716.pdf").write_bytes(einvoice_pdf("EN 16931", "8001"))
        (folder / "RE_8002_4716.pdf").write_bytes(make_pdf(["Rechnung 8002"]))
        capsys.readouterr()
        assert site.cli("check") == 0
        assert "only from the e-invoice (BT-49)" in capsys.readouterr().out
        assert site.cli("scan") == 0
        listed = entries(site, capsys)
        assert listed["RE_8001_4716.pdf"]["recipients"] == ["einkauf@hotel-post.test"]
        nobody = listed["RE_8002_4716.pdf"]
        assert nobody["state"] == "skipped" and "keine gültige E-Mail-Adresse" in (
            nobody["attention"])


# -- safety and configuration ------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "problem"), [
    ('action = "block"', "key 'einvoice.action': must be one of warn, hold, not 'block'"),
    ('required_from = "1.1.2027"', "is not a date like 2027-01-01 or 01.01.2027"),
    ("required_from = 2027", "must be a date like 2027-01-01"),
    ("doctypes = []", "must name the invoice document types"),
    ("profile = 'BASIC'", "key 'einvoice.profile': is not a known key"),
])
def test_bad_einvoice_settings_are_named(tmp_path: Path, cert: Cert, rule: str, problem: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv, rule)
        capsys.readouterr()
        assert site.cli("status") != 0
        assert problem in capsys.readouterr().err


def test_check_states_the_rule_and_a_doctype_no_pattern_gives(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv, 'required_from = 01.01.2027\ndoctypes = ["RE", "GS"]'
                        .replace("01.01.2027", "'01.01.2027'"))
        capsys.readouterr()
        assert site.cli("check") == 1
        out = capsys.readouterr().out
        assert ("from 01.01.2027, RE, GS that are not a valid e-invoice are sent, and listed in"
                " the daily report") in out
        assert "names GS, which mandant 1's pattern never gives (LS|RE)" in out


def test_check_warns_when_the_pattern_takes_the_pdf_and_the_xml_of_one_invoice(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    """TIKOS writing a ZUGFeRD PDF and an XRechnung for the same invoice, with a pattern
    that takes both, would mail it twice: check says so before the first run."""
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv)
        folder = site.mandant_folder()
        (folder / "2027").mkdir()
        (folder / "RE_1001_4716.pdf").write_bytes(einvoice_pdf("EN 16931", "1001"))
        (folder / "2027" / "RE_1001_4716.xml").write_bytes(invoice_xml("XRECHNUNG", "1001"))
        (folder / "RE_1002_4716.xml").write_bytes(ubl_xml("1002"))  # one file per invoice
        (folder / "LS_1002_4716.pdf").write_bytes(make_pdf(["Lieferschein 1002"]))
        capsys.readouterr()
        assert site.cli("check") == 1
        out = capsys.readouterr().out
        assert ("FAIL  mandant 1 pattern: takes both RE_1001_4716.pdf and 2027/RE_1001_4716.xml:"
                " each file is mailed as a document of its own, so the customer gets the"
                " invoice twice; let the pattern take only the .pdf or only the .xml files,"
                " unless TIKOS writes one file per invoice") in out
        (folder / "RE_1003_4716.pdf").write_bytes(make_pdf(["Rechnung 1003"]))
        (folder / "RE_1003_4716.xml").write_bytes(invoice_xml("XRECHNUNG", "1003"))
        assert site.cli("check") == 1
        assert "RE_1003_4716.xml (and 1 more): each file" in capsys.readouterr().out
        text = site.config.read_text(encoding="utf-8")
        site.config.write_text(text.replace("(pdf|xml)", "pdf"), encoding="utf-8")
        assert site.cli("check") == 0  # the pattern takes only the PDFs
        assert "mandant 1 pattern" not in capsys.readouterr().out


# -- the profiles, without I/O ---------------------------------------------------------------


@pytest.mark.parametrize(("guideline", "expected"), [
    ("urn:factur-x.eu:1p0:minimum", ("MINIMUM", False)),
    ("urn:zugferd.de:2p0:basicwl", ("BASIC WL", False)),
    ("urn:cen.eu:en16931:2017#compliant#urn:zugferd.de:2p0:basic", ("BASIC", True)),
    ("urn:cen.eu:en16931:2017", ("EN 16931", True)),
    (" urn:cen.eu:en16931:2017#conformant#urn:factur-x.eu:1p0:extended\n", ("EXTENDED", True)),
    ("urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_2.3",
     ("XRECHNUNG 2.3", True)),
    (PEPPOL, ("PEPPOL BIS 3.0", True)),
    ("urn:cen.eu:en16931:2017#compliant#urn:example:cius", ("EN 16931 (CIUS)", True)),
    ("urn:ferd:CrossIndustryDocument:invoice:1p0:comfort", ("1.0 COMFORT", False)),
    ("urn:example:something", ("urn:example:something", False)),
])
def test_profile_of_each_guideline(guideline: str, expected: tuple[str, bool]) -> None:
    assert profile_of(guideline) == expected


def test_the_rule_applies_from_its_day_to_its_doctypes() -> None:
    from datetime import date

    rule = Rule(required_from=date(2027, 1, 1), doctypes=("RE", "GS"))
    assert not rule.applies("RE", date(2026, 12, 31))
    assert rule.applies("re", date(2027, 1, 1)) and rule.applies("GS", date(2028, 5, 1))
    assert not rule.applies("LS", date(2027, 1, 1))
    assert not Rule().applies("RE", date(2030, 1, 1))  # no required_from: never


def test_the_running_service_records_a_new_xrechnung_file_and_a_zugferd_pdf(
        tmp_path: Path, cert: Cert) -> None:
    from tests.helpers import service_running
    from tests.test_run import wait_until

    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv)
        with service_running(site) as svc:
            (site.mandant_folder() / "RE_9101_4716.xml").write_bytes(ubl_xml("9101"))
            (site.mandant_folder() / "RE_9102_4716.pdf").write_bytes(
                einvoice_pdf("EN 16931", "9102"))
            views = wait_until(lambda: found if len(
                found := svc.store.queries.list_entries(ListFilter())) == 2 else None)
        assert sorted((v.file_name, v.einvoice.profile if v.einvoice else "")
                      for v in views) == [("RE_9101_4716.xml", "XRECHNUNG 3.0"),
                                          ("RE_9102_4716.pdf", "EN 16931")]


def test_a_new_version_of_an_encrypted_pdf_is_not_held_for_the_old_one(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    """Held for its file (encrypted, or no e-invoice): TIKOS writing the document again
    cures it, unlike an administrator's hold, which a new version keeps."""
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["Rechnung 9201"]))))
    writer.encrypt("geheim")
    locked = io.BytesIO()
    writer.write(locked)
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv)
        path = site.mandant_folder() / "RE_9201_4716.pdf"
        path.write_bytes(locked.getvalue())
        assert site.cli("scan") == 0
        assert show(site, capsys, 1)["state"] == "held"
        path.write_bytes(make_pdf(["Rechnung 9201", "ohne Passwort"]))
        assert site.cli("scan") == 0
        assert show(site, capsys, 2)["state"] == "pending"
        assert show(site, capsys, 1)["state"] == "skipped"
        other = site.mandant_folder() / "RE_9202_4716.pdf"
        other.write_bytes(make_pdf(["Rechnung 9202"]))
        assert site.cli("scan") == 0 and site.cli("hold", "3") == 0
        other.write_bytes(make_pdf(["Rechnung 9202", "neu"]))
        assert site.cli("scan") == 0
        assert show(site, capsys, 4)["state"] == "held"  # the admin's hold still counts
