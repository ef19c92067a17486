"""The administrator's extras: the daily report and the service installation files."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import Behaviour, Cert, FakeClock, SmtpServer, open_outbox, write_site
from tikos_outbox.runner import SendScheduler
from tikos_outbox.samples import make_pdf
from tikos_outbox.usecases.intake import FirstPass

BERLIN = ZoneInfo("Europe/Berlin")
ROOT = Path(__file__).parent.parent


def test_daily_report_after_the_last_run_lists_every_entry_that_needs_attention(
        tmp_path: Path, cert: Cert) -> None:
    behaviour = Behaviour(rcpt_replies={"kunde@example.org": "550 5.1.1 user unknown",
                                        "weg@example.org": "550 5.1.1 no such user"})
    with SmtpServer(cert, "none", behaviour=behaviour) as srv:
        site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False},
                          extra="[report]\nto = 'admin@musterwaescherei.example'\n")
        (tmp_path / "recipients.csv").write_text(
            "mandant;customer;email\n1;4711;kunde@example.org\n"
            "1;4712;da@example.org;weg@example.org\n", encoding="utf-8")
        folder = site.mandant_folder()
        for name in ("RE_1_4711.pdf", "RE_2_4711.pdf", "RE_3_4712.pdf", "RE_4_4799.pdf"):
            (folder / name).write_bytes(make_pdf([name]))
            os.utime(folder / name, (1764000000, 1764000000))  # 2025-11-24
        clock = FakeClock(datetime(2026, 11, 26, 17, 59, 30, tzinfo=BERLIN))
        svc = open_outbox(site, clock)
        svc.scan(FirstPass.NONE)
        svc.admin.hold([2], "test")
        sched = SendScheduler(svc)
        clock.advance(30)  # 18:00, the last slot of the day
        assert sched.tick()
        sched.join(120)  # the run ends by itself; a hang fails here
        assert not sched.busy
        reports = [r for r in srv.received if r.rcpt_tos == ["admin@musterwaescherei.example"]]
        assert len(reports) == 1
        msg = email.message_from_bytes(reports[0].data, policy=email.policy.default)
        assert msg["Subject"] == ("tikos-outbox: 4 Dokument(e) brauchen Aufmerksamkeit"
                                  " (26.11.2026)")
        body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        # failed, held, partly refused and without address: each with what to do
        assert "Eintrag 1 (failed" in body and "550 5.1.1 user unknown" in body
        assert "Eintrag 2 (held" in body and "held by the administrator" in body
        assert "Eintrag 3 (sent" in body and "weg@example.org abgelehnt" in body
        assert "Eintrag 4 (skipped" in body and "Kunde 4799: keine gültige" in body
        assert "`tikos-outbox requeue 1`" in body and "`tikos-outbox release 2`" in body
        assert not list(msg.iter_attachments())  # type: ignore[attr-defined]
        assert not svc.report.send(clock.now().date())  # once a day
        # the office acts: once nothing is open, no report comes
        srv.behaviour.rcpt_replies.clear()
        svc.admin.requeue([1, 3, 4], "test")
        svc.admin.release([2], "test")
        (tmp_path / "recipients.csv").write_text(
            "mandant;customer;email\n1;4711;kunde@example.org\n1;4712;da@example.org\n"
            "1;4799;neu@example.org\n", encoding="utf-8")
        svc.delivery.send_due(force=True)
        assert svc.store.queries.attention_count() == 0
        assert not svc.report.send(datetime(2026, 11, 27).date())
        assert len([r for r in srv.received if "admin@" in r.rcpt_tos[0]]) == 1
        svc.store.close()


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    unit = (ROOT / "deploy" / "linux" / "tikos-outbox.service").read_text(encoding="utf-8")
    for key in ("ProtectSystem=strict", "ReadWritePaths=", "NoNewPrivileges=yes",
                "User=tikos-outbox", "Restart=on-failure", "KillSignal=SIGTERM"):
        assert key in unit
    exe = Path(sys.executable).with_name("tikos-outbox")
    local = tmp_path / "tikos-outbox.service"
    local.write_text(unit.replace("/opt/tikos-outbox/venv/bin/tikos-outbox", str(exe)),
                     encoding="utf-8")
    out = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr


def test_windows_service_file_runs_the_service_with_a_clean_stop() -> None:
    xml = (ROOT / "deploy" / "windows" / "tikos-outbox.xml").read_text(encoding="utf-8")
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    assert root.findtext("executable", "").endswith("tikos-outbox.exe")
    assert root.findtext("arguments", "").endswith(" run")
    assert root.find("onfailure") is not None and root.findtext("stoptimeout")


def test_the_office_language_english_writes_the_report_and_the_to_do_lines_in_english(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    behaviour = Behaviour(rcpt_replies={"kunde@example.org": "550 5.1.1 user unknown"})
    with SmtpServer(cert, "none", behaviour=behaviour) as srv:
        site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False},
                          outbox={"language": "en"},
                          extra="[report]\nto = 'admin@musterwaescherei.example'\n")
        for name in ("RE_1_4711.pdf", "RE_2_4799.pdf"):
            (site.mandant_folder() / name).write_bytes(make_pdf([name]))
        assert site.cli("scan") == 0
        assert site.cli("flush") == 1  # one failed
        capsys.readouterr()
        assert site.cli("list", "--attention", "--json") == 0
        lines = {e["id"]: e["attention"] for e in json.loads(capsys.readouterr().out)}
        assert lines[1].startswith("customer 4711: not delivered: ")
        assert lines[1].endswith("check the address in the address file recipients.csv, then"
                                 " `tikos-outbox requeue 1`")
        assert lines[2].startswith("customer 4799: no valid e-mail address")
        clock = FakeClock(datetime(2026, 11, 26, 18, 5, tzinfo=BERLIN))
        svc = open_outbox(site, clock)
        assert svc.report.send(clock.now().date())
        svc.store.close()
        msg = email.message_from_bytes(srv.received[-1].data, policy=email.policy.default)
        assert msg["Subject"] == "tikos-outbox: 2 document(s) need attention (26.11.2026)"
        body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "2 document(s) will not reach the customer without your move" in body
        assert "- Entry 1 (failed, recorded " in body and lines[1] in body
        assert "- Entry 2 (skipped, recorded " in body and lines[2] in body
        assert not any(word in body for word in ("Kunde", "Eintrag", "prüfen", "Zutun"))


def test_an_unknown_office_language_is_a_config_error_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, outbox={"language": "deutsch"})
    assert site.cli("status") == 2
    err = capsys.readouterr().err
    assert "key 'outbox.language': must be one of de, en, not 'deutsch'" in err
