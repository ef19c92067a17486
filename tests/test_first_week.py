"""The administrator's first week (#16): what a new admin tripped over, each through
the CLI entry point with real files."""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import pytest

from tests.helpers import service_running, write_site
from tikos_outbox.cli import main

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX owners and modes")


def test_config_is_taken_after_the_command_and_as_a_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path / "site")
    assert main(["status", "--config", str(site.config)]) == 0
    assert main(["--config", str(site.root), "status"]) == 0
    assert main(["status", "--config", str(site.root), "--json"]) == 0
    assert '"counts"' in capsys.readouterr().out


def test_init_says_the_next_steps_with_the_config_it_wrote(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "C x")]) == 0
    out = capsys.readouterr().out
    assert f'tikos-outbox --config "{tmp_path / "C x"}" secret set' in out
    assert 'check --smtp --sql` (--sql when the addresses come from the TIKOS database)' in out


def test_secret_set_without_a_terminal_says_how_and_stores_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["init", str(tmp_path)]) == 0
    before = (tmp_path / "tikos-outbox.toml").read_bytes()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # a pipe or a service: no terminal
    capsys.readouterr()
    assert main(["--config", str(tmp_path), "secret", "set"]) == 2
    err = capsys.readouterr().err
    assert "no terminal" in err and "--stdin" in err and "EOFError" not in err
    assert (tmp_path / "tikos-outbox.toml").read_bytes() == before


def test_secret_set_stores_at_the_placeholder_and_only_the_secret_the_login_uses(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["init", str(tmp_path / "pw")]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("Wäsche §1\n"))
    assert main(["--config", str(tmp_path / "pw"), "secret", "set", "--stdin"]) == 0
    text = (tmp_path / "pw" / "tikos-outbox.toml").read_text(encoding="utf-8")
    assert text.index("password = \"gAAAA") < text.index("# Examples")  # where it was asked
    assert main(["init", str(tmp_path / "m365"), "--provider", "m365"]) == 0
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("geheim\n"))
    assert main(["--config", str(tmp_path / "m365"), "secret", "set", "--stdin"]) == 2
    assert "secret set client-secret" in capsys.readouterr().err  # oauth2 uses no password
    monkeypatch.setattr("sys.stdin", io.StringIO("geheim\n"))
    assert main(["--config", str(tmp_path / "m365"), "secret", "set", "client-secret",
                 "--stdin"]) == 0
    text = (tmp_path / "m365" / "tikos-outbox.toml").read_text(encoding="utf-8")
    assert "oauth2_client_secret = \"gAAAA" in text and "\npassword =" not in text


@posix_only
def test_secret_set_and_rotate_key_keep_owner_group_and_mode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    site = write_site(tmp_path)
    service_uid, service_gid = 65534, 65534  # nobody/nogroup: the service account
    for path, mode in ((site.config, 0o640), (site.root / "tikos-outbox.key", 0o640)):
        os.chown(path, 0, service_gid)
        os.chmod(path, mode)
    os.chown(site.root / "tikos-outbox.key", service_uid, service_gid)
    before = {p: os.stat(p) for p in (site.config, site.root / "tikos-outbox.key")}
    monkeypatch.setattr("sys.stdin", io.StringIO("neu\n"))
    assert site.cli("secret", "set", "--stdin") == 0  # run as root
    assert site.cli("secret", "rotate-key") == 0
    for path, st in before.items():
        now = os.stat(path)
        assert (now.st_uid, now.st_gid, stat.S_IMODE(now.st_mode)) == (
            st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), path


@posix_only
def test_check_agrees_with_the_deploy_readme_on_the_key_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path)
    key = site.root / "tikos-outbox.key"
    os.chmod(key, 0o640)  # deploy/README: root:tikos-outbox, 640
    assert site.cli("check") == 0
    os.chmod(key, 0o644)
    capsys.readouterr()
    assert site.cli("check") == 1
    out = capsys.readouterr().out
    assert "can be read by every account on this machine (mode 0644); run: chmod 640" in out


