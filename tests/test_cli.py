"""Every command through the CLI entry point against a real outbox."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Cert, Site, SmtpServer, write_site
from tikos_outbox.cli import build_parser, main
from tikos_outbox.config import load_config
from tikos_outbox.credentials import KeyRing
from tikos_outbox.samples import make_pdf

COMMANDS = ["init", "secret", "check", "migrate", "run", "scan", "flush", "status", "list",
            "show", "requeue", "hold", "release", "purge", "test-mail", "demo"]


def out_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err
    return json.loads(captured.out)


def test_every_command_has_help_with_an_example_and_is_in_the_readme(
        capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "example: tikos-outbox" in text, command
        assert f"tikos-outbox {command}" in readme or f"`{command}" in readme, command
    parser = build_parser()
    assert set(COMMANDS) <= set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_init_writes_template_and_private_key_and_never_overwrites(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path), "--provider", "t-online"]) == 0
    config, key = tmp_path / "tikos-outbox.toml", tmp_path / "tikos-outbox.key"
    text = config.read_text(encoding="utf-8")
    assert "securesmtp.t-online.de" in text and "Ihre Rechnung {docno}" in text
    assert "smtp.office365.com" in text  # the Microsoft 365 settings as a commented example
    assert "# form:" in text  # comments kept
    if sys.platform != "win32":
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(KeyRing(key).keys) == 1
    before = key.read_bytes()
    assert main(["init", str(tmp_path)]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert key.read_bytes() == before


def test_secret_set_from_stdin_keeps_comments_and_stores_no_plaintext(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["init", str(tmp_path)]) == 0
    config = tmp_path / "tikos-outbox.toml"
    secret = "Pässwort mit § ; : @ \\ % und \"Anführung\""
    monkeypatch.setattr(sys, "stdin", io.StringIO(secret + "\n"))
    assert main(["--config", str(config), "secret", "set", "--stdin"]) == 0
    text = config.read_text(encoding="utf-8")
    assert secret not in text and "Pässwort" not in text
    assert "# form:" in text and "# T-Online:" in text
    token = load_config(config).smtp.password
    assert token is not None and token.startswith("gAAAAA")
    assert KeyRing(tmp_path / "tikos-outbox.key").decrypt(token) == secret
    # rotate: a new key is added, the secret is re-encrypted and still readable
    assert main(["--config", str(config), "secret", "rotate-key"]) == 0
    ring = KeyRing(tmp_path / "tikos-outbox.key")
    assert len(ring.keys) == 2
    new_token = load_config(config).smtp.password
    assert new_token != token and ring.decrypt(new_token or "") == secret
    from cryptography.fernet import Fernet

    assert Fernet(ring.keys[0]).decrypt((new_token or "").encode()).decode() == secret


def test_missing_or_wrong_key_says_which_file_and_what_to_do(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none", users={"u": "pw"}) as srv:
        site = write_site(tmp_path, smtp={"port": srv.port, "auth": "password", "username": "u"},
                          password="pw", watch={"baseline": False})
        (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(make_pdf(["x"]))
        assert site.cli("scan") == 0
        key = tmp_path / "tikos-outbox.key"
        key.unlink()
        from tikos_outbox.credentials import create_key_file

        create_key_file(key)  # a different key: the stored token does not fit
        assert site.cli("flush") == 1
        err = capsys.readouterr().err
        assert "cannot be decrypted with the keys in" in err and str(key) in err
        key.unlink()
        assert site.cli("flush") == 1
        assert "is missing" in capsys.readouterr().err
        assert srv.received == []


def populated(tmp_path: Path, srv: SmtpServer) -> Site:
    site = write_site(tmp_path, smtp={"port": srv.port}, watch={"baseline": False})
    for i in range(1, 4):
        (site.mandant_folder() / f"RE_{i}_4711.pdf").write_bytes(make_pdf([str(i)]))
    assert site.cli("scan") == 0
    return site


ENTRY_KEYS = {"id", "state", "mandant", "path", "sha256", "doctype", "recipients", "attempts",
              "last_error", "created_at", "sent_at", "message_id"}


def test_json_shapes_and_admin_moves(tmp_path: Path, cert: Cert,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = populated(tmp_path, srv)
        cfg = ["--config", str(site.config)]
        assert main([*cfg, "hold", "2"]) == 0
        assert main([*cfg, "flush"]) == 0
        status = out_json(capsys, *cfg, "status", "--json")
        assert {"counts", "last_run", "next_run", "last_error", "service"} <= set(status)
        assert status["counts"] == {"pending": 0, "sending": 0, "sent": 2, "deferred": 0,
                                    "failed": 0, "held": 1, "skipped": 0,
                                    "bounced": 0}
        assert set(status["service"]) >= {"running", "last_seen"}
        assert status["service"]["running"] is False
        rows = out_json(capsys, *cfg, "list", "--json")
        assert [r["id"] for r in rows] == [3, 2, 1]  # newest first
        assert all(set(r) >= ENTRY_KEYS for r in rows)
        assert rows[0]["attempts"] == 1 and rows[1]["attempts"] == 0
        held = out_json(capsys, *cfg, "list", "--state", "held", "--json")
        assert [r["id"] for r in held] == [2]
        one = out_json(capsys, *cfg, "show", "1", "--json")
        assert set(one) >= ENTRY_KEYS
        assert isinstance(one["attempts"], list) and one["attempts"][0]["code"] == 250
        assert one["stored_copy"] is True
        # release the held one; a requeue of a sent entry is a resend with a new Message-ID
        assert main([*cfg, "release", "2"]) == 0
        assert main([*cfg, "requeue", "1"]) == 0
        assert main([*cfg, "flush"]) == 0
        again = out_json(capsys, *cfg, "show", "1", "--json")
        assert again["state"] == "sent" and again["message_id"] != one["message_id"]
        assert len(again["attempts"]) == 2
        assert len(srv.received) == 4
        # illegal moves are reported, exit 1; unknown ids too
        assert main([*cfg, "hold", "1"]) == 1
        assert "cannot take the event 'hold'" in capsys.readouterr().out
        assert main([*cfg, "release", "99"]) == 2
        assert "no such entry" in capsys.readouterr().out


def test_requeue_by_state(tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers import Behaviour

    with SmtpServer(cert, "none", behaviour=Behaviour(data_reply="554 5.7.1 no")) as srv:
        site = populated(tmp_path, srv)
        assert site.cli("flush") == 1
        srv.behaviour.data_reply = None
        assert site.cli("requeue", "--state", "failed") == 0
        assert site.cli("flush") == 0
        assert len(srv.received) == 3


def exit_code(argv: list[str]) -> int:
    """main()'s exit code, also when argparse exits by itself."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize("argv", [["show", "999"], ["show", "abc"], ["list", "--state", "lost"],
                                  ["list", "--since", "gestern"], ["requeue"],
                                  ["frobnicate"]])
