"""The console from the administrator's side: `user add/password/remove/list`,
`web` refusing to serve passwords in the clear on the network, the `[web]`
section's mistakes, and the console inside `run`."""

from __future__ import annotations

import io
import json
import socket
import sqlite3
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import Site, service_running, write_site
from tikos_outbox.config import ConfigError, load_config


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return write_site(tmp_path)


def add(site: Site, monkeypatch: pytest.MonkeyPatch, name: str, password: str,
        role: str = "admin") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return site.cli("user", "add", name, "--role", role, "--stdin")


def test_user_add_stores_only_an_scrypt_hash_of_the_full_cost(
        site: Site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(site, monkeypatch, "anna", "Wäsche-sauber-2026") == 0
    assert "added anna (admin)" in capsys.readouterr().out
    db = sqlite3.connect(site.root / "outbox.db")
    [(stored,)] = db.execute("SELECT password_hash FROM web_user WHERE name = 'anna'")
    assert stored.startswith("scrypt$131072$8$1$")
    dump = b"".join(line.encode() for line in db.iterdump())
    assert "Wäsche-sauber-2026".encode() not in dump
    assert (site.root / "outbox.db").read_bytes().find("Wäsche-sauber".encode()) == -1
    [(actor, action, detail)] = db.execute("SELECT actor, action, detail FROM action")
    assert actor.startswith("cli") and action == "user_add" and detail == "anna (admin)"


def test_user_list_password_and_remove(site: Site, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert add(site, monkeypatch, "anna", "Anna-Passwort-1") == 0
    assert add(site, monkeypatch, "ben", "Ben-Passwort-22", "viewer") == 0
    capsys.readouterr()
    assert site.cli("user", "list", "--json") == 0
    users = json.loads(capsys.readouterr().out)
    assert [(u["name"], u["role"]) for u in users] == [("anna", "admin"), ("ben", "viewer")]
    monkeypatch.setattr("sys.stdin", io.StringIO("Neues-Passwort-3\n"))
    assert site.cli("user", "password", "ben", "--stdin") == 0
    assert "their sessions have ended" in capsys.readouterr().out
    assert site.cli("user", "remove", "ben") == 0
    assert site.cli("user", "list") == 0
    out = capsys.readouterr().out
    assert "anna" in out and "ben  " not in out and "viewer" not in out


def test_user_mistakes_are_said_and_change_nothing(
        site: Site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(site, monkeypatch, "anna", "kurz") == 2
    assert "too short: at least 10 characters" in capsys.readouterr().err
    assert add(site, monkeypatch, "anna ", "Anna-Passwort-1") == 2
    assert "is not a user name" in capsys.readouterr().err
    assert add(site, monkeypatch, "anna", "Anna-Passwort-1") == 0
    assert add(site, monkeypatch, "anna", "Anna-Passwort-2", "viewer") == 2
    assert "exists already" in capsys.readouterr().err
    assert site.cli("user", "remove", "nobody") == 2
    assert "there is no user nobody" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert site.cli("user", "add", "ben", "--role", "viewer") == 2  # no terminal, no --stdin
    assert "--stdin" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        site.cli("user", "add", "ben", "--role", "boss", "--stdin")
    assert usage.value.code == 2
    assert "invalid choice: 'boss'" in capsys.readouterr().err
    assert site.cli("user", "list") == 0
    assert "ben" not in capsys.readouterr().out


def test_web_does_not_serve_passwords_in_the_clear_on_the_network(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    assert site.cli("web", "--host", "0.0.0.0", "--port", "0") == 2
    err = capsys.readouterr().err
    assert "without TLS" in err and "cert_file and key_file" in err


@pytest.mark.parametrize(("web", "problem"), [
    ("host = '192.168.1.5'", "key 'web.host': the console would be served on 192.168.1.5"
                             " without TLS"),
    ("cert_file = 'console.pem'", "key 'web.key_file': cert_file and key_file go together"),
    ("cert_file = 'a.pem'\nkey_file = 'b.pem'", "key 'web.cert_file':"),
    ("port = 70000", "key 'web.port'"),
    ("enabled = 'ja'", "key 'web.enabled'"),
    ("bind = '0.0.0.0'", "key 'web.bind'"),
])
def test_web_section_mistakes(tmp_path: Path, web: str, problem: str) -> None:
    site = write_site(tmp_path, extra=f"[web]\n{web}\n")
    with pytest.raises(ConfigError) as err:
        load_config(site.config)
    assert problem in str(err.value)


def test_plain_http_on_the_network_only_when_allowed(tmp_path: Path) -> None:
    site = write_site(tmp_path, extra="[web]\nhost = '0.0.0.0'\nallow_plain_http = true\n")
    assert load_config(site.config).web.host == "0.0.0.0"


def test_run_serves_the_console_when_enabled(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = write_site(tmp_path, extra=f"[web]\nenabled = true\nport = {port}\n")
    with (service_running(site),
          urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as r):
        assert r.status == 200 and "Anmelden" in r.read().decode()
    with pytest.raises(OSError):  # stopped with the service
        urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5)


def test_run_goes_on_without_the_console_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        site = write_site(tmp_path, extra=f"[web]\nenabled = true\nport = {port}\n")
        with service_running(site) as svc:
            err = svc.monitor.status().last_error
            assert err is not None
            assert f"cannot listen on 127.0.0.1:{port}" in err["text"]
            assert "the service runs without it" in err["text"]


def test_check_says_where_the_console_is_and_whether_anyone_can_log_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, extra="[web]\nenabled = true\n")
    assert site.cli("scan") == 0  # the database exists
    capsys.readouterr()
    assert site.cli("check", "--json") == 1
    [web] = [c for c in json.loads(capsys.readouterr().out)
             if c["check"] == "web console"]
    assert not web["ok"] and "no user may log in" in web["detail"]
    assert add(site, monkeypatch, "anna", "Anna-Passwort-1") == 0
    capsys.readouterr()
    site.cli("check")
    assert "http://127.0.0.1:8025/ inside run; 1 user(s), 1 admin(s)" in capsys.readouterr().out


def test_the_console_and_its_users_need_no_smtp_password_yet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A new admin sets up the console before the SMTP password is stored: `user`
    and `web` start (they send no mail); `run` still says what is missing."""
    site = write_site(tmp_path, smtp={"auth": "password", "username": "rechnung",
                                      "security": "starttls"})
    assert add(site, monkeypatch, "anna", "Anna-Passwort-1") == 0
    assert site.cli("web", "--host", "192.168.1.5") == 2  # its own checks still apply
    assert "without TLS" in capsys.readouterr().err
    assert site.cli("run") == 2
    assert "key 'smtp.password': is missing" in capsys.readouterr().err
