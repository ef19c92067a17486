"""Sending the way providers accept it: even pacing, quotas per account shared in
the database, stopping at the first "slow down", session replies that are not a
recipient's fate, SIZE and 8BITMIME. Scripted replies from aiosmtpd (the texts
Microsoft, IONOS and Google send); Postfix's own are in test_postfix.py."""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import select
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import (
    Behaviour,
    Cert,
    FakeClock,
    Handler,
    MeetingHandler,
    Site,
    SmtpServer,
    open_outbox,
    status_json,
    write_site,
)
from tikos_outbox.core.pacing import Limits, Send, cool_down, quota_pause
from tikos_outbox.core.replies import Reply, Stage, Stop, stop_for
from tikos_outbox.providers import PROVIDERS
from tikos_outbox.provision import set_secret
from tikos_outbox.samples import make_pdf

T0 = datetime(2026, 12, 2, 9, tzinfo=UTC)

# -- which replies are about the account -------------------------------------------------


@pytest.mark.parametrize(("stage", "line", "stop"), [
    # Postfix anvil, IONOS, Strato, Microsoft, Google: slow down
    (Stage.MAIL, "450 4.7.1 Error: too much mail from 127.0.0.1", Stop.THROTTLE),
    (Stage.MAIL, "450 Mail send limit exceeded.", Stop.THROTTLE),
    (Stage.RCPT, "450 4.7.0 Transmit rate limit exceeded, try again later (ACC)",
     Stop.THROTTLE),
    (Stage.DATA, "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
     Stop.THROTTLE),
    (Stage.MAIL, "421 4.7.0 Try again later, closing connection.", Stop.THROTTLE),
    (Stage.AUTH, "454 4.7.0 Too many login attempts, please try again later.", Stop.THROTTLE),
    (Stage.DATA, "550 5.2.252 Sender throttled due to continuous invalid recipients",
     Stop.THROTTLE),
    # the provider's quota
    (Stage.DATA, "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
     Stop.QUOTA),
    (Stage.MAIL, "550 5.4.5 Daily user sending limit exceeded.", Stop.QUOTA),
    (Stage.RCPT, "550 5.7.233 Your message can't be sent because your tenant exceeded its"
                 " daily limit for sending email to external recipients", Stop.QUOTA),
    # blocked for spam: urgent
    (Stage.DATA, "554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException",
     Stop.BLOCKED),
    (Stage.MAIL, "550 5.1.8 Access denied, bad outbound sender", Stop.BLOCKED),
    (Stage.DATA, "554 5.7.1 Message rejected as spam", Stop.BLOCKED),
    (Stage.MAIL, "550 5.7.705 Access denied, tenant has exceeded threshold", Stop.BLOCKED),
    # the session: sender, HELO name (Postfix says these at RCPT), 421, MAIL deferred
    (Stage.RCPT, "553 5.7.1 <a@b.example>: Sender address rejected: not owned by user x",
     Stop.SESSION),
    (Stage.RCPT, "504 5.5.2 <pc01>: Helo command rejected: need fully-qualified hostname",
     Stop.SESSION),
    (Stage.MAIL, "553 5.7.1 Sender address not allowed", Stop.SESSION),
    (Stage.DATA, "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
     Stop.SESSION),
    (Stage.DATA, "421 4.3.2 Service shutting down", Stop.SESSION),
    (Stage.MAIL, "451 4.3.0 Temporary lookup failure", Stop.SESSION),
    (Stage.DATA, "554 5.2.2 mailbox full; STOREDRV.Submission.Exception:"
                 "QuotaExceededException; Failed to process message", Stop.QUOTA),
    (Stage.RCPT, "550 Domain waescherei.example has exceeded the max emails per hour"
                 " (100/100 (100%)) allowed.  Message discarded.", Stop.QUOTA),
    (Stage.RCPT, "554 5.7.1 <k@x.example>: Relay access denied", Stop.SESSION),
    (Stage.DATA, "451 4.7.1 Try again later", Stop.THROTTLE),
    # about this mail or this recipient only
    (Stage.RCPT, "550 5.1.1 <no-spam@kunde.example>: Recipient address rejected: User"
                 " unknown", None),
    (Stage.RCPT, "550 <throttled@kunde.example>: user unknown", None),
    (Stage.RCPT, "550 Mailbox quota exceeded", None),
    (Stage.RCPT, "451 4.7.1 Please try again later", None),
    (Stage.RCPT, "550 5.1.1 <x@y.example>: Recipient address rejected: User unknown", None),
    (Stage.RCPT, "452 4.2.2 Mailbox full", None),
    (Stage.RCPT, "552 5.2.2 Mailbox quota exceeded", None),
    (Stage.RCPT, "450 4.2.0 <x@y.example>: Recipient address rejected: Greylisted", None),
    (Stage.RCPT, "451 4.7.1 greylisted, try later", None),
    (Stage.RCPT, "452 4.5.3 Error: too many recipients", None),
    (Stage.MAIL, "552 5.3.4 Message size exceeds fixed limit", None),
    (Stage.DATA, "451 4.3.0 Error: queue file write error", None),
    (Stage.DATA, "554 5.6.0 Message content rejected", None),
])
def test_replies_about_the_account_are_told_from_replies_about_the_mail(
        stage: Stage, line: str, stop: Stop | None) -> None:
    code, text = line.split(" ", 1)
    assert stop_for(Reply(stage, int(code), text)) is stop


