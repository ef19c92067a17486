"""Microsoft 365 without SMTP (#20): `[smtp] transport = "graph"` against a loopback
HTTPS stand-in for the token endpoint and Graph (tests/graph_server.py), replying as
Graph documents it: 202, 429 with Retry-After, 401, 403, 404, 400, 413, and the upload
session for a large PDF. The MIME Graph receives is the one the SMTP path sends."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.graph_server import GraphState, Scripted, graph_server
from tests.helpers import (
    Cert,
    FakeClock,
    Site,
    SmtpServer,
    open_outbox,
    status_json,
    write_site,
)
from tikos_outbox.config import ConfigError, load_config
from tikos_outbox.provision import set_secret
from tikos_outbox.samples import make_pdf

MAILBOX = "rechnung@musterwaescherei.example"
T0 = datetime(2026, 12, 2, 9, tzinfo=UTC)


def graph_site(tmp_path: Path, cert: Cert, base: str, n: int, *,
               sender: dict[str, Any] | None = None, extra: str = "", **smtp: Any) -> Site:
    site = write_site(tmp_path, smtp={
        "host": "unused.example", "transport": "graph", "auth": "oauth2",
        "username": MAILBOX, "oauth2_token_url": f"{base}/token",
        "oauth2_client_id": "app-1", "oauth2_client_secret": "gAAAAAplaceholder",
        "graph_url": f"{base}/v1.0", "ca_file": str(cert.cert), **smtp},
        watch={"baseline": False}, sender=sender, extra=extra)
    set_secret(site.config, "client-secret", "das Geheimnis der App")
    for i in range(n):
        (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([f"Nr. {i + 1}"]))
    assert site.cli("scan") == 0
    return site


@contextmanager
def graph(cert: Cert) -> Iterator[tuple[str, GraphState]]:
    with graph_server(cert) as (base, state):
        yield base, state


def parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def show(site: Site, capsys: pytest.CaptureFixture[str], entry_id: int) -> dict[str, Any]:
    capsys.readouterr()
    assert site.cli("show", str(entry_id), "--json") == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_twenty_documents_with_a_429_in_the_middle_are_each_delivered_once(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with graph(cert) as (base, state):
        site = graph_site(tmp_path, cert, base, 20, max_per_minute=0)
        state.script[8] = Scripted(429, "ApplicationThrottled", "Application is over its"
                                   " MailboxConcurrency limit.", {"Retry-After": "37"})
        clock = FakeClock(T0)
        outbox = open_outbox(site, clock)
        report = outbox.delivery.send_due()
        assert report.sent == 7 and "too many requests" in report.stopped[0]
        [acc] = outbox.monitor.status().as_json()["accounts"]
        assert acc["paused_until"] == (T0 + timedelta(seconds=37)).isoformat()
        assert "Retry-After 37 s" in acc["paused_because"]
        clock.advance(30)
        assert outbox.delivery.send_due().sent == 0  # it waits as long as Graph said
        clock.advance(7)
        assert outbox.delivery.send_due().sent == 13
        outbox.close()
        ids = [parsed(m)["Message-ID"] for m in state.sent]
        assert len(ids) == 20 and len(set(ids)) == 20  # each document once
        assert state.tokens_issued == 1  # one token for the whole run, reused
        for i in range(1, 21):
            entry = show(site, capsys, i)
            assert entry["state"] == "sent", i
            assert [a["outcome"] for a in entry["attempts"]] == ["delivered"], i  # 429: none
            assert entry["message_id"] in ids
        assert state.auth_headers == {f"Bearer {state.token}"}


def test_a_503_with_retry_after_rests_the_account_as_a_429_does(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with graph(cert) as (base, state):
        site = graph_site(tmp_path, cert, base, 3, max_per_minute=0)
        state.script[2] = Scripted(503, "ServiceUnavailable", "The service is temporarily"
                                   " unavailable.", {"Retry-After": "12"})
        clock = FakeClock(T0)
        outbox = open_outbox(site, clock)
        report = outbox.delivery.send_due()
        assert report.sent == 1 and "503 ServiceUnavailable" in report.stopped[0]
        [acc] = outbox.monitor.status().as_json()["accounts"]
        assert acc["paused_until"] == (T0 + timedelta(seconds=12)).isoformat()
        clock.advance(11)
        assert outbox.delivery.send_due().sent == 0
        clock.advance(1)
        assert outbox.delivery.send_due().sent == 2
        outbox.close()
        assert len({parsed(m)["Message-ID"] for m in state.sent}) == 3
        for i in (1, 2, 3):
            assert [a["outcome"] for a in show(site, capsys, i)["attempts"]] == ["delivered"]


def test_graph_gets_the_mime_the_smtp_path_sends(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    pdf = make_pdf(["Rechnung 1", "Müller & Söhne"])
    with graph(cert) as (base, state):
        site = graph_site(tmp_path / "graph", cert, base, 0,
                          sender={"bcc": ["archiv@musterwaescherei.example"]})
        (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(pdf)
        assert site.cli("scan") == 0 and site.cli("flush") == 0
    with SmtpServer(cert, "none") as srv:
        smtp_site = write_site(tmp_path / "smtp", smtp={"port": srv.port},
                               watch={"baseline": False},
                               sender={"bcc": ["archiv@musterwaescherei.example"]})
        (smtp_site.mandant_folder() / "RE_1_4711.pdf").write_bytes(pdf)
        assert smtp_site.cli("scan") == 0 and smtp_site.cli("flush") == 0
        [smtp_mail] = srv.received
    [raw] = state.sent
    g, s = parsed(raw), parsed(smtp_mail.data)
    for header in ("From", "To", "Reply-To", "Subject", "Auto-Submitted", "Content-Type"):
        assert str(g[header]).split(";")[0] == str(s[header]).split(";")[0], header
    assert g["Message-ID"] == show(site, capsys, 1)["message_id"]
    assert g["Bcc"] == "archiv@musterwaescherei.example"  # Graph mails what the headers say
    assert s["Bcc"] is None and smtp_mail.rcpt_tos == ["kunde@example.org",
                                                       "archiv@musterwaescherei.example"]
    g_body, s_body = g.get_body(("plain",)), s.get_body(("plain",))
    assert g_body is not None and s_body is not None
    assert g_body.get_content() == s_body.get_content()
    [g_pdf], [s_pdf] = list(g.iter_attachments()), list(s.iter_attachments())
    assert g_pdf.get_content() == s_pdf.get_content() == pdf
    assert g_pdf.get_filename() == "RE_1_4711.pdf"
    assert g_pdf["Content-Type"] == s_pdf["Content-Type"]


@pytest.mark.parametrize(("status", "code", "words"), [
    (401, "InvalidAuthenticationToken", "oauth2_tenant, oauth2_client_id and the client secret"),
    (403, "ErrorAccessDenied", "Mail.Send and grant admin consent"),
    (404, "ErrorInvalidUser", "must be the sending mailbox's address"),
])
def test_a_refused_app_stops_the_run_with_what_to_fix_in_entra_id(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str], status: int, code: str,
        words: str) -> None:
    with graph(cert) as (base, state):
        site = graph_site(tmp_path, cert, base, 3)
        state.always = Scripted(status, code, "Access is denied. Check credentials.")
        capsys.readouterr()
        assert site.cli("flush") == 1
        err = capsys.readouterr().err
        assert "Sending through Microsoft Graph failed" in err and words in err
        assert code in err
        st = status_json(site, capsys)
        assert {k: n for k, n in st["counts"].items() if n} == {"pending": 3}
        assert words in st["last_error"]["text"]
        for i in (1, 2, 3):
            assert show(site, capsys, i)["attempts"] == []  # nothing counted against them
        assert "das Geheimnis" not in err + json.dumps(st)


def test_a_bad_address_is_refused_and_a_too_large_mail_fails(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with graph(cert) as (base, state):
        site = graph_site(tmp_path, cert, base, 2)
        state.script[1] = Scripted(400, "ErrorInvalidRecipients", "At least one recipient is"
                                   " not valid., Recipient 'kunde@example.org' is not resolved.")
        state.script[2] = Scripted(413, "ErrorMessageSizeExceeded", "The message exceeds the"
                                   " maximum supported size.")
        assert site.cli("flush") == 1  # failures: exit 1
        first, second = show(site, capsys, 1), show(site, capsys, 2)
        assert first["state"] == "failed"
        [d] = first["deliveries"]
        assert (d["address"], d["state"]) == ("kunde@example.org", "refused")
        assert "ErrorInvalidRecipients" in d["reply"] and "Kunde 4711" in first["attention"]
        assert second["state"] == "failed" and "too large" in second["last_error"]
        assert state.sent == []


@pytest.mark.parametrize("answer", [
    Scripted(302, "", "Moved", {"Location": "/portal/login?next=graph"}),
    Scripted(200, "", "Willkommen im Gäste-WLAN"),
], ids=["302 to a portal", "200 instead of 202"])
def test_a_redirect_or_an_undocumented_success_is_not_delivered(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str],
        answer: Scripted) -> None:
    """A proxy or a login portal between us and Microsoft: its redirect is not followed
    (the token stays with us) and its 200 is not Graph's 202."""
    with graph(cert) as (base, state):
        site = graph_site(tmp_path, cert, base, 1)
        state.script[1] = answer
        site.cli("flush")
        entry = show(site, capsys, 1)
        assert entry["state"] != "sent" and state.sent == []
        [attempt] = entry["attempts"]
        assert attempt["outcome"] == "transient"
        assert state.elsewhere == []  # nothing went to the redirect's target
        assert f"{answer.status}" in attempt["reply"]
        if answer.status == 302:
            assert "redirect" in attempt["reply"] and "/portal/login" in attempt["reply"]
        assert site.cli("flush") == 0  # the next run: Graph answers as documented
        assert show(site, capsys, 1)["state"] == "sent" and len(state.sent) == 1


