"""Against a real Postfix on loopback (tests/servers/postfix.sh, started by .ci/run):
Cyrus SASL logins, STARTTLS with a self-signed certificate, anvil's rate limit,
reject_sender_login_mismatch, a short smtpd_timeout, reject_non_fqdn_helo_hostname,
and delivery into a Maildir that the tests read.

Postfix's anvil counts per service and client address in windows of
`anvil_rate_time_unit` (15 s here, so that "10 mails per unit" takes a minute,
not four); each rate-limit test has its own service, so counters never meet.
"""

from __future__ import annotations

import email
import io
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Site, open_outbox, write_site
from tikos_outbox.config import load_config
from tikos_outbox.core.replies import RunStopped, Stage, explain
from tikos_outbox.credentials import KeyRing
from tikos_outbox.samples import make_pdf
from tikos_outbox.smtp import Mailer

pytestmark = pytest.mark.slow

LAUNDRY = "laundry@tikos.test"
MANDANT2 = "mandant2@tikos.test"


def wait_for(what: str, done: Callable[[], bool], timeout_s: float = 60) -> None:
    """Until Postfix has done something it does on its own time (deliver, log)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"Postfix did not {what} in {timeout_s:.0f} s"
        time.sleep(0.05)


def postfix_site(root: Path, pf: dict[str, Any], service: str, n_docs: int,
                 login: str = LAUNDRY, sender: str | None = None, **smtp: Any) -> Site:
    site = write_site(
        root, smtp={"host": pf["host"], "port": pf["ports"][service], "security": "starttls",
                    "ca_file": pf["ca_file"], "auth": "password", "username": login,
                    "timeout_s": 20, **smtp},
        sender={"address": sender or pf["senders"][login]}, password=pf["users"][login],
        watch={"baseline": False})
    for i in range(n_docs):
        (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([f"Nr. {i}"]))
    assert site.cli("scan") == 0
    return site


def message_ids(site: Site, n: int) -> set[str]:
    outbox = open_outbox(site)
    ids = {outbox.store.queries.get_entry(i).message_id for i in range(1, n + 1)}
    outbox.close()
    return ids


def delivered(pf: dict[str, Any], ids: set[str]) -> Counter[str]:
    """How often each of these Message-IDs is in the Maildir."""
    seen: Counter[str] = Counter()
    for folder in ("new", "cur"):
        for path in Path(pf["maildir"], folder).iterdir():
            with path.open("rb") as f:
                mid = email.message_from_binary_file(f)["Message-ID"]
            if mid in ids:
                seen[mid] += 1
    return seen


def log_since(pf: dict[str, Any], mark: int) -> list[str]:
    """Postfix's log lines written after `mark` (a size of the log file)."""
    with Path(pf["maillog"]).open("rb") as f:
        f.seek(mark)
        return f.read().decode("utf-8", "replace").splitlines()


def log_mark(pf: dict[str, Any]) -> int:
    return Path(pf["maillog"]).stat().st_size


def rate_warnings(pf: dict[str, Any], service: str, mark: int) -> int:
    """Postfix's "Message delivery request rate limit exceeded" lines for a service."""
    port = pf["ports"][service]
    return sum(1 for line in log_since(pf, mark)
               if "rate limit exceeded" in line and f"service {pf['host']}:{port}" in line)


def attempts(site: Site, n: int) -> list[list[str]]:
    outbox = open_outbox(site)
    out = [[a.outcome for a in outbox.store.queries.get_entry(i).attempts]
           for i in range(1, n + 1)]
    outbox.close()
    return out


def test_paced_below_postfix_limit_every_mail_goes_at_once(
        tmp_path: Path, postfix: dict[str, Any]) -> None:
    """Postfix takes 10 mails per time unit; paced at 9 per unit, 40 go with none deferred."""
    per_minute = round(9 * 60 / postfix["time_unit_s"])  # 9/min against 10 per 60 s
    site = postfix_site(tmp_path, postfix, "limited_a", 40, max_per_minute=per_minute)
    mark = log_mark(postfix)
    outbox = open_outbox(site)
    report = outbox.delivery.send_due(force=True)
    outbox.close()
    assert (report.sent, report.deferred, report.failed, report.stopped) == (40, 0, 0, [])
    ids = message_ids(site, 40)
    wait_for("deliver 40 mails", lambda: len(delivered(postfix, ids)) == 40)
    assert set(delivered(postfix, ids).values()) == {1}
    assert rate_warnings(postfix, "limited_a", mark) == 0  # Postfix never had to say slow down


def test_with_no_limit_the_first_slow_down_stops_each_run_and_costs_no_attempt(
        tmp_path: Path, postfix: dict[str, Any]) -> None:
    site = postfix_site(tmp_path, postfix, "limited_b", 40, max_per_minute=0)
    mark = log_mark(postfix)
    stopped_runs = 0
    for _ in range(8):
        outbox = open_outbox(site)
        report = outbox.delivery.send_due(force=True)  # flush: over the cool-down
        pending = sum(outbox.store.queries.counts().get(s, 0) for s in ("pending", "deferred"))
        outbox.close()
        assert (report.deferred, report.failed) == (0, 0)
        assert len(report.stopped) <= 1
        if report.stopped:
            stopped_runs += 1
            assert "too much mail" in report.stopped[0] and "slow down" in report.stopped[0]
        if not pending:
            break
        # anvil's window is kept by Postfix's clock: wait it out (not a race, a policy)
        time.sleep(postfix["time_unit_s"] + 2)
    assert stopped_runs >= 3  # 10 per window: 40 mails need four runs
    ids = message_ids(site, 40)
    wait_for("deliver 40 mails", lambda: len(delivered(postfix, ids)) == 40)
    assert set(delivered(postfix, ids).values()) == {1}  # each once
    assert attempts(site, 40) == [["delivered"]] * 40  # the 450s cost no attempt
    # one refused MAIL FROM per stopped run, not one per remaining document
    wait_for("log the rate limits",
             lambda: rate_warnings(postfix, "limited_b", mark) >= stopped_runs)
    assert rate_warnings(postfix, "limited_b", mark) == stopped_runs


