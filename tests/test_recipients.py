"""Per-recipient delivery against a real SMTP server: the customer's addresses alone
decide, a deferred address is retried alone, nobody gets a document twice."""

from __future__ import annotations

import collections
import email
import email.policy
import json
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Cert, FakeClock, Handler, Site, SmtpServer, open_outbox, write_site
from tikos_outbox.samples import make_pdf

CUSTOMERS = ("einkauf@hotel-adler.example", "buchhaltung@hotel-adler.example")
BCC = "archiv@musterwaescherei.example"


class Scripted(Handler):
    """Answers RCPT per address from a script (one reply per attempt, then 250)."""

    def __init__(self, handler: Handler) -> None:
        super().__init__(handler.b)
        self.script: dict[str, list[str]] = {}
        self.script_lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        with self.script_lock:
            queue = self.script.get(address) or []
            reply = queue.pop(0) if queue else "250 OK"
        if not reply.startswith("250"):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def server(cert: Cert) -> Iterator[SmtpServer]:
    with SmtpServer(cert, "none", wrap_handler=Scripted) as srv:
        yield srv


def scripted(srv: SmtpServer) -> Scripted:
    assert isinstance(srv.handler, Scripted)
    return srv.handler


def site_with(root: Path, srv: SmtpServer, bcc: bool = False,
              customers: tuple[str, ...] = CUSTOMERS) -> Site:
    (root).mkdir(parents=True, exist_ok=True)
    (root / "r.csv").write_text("mandant;customer;email\n1;4711;" + ";".join(customers) + "\n",
                                encoding="utf-8")
    site = write_site(root, smtp={"port": srv.port}, watch={"baseline": False},
                      recipients='csv = "r.csv"', sender={"bcc": [BCC] if bcc else []})
    (site.mandant_folder() / "RE_10023_4711.pdf").write_bytes(make_pdf(["Rechnung 10023"]))
    assert site.cli("scan") == 0
    return site