def test_bad_usage_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          argv: list[str]) -> None:
    site = write_site(tmp_path)
    assert exit_code(["--config", str(site.config), *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()


def test_purge_removes_old_copies_of_sent_documents_only(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = populated(tmp_path, srv)
        assert site.cli("hold", "3") == 0
        assert site.cli("flush") == 0
        assert site.cli("purge", "--older-than", "0") == 0
        assert "removed 2 stored document copies" in capsys.readouterr().out
        assert out_json(capsys, "--config", str(site.config), "show", "1", "--json")[
            "stored_copy"] is False
        assert out_json(capsys, "--config", str(site.config), "show", "3", "--json")[
            "stored_copy"] is True


def test_check_reports_each_item(tmp_path: Path, cert: Cert,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        site = populated(tmp_path, srv)
        results = out_json(capsys, "--config", str(site.config), "check", "--smtp", "--json")
    names = {r["check"]: r for r in results}
    assert all(r["ok"] for r in results), results
    assert {"config", "key file", "database", "mandant 1 folder",
            f"SMTP (no login) at 127.0.0.1:{srv.port} (mandant 1)"} <= set(names)
    if sys.platform != "win32":
        os.chmod(tmp_path / "tikos-outbox.key", 0o644)
        results = out_json(capsys, "--config", str(site.config), "check", "--json")
        bad = [r for r in results if not r["ok"]]
        assert [r["check"] for r in bad] == ["key file permissions"]


def test_test_mail_reports_what_the_server_said(tmp_path: Path, cert: Cert,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "starttls") as srv:
        site = write_site(tmp_path, smtp={"port": srv.port, "security": "starttls",
                                          "ca_file": str(cert.cert)})
        assert site.cli("test-mail", "--to", "admin@example.org") == 0
        assert "250 2.0.0 Ok: queued" in capsys.readouterr().out
        assert srv.received[0].rcpt_tos == ["admin@example.org"]


def test_log_file_has_one_line_per_document_event_and_no_secret(
        tmp_path: Path, cert: Cert) -> None:
    from tests.helpers import Behaviour

    secret = "Geheim-Pässwort-42"
    with SmtpServer(cert, "none", users={"u": secret},
                    behaviour=Behaviour(rcpt_replies={"kunde2@example.org": "550 5.1.1 no"})
                    ) as srv:
        site = write_site(tmp_path, smtp={"port": srv.port, "auth": "password", "username": "u"},
                          password=secret, watch={"baseline": False},
                          mandants=[{"id": 1}, {"id": 2}])
        (site.mandant_folder(1) / "RE_1_4711.pdf").write_bytes(make_pdf(["a"]))
        (site.mandant_folder(2) / "RE_2_4711.pdf").write_bytes(make_pdf(["b"]))
        assert site.cli("scan") == 0
        assert site.cli("flush") == 1
        assert site.cli("hold", "2") == 0  # failed entries can be held too
    log = (tmp_path / "tikos-outbox.log").read_text(encoding="utf-8")
    assert "entry 1 pending: RE_1_4711.pdf" in log
    assert "entry 1 sent: RE_1_4711.pdf to kunde@example.org" in log
    assert "entry 2 failed: RE_2_4711.pdf" in log and "550 5.1.1 no" in log
    assert "entry 2 held by the administrator" in log
    assert secret not in log
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_migrate_creates_the_schema_and_copies_an_outbox(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer(cert, "none") as srv:
        old = populated(tmp_path / "old", srv)
        assert old.cli("flush") == 0
    new = write_site(tmp_path / "new")
    assert new.cli("migrate") == 0
    assert "up to date" in capsys.readouterr().out
    import sqlite3

    with sqlite3.connect(tmp_path / "new" / "outbox.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"entry", "attempt", "blob", "meta", "alembic_version"} <= tables
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    source = f"sqlite:///{(tmp_path / 'old' / 'outbox.db').as_posix()}"
    assert new.cli("migrate", "--copy-from", source) == 0
    assert "copied 3 entries" in capsys.readouterr().out
    rows = out_json(capsys, "--config", str(new.config), "list", "--json")
    assert [(r["id"], r["state"], r["attempts"]) for r in rows] == [
        (3, "sent", 1), (2, "sent", 1), (1, "sent", 1)]
    assert new.cli("migrate", "--copy-from", source) == 2  # only into an empty outbox
    assert "copy only into an empty outbox" in capsys.readouterr().err


def test_check_sql_runs_the_address_query_once(tmp_path: Path, odbc_sqlite: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, recipients=(
        f"sql_dsn = '{odbc_sqlite}'\n"
        "sql_query = 'SELECT EMail FROM Kunde WHERE Mandant = ? AND KundenNr = ?'"))
    results = out_json(capsys, "--config", str(site.config), "check", "--sql", "--json")
    assert {"check": "address lookup", "ok": True,
            "detail": "query ran; 0 row value(s) for customer 0"} in results
    text = site.config.read_text(encoding="utf-8").replace("FROM Kunde", "FROM Kunden")
    site.config.write_text(text, encoding="utf-8")
    results = out_json(capsys, "--config", str(site.config), "check", "--sql", "--json")
    [bad] = [r for r in results if r["check"] == "address lookup"]
    assert not bad["ok"] and "no such table: Kunden" in bad["detail"]