# -- quotas and cool-downs, the pure rules -----------------------------------------------


def test_an_hourly_quota_resumes_when_the_oldest_mail_leaves_the_hour() -> None:
    sends = [Send(T0 + timedelta(minutes=m), 1) for m in (0, 10, 20)]
    limits = Limits(per_hour=3)
    pause = quota_pause(sends, limits, T0 + timedelta(minutes=30), 1)
    assert pause is not None and pause.until == T0 + timedelta(hours=1)
    assert pause.reason == "max_per_hour = 3 reached (3 mails in the last hour)"
    assert quota_pause(sends, limits, T0 + timedelta(hours=1, seconds=1), 1) is None


def test_recipients_per_day_count_every_address_and_a_big_mail_still_goes() -> None:
    limits = Limits(recipients_per_day=10)
    sends = [Send(T0, 4), Send(T0 + timedelta(hours=1), 4)]
    assert quota_pause(sends, limits, T0 + timedelta(hours=2), 2) is None
    pause = quota_pause(sends, limits, T0 + timedelta(hours=2), 3)
    assert pause is not None and pause.until == T0 + timedelta(days=1)  # 4 must drop out
    # one mail to more addresses than a day allows goes when the day is empty
    assert quota_pause([], limits, T0, 25) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 36 * 60), max_size=40), st.integers(1, 6),
       st.integers(0, 30), st.integers(1, 4))
def test_a_quota_pause_ends_exactly_when_the_mail_fits(
        minutes: list[int], per_hour: int, per_day: int, rcpts: int) -> None:
    sends = [Send(T0 + timedelta(minutes=m), rcpts) for m in sorted(minutes)]
    now = T0 + timedelta(hours=36)
    limits = Limits(per_hour=per_hour, per_day=per_day, recipients_per_day=per_day * 2)
    pause = quota_pause(sends, limits, now, rcpts)
    if pause is None:
        return
    assert pause.until > now
    assert quota_pause(sends, limits, pause.until - timedelta(seconds=1), rcpts) is not None
    assert quota_pause(sends, limits, pause.until + timedelta(microseconds=1), rcpts) is None


def test_cool_downs_double_on_repeats_up_to_a_day() -> None:
    assert [cool_down(Stop.THROTTLE, n) for n in (1, 2, 3)] == [
        timedelta(minutes=15), timedelta(minutes=30), timedelta(hours=1)]
    assert cool_down(Stop.THROTTLE, 20) == timedelta(hours=24)
    assert cool_down(Stop.SESSION, 3) == timedelta(0)


# -- a scripted server -------------------------------------------------------------------