@posix_only
def test_the_outbox_database_its_wal_and_the_log_are_the_owners_alone(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    old = os.umask(0o022)  # a root shell's usual umask
    try:
        assert site.cli("scan") == 0
    finally:
        os.umask(old)
    made = [p for p in tmp_path.iterdir() if p.name.startswith(("outbox.db", "tikos-outbox.log"))]
    assert {p.name for p in made} >= {"outbox.db", "tikos-outbox.log"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) & 0o077 for p in made} == {
        p.name: 0 for p in made}


def test_a_postgresql_password_is_never_printed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str) -> None:
    site = write_site(tmp_path)
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace('database = "outbox.db"', f'database = "{pg_url}"'),
                           encoding="utf-8")
    password = pg_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert site.cli("migrate") == 0
    out = capsys.readouterr()
    assert "***" in out.out and f":{password}@" not in out.out + out.err
    # unreachable: every command's error names the database without its password
    unreachable = "postgresql+psycopg://tikos:s3cret-pw@127.0.0.1:1/tikos"
    site.config.write_text(text.replace('database = "outbox.db"', f'database = "{unreachable}"'),
                           encoding="utf-8")
    for command in (["migrate"], ["status"], ["check"], ["list"]):
        site.cli(*command)
        out = capsys.readouterr()
        assert "s3cret-pw" not in out.out + out.err, command
        log = tmp_path / "tikos-outbox.log"
        assert not log.exists() or "s3cret-pw" not in log.read_text(encoding="utf-8")


def test_a_csv_saved_by_german_excel_is_read_and_a_bad_config_says_how_to_mend_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, watch={"baseline": False})
    (tmp_path / "recipients.csv").write_bytes(
        "mandant;customer;email\n1;4711;kunde@müller-wäsche.example\n".encode("cp1252"))
    (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    assert site.cli("scan") == 0
    capsys.readouterr()
    assert site.cli("show", "1") == 0
    out = capsys.readouterr()
    assert "kunde@müller-wäsche.example" in out.out
    log = (tmp_path / "tikos-outbox.log").read_text(encoding="utf-8")
    assert 'read it as Windows-1252 (what German Excel saves)' in log
    # a Windows path in double quotes, a config saved as ANSI
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace("[watch]", '[watch]\nmode = "C:\\SoCom$"'),
                           encoding="utf-8")
    assert site.cli("status") == 2
    assert "write it in single quotes" in capsys.readouterr().err
    site.config.write_bytes(text.replace("[watch]", "# Wäsche\n[watch]").encode("cp1252"))
    assert site.cli("status") == 2
    assert "is not saved as UTF-8" in capsys.readouterr().err