def show(site: Site, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert site.cli("show", "1", "--json") == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def states(entry: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {d["address"]: (d["role"], d["state"]) for d in entry["deliveries"]}


def message_ids(srv: SmtpServer) -> list[str]:
    return [str(email.message_from_bytes(r.data, policy=email.policy.default)["Message-ID"])
            for r in srv.received]


def test_a_deferred_address_is_retried_alone_with_the_same_message_id(
        tmp_path: Path, server: SmtpServer, capsys: pytest.CaptureFixture[str]) -> None:
    scripted(server).script = {CUSTOMERS[1]: ["451 4.7.1 greylisted, try later"]}
    site = site_with(tmp_path, server, bcc=True)
    assert site.cli("flush") == 1  # deferred: the work ran but one address waits
    entry = show(site, capsys)
    assert entry["state"] == "deferred"  # not sent while a customer address is due
    assert states(entry) == {CUSTOMERS[0]: ("to", "delivered"),
                             CUSTOMERS[1]: ("to", "deferred"), BCC: ("bcc", "delivered")}
    assert [sorted(r.rcpt_tos) for r in server.received] == [sorted([CUSTOMERS[0], BCC])]
    assert site.cli("flush") == 0
    # the retry's envelope holds only the address still due: no second copy, no second Bcc
    assert [r.rcpt_tos for r in server.received[1:]] == [[CUSTOMERS[1]]]
    ids = message_ids(server)
    assert len(ids) == 2 and ids[0] == ids[1]  # the same message, Message-ID kept
    to = email.message_from_bytes(server.received[1].data, policy=email.policy.default)["To"]
    assert CUSTOMERS[0] in str(to) and CUSTOMERS[1] in str(to)  # the To header is the same
    entry = show(site, capsys)
    assert entry["state"] == "sent" and entry["attention"] is None
    assert {a: s for a, (_, s) in states(entry).items()} == dict.fromkeys(
        [*CUSTOMERS, BCC], "delivered")


def test_a_refused_customer_is_not_sent_because_the_bcc_got_it(
        tmp_path: Path, server: SmtpServer, capsys: pytest.CaptureFixture[str]) -> None:
    site = site_with(tmp_path, server, bcc=True, customers=(CUSTOMERS[0],))
    scripted(server).script = {CUSTOMERS[0]: ["550 5.1.1 user unknown"]}
    assert site.cli("flush") == 1
    entry = show(site, capsys)
    assert entry["state"] == "failed"
    assert states(entry) == {CUSTOMERS[0]: ("to", "refused"), BCC: ("bcc", "delivered")}
    assert "550 5.1.1 user unknown" in entry["last_error"]
    assert entry["attention"].startswith("Kunde 4711: nicht zugestellt")
    assert "`tikos-outbox requeue 1`" in entry["attention"]
    assert [r.rcpt_tos for r in server.received] == [[BCC]]  # only the laundry's copy


def test_every_customer_address_refused_is_failed(
        tmp_path: Path, server: SmtpServer, capsys: pytest.CaptureFixture[str]) -> None:
    site = site_with(tmp_path, server)
    scripted(server).script = {a: ["550 5.1.1 user unknown"] for a in CUSTOMERS}
    assert site.cli("flush") == 1
    entry = show(site, capsys)
    assert entry["state"] == "failed" and server.received == []
    assert all(s == ("to", "refused") for s in states(entry).values())
    for a in CUSTOMERS:
        assert f"{a}: 550 5.1.1 user unknown" in entry["last_error"]


def test_partly_refused_is_sent_and_needs_attention(
        tmp_path: Path, server: SmtpServer, capsys: pytest.CaptureFixture[str]) -> None:
    site = site_with(tmp_path, server)
    scripted(server).script = {CUSTOMERS[1]: ["550 5.1.1 user unknown"]}
    assert site.cli("flush") == 0
    entry = show(site, capsys)
    assert entry["state"] == "sent"
    assert entry["attention"] == (
        f"Kunde 4711: {CUSTOMERS[1]} abgelehnt: 550 5.1.1 user unknown — in der Adressdatei"
        " r.csv korrigieren,"
        " dann `tikos-outbox requeue 1` (die anderen Adressen haben es schon)")
    capsys.readouterr()
    assert site.cli("list", "--attention", "--json") == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [1]
    assert site.cli("status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["attention"] == 1
    # fixed in TIKOS, requeued: only the corrected address gets it
    (tmp_path / "r.csv").write_text(f"mandant;customer;email\n1;4711;{CUSTOMERS[0]};"
                                    "buchhaltung-neu@hotel-adler.example\n", encoding="utf-8")
    assert site.cli("requeue", "1") == 0
    assert site.cli("flush") == 0
    assert [r.rcpt_tos for r in server.received] == [
        [CUSTOMERS[0]], ["buchhaltung-neu@hotel-adler.example"]]
    assert len(set(message_ids(server))) == 1
    assert show(site, capsys)["attention"] is None


def test_a_refused_bcc_is_a_warning_not_the_outcome(
        tmp_path: Path, server: SmtpServer, capsys: pytest.CaptureFixture[str]) -> None:
    site = site_with(tmp_path, server, bcc=True, customers=(CUSTOMERS[0],))
    scripted(server).script = {BCC: ["451 4.2.2 mailbox full"]}
    assert site.cli("flush") == 0
    entry = show(site, capsys)
    assert entry["state"] == "sent" and entry["attention"] is None
    role, state = states(entry)[BCC]
    assert (role, state) == ("bcc", "refused")
    bcc_reply = next(d["reply"] for d in entry["deliveries"] if d["address"] == BCC)
    assert "451 4.2.2 mailbox full" in bcc_reply and "not retried" in bcc_reply
    assert site.cli("flush") == 0
    assert len(server.received) == 1  # the customer is not mailed again for the Bcc


REPLY = st.sampled_from(["250", "451 4.7.1 later", "550 5.1.1 unknown"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(script=st.fixed_dictionaries({a: st.lists(REPLY, max_size=4)
                                     for a in (*CUSTOMERS, BCC)}),
       bcc=st.booleans(), runs=st.integers(1, 5))
def test_no_address_ever_gets_the_document_twice(
        server: SmtpServer, script: dict[str, list[str]], bcc: bool, runs: int) -> None:
    """Random per-recipient reply sequences over several runs: no address ever gets the
    document twice, every address the server finally accepts has it once, and the
    entry's state always matches its customers' states."""
    from tikos_outbox.core.views import ListFilter

    handler = scripted(server)
    with handler.lock:
        handler.received.clear()
    handler.script = {a: list(replies) for a, replies in script.items()}
    with tempfile.TemporaryDirectory() as d:
        site = site_with(Path(d), server, bcc=bcc)
        clock = FakeClock(datetime(2026, 12, 2, 9, tzinfo=UTC))
        outbox = open_outbox(site, clock)
        try:
            for _ in range(runs):
                outbox.delivery.send_due(force=True)
                clock.advance(3600)
                [view] = outbox.admin.entries(ListFilter())
                entry = outbox.admin.entry(view.id)
                assert entry is not None
                got = collections.Counter(a for r in handler.received for a in r.rcpt_tos)
                assert all(n == 1 for n in got.values()), got  # never twice
                for dlv in entry.deliveries:  # delivered <=> the server has it
                    assert (dlv.state.value == "delivered") == (got[dlv.address] == 1)
                customers = [x for x in entry.deliveries if x.role.value == "to"]
                if any(x.due for x in customers):
                    assert entry.state == "deferred"
                elif any(x.state.value == "delivered" for x in customers):
                    assert entry.state == "sent"
                else:
                    assert entry.state == "failed"
                if entry.state != "deferred":
                    break
        finally:
            outbox.close()


GERMAN = ('"Hotel Adler" <adler@hotel-adler.example>; Wäscherei Müller <info@müller-wäsche.de>'
          "\ninfo@hotel; jürgen@müller-wäsche.de")


@pytest.mark.parametrize("smtputf8", [False, True])
def test_addresses_as_tikos_holds_them_reach_the_server(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str], smtputf8: bool,
        odbc_sqlite: str) -> None:
    """Round one skipped `info@müller-wäsche.de` and `"Hotel Adler" <…>` as invalid.
    Now: IDN domains go as their A-label, names are kept in To, an invalid piece never
    hides the valid ones, and a message with a non-ASCII local part (UTF-8 headers) goes
    only where SMTPUTF8 is offered; elsewhere it fails with the reason, said by us."""
    import idna

    a_label = "info@" + idna.encode("müller-wäsche.de").decode("ascii")
    juergen = "jürgen@" + idna.encode("müller-wäsche.de").decode("ascii")
    import pyodbc

    conn = pyodbc.connect(odbc_sqlite, autocommit=True)  # the value as TIKOS holds it
    conn.execute("INSERT INTO Kunde VALUES (1, '4720', ?)", GERMAN)
    conn.close()
    with SmtpServer(cert, "none", smtputf8=smtputf8) as srv:
        site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False},
                          recipients=f"sql_dsn = '{odbc_sqlite}'\nsql_query = 'SELECT EMail"
                                     " FROM Kunde WHERE Mandant = ? AND KundenNr = ?'")
        (site.mandant_folder() / "RE_1_4720.pdf").write_bytes(make_pdf(["x"]))
        assert site.cli("scan") == 0
        site.cli("flush")
        entry = show(site, capsys)
        received = list(srv.received)
    if not smtputf8:  # its To needs SMTPUTF8: not a byte to this server, and the office knows
        assert received == [] and entry["state"] == "failed"
        assert all("553 5.6.7" in d["reply"] for d in entry["deliveries"]
                   if d["address"] != "info@hotel")
        assert "SMTPUTF8" in entry["attention"]
        return
    [got] = received
    expected = ["adler@hotel-adler.example", a_label, juergen]
    assert got.rcpt_tos == expected
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    to = msg["To"]
    names = {a.display_name for a in to.addresses}
    assert {"Hotel Adler", "Wäscherei Müller"} <= names
    assert entry["state"] == "sent"
    assert entry["recipients"][:2] == ["adler@hotel-adler.example", "info@müller-wäsche.de"]
    states = {d["address"]: d["state"] for d in entry["deliveries"]}
    assert states.pop("info@hotel") == "refused"  # kept, never offered to the server
    assert set(states.values()) == {"delivered"}
    assert "info@hotel abgelehnt: not a valid e-mail address" in entry["attention"]


def test_a_new_version_of_a_partly_delivered_entry_is_held_not_mailed_again(
        tmp_path: Path, server: SmtpServer, capsys: pytest.CaptureFixture[str]) -> None:
    """One address has the invoice, the other is deferred; TIKOS rewrites the file: the
    new version must not go to the address that has the old one (a reprint by surprise)."""
    scripted(server).script = {CUSTOMERS[1]: ["451 4.7.1 later"]}
    site = site_with(tmp_path, server)
    assert site.cli("flush") == 1
    (site.mandant_folder() / "RE_10023_4711.pdf").write_bytes(make_pdf(["Rechnung, neu"]))
    assert site.cli("scan") == 0
    capsys.readouterr()
    assert site.cli("show", "2", "--json") == 0
    new = json.loads(capsys.readouterr().out)
    assert (new["state"], new["reason"]) == ("held", "changed after it was sent as entry 1")
    assert site.cli("flush") == 0  # the old version completes for the deferred address
    assert [r.rcpt_tos for r in server.received] == [[CUSTOMERS[0]], [CUSTOMERS[1]]]
    assert len(set(message_ids(server))) == 1


def test_an_invalid_value_beside_valid_ones_is_sent_to_them_and_shown(
        tmp_path: Path, server: SmtpServer, capsys: pytest.CaptureFixture[str]) -> None:
    site = site_with(tmp_path, server, customers=(CUSTOMERS[0], "buchhaltung@hotel"))
    assert site.cli("flush") == 0
    assert [r.rcpt_tos for r in server.received] == [[CUSTOMERS[0]]]
    entry = show(site, capsys)
    assert entry["state"] == "sent" and entry["recipients"] == [CUSTOMERS[0]]
    assert states(entry)["buchhaltung@hotel"] == ("to", "refused")
    assert entry["attention"].startswith("Kunde 4711: buchhaltung@hotel abgelehnt")
