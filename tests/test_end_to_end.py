"""The whole path on real parts: archive folder -> scan -> outbox -> flush -> SMTP."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.helpers import Cert, SmtpServer, write_site
from tikos_outbox.samples import make_pdf

PASSWORD = "Grüße § ; : @ \\ % \"quoted\" and spaces"


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_starttls_auth_delivers_one_correct_mail_per_document(
        tmp_path: Path, cert: Cert, odbc_sqlite: str, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "starttls", users={"rechnung@musterwaescherei.example": PASSWORD}) as srv:
        site = write_site(
            tmp_path / "site",
            smtp={"port": srv.port, "security": "starttls", "auth": "password",
                  "username": "rechnung@musterwaescherei.example", "ca_file": str(cert.cert)},
            password=PASSWORD,
            recipients=f"sql_dsn = '{odbc_sqlite}'\n"
                       "sql_query = 'SELECT EMail FROM Kunde WHERE Mandant = ? AND KundenNr = ?'\n"
                       "sql_params = ['mandant', 'customer']",
            sender={"bcc": ["archiv@musterwaescherei.example"]},
            watch={"baseline": False},
        )
        folder = site.mandant_folder()
        (folder / "2026" / "11").mkdir(parents=True)
        invoice = make_pdf(["Rechnung 10001", "Hotel Adler"])
        note = make_pdf(["Lieferschein 20001", "Gasthof Sonne"])
        (folder / "2026" / "11" / "RE_10001_4711.pdf").write_bytes(invoice)
        (folder / "LS_20001_4712.pdf").write_bytes(note)

        assert site.cli("scan") == 0
        assert site.cli("flush") == 0
        assert len(srv.received) == 2
        # a second flush sends nothing
        assert site.cli("flush") == 0
        assert len(srv.received) == 2
        assert srv.logins == [("rechnung@musterwaescherei.example", PASSWORD)]

    by_subject = {parse(r.data)["Subject"]: r for r in srv.received}
    assert set(by_subject) == {"Ihre Rechnung 10001", "Ihr Lieferschein 20001"}
    rec = by_subject["Ihre Rechnung 10001"]
    msg = parse(rec.data)
    to = ["einkauf@hotel-adler.example", "buchhaltung@hotel-adler.example",
          "chef@hotel-adler.example"]
    assert rec.mail_from == "rechnung@musterwaescherei.example"
    assert rec.rcpt_tos == [*to, "archiv@musterwaescherei.example"]  # Bcc in the envelope
    assert msg["To"].addresses and [a.addr_spec for a in msg["To"].addresses] == to
    assert "Bcc" not in msg and b"archiv@" not in rec.data
    assert msg["From"].addresses[0].display_name == "Musterwäscherei GmbH"
    assert b"=?utf-8?" in rec.data.split(b"\r\n\r\n")[0]  # RFC 2047 encoded display name
    assert msg["Reply-To"] == "info@musterwaescherei.example"
    assert msg["Date"] is not None
    assert msg["Message-ID"].endswith("@musterwaescherei.example>")
    body = msg.get_body(("plain",))
    assert body is not None and "Rechnung 10001" in body.get_content()
    attachments = list(msg.iter_attachments())
    assert len(attachments) == 1
    assert attachments[0].get_filename() == "RE_10001_4711.pdf"
    assert attachments[0].get_content_type() == "application/pdf"
    assert attachments[0].get_content() == invoice

    capsys.readouterr()
    assert site.cli("list", "--json") == 0
    entries = json.loads(capsys.readouterr().out)
    assert {e["state"] for e in entries} == {"sent"}
    by_path = {e["path"]: e for e in entries}
    assert by_path["2026/11/RE_10001_4711.pdf"]["recipients"] == to
    assert by_path["2026/11/RE_10001_4711.pdf"]["message_id"] == msg["Message-ID"]


def test_implicit_tls_anonymous_and_message_id_is_stable_across_retries(
        tmp_path: Path, cert: Cert) -> None:
    with SmtpServer(cert, "ssl") as srv:
        srv.behaviour.data_reply = "451 4.3.0 local error in processing"
        srv.behaviour.fail_first_data = 1
        site = write_site(tmp_path / "site", smtp={"port": srv.port, "security": "ssl",
                                                   "ca_file": str(cert.cert)},
                          watch={"baseline": False})
        (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(make_pdf(["x"]))
        assert site.cli("scan") == 0
        assert site.cli("flush") == 1  # deferred: the work ran but did not deliver
        assert srv.received == []
        assert site.cli("flush") == 0
        assert len(srv.received) == 1
    from tests.helpers import open_outbox

    outbox = open_outbox(site)
    view = outbox.admin.entry(1)
    assert view is not None and view.state == "sent"
    assert [a.outcome for a in view.attempts] == ["transient", "delivered"]
    assert [a.code for a in view.attempts] == [451, 250]
    assert parse(srv.received[0].data)["Message-ID"] == view.message_id
    outbox.close()


def test_plain_smtp_with_password_login(tmp_path: Path, cert: Cert) -> None:
    with SmtpServer(cert, "none", users={"u": "pw ü"}) as srv:
        site = write_site(tmp_path / "site", smtp={"port": srv.port, "auth": "password",
                                                   "username": "u"},
                          password="pw ü", watch={"baseline": False})
        (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(make_pdf(["x"]))
        assert site.cli("scan") == 0
        assert site.cli("flush") == 0
        assert len(srv.received) == 1


def test_demo_runs_and_sends(capsys: pytest.CaptureFixture[str]) -> None:
    from tikos_outbox.cli import main

    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "sent 3, deferred 0, failed 0" in out
    assert out.count(".eml: to ") == 3
    assert "attached: RE_10001_4711.pdf" in out