def test_list_says_when_its_limit_hid_entries(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path)
    for i in range(3):
        (site.mandant_folder() / f"RE_{i}_4711.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    assert site.cli("scan") == 0
    capsys.readouterr()
    assert site.cli("list", "--limit", "2") == 0
    assert "the newest 2 shown; there may be more" in capsys.readouterr().out
    assert site.cli("list", "--limit", "5") == 0
    assert "there may be more" not in capsys.readouterr().out


@posix_only
@pytest.mark.parametrize("settled", [False, True], ids=["written-now", "settled-before-start"])
def test_a_pdf_the_service_cannot_read_is_said_once_shown_in_status_and_retried_less_often(
        tmp_path: Path, settled: bool) -> None:
    """The service runs as an account without the right to read one PDF: one line in the
    log (not one every 0.5 s), the reason in `status`, and tries further and further
    apart; the other documents are recorded meanwhile."""
    import json
    import shutil
    import signal
    import subprocess
    import time
    from datetime import datetime

    from tikos_outbox.samples import make_pdf

    site = write_site(tmp_path, watch={"baseline": False, "mode": "polling",
                                       "poll_interval_s": 0.2})
    locked = site.mandant_folder() / "RE_1_4711.pdf"
    locked.write_bytes(make_pdf(["gesperrt"]))
    locked.chmod(0o000)
    if settled:  # met by the start-up pass itself, not by the watcher (it was not retried)
        os.utime(locked, (time.time() - 3600, time.time() - 3600))
    (site.mandant_folder() / "RE_2_4711.pdf").write_bytes(make_pdf(["lesbar"]))
    command = [sys.executable, "-m", "tikos_outbox", "--config", str(site.config), "-v", "run"]
    if os.geteuid() == 0:  # root reads everything: the service account's rights, as root
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is missing"
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]
    err = tmp_path / "stderr.txt"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while err.read_text(encoding="utf-8").count("still cannot read") < 4:
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    log = (site.root / "tikos-outbox.log").read_text(encoding="utf-8")
    assert log.count("RE_1_4711.pdf: Permission denied") == 1, log
    assert "entry 1 pending: RE_2_4711.pdf" in log  # the others are not held up
    status = subprocess.run([sys.executable, "-m", "tikos_outbox", "--config",
                             str(site.config), "status", "--json"], capture_output=True,
                            text=True, check=True)
    last = json.loads(status.stdout)["last_error"]["text"]
    assert "RE_1_4711.pdf: Permission denied" in last and "needs read access" in last
    # after the first tries, 1, 2, 4 s apart: 5 tries span 7 s, not 2 s at every poll
    tries = [datetime.strptime(line.split()[0], "%H:%M:%S")
             for line in err.read_text(encoding="utf-8").splitlines() if "read" in line
             and "RE_1_4711.pdf" in line]
    assert len(tries) >= 5 and (tries[4] - tries[0]).total_seconds() >= 6


def test_the_mail_carries_the_signature_and_an_umlaut_file_name_older_outlook_reads(
        tmp_path: Path, cert: object) -> None:
    import email
    import email.policy

    from tests.helpers import SmtpServer
    from tikos_outbox.samples import make_pdf

    with SmtpServer(cert, "none") as srv:  # type: ignore[arg-type]
        site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False},
                          sender={"signature": "Musterwäscherei GmbH · Amtsgericht Musterstadt"
                                               " HRB 12345 · Geschäftsführer: Max Muster"})
        (site.mandant_folder() / "RE_10023_4711.pdf").write_bytes(make_pdf(["x"]))
        assert site.cli("scan") == 0 and site.cli("flush") == 0
        [got] = srv.received
    raw = got.data.decode("utf-8")
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    body = msg.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n").endswith(
        "\n-- \nMusterwäscherei GmbH · Amtsgericht Musterstadt HRB 12345 · Geschäftsführer:"
        " Max Muster\n")
    assert raw.count("MIME-Version") == 1  # the message's own, none in the parts
    [part] = list(msg.iter_attachments())
    assert part["Content-Type"].params["name"] == "RE_10023_4711.pdf"


def test_an_umlaut_file_name_goes_as_name_too() -> None:
    import email
    import email.policy
    from datetime import UTC, datetime

    from tikos_outbox.core.message import Mail, message_bytes

    mail = Mail(sender_address="r@w.example", sender_name="W", reply_to=None,
                to=("k@x.example",), subject="Rechnung", body="Grüße\n",
                filename="Rechnung_Müller.pdf", pdf=b"%PDF-1.4\n%%EOF\n",
                message_id="<a@w.example>", date=datetime.now(UTC))
    data = message_bytes(mail)
    assert b'Content-Type: application/pdf; name="=?utf-8?q?Rechnung=5FM=C3=BCller=2Epdf?="' \
        in data
    assert b"filename*=utf-8''Rechnung_M%C3%BCller.pdf" in data  # RFC 2231 for the rest
    msg = email.message_from_bytes(data, policy=email.policy.default)
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == "Rechnung_Müller.pdf" and not part.defects
    assert part.get_content() == b"%PDF-1.4\n%%EOF\n"


