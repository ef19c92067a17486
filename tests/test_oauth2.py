"""OAuth2 (SASL XOAUTH2, client credentials) against a loopback token endpoint and an
XOAUTH2-only aiosmtpd."""

from __future__ import annotations

import base64
import io
import json
import sys
import threading
import urllib.parse
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult

from tests.helpers import Cert, FakeClock, Handler, SmtpServer, open_outbox, write_site
from tikos_outbox.cli import main
from tikos_outbox.config import ConfigError, load_config
from tikos_outbox.samples import make_pdf

CLIENT_SECRET = "s3cr3t~Client.Secret_äöü"
MAILBOX = "rechnung@musterwaescherei.example"


class TokenEndpoint:
    """A real HTTP token endpoint on loopback (RFC 6749 §4.4 client credentials)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.error: tuple[int, dict[str, str]] | None = None
        self.expires_in = 3600
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                endpoint.requests.append(form)
                if endpoint.error:
                    code, body = endpoint.error
                elif (form.get("grant_type") != "client_credentials"
                      or form.get("client_secret") != CLIENT_SECRET):
                    code, body = 401, {"error": "invalid_client"}
                else:
                    code, body = 200, {"access_token": f"token-{len(endpoint.requests)}",
                                       "token_type": "Bearer",
                                       "expires_in": str(endpoint.expires_in)}
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tenant/oauth2/v2.0/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TokenEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class XOAuth2Handler(Handler):
    """The aiosmtpd test handler with the XOAUTH2 mechanism (RFC 7628 style errors)."""

    def __init__(self, inner: Handler, valid: set[str]) -> None:
        super().__init__(inner.b)
        self.valid = valid
        self.seen: list[tuple[str, str]] = []

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        raw = base64.b64decode(args[1]).decode() if len(args) > 1 else ""
        parts = dict(p.split("=", 1) for p in raw.split("\x01") if "=" in p)
        user, auth = parts.get("user", ""), parts.get("auth", "")
        self.seen.append((user, auth))
        if user == MAILBOX and auth.startswith("Bearer ") and auth[7:] in self.valid:
            return AuthResult(success=True, handled=False)
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))
        return AuthResult(success=False, handled=False,
                          message="535 5.7.3 Authentication unsuccessful")


def oauth_server(cert: Cert, valid: set[str]) -> tuple[SmtpServer, XOAuth2Handler]:
    """An SMTP server that offers XOAUTH2 only (after STARTTLS)."""
    wrapped: list[XOAuth2Handler] = []

    def wrap(inner: Any) -> XOAuth2Handler:
        wrapped.append(XOAuth2Handler(inner, valid))
        return wrapped[0]

    srv = SmtpServer(cert, "starttls", users={}, exclude_auth=("PLAIN", "LOGIN"),
                     wrap_handler=wrap)
    return srv, wrapped[0]


def oauth_site(tmp_path: Path, srv: SmtpServer, cert: Cert, token_url: str, n: int,
               **smtp: Any) -> Any:
    site = write_site(
        tmp_path,
        smtp={"port": srv.port, "security": "starttls", "ca_file": str(cert.cert),
              "auth": "oauth2", "username": MAILBOX, "oauth2_token_url": token_url,
              "oauth2_client_id": "client-id-1", "oauth2_client_secret": "gAAAAAplaceholder",
              **smtp},
        watch={"baseline": False})
    sys_stdin = sys.stdin
    try:
        sys.stdin = io.StringIO(CLIENT_SECRET + "\n")
        assert site.cli("secret", "set", "client-secret", "--stdin") == 0
    finally:
        sys.stdin = sys_stdin
    for i in range(n):
        (site.mandant_folder() / f"RE_{i + 1}_4711.pdf").write_bytes(make_pdf([str(i)]))
    assert site.cli("scan") == 0
    return site


def test_a_run_of_several_mails_fetches_one_token(tmp_path: Path, cert: Cert) -> None:
    with TokenEndpoint() as tokens:
        srv, handler = oauth_server(cert, {"token-1"})
        with srv:
            site = oauth_site(tmp_path, srv, cert, tokens.url, 5, max_per_connection=2)
            assert site.cli("flush") == 0
            assert len(srv.received) == 5
    assert len(tokens.requests) == 1  # one token for three connections
    form = tokens.requests[0]
    assert form["client_id"] == "client-id-1"
    assert form["scope"] == "https://outlook.office365.com/.default"
    assert handler.seen == [(MAILBOX, "Bearer token-1")] * 3
    # the client secret is nowhere in plaintext
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert CLIENT_SECRET.encode() not in path.read_bytes(), path


def test_an_expired_token_is_refreshed(tmp_path: Path, cert: Cert) -> None:
    with TokenEndpoint() as tokens:
        srv, handler = oauth_server(cert, {"token-1", "token-2"})
        with srv:
            site = oauth_site(tmp_path, srv, cert, tokens.url, 3)
            clock = FakeClock(datetime(2026, 11, 26, 9, tzinfo=UTC))
            svc = open_outbox(site, clock)
            svc.admin.hold([3], "test")
            assert svc.delivery.send_due(force=True).sent == 2
            assert len(tokens.requests) == 1
            clock.advance(3600)  # the token has expired
            svc.admin.release([3], "test")
            assert svc.delivery.send_due(force=True).sent == 1
            assert len(tokens.requests) == 2
            assert handler.seen[-1] == (MAILBOX, "Bearer token-2")
            svc.store.close()


@pytest.mark.parametrize("case", ["rejected token", "endpoint error"])
def test_token_problems_burn_nothing_and_say_why(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str], case: str) -> None:
    with TokenEndpoint() as tokens:
        srv, _ = oauth_server(cert, set() if case == "rejected token" else {"token-1"})
        if case == "endpoint error":
            tokens.error = (400, {"error": "invalid_client", "error_description":
                                  "AADSTS7000215: Invalid client secret provided.\r\nTrace ID"})
        with srv:
            site = oauth_site(tmp_path, srv, cert, tokens.url, 2)
            assert site.cli("flush") == 1
            assert srv.received == []
        capsys.readouterr()
        assert site.cli("list", "--json") == 0
        rows = json.loads(capsys.readouterr().out)
        assert [(r["state"], r["attempts"]) for r in rows] == [("pending", 0)] * 2
        assert site.cli("status", "--json") == 0
        text = json.loads(capsys.readouterr().out)["last_error"]["text"]
        if case == "rejected token":
            assert "535 5.7.3 Authentication unsuccessful" in text
        else:
            assert "token endpoint refused: HTTP 400 invalid_client: AADSTS7000215" in text
        assert site.cli("check", "--smtp") == 1
        assert "FAIL" in capsys.readouterr().out


def test_token_url_must_be_https_except_loopback(tmp_path: Path) -> None:
    site = write_site(tmp_path, smtp={
        "auth": "oauth2", "username": MAILBOX, "oauth2_token_url": "http://login.example/token",
        "oauth2_client_id": "x", "oauth2_client_secret": "gAAAAAx"})
    with pytest.raises(ConfigError, match=r"oauth2_token_url.*https://"):
        load_config(site.config)


def test_password_login_with_basic_auth_disabled_points_to_oauth2(
        tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str]) -> None:
    srv = SmtpServer(cert, "starttls", users={"u": "pw"},
                     auth_reply="535 5.7.139 Authentication unsuccessful, basic authentication"
                                " is disabled")
    with srv:
        site = write_site(tmp_path, smtp={"port": srv.port, "security": "starttls",
                                          "ca_file": str(cert.cert), "auth": "password",
                                          "username": "u"},
                          password="pw")
        assert main(["--config", str(site.config), "check", "--smtp"]) == 1
    out = capsys.readouterr().out
    assert "basic authentication" in out and "OAuth2" in out and "README" in out
