"""PIPELINING (RFC 2920) against aiosmtpd offering it and against a real Postfix:
the envelope goes in one write, every recipient's answer is still its own, the
connection stays in step after refusals, and a transaction that must not go on
after a 354 delivers nothing."""

from __future__ import annotations

import logging
import smtplib
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import Behaviour, Cert, SmtpServer, status_json
from tests.test_delivery import show, site_for
from tikos_outbox.config import load_config
from tikos_outbox.core.replies import Stage
from tikos_outbox.core.settings import SmtpSettings
from tikos_outbox.credentials import KeyRing
from tikos_outbox.smtp import Mailer

if TYPE_CHECKING:
    from typing_extensions import Buffer

SENDER = "rechnung@musterwaescherei.example"
TWO = "1;4711;da@example.org;auch@example.org\n"


class Relay:
    """A TCP relay on loopback in front of a server, keeping every chunk the client
    wrote as the relay read it (one write of a few hundred bytes is one chunk)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.chunks: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if record:
                    self.chunks.append(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def envelopes(self) -> list[bytes]:
        """The chunks that begin a mail transaction."""
        return [c for c in self.chunks if c.upper().startswith(b"MAIL FROM")]

    def close(self) -> None:
        self.sock.close()


@contextmanager
def relayed(srv: SmtpServer) -> Iterator[Relay]:
    relay = Relay(srv.port)
    try:
        yield relay
    finally:
        relay.close()


@pytest.mark.parametrize(("offered", "setting", "together"), [
    (True, None, True), (False, None, False), (True, False, False)])
def test_the_envelope_goes_in_one_write_only_where_the_server_offers_pipelining(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str],
        offered: bool, setting: bool | None, together: bool) -> None:
    with SmtpServer(cert, "none", behaviour=Behaviour(pipelining=offered)) as srv, \
            relayed(srv) as relay:
        smtp: dict[str, Any] = {"port": relay.port}
        if setting is not None:
            smtp["pipelining"] = setting
        site = site_for(tmp_path, srv, n_docs=2, csv=TWO, **smtp)
        assert site.cli("flush") == 0
        assert sorted(r.rcpt_tos for r in srv.received) == [
            ["da@example.org", "auch@example.org"]] * 2
    envelopes = relay.envelopes()
    assert len(envelopes) == 2
    for chunk in envelopes:
        lines = chunk.split(b"\r\n")
        if together:
            assert lines[0].startswith(f"MAIL FROM:<{SENDER}> SIZE=".encode())
            assert lines[1:4] == [b"RCPT TO:<da@example.org>", b"RCPT TO:<auch@example.org>",
                                  b"DATA"] and chunk.endswith(b"DATA\r\n")
        else:
            assert len(lines) == 2 and lines[1] == b""  # MAIL FROM alone, then its answer
    for entry_id in (1, 2):
        assert show(site, capsys, entry_id)["state"] == "sent"


def mailer_for(tmp_path: Path, srv: SmtpServer) -> Mailer:
    site = site_for(tmp_path, srv, n_docs=0)
    settings: SmtpSettings = load_config(site.config).smtp
    return Mailer(settings)


MESSAGE = (b"From: <rechnung@musterwaescherei.example>\r\nSubject: Test\r\n\r\n"
           b".eine Zeile mit Punkt\r\n..zwei Punkte\r\n.\r\nEnde ohne Zeilenende")


@pytest.mark.parametrize("pipelining", [True, False])
def test_lines_beginning_with_a_dot_arrive_as_written(
        tmp_path: Path, cert: Cert, pipelining: bool) -> None:
    with SmtpServer(cert, "none", behaviour=Behaviour(pipelining=pipelining)) as srv, \
            mailer_for(tmp_path, srv) as mailer:
        result = mailer.send(SENDER, ["kunde@example.org"], MESSAGE)
        assert result.reply.code == 250 and result.accepted == ["kunde@example.org"]
        assert mailer.pipelined == (1 if pipelining else 0)
        [got] = srv.received
    assert got.data == MESSAGE + b"\r\n"  # the dot of each line given back by the server


def test_after_a_refused_sender_and_refused_recipients_the_connection_stays_in_step(
        tmp_path: Path, cert: Cert) -> None:
    behaviour = Behaviour(pipelining=True, mail_reply="553 5.7.1 sender not allowed",
                          rcpt_replies={"weg@example.org": "550 5.1.1 no such user",
                                        "voll@example.org": "452 4.2.2 mailbox full"})
    with SmtpServer(cert, "none", behaviour=behaviour) as srv, \
            mailer_for(tmp_path, srv) as mailer:
        refused_sender = mailer.send(SENDER, ["kunde@example.org"], MESSAGE)
        assert (refused_sender.reply.stage, refused_sender.reply.code) == (Stage.MAIL, 553)
        behaviour.mail_reply = None
        nobody = mailer.send(SENDER, ["weg@example.org", "voll@example.org"], MESSAGE)
        # no recipient taken: the temporary refusal speaks, so the mail is tried again
        assert (nobody.reply.stage, nobody.reply.code) == (Stage.RCPT, 452)
        assert set(nobody.refused) == {"weg@example.org", "voll@example.org"}
        one = mailer.send(SENDER, ["weg@example.org", "kunde@example.org"], MESSAGE)
        assert one.reply.code == 250 and one.accepted == ["kunde@example.org"]
        assert one.refused["weg@example.org"].code == 550
        assert mailer.connections_opened == 1 and mailer.pipelined == 3
        assert [r.rcpt_tos for r in srv.received] == [["kunde@example.org"]]


def test_a_slow_down_at_rcpt_after_a_354_delivers_nothing_and_costs_no_attempt(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """aiosmtpd says 354 because one recipient was taken; the other's "slow down" is
    about the account, so the mail must not go to half its recipients."""
    slow = "451 4.7.1 too many mails, slow down"
    behaviour = Behaviour(pipelining=True, rcpt_replies={"auch@example.org": slow})
    with SmtpServer(cert, "none", behaviour=behaviour) as srv:
        smtp_log = logging.getLogger("tikos_outbox.smtp")
        smtp_log.addHandler(caplog.handler)  # the CLI's logging does not propagate
        try:
            with mailer_for(tmp_path / "direct", srv) as mailer:
                result = mailer.send(SENDER, ["da@example.org", "auch@example.org"], MESSAGE)
        finally:
            smtp_log.removeHandler(caplog.handler)
        assert (result.reply.stage, result.reply.code) == (Stage.RCPT, 451)
        assert (f'accepted DATA after answering a recipient "{result.reply}"; closing the'
                " connection before the message ends") in caplog.text
        assert srv.handler.data_calls == 0 and srv.received == []

        (tmp_path / "site").mkdir()
        site = site_for(tmp_path / "site", srv, csv=TWO)
        assert site.cli("flush") == 1
        entry = show(site, capsys)
        assert entry["state"] == "pending" and entry["attempts"] == []
        assert slow in status_json(site, capsys)["last_error"]["text"]
        assert srv.received == []
        behaviour.rcpt_replies.clear()  # the provider lets us send again
        assert site.cli("flush") == 0
        assert [r.rcpt_tos for r in srv.received] == [["da@example.org", "auch@example.org"]]
        assert show(site, capsys)["state"] == "sent"


def test_a_421_among_the_answers_ends_the_session_and_the_next_mail_opens_a_new_one(
        tmp_path: Path, cert: Cert) -> None:
    behaviour = Behaviour(pipelining=True,
                          rcpt_replies={"da@example.org": "421 4.3.2 shutting down"})
    with SmtpServer(cert, "none", behaviour=behaviour) as srv, \
            mailer_for(tmp_path, srv) as mailer:
        result = mailer.send(SENDER, ["da@example.org", "kunde@example.org"], MESSAGE)
        assert (result.reply.stage, result.reply.code) == (Stage.RCPT, 421)
        behaviour.rcpt_replies.clear()
        assert mailer.send(SENDER, ["kunde@example.org"], MESSAGE).reply.code == 250
        assert mailer.connections_opened == 2
        assert [r.rcpt_tos for r in srv.received] == [["kunde@example.org"]]


@pytest.mark.slow
def test_postfix_takes_pipelined_mails_each_once_and_never_logs_improper_pipelining(
        tmp_path: Path, postfix: dict[str, Any]) -> None:
    from tests.test_postfix import delivered, log_mark, log_since, postfix_site, wait_for

    site = postfix_site(tmp_path, postfix, "plain", 0)
    smtp = load_config(site.config).smtp
    assert smtp.pipelining  # the default
    password = KeyRing(site.root / "tikos-outbox.key").decrypt(smtp.password or "", "pw")
    sender = postfix["senders"]["laundry@tikos.test"]
    run = uuid.uuid4().hex  # the Maildir outlives the test run: ids of this run only
    ids = {f"<pipelined-{i}-{run}@waescherei.test>" for i in range(3)}
    mark = log_mark(postfix)
    with Mailer(smtp, password=password) as mailer:
        for mid in sorted(ids):
            message = (f"From: <{sender}>\r\nTo: <kunde@example.org>\r\nMessage-ID: {mid}"
                       "\r\nSubject: Rechnung\r\n\r\n.Zeile mit Punkt\r\n").encode()
            result = mailer.send(sender, ["kunde@example.org", "buchhaltung@example.org"],
                                 message)
            assert result.reply.code == 250, result.reply
            assert result.accepted == ["kunde@example.org", "buchhaltung@example.org"]
        assert mailer.pipelined == 3 and mailer.connections_opened == 1
    wait_for("deliver 6 copies", lambda: sum(delivered(postfix, ids).values()) == 6)
    assert set(delivered(postfix, ids).values()) == {2}  # each mail once to each address
    assert not [line for line in log_since(postfix, mark)
                if "improper command pipelining" in line]


class _DataWire(smtplib.SMTP):
    """smtplib with no socket: what its `data()` would write for a message."""

    def __init__(self) -> None:
        super().__init__()
        self.wire = b""
        self.replies = iter([(354, b"go ahead"), (250, b"OK")])

    def putcmd(self, cmd: str, args: str = "") -> None:
        pass

    def send(self, s: Buffer | str) -> None:
        self.wire += s.encode() if isinstance(s, str) else bytes(s)

    def getreply(self) -> tuple[int, bytes]:
        return next(self.replies)


@settings(max_examples=400)
@given(st.lists(st.sampled_from([b".", b"\r\n", b"\n", b"\r", b"a", b"..", b"\r\n."]),
                max_size=30).map(b"".join))
def test_dot_stuffing_writes_what_smtplib_writes(message: bytes) -> None:
    """DATA's transparency rule (RFC 5321 §4.5.2): our pipelined and plain paths write
    exactly the bytes smtplib's own `data()` writes for the message."""
    from tikos_outbox.smtp_pipeline import dot_stuffed

    wire = _DataWire()
    wire.data(message)
    assert dot_stuffed(message) == wire.wire