@posix_only
def test_a_windows_share_path_on_linux_gets_the_mount_hint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path)
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace("folder = 'archive/M1'",
                                        "folder = '\\\\fileserver\\SoCom$\\Archiv'"),
                           encoding="utf-8")
    capsys.readouterr()
    assert site.cli("check") == 1
    out = capsys.readouterr().out
    assert "is a Windows share path; on Linux, mount the share first" in out
    assert "mount -t cifs //fileserver/SoCom$ /mnt/socom" in out


def test_status_says_when_the_service_runs_an_older_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from tests.helpers import open_outbox

    site = write_site(tmp_path)
    service = open_outbox(site)  # the service, started with the config as it was
    service.monitor.heartbeat()
    capsys.readouterr()
    assert site.cli("status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["service"]["config_current"] is True
    with site.config.open("a", encoding="utf-8") as f:  # the admin edits a template
        f.write("\n[templates.RE]\nsubject = 'Ihre Rechnung {docno}'\nbody = 'Anbei.'\n")
    assert site.cli("status") == 0
    assert "it runs an older version of" in capsys.readouterr().out
    service.monitor.heartbeat(running=False)
    assert site.cli("status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["service"]["config_current"] is True
    service.close()


def test_a_database_failure_mid_run_gives_the_claims_back_when_it_answers_again(
        tmp_path: Path, cert: object) -> None:
    """The database goes read-only while the server takes the first mail: its reply is
    recorded once the database answers (never sent again), the other claimed entries
    are pending again at once, not after a 36-minute lease."""
    from typing import Any

    from sqlalchemy import event

    from tests.helpers import Handler, SmtpServer, open_outbox
    from tikos_outbox.samples import make_pdf

    outbox: Any = None

    def read_only(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA query_only = ON")

    class FailingDatabase(Handler):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if not self.received:  # while the first mail is in the server's hands
                event.listen(outbox.store.engine, "connect", read_only)
                outbox.store.engine.dispose()
            return await super().handle_DATA(server, session, envelope)

    with SmtpServer(cert, "none", wrap_handler=lambda h: FailingDatabase(h.b)) as srv:  # type: ignore[arg-type]
        site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False})
        for i in range(3):
            (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([str(i)]))
        assert site.cli("scan") == 0
        outbox = open_outbox(site)
        report = outbox.delivery.send_due()
        assert report.stopped and "read-only" in report.stopped[0]
        assert len(srv.received) == 1
        assert outbox.delivery.hand_back() == 0  # still read-only: nothing lost, kept
        event.remove(outbox.store.engine, "connect", read_only)
        outbox.store.engine.dispose()
        assert outbox.delivery.hand_back() == 3  # the first recorded, two given back
        states = [outbox.store.queries.get_entry(i).state for i in (1, 2, 3)]
        assert states == ["sent", "pending", "pending"]
        assert outbox.delivery.send_due().sent == 2
        assert len(srv.received) == 3  # the first was not mailed again
        outbox.close()


def test_check_lists_every_problem_it_can_find(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, smtp={"host": "smtp.example.com", "auth": "password",
                                      "username": "rechnung@example.com"},
                      sender={"address": "rechnung@example.com"}, password="geheim",
                      mandants=[{"id": 1, "name": "Nord",
                                 "pattern": r"^(?P<doctype>RE|GS)_(?P<docno>\d+)\.pdf$"},
                                {"id": 2, "name": "Süd", "folder": "gibt/es/nicht"}])
    import shutil
    shutil.rmtree(tmp_path / "gibt")  # write_site made it; the share is not there
    capsys.readouterr()
    assert site.cli("check") == 1
    out = capsys.readouterr().out
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert any("[smtp] host: smtp.example.com is still the example" in f for f in fails)
    assert any("[smtp] username: rechnung@example.com is still the example" in f
               for f in fails)
    assert any("[sender] address: rechnung@example.com is still the example" in f
               for f in fails)
    assert any("the password would travel to smtp.example.com:25 unencrypted" in f
               for f in fails)
    assert any("mandant 1 pattern: has no (?P<customer>…) group" in f for f in fails)
    assert any("mandant 2 folder" in f and "does not exist" in f for f in fails)
    assert "ok    address file: " in out and "2 customer row(s)" in out
    assert ('ok    mandant 1 templates: GS: "Ihr Dokument {docno}", RE: "Ihre Rechnung'
            ' {docno}" (GS without a [templates.…] of its own: the general text)') in out


def test_check_right_after_init_lists_the_missing_password_among_everything_else(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["--config", str(tmp_path), "check", "--smtp"]) == 1
    fails = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert fails[0] == "FAIL  secret [smtp] password: is missing: store it with `tikos-outbox" \
        " secret set`"
    for words in ("mandant 1 folder:", "[smtp] host: smtp.example.com is still the example",
                  "[sender] address: rechnung@example.com", "[sender] reply_to: info@"):
        assert any(words in f for f in fails), words
    assert not any("SMTP smtp.example.com" in f for f in fails)  # no login tried without it
    assert not (tmp_path / "outbox.db").exists()  # check creates nothing
    assert main(["--config", str(tmp_path), "status"]) == 2  # other commands still refuse


def test_a_config_with_several_mistakes_names_each_at_once_and_touches_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, smtp={"port": "abc"}, sender={"address": "info"},
                      watch={"mode": "fast"},
                      mandants=[{"id": 1, "pattern": r"^(?P<doctype>RE)_(?P<docno>\d+"},
                                {"id": 2}, {"id": 2}],
                      extra="[reprot]\nto = 'admin@musterwaescherei.example'\n")
    capsys.readouterr()
    for command in ("check", "status"):
        assert site.cli(command) == 2
        lines = capsys.readouterr().err.splitlines()
        assert lines[0] == f"tikos-outbox: {site.config}: 6 problems:"
        assert lines[1:] == [
            "  key 'reprot': is not a known section (check the spelling)",
            "  key 'smtp.port': must be a whole number, not 'abc'",
            "  key 'sender.address': is not a valid e-mail address: 'info'",
            "  key 'watch.mode': must be one of events, polling, auto, not 'fast'",
            "  key 'mandant[0].pattern': is not a valid regular expression: missing ),"
            " unterminated subpattern at position 17",
            "  key 'mandant[1].id': id 2 is used twice"]  # the inherited port said once
    assert not (tmp_path / "outbox.db").exists()