class Scripted(Handler):
    """Answers MAIL, RCPT or DATA of the n-th transaction (1-based) as scripted;
    counts every MAIL FROM it was offered, with its parameters."""

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(behaviour)
        self.mails: list[list[str]] = []
        self.at_mail: dict[int, str] = {}
        self.at_data: dict[int, str] = {}
        self.drop_8bitmime = False
        self.ehlos = 0

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        self.ehlos += 1
        return [r for r in responses if not (self.drop_8bitmime and "8BITMIME" in r)]

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        self.mails.append(options)
        reply = self.at_mail.get(len(self.mails))
        if reply:
            return reply
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self.at_data.get(len(self.mails))
        if reply:
            return reply
        return await super().handle_DATA(server, session, envelope)


def scripted(srv: SmtpServer) -> Scripted:
    assert isinstance(srv.handler, Scripted)
    return srv.handler


def server(cert: Cert, **options: Any) -> SmtpServer:
    return SmtpServer(cert, "none", wrap_handler=lambda h: Scripted(h.b), **options)


def site_with(tmp_path: Path, srv: SmtpServer, n_docs: int, **smtp: Any) -> Site:
    site = write_site(tmp_path, smtp={"port": srv.port, **smtp}, watch={"baseline": False})
    for i in range(n_docs):
        (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([f"Nr. {i}"]))
    assert site.cli("scan") == 0
    return site


# -- pacing --------------------------------------------------------------------------------


def test_mails_are_spaced_evenly_not_sent_in_a_burst(tmp_path: Path, cert: Cert) -> None:
    with server(cert) as srv:
        site = site_with(tmp_path, srv, 5, max_per_minute=6)
        clock = FakeClock(T0)
        outbox = open_outbox(site, clock)
        assert outbox.delivery.send_due().sent == 5
        times = sorted(a.at for i in range(1, 6)
                       for a in outbox.store.queries.get_entry(i).attempts)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert gaps and all(g >= 10 for g in gaps)  # 60 s / 6: never two closer
        assert clock.slept == pytest.approx(40, abs=0.01)  # and no longer than that
        outbox.close()


def test_a_stop_during_a_pacing_wait_sends_nothing_more(tmp_path: Path, cert: Cert) -> None:
    with server(cert) as srv:
        site = site_with(tmp_path, srv, 3, max_per_minute=1)

        class StoppingClock(FakeClock):
            def sleep(self, seconds: float) -> None:
                super().sleep(seconds)
                outbox.stop.set()  # SIGTERM arrives while the run waits for its slot

        outbox = open_outbox(site, StoppingClock(T0))
        report = outbox.delivery.send_due()
        assert (report.sent, len(srv.received)) == (1, 1)
        views = [outbox.store.queries.get_entry(i) for i in (2, 3)]
        assert [(v.state, len(v.attempts)) for v in views] == [("pending", 0)] * 2
        outbox.close()


# -- the server says slow down -------------------------------------------------------------