def test_a_5_mb_pdf_goes_through_a_draft_and_an_upload_session(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    big = make_pdf(["Rechnung mit Anlagen"], padding=5 * 1024 * 1024)
    with graph(cert) as (base, state):
        site = graph_site(tmp_path, cert, base, 0)
        (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(big)
        assert site.cli("scan") == 0 and site.cli("flush") == 0
        [draft] = state.drafts.values()
        assert draft["upload"] == big and draft["name"] == "RE_1_4711.pdf"
        assert draft["status"] == "sent" and draft["attachments"] == []
        assert draft["contentType"] == "application/pdf"
        assert len(state.chunks) == 2 and all(c % (320 * 1024) == 0 for c in state.chunks[:-1])
        mime = parsed(draft["mime"])
        assert list(mime.iter_attachments()) == []  # the draft carries the text only
        assert mime["Message-ID"] == show(site, capsys, 1)["message_id"]
        assert show(site, capsys, 1)["state"] == "sent"
        assert [m for _, p, _ in state.requests if (m := p.rsplit("/", 1)[-1]) == "sendMail"
                ] == []


def test_a_2_mb_pdf_is_attached_to_the_draft_in_one_request(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    """Too large for sendMail (the base64 MIME is over 3 MB), too small for an upload
    session (Graph refuses one under 3 MB): posted as a fileAttachment of the draft."""
    pdf = make_pdf(["Rechnung mit Leistungsnachweis"], padding=2 * 1024 * 1024)
    with graph(cert) as (base, state):
        site = graph_site(tmp_path, cert, base, 0)
        (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(pdf)
        assert site.cli("scan") == 0 and site.cli("flush") == 0
        assert show(site, capsys, 1)["state"] == "sent"
        [draft] = state.drafts.values()
        assert draft["status"] == "sent" and draft["upload"] == b"" and state.chunks == []
        assert draft["attachments"] == [{"name": "RE_1_4711.pdf",
                                         "contentType": "application/pdf", "data": pdf}]
        mime = parsed(draft["mime"])
        assert list(mime.iter_attachments()) == []  # the draft carries the text only
        assert mime["Message-ID"] == show(site, capsys, 1)["message_id"]
        steps = [(m, p.rsplit("/", 1)[-1], s) for m, p, s in state.requests if p != "/token"]
        assert steps == [("POST", "messages", 201), ("POST", "attachments", 201),
                         ("POST", "send", 202)]


def big_site(tmp_path: Path, cert: Cert, base: str, mb: float) -> tuple[Site, bytes]:
    """A site with one PDF of `mb` MB scanned: over 1.7 MB it goes through a draft."""
    pdf = make_pdf(["Rechnung mit Anlagen"], padding=int(mb * 1024 * 1024))
    site = graph_site(tmp_path, cert, base, 0)
    (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(pdf)
    assert site.cli("scan") == 0
    return site, pdf


@pytest.mark.parametrize(("mb", "step", "answer", "outcome"), [
    (2, "send", Scripted(429, "ApplicationThrottled", "Application is over its"
                         " MailboxConcurrency limit.", {"Retry-After": "30"}), None),
    (3.5, "upload", Scripted(503, "ServiceUnavailable", "Service Unavailable",
                             {"Retry-After": "5"}), None),
    (2, "attachments", Scripted(drop=True), "transient"),
    (2, "send", Scripted(403, "ErrorAccessDenied", "Access is denied."), None),
], ids=["429 on send", "503 on an upload range", "no answer to the attachment",
        "403 on send"])
def test_a_failure_after_the_draft_leaves_no_draft_behind(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str], mb: float, step: str,
        answer: Scripted, outcome: str | None) -> None:
    """Each retry would otherwise add another draft copy of the invoice to the mailbox."""
    with graph(cert) as (base, state):
        site, _ = big_site(tmp_path, cert, base, mb)
        state.queue[step] = [answer]
        site.cli("flush")
        assert state.sent == [] and show(site, capsys, 1)["state"] != "sent"
        assert [a["outcome"] for a in show(site, capsys, 1)["attempts"]] == (
            [outcome] if outcome else [])
        [draft] = state.drafts.values()
        assert draft["status"] == "deleted" and state.open_drafts() == []
        assert [(m, s) for m, _, s in state.requests if m == "DELETE"] == [("DELETE", 204)]


@pytest.mark.parametrize(("mb", "step"), [(3.5, "createUploadSession"), (2, "send")])
def test_a_new_draft_that_graph_does_not_find_yet_is_tried_again(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str], mb: float,
        step: str) -> None:
    """Graph is eventually consistent: a 404 for the draft it has just made is not "no
    such mailbox" (which stops the run) but a try that failed."""
    with graph(cert) as (base, state):
        site, pdf = big_site(tmp_path, cert, base, mb)
        state.queue[step] = [Scripted(404, "ErrorItemNotFound", "The specified object was"
                                      " not found in the store.")]
        capsys.readouterr()
        site.cli("flush")
        assert "Sending through Microsoft Graph failed" not in capsys.readouterr().err
        [attempt] = show(site, capsys, 1)["attempts"]
        assert attempt["outcome"] == "transient" and "ErrorItemNotFound" in attempt["reply"]
        assert state.open_drafts() == [] and state.sent == []
        assert site.cli("flush") == 0
        assert show(site, capsys, 1)["state"] == "sent" and len(state.sent) == 1
        [sent] = [d for d in state.drafts.values() if d["status"] == "sent"]
        assert (sent["upload"] or sent["attachments"][0]["data"]) == pdf


def test_check_and_test_mail_work_through_graph(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with graph(cert) as (base, state):
        site = graph_site(tmp_path, cert, base, 0)
        capsys.readouterr()
        assert site.cli("check", "--smtp") == 0
        out = capsys.readouterr().out
        assert "Microsoft Graph, mailbox rechnung@musterwaescherei.example: the app's token was" \
            " fetched" in out
        assert site.cli("test-mail", "--to", "buero@musterwaescherei.example") == 0
        [mail] = state.sent
        assert parsed(mail)["To"] == "buero@musterwaescherei.example"
        state.always = Scripted(403, "ErrorAccessDenied", "Access is denied.")
        capsys.readouterr()
        assert site.cli("test-mail", "--to", "buero@musterwaescherei.example") == 1
        assert "FAIL: Sending through Microsoft Graph failed" in (out := capsys.readouterr().out)
        assert "Mail.Send and grant admin consent" in out


def test_graph_settings_are_checked(tmp_path: Path) -> None:
    site = write_site(tmp_path / "a", smtp={"transport": "graph", "auth": "password",
                                      "username": MAILBOX, "password": "gAAAAAx"})
    with pytest.raises(ConfigError, match=r'auth.*must be "oauth2" with transport = "graph"'):
        load_config(site.config)
    site = write_site(tmp_path / "b", smtp={"transport": "graph", "auth": "oauth2",
                                            "username": MAILBOX,
                                      "oauth2_tenant": "t.onmicrosoft.com",
                                      "oauth2_client_id": "x", "oauth2_client_secret": "gAAAAAx",
                                      "graph_url": "http://graph.example/v1.0"})
    with pytest.raises(ConfigError, match=r"graph_url.*must be an https:// URL"):
        load_config(site.config)


def test_init_m365_graph_writes_the_graph_settings_and_the_entra_steps(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tikos_outbox.cli import main

    assert main(["init", str(tmp_path / "site"), "--provider", "m365-graph"]) == 0
    text = (tmp_path / "site" / "tikos-outbox.toml").read_text(encoding="utf-8")
    assert 'transport = "graph"' in text and 'auth = "oauth2"' in text
    assert "https://graph.microsoft.com/.default" in text
    assert "Mail.Send" in text and "New-ApplicationAccessPolicy" in text
    smtp = text.split("[smtp]", 1)[1].split("[sender]", 1)[0]
    assert not [line for line in smtp.splitlines() if line.startswith(("host", "port"))]


def test_one_mandant_sends_through_graph_the_other_over_smtp(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with graph(cert) as (base, state), SmtpServer(cert, "none") as srv:
        site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False},
                          mandants=[{"id": 1, "name": "Nord"}, {"id": 2, "name": "Süd"}],
                          extra=(  # the last [[mandant]]'s own [smtp]: mandant 2
                              "[mandant.smtp]\ntransport = 'graph'\nauth = 'oauth2'\n"
                              f"username = '{MAILBOX}'\noauth2_token_url = '{base}/token'\n"
                              "oauth2_client_id = 'app-2'\n"
                              "oauth2_client_secret = 'gAAAAAplaceholder'\n"
                              f"graph_url = '{base}/v1.0'\nca_file = '{cert.cert}'\n"))
        set_secret(site.config, "client-secret", "Geheimnis Süd", mandant=2)
        (site.mandant_folder(1) / "RE_1_4711.pdf").write_bytes(make_pdf(["Nord"]))
        (site.mandant_folder(2) / "RE_2_4711.pdf").write_bytes(make_pdf(["Süd"]))
        assert site.cli("scan") == 0 and site.cli("flush") == 0
        [smtp_mail], [graph_mail] = srv.received, state.sent
        assert [p.get_filename() for p in parsed(smtp_mail.data).iter_attachments()] == [
            "RE_1_4711.pdf"]
        assert [p.get_filename() for p in parsed(graph_mail).iter_attachments()] == [
            "RE_2_4711.pdf"]
        assert parsed(graph_mail)["To"] == "kunde2@example.org"


def test_the_access_token_is_never_written_anywhere(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    """Not on the screen, in the log file or in the database, whatever Graph answers
    (run with -v: the log's details too)."""
    with graph(cert) as (base, state):
        site = graph_site(tmp_path, cert, base, 3)
        (site.mandant_folder() / "RE_9_4711.pdf").write_bytes(
            make_pdf(["Rechnung mit Anlagen"], padding=2 * 1024 * 1024))
        state.script[1] = Scripted(302, "", "Moved", {"Location": "/portal"})
        state.script[3] = Scripted(400, "ErrorInvalidRecipients", "Recipient"
                                   " 'kunde@example.org' is not resolved.")
        state.script[4] = Scripted(429, "ApplicationThrottled", "Too many.",
                                   {"Retry-After": "1"})
        state.queue["send"] = [Scripted(403, "ErrorAccessDenied", "Access is denied.")]
        said = []
        for args in (("scan",), ("flush",), ("flush",), ("check", "--smtp"),
                     ("test-mail", "--to", "buero@musterwaescherei.example"),
                     ("status", "--json"), ("list", "--json"), ("show", "1", "--json")):
            site.cli(*args, "-v")
            out, err = capsys.readouterr()
            said += [out, err]
        state.always = Scripted(401, "InvalidAuthenticationToken", "Access token has expired.")
        site.cli("flush", "-v")
        said += list(capsys.readouterr())
    assert state.tokens_issued >= 2 and state.sent  # tokens were used, mail went
    assert (site.root / "tikos-outbox.log").stat().st_size > 0
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert site.root / "outbox.db" in files
    for secret in (state.token, "das Geheimnis der App"):
        assert secret not in "".join(said)
        assert [p for p, data in files.items() if secret.encode() in data] == []