def test_the_service_purges_old_copies_itself_and_the_file_shrinks(
        tmp_path: Path, cert: object) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.helpers import FakeClock, SmtpServer, open_outbox
    from tikos_outbox.samples import make_pdf

    with SmtpServer(cert, "none") as srv:  # type: ignore[arg-type]
        site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False})
        pdf = site.mandant_folder() / "RE_1_4711.pdf"
        pdf.write_bytes(make_pdf(["alt"], padding=3_000_000))
        sent = datetime.now(UTC) - timedelta(days=100)
        os.utime(pdf, (sent.timestamp() - 60, sent.timestamp() - 60))  # written back then
        then = open_outbox(site, FakeClock(sent))
        then.scan()
        assert then.delivery.send_due().sent == 1  # sent 100 days ago; keep_days is 90
        then.close()
    db = tmp_path / "outbox.db"
    before = db.stat().st_size
    with service_running(site) as service:
        view = service.store.queries.get_entry(1)
        assert view is not None and view.stored_copy is False and view.state == "sent"
    assert db.stat().st_size < before - 2_000_000  # the space went back to the disk


def test_backup_writes_a_consistent_copy_while_the_outbox_is_in_use(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    from tests.helpers import open_outbox

    site = write_site(tmp_path)
    (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    assert site.cli("scan") == 0
    service = open_outbox(site)  # the service holds the database open meanwhile
    with service.store.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
        copy = tmp_path / "Sicherung" / "outbox-copy.db"
        copy.parent.mkdir()
        assert site.cli("backup", str(copy)) == 0
    service.close()
    assert "a consistent copy of the outbox database" in capsys.readouterr().out
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT count(*) FROM entry").fetchone() == (1,)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert site.cli("backup", str(copy)) == 2  # never overwrites


def test_flush_says_how_far_it_is_and_ctrl_c_keeps_the_rest_due(
        tmp_path: Path, cert: object) -> None:
    import json
    import signal
    import subprocess
    import time

    from tests.helpers import SmtpServer
    from tikos_outbox.samples import make_pdf

    with SmtpServer(cert, "none") as srv:  # type: ignore[arg-type]
        site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False})
        for i in range(12):
            (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([str(i)]))
        assert site.cli("scan") == 0
        flush = [sys.executable, "-m", "tikos_outbox", "--config", str(site.config), "flush"]
        done = subprocess.run(flush, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0
        assert "flush: 10 of 12 sent, 0 deferred, 0 failed" in done.stderr  # no terminal
        # paced at 2 a minute: Ctrl-C after the first mail of three
        for i in range(3):
            (site.mandant_folder() / f"LS_{i + 1}_4711.pdf").write_bytes(
                make_pdf(["Lieferschein", str(i)]))
        assert site.cli("scan") == 0
        text = site.config.read_text(encoding="utf-8")
        site.config.write_text(text.replace("max_per_minute = 0", "max_per_minute = 2"),
                               encoding="utf-8")
        proc = subprocess.Popen(flush, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 60
        while len(srv.received) < 13:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "stopping after the mail in hand; the rest stays due" in err
    assert "stopped by Ctrl-C: sent 1; 2 entries stay due, nothing is lost" in err
    assert "Traceback" not in err
    status = subprocess.run([sys.executable, "-m", "tikos_outbox", "--config", str(site.config),
                             "status", "--json"], capture_output=True, text=True, check=True)
    counts = json.loads(status.stdout)["counts"]
    assert (counts["sent"], counts["pending"], counts["sending"]) == (13, 2, 0)
    assert len(srv.received) == 13


@posix_only
def test_flush_on_a_terminal_shows_sent_of_due_and_the_pacing_wait(
        tmp_path: Path, cert: object) -> None:
    import pty
    import subprocess

    from tests.helpers import SmtpServer
    from tikos_outbox.samples import make_pdf

    with SmtpServer(cert, "none") as srv:  # type: ignore[arg-type]
        site = write_site(tmp_path, smtp={"port": srv.port, "max_per_minute": 30},
                          watch={"baseline": False})
        for i in range(3):
            (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([str(i)]))
        assert site.cli("scan") == 0
        leader, follower = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "tikos_outbox", "--config",
                                 str(site.config), "flush"], stdout=subprocess.DEVNULL,
                                stderr=follower)
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the other end closed: the process is done
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(60) == 0
        os.close(leader)
    text = seen.decode("utf-8", "replace")
    assert "sending: 1 of 3 sent" in text and "next mail in 2 s (pacing)" in text