class Scripted:
    """An SMTP server on loopback that answers each command line from a script, in
    order (so pipelined commands too), and keeps every line it heard. aiosmtpd always
    answers DATA with 354; this one can refuse it, or answer it out of protocol."""

    def __init__(self, data_answer: bytes, pipelining: bool) -> None:
        ehlo = b"250-scripted\r\n" + (b"250-PIPELINING\r\n" if pipelining else b"")
        self.answers = {b"EHLO": ehlo + b"250 8BITMIME\r\n", b"MAIL": b"250 OK\r\n",
                        b"RCPT": b"250 OK\r\n", b"DATA": data_answer, b"RSET": b"250 OK\r\n",
                        b"NOOP": b"250 OK\r\n", b"QUIT": b"221 bye\r\n",
                        b".": b"250 2.0.0 queued\r\n"}
        self.heard: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines, suppress(OSError):
                conn.sendall(b"220 scripted ESMTP\r\n")
                message = False  # after a 354: the message's lines, up to "."
                for line in lines:
                    self.heard.append(line)
                    if message:
                        if line == b".\r\n":
                            message = False
                            if not self.answers[b"."]:
                                break  # keeps the message, and drops the connection
                            conn.sendall(self.answers[b"."])
                        continue
                    answer = self.answers.get(line[:4].upper(), b"500 what?\r\n")
                    message = answer.startswith(b"354")
                    conn.sendall(answer)
                    if line[:4].upper() == b"QUIT":
                        break

    def close(self) -> None:
        self.listener.close()