def test_a_connection_postfix_closed_while_we_waited_defers_nothing(
        tmp_path: Path, postfix: dict[str, Any]) -> None:
    """smtpd_timeout 2 s, mails 3 s apart: each connection is dead when the next mail
    is due (Postfix said 421 4.4.2 and closed); it is reopened, nothing deferred."""
    site = postfix_site(tmp_path, postfix, "short_timeout", 4, max_per_minute=20)
    mark = log_mark(postfix)

    def timeouts() -> int:  # Postfix's "timeout after END-OF-MESSAGE from …" lines
        return sum(1 for line in log_since(postfix, mark)
                   if "postfix/short_timeout" in line and "timeout after" in line)

    outbox = open_outbox(site)
    report = outbox.delivery.send_due(force=True)
    outbox.close()
    assert (report.sent, report.deferred, report.stopped) == (4, 0, [])
    assert attempts(site, 4) == [["delivered"]] * 4
    wait_for("log its timeouts", lambda: timeouts() >= 3)  # 3 waits, 3 dead connections
    assert timeouts() == 3


@pytest.mark.parametrize("service", ["plain", "limited_a"])  # answered at RCPT / at MAIL
def test_a_sender_the_login_does_not_own_stops_the_run_and_fails_nothing(
        tmp_path: Path, postfix: dict[str, Any], service: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    site = postfix_site(tmp_path, postfix, service, 3, sender=postfix["senders"][MANDANT2],
                        max_per_minute=0)
    assert site.cli("check", "--smtp") == 1
    words = f"does not let user {LAUNDRY} send as {postfix['senders'][MANDANT2]}"
    assert words in capsys.readouterr().out  # seen before the first run
    assert site.cli("test-mail", "--to", "kunde@example.org") == 1
    assert words in capsys.readouterr().out
    assert site.cli("flush") == 1
    assert words in capsys.readouterr().err
    outbox = open_outbox(site)
    st = outbox.monitor.status()
    outbox.close()
    assert {k: n for k, n in st.counts.items() if n} == {"pending": 3}
    assert st.last_error is not None and words in st.last_error["text"]
    assert attempts(site, 3) == [[], [], []]


def test_a_helo_name_postfix_refuses_stops_with_the_fix_and_helo_name_mends_it(
        tmp_path: Path, postfix: dict[str, Any]) -> None:
    site = postfix_site(tmp_path, postfix, "strict_helo", 1, max_per_minute=0)
    smtp = load_config(site.config).smtp
    assert smtp.password is not None
    password = KeyRing(site.root / "tikos-outbox.key").decrypt(smtp.password, "the password")
    with pytest.raises(RunStopped) as stopped, Mailer(smtp, password=password,
                                                      local_hostname="pc01") as mailer:
        mailer.open()  # a short host name, as a Windows server without a domain has
    assert stopped.value.reply.stage is Stage.EHLO and stopped.value.reply.code == 504
    line = explain(stopped.value.reply)
    assert "pc01" in line and "Helo command rejected" in line
    # the default (this host's FQDN, or its address literal) and a set helo_name both go
    assert site.cli("flush") == 0
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace("[sender]", "helo_name = 'fileserver.waescherei.test'"
                                        "\n\n[sender]", 1), encoding="utf-8")
    (site.mandant_folder() / "RE_2_4711.pdf").write_bytes(make_pdf(["Nr. 2"]))
    assert site.cli("scan") == 0 and site.cli("flush") == 0


def test_check_tries_every_login_and_sender_naming_the_mandant(
        tmp_path: Path, postfix: dict[str, Any], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    site = postfix_site(tmp_path, postfix, "plain", 0)
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text + (
        "\n[[mandant]]\nid = 2\nname = 'Zwei'\nfolder = 'archive/M2'\n"
        "pattern = '^(?P<doctype>RE)_(?P<docno>\\d+)_(?P<customer>\\d+)\\.pdf$'\n"
        f"[mandant.smtp]\nusername = '{MANDANT2}'\n"
        f"[mandant.sender]\naddress = '{postfix['senders'][MANDANT2]}'\n"), encoding="utf-8")
    (site.archive / "M2").mkdir()
    monkeypatch.setattr("sys.stdin", io.StringIO(postfix["users"][MANDANT2] + "\n"))
    assert site.cli("secret", "set", "--mandant", "2", "--stdin") == 0
    capsys.readouterr()
    assert site.cli("check", "--smtp") == 0
    out = capsys.readouterr().out
    assert f"ok    SMTP {LAUNDRY} at 127.0.0.1:{postfix['ports']['plain']} (mandant 1)" in out
    assert f"ok    SMTP {MANDANT2} at 127.0.0.1:{postfix['ports']['plain']} (mandant 2)" in out
    assert "SMTP password of mandant 2: stored encrypted" in out
    # mandant 2 with mandant 1's sender: its own login may not send as that
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace(f"address = '{postfix['senders'][MANDANT2]}'",
                                        f"address = '{postfix['senders'][LAUNDRY]}'"),
                           encoding="utf-8")
    assert site.cli("check", "--smtp") == 1
    out = capsys.readouterr().out
    assert (f"FAIL  SMTP {MANDANT2} at 127.0.0.1:{postfix['ports']['plain']} (mandant 2):"
            f" The server does not let user {MANDANT2} send as") in out