def test_a_hung_address_database_costs_one_timeout_per_pass_not_one_per_document(
        tmp_path: Path, odbc_sqlite: str) -> None:
    """TIKOS's database holds a lock and does not answer: the first document waits
    for the timeout, the other 19 are recorded at once and looked up later."""
    import logging
    import sqlite3
    from datetime import UTC, datetime

    from tests.helpers import FakeClock, open_outbox
    from tikos_outbox.samples import make_pdf

    dsn = odbc_sqlite + ";Timeout=1000"  # the driver's busy wait, 1 s: the query timeout
    site = write_site(tmp_path, watch={"baseline": False}, recipients=(
        f"sql_dsn = '{dsn}'\nsql_timeout_s = 1\n"
        "sql_query = 'SELECT EMail FROM Kunde WHERE Mandant = ? AND KundenNr = ?'"))
    for i in range(20):
        (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([str(i)]))
    database = dsn.split("Database=", 1)[1].split(";", 1)[0]
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a long transaction in TIKOS: nobody reads
    clock = FakeClock(datetime.now(UTC))
    outbox = open_outbox(site, clock)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("tikos_outbox").addHandler(handler)
    try:
        report = outbox.scan()
        assert report.recorded == {"pending": 20}
        assert outbox.intake.resolve_recipients() == 0  # still resting: not asked again
    finally:
        logging.getLogger("tikos_outbox").removeHandler(handler)
        holder.execute("ROLLBACK")
        holder.close()
    asked = [line for line in lines if "addresses not looked up yet" in line]
    assert len(asked) == 1 and "locked" in asked[0]  # one timeout for the whole pass
    status = outbox.monitor.status()
    assert status.last_error is not None and "Address lookup" in status.last_error["text"]
    clock.advance(61)  # the rest is over: the next run looks them up
    assert outbox.intake.resolve_recipients() == 20
    assert outbox.store.queries.get_entry(20).recipients
    outbox.close()


