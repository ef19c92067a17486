"""Sending against a real SMTP server: every reply class lands in the right state."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    Behaviour,
    Cert,
    FakeClock,
    Site,
    SmtpServer,
    free_port,
    make_cert,
    open_outbox,
    status_json,
    write_site,
)
from tikos_outbox.samples import make_pdf


def site_for(tmp_path: Path, srv: SmtpServer | None, cert: Cert | None = None,
             n_docs: int = 1, csv: str | None = None, **smtp: Any) -> Site:
    password = smtp.pop("_password", None)
    port = srv.port if srv else free_port()
    security = srv.security if srv else "none"
    settings: dict[str, Any] = {"port": port, "security": security, **smtp}
    if cert is not None and "ca_file" not in settings and security != "none":
        settings["ca_file"] = str(cert.cert)
    recipients = None
    if csv is not None:
        (tmp_path / "r.csv").write_text("mandant;customer;email\n" + csv, encoding="utf-8")
        recipients = 'csv = "r.csv"'
    site = write_site(tmp_path, smtp=settings, watch={"baseline": False}, recipients=recipients,
                      password=password)
    for i in range(n_docs):
        (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([f"Nr. {i}"]))
    assert site.cli("scan") == 0
    return site


def show(site: Site, capsys: pytest.CaptureFixture[str], entry_id: int = 1) -> dict[str, Any]:
    capsys.readouterr()
    assert site.cli("show", str(entry_id), "--json") == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


@pytest.mark.parametrize(
    ("behaviour", "state", "code"),
    [
        (Behaviour(rcpt_replies={"kunde@example.org": "550 5.1.1 user unknown"}), "failed", 550),
        (Behaviour(rcpt_replies={"kunde@example.org": "553 5.1.3 bad address"}), "failed", 553),
        (Behaviour(rcpt_replies={"kunde@example.org": "451 4.7.1 greylisted"}), "deferred", 451),
        (Behaviour(rcpt_replies={"kunde@example.org": "452 4.5.3 too many recipients"}),
         "deferred", 452),
        (Behaviour(data_reply="552 5.3.4 message too big"), "failed", 552),
        (Behaviour(data_reply="554 5.6.0 message content rejected"), "failed", 554),
        (Behaviour(data_reply="451 4.3.0 queue full"), "deferred", 451),
        (Behaviour(drop_after_data=True), "deferred", None),
    ],
)
@pytest.mark.parametrize("pipelining", [False, True])
def test_reply_classes(tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str],
                       behaviour: Behaviour, state: str, code: int | None,
                       pipelining: bool) -> None:
    behaviour = replace(behaviour, pipelining=pipelining)  # the same with RFC 2920
    with SmtpServer(cert, "starttls", behaviour=behaviour) as srv:
        site = site_for(tmp_path, srv, cert)
        assert site.cli("flush") == 1
        entry = show(site, capsys)
        assert entry["state"] == state
        [attempt] = entry["attempts"]
        assert attempt["code"] == code
        assert attempt["server"] == f"127.0.0.1:{srv.port}"
        if code is not None:
            assert str(code) in entry["last_error"]
        else:
            assert "closed the connection" in attempt["reply"]
        # failed and deferred entries come back with requeue and are delivered
        srv.behaviour.__init__()  # type: ignore[misc]
        assert site.cli("requeue", "1") == 0
        assert site.cli("flush") == 0
        entry = show(site, capsys)
        assert entry["state"] == "sent"
        assert len(entry["attempts"]) == 2  # the history is kept


def test_stall_past_the_timeout_is_transient(tmp_path: Path, cert: Cert,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none", behaviour=Behaviour(stall_s=3)) as srv:
        site = site_for(tmp_path, srv, timeout_s=1)
        assert site.cli("flush") == 1
        entry = show(site, capsys)
        assert entry["state"] == "deferred"
        assert "timed out" in entry["attempts"][0]["reply"]


@pytest.mark.parametrize("pipelining", [False, True])
def test_some_recipients_refused_mail_goes_to_the_others(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str], pipelining: bool) -> None:
    behaviour = Behaviour(rcpt_replies={"weg@example.org": "550 5.1.1 no such user"},
                          pipelining=pipelining)
    with SmtpServer(cert, "none", behaviour=behaviour) as srv:
        site = site_for(tmp_path, srv, csv="1;4711;da@example.org;weg@example.org\n")
        assert site.cli("flush") == 0
        assert [r.rcpt_tos for r in srv.received] == [["da@example.org"]]
    entry = show(site, capsys)
    assert entry["state"] == "sent"
    assert entry["refused"] == {"weg@example.org": "550 5.1.1 no such user"}


RUN_STOPPERS = {
    "wrong password": "SMTP login rejected by the server: 535",
    "untrusted certificate": "certificate is not trusted",
    "hostname mismatch": "certificate is not trusted",
    "no starttls": "does not offer STARTTLS; not sending in plain text",
    "refused connection": "refused the connection",
    "421 greeting": "421 4.3.2 too busy",
    "554 greeting": "554 5.7.1 no service for you",
    "tls handshake failure": "TLS handshake failed",
    "closed mid-tls": "TLS",
}


@pytest.mark.parametrize("case", sorted(RUN_STOPPERS))
def test_run_stoppers_burn_nothing_and_show_in_status(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str], case: str) -> None:
    extra: dict[str, Any] = {}
    srv: Any = None
    if case == "wrong password":
        srv = SmtpServer(cert, "starttls", users={"u": "richtig"})
        extra = {"auth": "password", "username": "u", "_password": "falsch"}
    elif case == "untrusted certificate":
        srv = SmtpServer(cert, "ssl")
        extra = {"ca_file": str(make_cert(tmp_path / "other", stem="other").cert)}
    elif case == "hostname mismatch":
        wrong = make_cert(tmp_path / "wrong", names=("mail.example",), ips=("127.0.0.2",))
        srv = SmtpServer(wrong, "ssl")
        extra = {"ca_file": str(wrong.cert)}
    elif case == "no starttls":
        srv = SmtpServer(cert, "none")
        extra = {"security": "starttls"}
    elif case in ("421 greeting", "554 greeting"):
        srv = RawServer(lambda c: c.sendall(RUN_STOPPERS[case].encode()[:3] + b" " +
                                            RUN_STOPPERS[case].encode()[4:] + b"\r\n"))
    elif case == "tls handshake failure":  # plain SMTP where implicit TLS is configured
        srv = RawServer(lambda c: c.sendall(b"220 plain.example ESMTP\r\n"), "ssl")
        extra = {"ca_file": str(cert.cert)}
    elif case == "closed mid-tls":  # says yes to STARTTLS, then hangs up
        srv = RawServer(_starttls_then_close, "starttls")
        extra = {"ca_file": str(cert.cert)}
    if srv is not None:
        srv.__enter__()
    try:
        site = site_for(tmp_path / "site", srv, cert, n_docs=3, **extra)
        assert site.cli("flush") == 1
        assert (srv.received if srv else []) == []
        for i in (1, 2, 3):
            entry = show(site, capsys, i)
            assert entry["state"] == "pending" and entry["attempts"] == []
        st = status_json(site, capsys)
        assert RUN_STOPPERS[case] in st["last_error"]["text"]
        assert st["counts"]["pending"] == 3
    finally:
        if srv is not None:
            srv.__exit__()


def _starttls_then_close(conn: Any) -> None:
    conn.sendall(b"220 half.example ESMTP\r\n")
    f = conn.makefile("rb")
    f.readline()  # EHLO
    conn.sendall(b"250-half.example\r\n250 STARTTLS\r\n")
    f.readline()  # STARTTLS
    conn.sendall(b"220 2.0.0 go ahead\r\n")


class RawServer:
    """A TCP server on loopback that runs `script` on each connection, then hangs up."""

    def __init__(self, script: Any, security: str = "none") -> None:
        import socket
        import threading

        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.security = security
        self.received: list[Any] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                self.script(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_connection_reuse_and_throttling_hold_their_figures(tmp_path: Path, cert: Cert) -> None:
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv, n_docs=7, max_per_connection=3, max_per_minute=2)
        clock = FakeClock(datetime(2026, 11, 26, 9, tzinfo=UTC))
        svc = open_outbox(site, clock)
        report = svc.delivery.send_due(force=True)
        assert report.sent == 7
        assert len({r.peer for r in srv.received}) == 3  # 3 + 3 + 1 mails per connection
        times = sorted(a.at for i in range(1, 8)
                       for a in svc.store.queries.get_entry(i).attempts)
        for i in range(len(times) - 2):
            assert (times[i + 2] - times[i]).total_seconds() >= 60  # never 3 within a minute
        assert clock.slept >= 180  # 7 mails at 2 a minute need at least three minute-waits
        svc.store.close()


def test_auth_login_with_a_non_ascii_password(tmp_path: Path, cert: Cert) -> None:
    secret = "Wäsche § ; : @ \\ % \"x\" ß"
    with SmtpServer(cert, "ssl", users={"info@w.example": secret},
                    exclude_auth=("PLAIN",)) as srv:
        site = site_for(tmp_path, srv, cert, auth="password", username="info@w.example",
                        _password=secret)
        assert site.cli("flush") == 0
        assert srv.logins == [("info@w.example", secret)]
        assert len(srv.received) == 1


def test_deferred_entries_back_off_and_fail_after_the_lifetime(tmp_path: Path, cert: Cert) -> None:
    with SmtpServer(cert, "none", behaviour=Behaviour(data_reply="451 4.3.0 later")) as srv:
        site = site_for(tmp_path, srv)
        clock = FakeClock(datetime(2026, 11, 26, 9, tzinfo=UTC))
        svc = open_outbox(site, clock)
        assert svc.delivery.send_due().deferred == 1
        entry = svc.store.queries.get_entry(1)
        assert entry.state == "deferred"
        assert entry.next_attempt_at == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
        clock.advance(10 * 60)
        assert svc.delivery.send_due().deferred == 0  # back-off not over: not tried
        assert svc.delivery.send_due(force=True).deferred == 1  # flush tries anyway
        # the second failure doubles the wait; the lifetime still counts from the first
        assert svc.store.queries.get_entry(1).next_attempt_at == datetime(
            2026, 11, 26, 10, 10, tzinfo=UTC)
        clock.advance(5 * 86400 - 10 * 60 - 1)
        assert svc.delivery.send_due().deferred == 1  # a second short of 5 days: tried again
        assert svc.store.queries.get_entry(1).next_attempt_at == datetime(
            2026, 12, 1, 10, 59, 59, tzinfo=UTC)  # third failure: 30 min * 2**2
        clock.advance(2 * 3600)  # due again, and past the lifetime: given up
        report = svc.delivery.send_due()
        assert report.failed == 1
        entry = svc.store.queries.get_entry(1)
        assert entry.state == "failed"
        assert entry.last_error.startswith("gave up after 5 days; last reply: 451 4.3.0 later")
        assert len(entry.attempts) == 4
        svc.store.close()


def test_verify_tls_false_is_the_admins_explicit_choice(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    other = make_cert(tmp_path / "other", stem="other").cert
    with SmtpServer(cert, "ssl") as srv:
        site = site_for(tmp_path / "a", srv, cert, ca_file=str(other))
        assert site.cli("flush") == 1  # verified by default: not trusted, nothing sent
        assert srv.received == []
        site = site_for(tmp_path / "b", srv, cert, ca_file=str(other), verify_tls=False)
        capsys.readouterr()
        assert site.cli("flush") == 0
        assert len(srv.received) == 1
    assert "TLS certificate checks are off" in capsys.readouterr().err
