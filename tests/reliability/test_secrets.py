"""Secret hygiene: after a full run with a known password and a known OAuth2 client
secret, neither is found in the database (and its WAL), the logs, any --json output,
error output, or the service's command line and environment; nor the password of
a web console user, after logging in to the console of the running service."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import Cert, SmtpServer, write_site
from tests.test_oauth2 import CLIENT_SECRET, MAILBOX, TokenEndpoint, oauth_server
from tikos_outbox.demo import free_port
from tikos_outbox.samples import make_pdf

pytestmark = pytest.mark.reliability

PASSWORD = "Sehr-Geheim §;:@\\% Wäsche 42"
BOUNCE_PASSWORD = "Rückläufer-Geheimnis 7 \"quoted\""
WEB_PASSWORD = "Büro-Passwort ß 99 %&="


def test_no_plaintext_secret_anywhere(tmp_path: Path, cert: Cert,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with TokenEndpoint() as tokens, SmtpServer(cert, "starttls",
                                               users={"u": PASSWORD}) as pw_srv:
        oauth_srv, _ = oauth_server(cert, {"token-1"})
        with oauth_srv:
            site = write_site(
                tmp_path,
                smtp={"port": pw_srv.port, "security": "starttls", "ca_file": str(cert.cert),
                      "auth": "password", "username": "u"},
                password=PASSWORD, watch={"baseline": False, "settle_s": 0},
                mandants=[{"id": 1}, {"id": 2}])
            text = site.config.read_text(encoding="utf-8")
            text += (f"\n[mandant.smtp]\nport = {oauth_srv.port}\nauth = 'oauth2'\n"
                     f"username = '{MAILBOX}'\noauth2_token_url = '{tokens.url}'\n"
                     "oauth2_client_id = 'id'\noauth2_client_secret = 'gAAAAAx'\n")
            site.config.write_text(text, encoding="utf-8")
            from tikos_outbox.credentials import KeyRing
            from tikos_outbox.provision import _load_doc, _write_doc

            doc = _load_doc(site.config)
            ring = KeyRing(tmp_path / "tikos-outbox.key")
            doc["mandant"][1]["smtp"]["oauth2_client_secret"] = ring.encrypt(CLIENT_SECRET)  # type: ignore[index]
            # a bounce mailbox that does not answer: its password is decrypted, never shown
            doc["bounces"] = {"imap_host": "127.0.0.1", "imap_port": free_port(),
                              "username": "rechnung@example.org", "timeout_s": 5,
                              "password": ring.encrypt(BOUNCE_PASSWORD)}
            web_port = free_port()
            doc["web"] = {"enabled": True, "port": web_port}  # the console inside `run`
            _write_doc(site.config, doc)
            for m in (1, 2):
                (site.mandant_folder(m) / f"RE_{m}_4711.pdf").write_bytes(make_pdf([str(m)]))
            outputs: list[str] = []

            def run_cli(*args: str) -> None:
                capsys.readouterr()
                site.cli(*args)
                captured = capsys.readouterr()
                outputs.extend([captured.out, captured.err])

            run_cli("bounces", "--json")
            run_cli("bounces")
            run_cli("scan", "--json")
            run_cli("flush", "--json")
            for args in (("status", "--json"), ("list", "--json"), ("show", "1", "--json"),
                         ("show", "2", "--json"), ("check", "--smtp", "--json")):
                run_cli(*args)
            assert len(pw_srv.received) == 1 and len(oauth_srv.received) == 1
            sys.stdin = io.StringIO(WEB_PASSWORD + "\n")
            run_cli("user", "add", "anna", "--role", "admin", "--stdin")
            sys.stdin = sys.__stdin__
            # the service itself: command line, environment, database with its WAL
            proc = subprocess.Popen([sys.executable, "-m", "tikos_outbox", "--config",
                                     str(site.config), "run"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            try:
                time.sleep(3)
                outputs += log_in_to_console(web_port)
                cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
                environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
                wal = tmp_path / "outbox.db-wal"
                wal_bytes = wal.read_bytes() if wal.exists() else b""
            finally:
                proc.terminate()
                out, err = proc.communicate(timeout=30)
            # a failing run shows its error, and no secret in it
            os.rename(tmp_path / "tikos-outbox.key", tmp_path / "moved.key")
            run_cli("flush")
            run_cli("check", "--smtp")
            run_cli("test-mail", "--to", "x@example.org")
    haystacks: list[bytes] = [cmdline, environ, wal_bytes, out, err,
                              *(o.encode() for o in outputs)]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            haystacks.append(path.read_bytes())
    for secret in (PASSWORD, CLIENT_SECRET, BOUNCE_PASSWORD, WEB_PASSWORD):
        for variant in {secret.encode(), secret.encode("utf-16-le"), secret.encode("latin-1",
                                                                                   "ignore")}:
            hits = [h[:80] for h in haystacks if variant in h]
            assert hits == [], (secret, hits)
    assert any("is missing" in o for o in outputs)  # the error was shown
    assert any("the bounce mailbox 127.0.0.1:" in o and "cannot be reached" in o
               for o in outputs)


def log_in_to_console(port: int) -> list[str]:
    """A wrong and a right login to the console of the running service, and a page;
    what it answered (searched for the password too)."""
    import http.cookiejar
    import re
    import urllib.error
    import urllib.parse
    import urllib.request

    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    pages = []
    for password in ("falsch " + WEB_PASSWORD, WEB_PASSWORD):
        with opener.open(base + "/login", timeout=30) as r:
            token = re.search(r'name="csrf" value="([^"]+)"', r.read().decode())
        assert token
        form = urllib.parse.urlencode({"user": "anna", "password": password,
                                       "csrf": token.group(1)}).encode()
        try:
            with opener.open(base + "/login", data=form, timeout=30) as r:
                pages.append(r.read().decode())
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
            pages.append(exc.read().decode())
    assert "Braucht Aufmerksamkeit" in pages[-1]  # logged in: the overview
    return pages


def test_key_file_is_private_and_a_readable_one_is_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tikos_outbox.cli import main

    assert main(["init", str(tmp_path)]) == 0
    key = tmp_path / "tikos-outbox.key"
    assert key.stat().st_mode & 0o777 == 0o600
    site = write_site(tmp_path / "site")
    os.chmod(tmp_path / "site" / "tikos-outbox.key", 0o644)
    capsys.readouterr()
    assert site.cli("check") == 1
    assert "can be read by every account on this machine" in capsys.readouterr().out
    sys.stdin = io.StringIO("")