def test_one_zone_everywhere_the_configs_with_its_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The machine runs on UTC, the laundry in Berlin: --since 02.12.2026 means Berlin's
    midnight, and the log, list and status name CET."""
    import json
    from datetime import UTC, datetime

    from tests.helpers import FakeClock, open_outbox
    from tikos_outbox.samples import make_pdf

    site = write_site(tmp_path, watch={"baseline": False},
                      extra="[schedule]\ntimezone = 'Europe/Berlin'\n")
    (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(make_pdf(["x"]))
    early = open_outbox(site, FakeClock(datetime(2026, 12, 1, 23, 30, tzinfo=UTC)))
    os.utime(site.mandant_folder() / "RE_1_4711.pdf", (1796160000, 1796160000))
    early.scan()  # recorded 00:30 in Berlin on 2 December, 23:30 UTC on the 1st
    early.close()
    capsys.readouterr()
    assert site.cli("list", "--since", "02.12.2026", "--json") == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert site.cli("list", "--since", "03.12.2026", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []
    assert site.cli("list") == 0
    assert "2026-12-02 00:30 CET" in capsys.readouterr().out
    (site.mandant_folder() / "RE_2_4711.pdf").write_bytes(make_pdf(["y"]))
    assert site.cli("scan") == 0
    log = (tmp_path / "tikos-outbox.log").read_text(encoding="utf-8")
    assert " CET INFO entry 2 pending" in log or " CEST INFO entry 2 pending" in log


def test_list_shows_brackets_in_paths_as_they_are(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tikos_outbox.samples import make_pdf

    site = write_site(tmp_path, watch={"baseline": False})
    folder = site.mandant_folder() / "[red]x [/]"  # a folder "[red]x [" holding "]"
    folder.mkdir(parents=True)
    (folder / "RE_1_4711.pdf").write_bytes(make_pdf(["x"]))
    assert site.cli("scan") == 0
    capsys.readouterr()
    assert site.cli("list") == 0
    assert "[red]x [/]/RE_1_4711.pdf" in capsys.readouterr().out


def test_scan_since_after_the_first_start_says_it_changes_nothing_and_how_to_mail_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path)
    old = site.mandant_folder() / "RE_1_4711.pdf"
    from tikos_outbox.samples import make_pdf

    old.write_bytes(make_pdf(["alt"]))
    os.utime(old, (1_764_000_000, 1_764_000_000))
    assert site.cli("scan") == 0
    assert "1 taken as history (modified before the first start" in capsys.readouterr().out
    assert site.cli("scan", "--since", "20.11.2025") == 0
    captured = capsys.readouterr()
    assert "the first start is over for every mandant" in captured.err
    assert "tikos-outbox requeue ID" in captured.err
    assert site.cli("show", "1") == 0
    shown = capsys.readouterr().out
    assert "stored copy: none (not to be mailed, so not kept)" in shown


def test_an_address_file_beside_an_active_sql_query_is_named_not_silently_ignored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, recipients="csv = 'recipients.csv'\nsql_dsn = 'DSN=TIKOS'\n"
                                           "sql_query = 'SELECT EMail FROM Kunde WHERE"
                                           " Mandant = ? AND KundenNr = ?'")
    assert site.cli("check") == 2
    err = capsys.readouterr().err
    assert "key 'recipients.csv': and sql_dsn are both set" in err
    assert "comment out sql_dsn, sql_query and sql_params to use the file" in err
