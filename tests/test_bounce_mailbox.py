"""The bounce mailbox on a real IMAP server (the test Dovecot): every fixture format
filed to its entry, what is no bounce or not ours left where it was, unread, the
partial bounce, an umlaut domain reported in its A-label form, the office's
requeue after a bounce, and a mailbox that cannot be read said in words."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import BounceBox, Cert, Site, SmtpServer, service_running, write_site
from tikos_outbox.core.addresses import Address
from tikos_outbox.core.bounces import envid_for
from tikos_outbox.provision import set_secret
from tikos_outbox.samples import make_pdf

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "bounces"
SENDER = "rechnung@musterwaescherei.example"
UMLAUT = Address("kunde@müller-wäsche.example")  # the envelope has the A-label domain
CUSTOMERS = {"4711": "kunde@kunden.example", "4712": "a@kunden.example;b@kunden.example",
             "4713": "kunde@müller-wäsche.example"}


def imap_site(root: Path, srv: SmtpServer, dc: dict[str, Any], **bounces: Any) -> Site:
    settings = {"imap_host": dc["host"], "imap_port": dc["imaps_port"],
                "imap_security": "ssl", "ca_file": dc["ca_file"], "username": dc["user"],
                **bounces}
    extra = "[bounces]\n" + "".join(
        f"{k} = {v if isinstance(v, int) else repr(v)}\n" for k, v in settings.items()
        if v is not None and k != "password_plain")
    (root / "recipients.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "recipients.csv").write_text(
        "mandant;customer;email\n" + "".join(f"1;{c};{a}\n" for c, a in CUSTOMERS.items()),
        encoding="utf-8")
    site = write_site(root, smtp={"port": srv.port}, recipients='csv = "recipients.csv"',
                      watch={"baseline": False}, extra=extra)
    set_secret(site.config, "bounce-password", bounces.get("password_plain", dc["password"]))
    return site


def sent_site(root: Path, srv: SmtpServer, dc: dict[str, Any],
              capsys: pytest.CaptureFixture[str]) -> tuple[Site, dict[int, str]]:
    site = imap_site(root, srv, dc)
    for i, customer in enumerate(CUSTOMERS, start=1):
        (site.mandant_folder() / f"RE_{10020 + i}_{customer}.pdf").write_bytes(
            make_pdf([str(i)]))
    assert site.cli("scan") == 0
    assert site.cli("flush") == 0
    ids = {i: cli_json(site, capsys, "show", str(i))["message_id"] for i in (1, 2, 3)}
    return site, ids


def cli_json(site: Site, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    site.cli(*args, "--json")
    return json.loads(capsys.readouterr().out)


def fixture(name: str, address: str, message_id: str) -> bytes:
    return (FIXTURES / name).read_text(encoding="utf-8").format(
        sender=SENDER, address=address, envid=envid_for(message_id),
        message_id=message_id).encode()


def test_each_bounce_goes_to_its_entry_and_the_rest_stays_unread(
        tmp_path: Path, cert: Cert, dovecot: dict[str, Any], bounce_box: BounceBox,
        capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site, mid = sent_site(tmp_path, srv, dovecot, capsys)
        bounce_box.append(fixture("rfc3464_delayed.eml", "kunde@kunden.example", mid[1]))
        bounce_box.append(fixture("m365_ndr.eml", "b@kunden.example", mid[2]))
        bounce_box.append(fixture("exim_failed.eml", UMLAUT.envelope, mid[3]))
        for name in ("unknown_message.eml", "malformed_report.eml", "read_receipt.eml",
                     "customer_answer.eml", "autoreply.eml"):
            bounce_box.append(fixture(name, "kunde@kunden.example", mid[1]))
        result = cli_json(site, capsys, "bounces")
        assert result["read"] == 8 and result["moved"] == 3 and result["error"] is None
        assert result["delayed"] == ["entry 1: kunde@kunden.example: connect to"
                                     " mx.kunden.example[192.0.2.25]:25: Connection timed out"]
        assert [line.split(":")[0:2] for line in result["bounced"]] == [
            ["entry 2", " b@kunden.example"], ["entry 3", f" {UMLAUT.envelope}"]]
        assert len(result["unmatched"]) == 1 and "a mail that is not in the outbox" in \
            result["unmatched"][0]
        assert len(result["unreadable"]) == 1 and "no bounce could be read" in \
            result["unreadable"][0]

        one, two, three = (cli_json(site, capsys, "show", str(i)) for i in (1, 2, 3))
        # a delay is noted on the recipient, nothing else
        assert one["state"] == "sent" and one["attention"] is None
        assert one["deliveries"][0]["state"] == "delivered"
        assert [(b["kind"], b["status"]) for b in one["bounces"]] == [("delayed", "4.4.1")]
        # one of two addresses bounced: sent, and that one needs attention
        assert two["state"] == "sent"
        assert {d["address"]: d["state"] for d in two["deliveries"]} == {
            "a@kunden.example": "delivered", "b@kunden.example": "bounced"}
        assert two["attention"].startswith("Kunde 4712: b@kunden.example unzustellbar: 550"
                                           " 5.1.10 RESOLVER.ADR.RecipientNotFound")
        assert two["attention"].endswith("(die anderen Adressen haben es bekommen)")
        # the A-label form in the report is the umlaut address the entry holds
        assert three["state"] == "bounced"
        assert three["deliveries"][0]["state"] == "bounced"
        listed = cli_json(site, capsys, "list", "--attention")
        assert sorted(e["id"] for e in listed) == [2, 3]

        inbox = bounce_box.messages("INBOX")
        assert len(inbox) == 5 and all("\\Seen" not in flags for _, flags in inbox)
        assert len(bounce_box.messages("tikos-outbox.verarbeitet")) == 3

        # the office corrects the address and requeues: only the new one gets it
        (tmp_path / "recipients.csv").write_text(
            (tmp_path / "recipients.csv").read_text(encoding="utf-8").replace(
                "kunde@müller-wäsche.example", "buchhaltung@müller-wäsche.example"),
            encoding="utf-8")
        before = len(srv.received)
        assert site.cli("requeue", "3") == 0
        assert site.cli("flush") == 0
        new = Address("buchhaltung@müller-wäsche.example").envelope
        assert [r.rcpt_tos for r in srv.received[before:]] == [[new]]
        three = cli_json(site, capsys, "show", "3")
        assert three["state"] == "sent" and three["attention"] is None
        assert [(d["address"], d["state"]) for d in three["deliveries"]] == [
            (new, "delivered")]
        assert [b["kind"] for b in three["bounces"]] == ["failed"]  # the history stays
        # the same bounce once more (a copy left behind): what happened since stays
        bounce_box.append(fixture("exim_failed.eml", UMLAUT.envelope, mid[3]))
        again = cli_json(site, capsys, "bounces")
        assert again["bounced"] == [] and again["read"] == 1
        three = cli_json(site, capsys, "show", "3")
        assert three["state"] == "sent" and three["attention"] is None
        assert three["deliveries"][0]["state"] == "delivered"


def test_starttls_works_and_a_mailbox_that_cannot_be_read_is_said_in_words(
        tmp_path: Path, cert: Cert, dovecot: dict[str, Any], bounce_box: BounceBox,
        capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        ok = imap_site(tmp_path / "ok", srv, dovecot, imap_port=dovecot["imap_port"],
                       imap_security="starttls")
        assert cli_json(ok, capsys, "bounces")["error"] is None
        checks = {c["check"]: c for c in cli_json(ok, capsys, "check", "--smtp")}
        mailbox = checks[f"bounce mailbox {dovecot['user']} at {dovecot['host']}:"
                         f"{dovecot['imap_port']}"]
        assert mailbox["ok"] and "logged in (password), folder 'INBOX' holds" in \
            mailbox["detail"]
        assert checks["bounce mailbox password"]["ok"]
        cases = {
            "wrong password": ({"password_plain": "falsch"},
                               "refused the login of rechnung@waescherei.test"),
            "untrusted": ({"ca_file": None}, "its TLS certificate is not trusted"),
            "no folder": ({"folder": "Rückläufer"}, "there is no folder 'Rückläufer'"),
            "closed port": ({"imap_port": dovecot["lmtp_port"] + 7},
                            "cannot be reached"),
        }
        for name, (change, words) in cases.items():
            site = imap_site(tmp_path / name.replace(" ", "_"), srv, dovecot, **change)
            capsys.readouterr()
            assert site.cli("bounces") == 1, name
            out = capsys.readouterr()
            assert words in out.out, (name, out.out)
            assert "Rückläufer-Passwort" not in out.out + out.err  # never the secret
            status = cli_json(site, capsys, "status")
            assert words in (status["bounces"]["last_error"] or ""), name


def test_the_service_reads_the_bounce_mailbox_by_itself(
        tmp_path: Path, cert: Cert, dovecot: dict[str, Any], bounce_box: BounceBox,
        capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site, mid = sent_site(tmp_path, srv, dovecot, capsys)
        bounce_box.append(fixture("rfc3464_failed.eml", "kunde@kunden.example", mid[1]))
        with service_running(site) as svc:
            deadline = time.monotonic() + 30
            while svc.store.queries.get_entry(1).state != "bounced":  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "run did not read the bounce mailbox"
                time.sleep(0.05)
        status = cli_json(site, capsys, "status")
        assert status["bounces"]["last_pass"]["text"].startswith("1 new message(s) read:"
                                                                 " 1 bounced")
        assert [s for s, _ in bounce_box.messages("tikos-outbox.verarbeitet")] == [
            "Undelivered Mail Returned to Sender"]


def test_a_message_that_breaks_the_reader_is_left_and_the_rest_is_read(
        tmp_path: Path, cert: Cert, dovecot: dict[str, Any], bounce_box: BounceBox,
        capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site, mid = sent_site(tmp_path, srv, dovecot, capsys)
        depth = 3000  # nested multiparts: deeper than Python's recursion limit
        nested = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"
                         for i in range(depth))
        bounce_box.append(("Return-Path: <>\nFrom: Mail Delivery System <MAILER-DAEMON@x.example>"
                           "\nSubject: Undelivered Mail\nMessage-ID: <deep@x.example>\n"
                           f"MIME-Version: 1.0\n{nested}\nx\n").encode())
        bounce_box.append(fixture("rfc3464_failed.eml", "kunde@kunden.example", mid[1]))
        result = cli_json(site, capsys, "bounces")
        assert result["error"] is None and result["moved"] == 1
        assert [line.split(":")[0] for line in result["bounced"]] == ["entry 1"]
        assert len(result["unreadable"]) == 1
        assert [s for s, _ in bounce_box.messages("INBOX")] == ["Undelivered Mail"]