def flushed(tmp_path: Path, capsys: pytest.CaptureFixture[str], server: Scripted,
            rc: int) -> dict[str, Any]:
    """One invoice flushed against `server` (closed afterwards), `flush` ending with
    `rc`: the entry as `show --json` tells the office."""
    try:
        site = site_for(tmp_path, None, n_docs=1, port=server.port)
        assert site.cli("flush") == rc
    finally:
        server.close()
    return show(site, capsys)


@pytest.mark.parametrize("pipelining", [False, True])
@pytest.mark.parametrize(("data_answer", "code", "words"), [
    (b"451 4.3.0 queue busy, try later\r\n", 451, "queue busy"),
    # "250" to the DATA command itself was counted as delivered, with no byte sent
    (b"250 fine\r\n", None, 'the server answered DATA with "250 fine" instead of 354'),
])
def test_data_not_answered_354_sends_nothing_and_the_entry_waits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], pipelining: bool,
        data_answer: bytes, code: int | None, words: str) -> None:
    """The server refuses DATA itself (Postfix's smtpd_data_restrictions, a busy
    queue), or answers it outside the protocol: the customer got nothing, so the
    office sees the entry deferred with the server's words, never sent."""
    server = Scripted(data_answer, pipelining)
    entry = flushed(tmp_path, capsys, server, 1)  # the work ran, something did not go out
    assert entry["state"] == "deferred" and entry["sent_at"] is None
    assert words in entry["last_error"]
    assert [a["code"] for a in entry["attempts"]] == [code]
    verbs = [h[:4].upper() for h in server.heard]
    assert verbs.count(b"DATA") == 1 and b"QUIT" in verbs
    assert not [h for h in server.heard if b"Subject" in h or b"%PDF" in h]  # no message


