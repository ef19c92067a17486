"""Bounces end to end on real parts: tikos-outbox sends through the test Postfix
(tests/servers/postfix.sh) to the customers' domain kunden.test, which Postfix
hands by LMTP to the test Dovecot (tests/servers/dovecot.sh); Dovecot has no
mailbox for one address, so Postfix returns a real RFC 3464 bounce into the
laundry's sender mailbox, which tikos-outbox reads over IMAP with TLS."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import BounceBox, Site, open_outbox, write_site
from tests.test_postfix import LAUNDRY, wait_for
from tikos_outbox.core.bounces import envid_for
from tikos_outbox.provision import set_secret
from tikos_outbox.samples import make_pdf

pytestmark = pytest.mark.slow



def inbox_files(dovecot: dict[str, Any]) -> list[Path]:
    new = Path(dovecot["mail"], "waescherei.test", "rechnung", "Maildir", "new")
    return list(new.iterdir()) if new.is_dir() else []


def bounce_site(root: Path, pf: dict[str, Any], dc: dict[str, Any],
                customers: dict[str, str]) -> Site:
    (root / "recipients.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "recipients.csv").write_text(
        "mandant;customer;email\n" + "".join(f"1;{c};{a}\n" for c, a in customers.items()),
        encoding="utf-8")
    site = write_site(
        root, smtp={"host": pf["host"], "port": pf["ports"]["plain"], "security": "starttls",
                    "ca_file": pf["ca_file"], "auth": "password", "username": LAUNDRY,
                    "timeout_s": 20},
        sender={"address": pf["senders"][LAUNDRY]}, password=pf["users"][LAUNDRY],
        recipients='csv = "recipients.csv"', watch={"baseline": False},
        extra=(f"[bounces]\nimap_host = '{dc['host']}'\nimap_port = {dc['imaps_port']}\n"
               f"imap_security = 'ssl'\nca_file = '{dc['ca_file']}'\n"
               f"username = '{dc['user']}'\n"
               "[report]\nto = 'buero@waescherei-intern.test'\n"))
    set_secret(site.config, "bounce-password", dc["password"])
    for i, customer in enumerate(customers, start=1):
        (site.mandant_folder() / f"RE_{10020 + i}_{customer}.pdf").write_bytes(
            make_pdf([f"Rechnung {10020 + i}"]))
    assert site.cli("scan") == 0
    return site


def cli_json(site: Site, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    site.cli(*args, "--json")
    return json.loads(capsys.readouterr().out)


def test_postfix_bounces_an_unknown_customer_and_the_outbox_marks_just_that_entry(
        tmp_path: Path, postfix: dict[str, Any], dovecot: dict[str, Any],
        bounce_box: BounceBox, capsys: pytest.CaptureFixture[str]) -> None:
    customers = {"4711": "kunde1@kunden.test", "4712": "kunde2@kunden.test",
                 "4713": "kunde3@kunden.test", "4714": "kunde4@kunden.test",
                 "4716": "gibtsnicht@kunden.test"}
    site = bounce_site(tmp_path, postfix, dovecot, customers)
    before = len(inbox_files(dovecot))
    assert site.cli("flush") == 0
    assert [e["state"] for e in cli_json(site, capsys, "list")] == ["sent"] * 5
    wait_for("return the bounce to the sender's mailbox",
             lambda: len(inbox_files(dovecot)) > before)
    mid = cli_json(site, capsys, "show", "1")["message_id"]
    autoreply = (Path(__file__).parent / "bounces" / "autoreply.eml").read_text(
        encoding="utf-8").format(sender=postfix["senders"][LAUNDRY],
                                 address="kunde1@kunden.test", message_id=mid)
    bounce_box.append(autoreply.encode())

    result = cli_json(site, capsys, "bounces")
    assert result["error"] is None
    assert len(result["bounced"]) == 1 and result["bounced"][0].startswith(
        "entry 5: gibtsnicht@kunden.test: 550 5.1.1")
    assert result["moved"] == 1 and result["unmatched"] == [] and result["unreadable"] == []
    states = {e["id"]: e["state"] for e in cli_json(site, capsys, "list")}
    assert states == {1: "sent", 2: "sent", 3: "sent", 4: "sent", 5: "bounced"}
    five = cli_json(site, capsys, "show", "5")
    assert [(d["address"], d["state"]) for d in five["deliveries"]] == [
        ("gibtsnicht@kunden.test", "bounced")]
    assert "User doesn't exist" in five["deliveries"][0]["reply"]
    assert five["bounces"][0]["status"] == "5.1.1"
    assert five["attention"].startswith("Kunde 4716: gibtsnicht@kunden.test unzustellbar: 550")
    assert five["attention"].endswith("in der Adressdatei recipients.csv korrigieren, dann"
                                      " `tikos-outbox requeue 5`")
    status = cli_json(site, capsys, "status")
    assert status["counts"]["bounced"] == 1 and status["attention"] == 1
    # the office's mailbox: the bounce filed away, the auto-reply untouched and unread
    inbox = bounce_box.messages("INBOX")
    assert [s for s, _ in inbox] == ["Automatische Antwort: Ihre Rechnung 10023"]
    assert "\\Seen" not in inbox[0][1]
    assert [s for s, _ in bounce_box.messages("tikos-outbox.verarbeitet")] == [
        "Undelivered Mail Returned to Sender"]
    # Postfix honoured what we asked for (RFC 3461): the ENVID and the original
    # recipient come back, and only the headers, not the invoice (RET=HDRS)
    [bounce] = bounce_box.raw("tikos-outbox.verarbeitet")
    assert f"Original-Envelope-Id: {envid_for(five['message_id'])}".encode() in bounce
    assert b"Original-Recipient: rfc822;gibtsnicht@kunden.test" in bounce
    parts = [p.get_content_type() for p in email.message_from_bytes(bounce).walk()]
    assert "text/rfc822-headers" in parts and "application/pdf" not in parts
    # a second pass changes nothing, also when it must read everything again
    again = cli_json(site, capsys, "bounces")
    assert (again["read"], again["bounced"], again["moved"]) == (0, [], 0)
    outbox = open_outbox(site)
    outbox.store.commands.set_meta(
        f"bounces:seen:{dovecot['host']}:{dovecot['imaps_port']}/INBOX", "", datetime.now(UTC))
    outbox.close()
    third = cli_json(site, capsys, "bounces")
    assert (third["read"], third["bounced"], third["moved"]) == (1, [], 0)
    assert "\\Seen" not in bounce_box.messages("INBOX")[0][1]
    assert cli_json(site, capsys, "show", "5")["state"] == "bounced"
    # the daily report names the customer and the remote server's words
    outbox = open_outbox(site)
    assert outbox.report.send(datetime.now(ZoneInfo("Europe/Berlin")).date())
    outbox.close()
    reports = []

    def report_arrived() -> bool:
        for folder in ("new", "cur"):
            for path in Path(postfix["maildir"], folder).iterdir():
                msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                if msg["To"] == "buero@waescherei-intern.test" and str(
                        msg["Subject"]).startswith("tikos-outbox: 1 Dokument"):
                    reports.append(msg)
        return bool(reports)

    wait_for("deliver the daily report to the office", report_arrived)
    body = reports[0].get_body(("plain",)).get_content()
    assert "Eintrag 5 (bounced" in body and "Kunde 4716" in body
    assert "550 5.1.1 <gibtsnicht@kunden.test> User doesn't exist" in body
