"""The bounce formats in tests/bounces/ (written from the public descriptions: RFC
3464, Microsoft's and Exchange's NDRs, Exim's, a German freemail provider's
plain text) read by tikos_outbox.dsn; and what is never a bounce."""

from __future__ import annotations

from pathlib import Path

import pytest

from tikos_outbox.core.bounces import Kind, envid_for, unxtext, xtext
from tikos_outbox.dsn import looks_like_bounce, read_report

FIXTURES = Path(__file__).parent / "bounces"
MID = "<3f2a9c0d41e84b7a9d1c2b3a4f5e6d7c@waescherei.test>"
ADDRESS = "kunde@kunden.example"


def fixture(name: str, address: str = ADDRESS, message_id: str = MID) -> bytes:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return text.format(sender="rechnung@waescherei.test", address=address,
                       envid=envid_for(message_id), message_id=message_id).encode()


@pytest.mark.parametrize(("name", "kind", "status", "diagnostic", "standard"), [
    ("rfc3464_failed.eml", Kind.FAILED, "5.1.1",
     "550 5.1.1 <kunde@kunden.example>: Recipient address rejected: User unknown", True),
    ("rfc3464_delayed.eml", Kind.DELAYED, "4.4.1",
     "connect to mx.kunden.example[192.0.2.25]:25: Connection timed out", True),
    ("m365_ndr.eml", Kind.FAILED, "5.1.10",
     "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
     True),
    ("exchange_2007.eml", Kind.FAILED, "5.1.1",
     "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found", False),
    ("exchange_2003.eml", Kind.FAILED, "5.1.1",
     "The e-mail account does not exist at the organization this message was sent to.",
     False),
    ("exim_failed.eml", Kind.FAILED, "5.2.1",
     "550 5.2.1 Mailbox disabled for this recipient", False),
    ("freemail_de.eml", Kind.FAILED, "5.1.1",
     "550 5.1.1 Mailbox nicht vorhanden / mailbox unavailable", False),
])
def test_each_format_gives_the_recipient_its_fate_and_the_remote_words(
        name: str, kind: Kind, status: str, diagnostic: str, standard: bool) -> None:
    report = read_report(fixture(name))
    assert report is not None
    assert [(n.address, n.kind, n.status, n.diagnostic) for n in report.notices] == [
        (ADDRESS, kind, status, diagnostic)]
    assert report.message_ids[0] == MID  # the returned headers' Message-ID comes first
    assert report.standard is standard
    assert report.envid == (envid_for(MID) if name.startswith("rfc3464") else None)
    assert report.source.startswith("<") and report.source != MID


@pytest.mark.parametrize("name", ["autoreply.eml", "read_receipt.eml",
                                  "customer_answer.eml"])
def test_an_auto_reply_a_read_receipt_or_an_answer_is_never_a_bounce(name: str) -> None:
    raw = fixture(name)
    assert read_report(raw) is None
    assert not looks_like_bounce(raw)  # and not even worth a word to the office


def test_a_malformed_report_is_no_bounce_but_worth_a_word() -> None:
    raw = fixture("malformed_report.eml")
    assert read_report(raw) is None
    assert looks_like_bounce(raw)


def test_a_bounce_for_a_mail_of_someone_else_names_that_mail() -> None:
    report = read_report(fixture("unknown_message.eml"))
    assert report is not None and report.envid is None
    assert report.message_ids == ("<nicht-von-uns-4711@irgendwo.example>",)
    assert report.notices[0].address == "jemand@anderswo.example"


def test_a_success_notice_tells_nothing_to_act_on() -> None:
    raw = fixture("rfc3464_failed.eml").replace(b"Action: failed", b"Action: delivered")
    assert read_report(raw) is None


def test_headers_alone_tell_a_bounce_from_other_mail() -> None:
    """The pass reads only headers first: enough to pick the bounces out."""
    for name, bounce in (("rfc3464_failed.eml", True), ("exim_failed.eml", True),
                         ("m365_ndr.eml", True), ("autoreply.eml", False),
                         ("customer_answer.eml", False)):
        head = fixture(name).split(b"\n\n", 1)[0] + b"\n\n"
        assert looks_like_bounce(head) is bounce, name


def test_envid_and_xtext() -> None:
    assert envid_for(MID) == "3f2a9c0d41e84b7a9d1c2b3a4f5e6d7c"
    assert xtext("a+b=c ü") == "a+2Bb+3Dc+20+FC"
    assert unxtext(xtext("kunde+rechnung=1@example.org")) == "kunde+rechnung=1@example.org"
    assert unxtext("broken+2") == "broken+2"


def test_a_bounce_of_someone_elses_answer_to_our_mail_is_not_ours() -> None:
    """The office answers a customer by hand (References: our mail); that answer
    bounces. Only the returned Message-ID counts, never References or any <…@…>."""
    raw = fixture("rfc3464_failed.eml").replace(
        f"Message-ID: {MID}".encode(),
        f"Message-ID: <office-reply-1@waescherei.test>\nReferences: {MID}\n"
        f"In-Reply-To: {MID}".encode()).replace(
        f"Original-Envelope-Id: {envid_for(MID)}\n".encode(), b"")
    report = read_report(raw)
    assert report is not None and report.envid is None
    assert report.message_ids == ("<office-reply-1@waescherei.test>",)
    exim = fixture("exim_failed.eml").replace(f"Message-ID: {MID}".encode(),
                                              f"References: {MID}".encode())
    exim_report = read_report(exim)
    assert exim_report is not None and exim_report.message_ids == ()


def test_a_customers_answer_from_a_company_named_like_a_mail_system_is_no_bounce() -> None:
    raw = (f"From: Nordic Mail Delivery AB <buchhaltung@nordicmail.example>\n"
           f"To: rechnung@waescherei.test\nSubject: AW: Ihre Rechnung 10023\n"
           f"Message-ID: <answer-2@nordicmail.example>\nMIME-Version: 1.0\n"
           f"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
           f"Bitte kuenftig an rechnung@nordicmail.example (Kostenstelle 550 - Waesche).\n"
           f"--b\nContent-Type: message/rfc822\n\nMessage-ID: {MID}\nSubject: Ihre"
           f" Rechnung\n\n(body)\n--b--\n").encode()
    assert read_report(raw) is None and not looks_like_bounce(raw)


def test_a_spam_complaint_or_dmarc_report_is_no_bounce() -> None:
    raw = fixture("rfc3464_failed.eml").replace(b"report-type=delivery-status",
                                                b"report-type=feedback-report")
    assert read_report(raw) is None


def test_an_unknown_charset_and_control_characters_are_read_safely() -> None:
    raw = fixture("exim_failed.eml").replace(
        b"Auto-Submitted: auto-replied",
        b"Auto-Submitted: auto-replied\nContent-Type: text/plain; charset=unknown-8bit").replace(
        b"550 5.2.1 Mailbox disabled", b"550 5.2.1 Mailbox\x1b[31m disabled \xfc")
    report = read_report(raw)
    assert report is not None
    diagnostic = report.notices[0].diagnostic
    assert diagnostic.startswith("550 5.2.1 Mailbox") and "\x1b" not in diagnostic