def test_slow_down_stops_the_run_at_the_first_reply_and_spends_no_attempt(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with server(cert) as srv:
        site = site_with(tmp_path, srv, 8)
        scripted(srv).at_mail = {4: "450 4.7.1 Error: too much mail from 127.0.0.1"}
        clock = FakeClock(T0)
        outbox = open_outbox(site, clock)
        report = outbox.delivery.send_due()
        assert (report.sent, report.deferred, report.failed) == (3, 0, 0)
        assert len(scripted(srv).mails) == 4  # one refused MAIL FROM, then nothing more
        assert "slow down" in report.stopped[0] and "resumes" in report.stopped[0]
        for i in range(4, 9):
            view = outbox.store.queries.get_entry(i)
            assert (view.state, view.attempts, view.next_attempt_at) == ("pending", [], None)
        [acc] = outbox.monitor.status().as_json()["accounts"]
        assert acc["paused_until"] == (T0 + timedelta(minutes=15)).isoformat()
        assert "too much mail" in acc["paused_because"] and acc["blocked"] is False
        # the service's own runs honour the cool-down: nothing is offered
        clock.advance(5 * 60)
        assert outbox.delivery.send_due().sent == 0
        assert len(scripted(srv).mails) == 4
        # after it, the rest goes; a second slow-down in a row rests twice as long
        clock.advance(10 * 60)
        scripted(srv).at_mail = {5: "450 4.7.1 Error: too much mail from 127.0.0.1"}
        assert outbox.delivery.send_due().sent == 0
        [acc] = outbox.monitor.status().as_json()["accounts"]
        assert acc["paused_until"] == (clock.now() + timedelta(minutes=30)).isoformat()
        # a manual flush overrides the cool-down (the admin decided); a mail that goes
        # through ends the series
        assert outbox.delivery.send_due(force=True).sent == 5
        assert outbox.monitor.status().as_json()["accounts"][0]["paused_until"] is None
        ids = [email.message_from_bytes(r.data)["Message-ID"] for r in srv.received]
        assert len(ids) == 8 == len(set(ids))  # each once
        outbox.close()


def test_an_outbound_spam_block_is_urgent_and_fails_nothing(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with server(cert) as srv:
        site = site_with(tmp_path, srv, 3)
        scripted(srv).at_data = {1: "554 5.2.0 STOREDRV.Submission.Exception:"
                                    "OutboundSpamException; Failed to process message"}
        assert site.cli("flush") == 1
        err = capsys.readouterr().err
        assert "URGENT" in err and "Restricted entities" in err
        st_ = status_json(site, capsys)
        assert {k: n for k, n in st_["counts"].items() if n} == {"pending": 3}
        [acc] = st_["accounts"]
        assert acc["blocked"] is True and "OutboundSpamException" in acc["paused_because"]
        assert "URGENT" in st_["last_error"]["text"]
        capsys.readouterr()
        assert site.cli("status") == 0
        assert "URGENT, blocked by the provider until" in capsys.readouterr().out
        assert len(scripted(srv).mails) == 1
        # the daily report tells the office first of all
        with site.config.open("a", encoding="utf-8") as f:
            f.write("\n[report]\nto = ['it@musterwaescherei.example']\n")
        outbox = open_outbox(site)
        assert outbox.report.send(outbox.clock.now().date())
        outbox.close()
        report = email.message_from_bytes(srv.received[-1].data, policy=email.policy.default)
        body = report.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert "DRINGEND: Der Anbieter hat das Versandkonto" in text
        assert "OutboundSpamException" in text


@pytest.mark.parametrize(("where", "line", "words"), [
    ("mail", "553 5.7.1 <rechnung@musterwaescherei.example>: Sender address rejected: not"
             " owned by user info@w.example", "does not let user info@w.example send as"),
    ("mail", "421 4.3.2 Service not available, closing channel", "ended the session"),
])
def test_a_session_reply_stops_the_run_and_fails_no_document(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str], where: str,
        line: str, words: str) -> None:
    with server(cert) as srv:
        site = site_with(tmp_path, srv, 3, username="info@w.example")
        scripted(srv).at_mail = {1: line}
        assert site.cli("flush") == 1
        st_ = status_json(site, capsys)
        assert {k: n for k, n in st_["counts"].items() if n} == {"pending": 3}
        assert words in st_["last_error"]["text"]
        outbox = open_outbox(site)
        assert all(outbox.store.queries.get_entry(i).attempts == [] for i in (1, 2, 3))
        outbox.close()


# -- quotas ----------------------------------------------------------------------------------


def test_an_hourly_quota_pauses_the_account_and_status_says_until_when(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with server(cert) as srv:
        site = site_with(tmp_path, srv, 5, max_per_hour=3, max_per_minute=30)
        clock = FakeClock(T0)
        outbox = open_outbox(site, clock)
        first = outbox.delivery.send_due(force=True)
        assert (first.sent, first.ok) == (3, True)
        assert "max_per_hour = 3 reached" in first.paused[0]
        [acc] = outbox.monitor.status().as_json()["accounts"]
        assert (acc["sent_last_hour"], acc["limits"]["max_per_hour"]) == (3, 3)
        assert acc["paused_until"] == (T0 + timedelta(hours=1)).isoformat()  # the first + 1 h
        assert outbox.delivery.send_due(force=True).sent == 0  # a flush does not override it
        clock.advance(3600)
        assert outbox.delivery.send_due().sent == 2
        outbox.close()


def _flush(site: Site) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tikos_outbox", "--config",
                             str(site.config), "flush"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_two_processes_share_one_quota(tmp_path: Path, cert: Cert, engine: str,
                                       request: pytest.FixtureRequest) -> None:
    with SmtpServer(cert, "none", wrap_handler=lambda h: MeetingHandler(h.b, deadline_s=60)) as srv:
        site = site_with(tmp_path, srv, 12, max_per_hour=5, max_per_connection=1)
        if engine == "postgresql":
            url = request.getfixturevalue("pg_url")
            text = site.config.read_text(encoding="utf-8")
            site.config.write_text(text.replace('database = "outbox.db"',
                                                f'database = "{url}"'), encoding="utf-8")
            assert site.cli("scan") == 0
        procs = [_flush(site) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        peers = srv.handler.peers  # type: ignore[attr-defined]
    # one mail per connection: the first DATA waited for the other process's MAIL
    assert len(peers) >= 2
    assert len(srv.received) == 5, outs  # one budget, whichever process sent
    assert all("max_per_hour = 5 reached" in err for _, err in outs), outs


# -- connections and protocol ----------------------------------------------------------------


def test_a_connection_the_server_closed_while_idle_is_reopened_without_an_attempt(
        tmp_path: Path, cert: Cert) -> None:
    with server(cert, timeout=1) as srv:  # aiosmtpd says 421 and closes after 1 s idle
        site = site_with(tmp_path, srv, 2)
        outbox = open_outbox(site)
        with outbox.mailers(outbox.config.smtp) as mailer:
            sender, to = "rechnung@musterwaescherei.example", ["kunde@example.org"]
            assert mailer.send(sender, to, b"Subject: 1\r\n\r\none\r\n").reply.code == 250
            sock = mailer._conn.sock  # type: ignore[attr-defined]
            assert select.select([sock], [], [], 30)[0]  # the server's 421 arrived
            result = mailer.send(sender, to, b"Subject: 2\r\n\r\ntwo\r\n")
            assert result.reply.code == 250
            assert (mailer.reconnects, mailer.connections_opened) == (1, 2)
        assert len(srv.received) == 2
        outbox.close()


def test_a_message_over_the_servers_size_fails_at_once_and_nothing_is_uploaded(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with server(cert, data_size_limit=1000) as srv:
        site = site_with(tmp_path, srv, 1)
        assert site.cli("flush") == 1
        capsys.readouterr()
        assert site.cli("show", "1", "--json") == 0
        entry = json.loads(capsys.readouterr().out)
        assert entry["state"] == "failed"
        assert "this server takes (its SIZE limit); nothing was uploaded" in entry["last_error"]
        assert entry["attention"] is not None
        assert scripted(srv).mails == [] and srv.handler.data_calls == 0


def test_an_8bit_body_is_declared_and_goes_quoted_printable_where_8bitmime_is_missing(
        tmp_path: Path, cert: Cert) -> None:
    for drop in (False, True):
        with server(cert) as srv:
            scripted(srv).drop_8bitmime = drop
            site = site_with(tmp_path / str(drop), srv, 1)
            assert site.cli("flush") == 0
            [options] = scripted(srv).mails
            [got] = srv.received
            assert any(o.startswith("SIZE=") for o in options)
            assert ("BODY=8BITMIME" in options) is not drop
            assert got.data.isascii() is drop  # 7-bit only where the server has no 8BITMIME
            msg = email.message_from_bytes(got.data, policy=email.policy.default)
            text = msg.get_body(("plain",))
            assert text is not None and "Mit freundlichen Grüßen" in text.get_content()
            assert text["Content-Transfer-Encoding"] == (
                "quoted-printable" if drop else "8bit")


# -- provider presets ------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(PROVIDERS))
def test_each_provider_preset_loads_and_the_readme_table_shows_its_limits(
        tmp_path: Path, key: str) -> None:
    from tikos_outbox.config import load_config
    from tikos_outbox.provision import init_dir

    p = PROVIDERS[key]
    config, _ = init_dir(tmp_path, provider=key)
    text = config.read_text(encoding="utf-8")
    assert p.source in text and p.published in text  # where each limit comes from
    # a password (or client secret) is all that is missing before it loads
    secret = "oauth2_client_secret" if p.smtp["auth"] == "oauth2" else "password"
    set_secret(config, "client-secret" if secret != "password" else "password", "geheim")
    smtp = load_config(config).smtp
    assert Limits.of(smtp) == Limits(*p.limits.values())
    graph = p.smtp.get("transport") == "graph"
    where = ("graph.microsoft.com", 443) if graph else (p.smtp["host"], p.smtp["port"])
    assert (smtp.host, smtp.port) == where
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    [row] = [line for line in readme.splitlines() if line.startswith(f"| `{key}` |")]
    preset = " / ".join(str(v) for v in p.limits.values())
    assert f"| {preset}" in row
    assert ("Microsoft Graph sendMail" if graph else f"{smtp.host}:{smtp.port}") in row


# -- what the review found: one mail, one account, one budget ---------------------------------


class AnswersOneMail(Scripted):
    """A server that answers one invoice's mail (RE_1) at its end with `answer`, every
    time, and takes the others."""

    answer = ""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if b"RE_1_4711.pdf" in envelope.original_content:
            return self.answer
        return await super().handle_DATA(server, session, envelope)


class SpamFilter(AnswersOneMail):
    """A content filter that rejects one invoice's mail as spam."""

    answer = "554 5.7.1 Spam message rejected"


def test_one_mail_a_filter_calls_spam_never_holds_up_its_account(
        tmp_path: Path, cert: Cert) -> None:
    with SmtpServer(cert, "none", wrap_handler=lambda h: SpamFilter(h.b)) as srv:
        site = site_with(tmp_path, srv, 4)
        clock = FakeClock(T0)
        outbox = open_outbox(site, clock)
        first = outbox.delivery.send_due()
        assert first.sent == 0 and "URGENT" in first.stopped[0]  # at first: the account's?
        # while it rests, the service's runs do not even connect
        ehlos = scripted(srv).ehlos
        clock.advance(30 * 60)
        assert outbox.delivery.send_due().sent == 0 and scripted(srv).ehlos == ehlos
        clock.advance(31 * 60)
        second = outbox.delivery.send_due()  # the same answer to the same mail: its own
        assert (second.sent, second.failed, second.stopped) == (3, 1, [])
        view = outbox.store.queries.get_entry(1)
        assert view.state == "failed" and view.attention is not None
        assert "Spam message rejected" in (view.last_error or "")
        outbox.close()


class EndsTheSession(AnswersOneMail):
    """A server that ends the session when one invoice's mail ends (a 421 after its
    final dot: for that mail, it turns out, not for the account)."""

    answer = "421 4.3.0 cannot take this message, closing the connection"


def test_a_session_ended_at_one_mail_every_time_never_holds_up_the_others(
        tmp_path: Path, cert: Cert) -> None:
    """Found in review: a 421 is the session's, so every run stopped at the same
    first invoice, for ever, and the invoices behind it never went out."""
    with SmtpServer(cert, "none", wrap_handler=lambda h: EndsTheSession(h.b)) as srv:
        site = site_with(tmp_path, srv, 4)
        outbox = open_outbox(site, FakeClock(T0))
        first = outbox.delivery.send_due()
        assert (first.sent, first.deferred) == (0, 0) and len(first.stopped) == 1
        assert "421 4.3.0" in first.stopped[0]  # at first: the session's, nothing spent
        assert outbox.store.queries.get_entry(1).attempts == []
        second = outbox.delivery.send_due()  # the same answer to the same mail: its own
        assert (second.sent, second.deferred, second.stopped) == (3, 1, [])
        view = outbox.store.queries.get_entry(1)
        assert view.state == "deferred" and view.next_attempt_at is not None
        assert "421 4.3.0 cannot take this message" in (view.last_error or "")
        assert [e.state for e in map(outbox.store.queries.get_entry, (2, 3, 4))] == \
            ["sent"] * 3
        outbox.close()


def test_a_relay_refused_at_rcpt_stops_every_run_until_mended(
        tmp_path: Path, cert: Cert) -> None:
    """A refused session (5yz) after MAIL FROM, here Postfix refusing to relay because
    the login did not take, is the set-up's, however often: no invoice is spent on it."""
    with server(cert) as srv:
        site = site_with(tmp_path, srv, 2)
        outbox = open_outbox(site, FakeClock(T0))
        handler = scripted(srv)
        original = handler.handle_RCPT

        async def relay_denied(*args: Any) -> str:
            return "554 5.7.1 <kunde@example.org>: Relay access denied"

        handler.handle_RCPT = relay_denied  # type: ignore[method-assign]
        for _ in range(3):
            report = outbox.delivery.send_due()
            assert (report.sent, report.failed, report.deferred) == (0, 0, 0)
            assert "Relay access denied" in report.stopped[0]
        assert [outbox.store.queries.get_entry(i).state for i in (1, 2)] == ["pending"] * 2
        handler.handle_RCPT = original  # type: ignore[method-assign]
        assert outbox.delivery.send_due().sent == 2
        outbox.close()


def test_a_refused_sender_is_shown_until_mended_and_the_daily_report_says_it(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with server(cert) as srv:
        site = site_with(tmp_path, srv, 2, username="info@w.example")
        with site.config.open("a", encoding="utf-8") as f:
            f.write("\n[report]\nto = ['it@musterwaescherei.example']\n")
        scripted(srv).at_mail = {1: "553 5.7.1 <rechnung@musterwaescherei.example>: Sender"
                                    " address rejected: not owned by user info@w.example"}
        outbox = open_outbox(site)
        assert outbox.delivery.send_due().stopped
        [acc] = outbox.monitor.status().as_json()["accounts"]
        assert "does not let user info@w.example send as" in acc["problem"]
        assert acc["paused_until"] is None  # nothing to wait out: it needs a fix
        capsys.readouterr()
        assert site.cli("status") == 0
        assert "STOPPED until the set-up is mended" in capsys.readouterr().out
        assert outbox.report.send(outbox.clock.now().date())
        body = email.message_from_bytes(srv.received[-1].data, policy=email.policy.default
                                        ).get_body(("plain",))
        assert body is not None and "Der Versand mit info@w.example" in body.get_content()
        # mended at the provider: the next mail that goes through clears it
        assert outbox.delivery.send_due().sent == 2
        assert outbox.monitor.status().as_json()["accounts"][0]["problem"] is None
        outbox.close()


def test_mandants_sharing_a_login_share_the_strictest_limits() -> None:
    from dataclasses import replace

    from tikos_outbox.core.pacing import account_limits, account_of
    from tikos_outbox.core.settings import Auth, Security, SmtpSettings

    base = SmtpSettings(host="smtp.ionos.de", port=587, security=Security.STARTTLS,
                        verify_tls=True, ca_file=None, auth=Auth.PASSWORD, username="r@w.de",
                        password=None, oauth2_tenant=None, oauth2_token_url=None,
                        oauth2_client_id=None, oauth2_client_secret=None, oauth2_scope="",
                        timeout_s=60, max_per_minute=10, max_per_connection=50,
                        helo_name=None, max_per_hour=45)
    other = replace(base, max_per_minute=0, max_per_hour=0, max_per_day=500)
    own = replace(base, username="m2@w.de", max_per_hour=0)
    limits = account_limits([base, other, own])
    assert limits[account_of(base)] == Limits(per_minute=10, per_hour=45, per_day=500)
    assert limits[account_of(own)] == Limits(per_minute=10)