@pytest.mark.parametrize("pipelining", [False, True])
@pytest.mark.parametrize(("command", "answer"), [
    (b"RCPT", b"252 2.1.5 cannot verify the user, but will accept the message\r\n"),
    (b"MAIL", b"251 2.1.0 sender ok\r\n"),
])
def test_an_unusual_2yz_answer_is_taken_as_yes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], pipelining: bool, command: bytes,
        answer: bytes) -> None:
    """RFC 5321 §4.2.1: the client acts on a reply's first digit. A 252 to RCPT was
    filed as a refusal, so no message went out, and yet the recipient was recorded
    "delivered" (a 2yz classifies as delivered): the office saw "sent", the customer
    had nothing. Now the message goes, and "sent" is true."""
    server = Scripted(b"354 go ahead\r\n", pipelining)
    server.answers[command] = answer
    entry = flushed(tmp_path, capsys, server, 0)
    assert entry["state"] == "sent"
    assert [(d["address"], d["state"]) for d in entry["deliveries"]] == [
        ("kunde@example.org", "delivered")]
    assert [a["code"] for a in entry["attempts"]] == [250]
    assert [h for h in server.heard if h.startswith(b"Subject:")]  # the message went
    assert server.heard.count(b".\r\n") == 1  # whole, once


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_connection_lost_after_the_final_dot_says_the_mail_may_have_arrived(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], pipelining: bool) -> None:
    """The server kept the whole message and the connection died before its 250. RFC
    5321 §6.1: send it again (a second copy is the lesser harm than none). The office
    must be able to tell the customer who has it twice why: the attempt says so."""
    server = Scripted(b"354 go ahead\r\n", pipelining)
    server.answers[b"."] = b""
    try:
        site = site_for(tmp_path, None, n_docs=1, port=server.port)
        assert site.cli("flush") == 1
        entry = show(site, capsys)
        assert entry["state"] == "deferred" and entry["next_attempt_at"] is not None
        assert "may have arrived" in entry["last_error"]
        assert "if the customer has it twice, this is why" in entry["last_error"]
        server.answers[b"."] = b"250 2.0.0 queued\r\n"
        assert site.cli("flush") == 0
    finally:
        server.close()
    entry = show(site, capsys)
    assert entry["state"] == "sent"
    assert ["may have arrived" in (a["reply"] or "") for a in entry["attempts"]] == [True, False]
    assert server.heard.count(b".\r\n") == 2  # the same mail, twice


@pytest.mark.parametrize("pipelining", [False, True])
def test_an_answer_line_too_long_is_a_lost_connection_never_a_refusal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], pipelining: bool) -> None:
    """smtplib stops reading a line over 8,192 bytes and says "500 Line too long": its
    words, not the server's, so the invoice is not given up on them; tried again."""
    server = Scripted(b"354 go ahead\r\n", pipelining)
    server.answers[b"RCPT"] = b"250 " + b"x" * 9000 + b"\r\n"
    entry = flushed(tmp_path, capsys, server, 1)
    assert entry["state"] == "deferred" and "Line too long" in entry["last_error"]
    assert not [h for h in server.heard if h.startswith(b"Subject:")]
