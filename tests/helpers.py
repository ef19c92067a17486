"""Real servers and real files for the tests: aiosmtpd on loopback with TLS and
AUTH, a self-signed certificate, an ODBC database, a site folder with config."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import imaplib
import ipaddress
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tikos_outbox import wiring
from tikos_outbox.cli import main
from tikos_outbox.config import load_config
from tikos_outbox.core.ports import Clock
from tikos_outbox.credentials import create_key_file
from tikos_outbox.demo import free_port
from tikos_outbox.provision import set_secret
from tikos_outbox.wiring import Outbox


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path


def make_cert(folder: Path, names: tuple[str, ...] = ("localhost",),
              ips: tuple[str, ...] = ("127.0.0.1",), stem: str = "server") -> Cert:
    """A self-signed certificate for loopback, made with cryptography."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Cert(cert_path, key_path)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any = None  # (host, port) of the client: one per connection


@dataclass
class Behaviour:
    """What the test server answers. Replies are full lines like '451 4.3.0 busy'."""

    mail_reply: str | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    drop_after_data: bool = False
    stall_s: float = 0.0
    fail_first_data: int = 0  # answer data_reply this many times, then accept
    pipelining: bool = False  # offer PIPELINING (RFC 2920) in the EHLO answer


class Handler:
    def __init__(self, behaviour: Behaviour) -> None:
        self.b = behaviour
        self.received: list[Received] = []
        self.data_calls = 0
        self.lock = threading.Lock()

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname  # what aiosmtpd itself does before the hook
        if self.b.pipelining:  # aiosmtpd reads pipelined commands in order; it just
            return [*responses[:-1], "250-PIPELINING", responses[-1]]  # does not say so
        return responses

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if self.b.mail_reply:
            return self.b.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        reply = self.b.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_calls += 1
        if self.b.stall_s:
            await asyncio.sleep(self.b.stall_s)
        if self.b.drop_after_data:
            with self.lock:
                self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                              envelope.original_content, session.peer))
            server.transport.close()
            return "250 too late"
        if self.b.data_reply and (not self.b.fail_first_data
                                  or self.data_calls <= self.b.fail_first_data):
            return self.b.data_reply
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          envelope.original_content, session.peer))
        return "250 2.0.0 Ok: queued"


class SmtpServer:
    """aiosmtpd on 127.0.0.1: security none / starttls / ssl, optional AUTH."""

    def __init__(self, cert: Cert, security: str = "starttls",
                 users: dict[str, str] | None = None, behaviour: Behaviour | None = None,
                 auth_reply: str | None = None, exclude_auth: tuple[str, ...] = (),
                 wrap_handler: Any = None, smtputf8: bool = False,
                 **options: Any) -> None:
        """`options` go to aiosmtpd's SMTP as they are (data_size_limit, timeout)."""
        self.behaviour = behaviour or Behaviour()
        self.handler: Handler = Handler(self.behaviour)
        if wrap_handler is not None:  # a Handler subclass with more AUTH mechanisms
            self.handler = wrap_handler(self.handler)
        self.users = users
        self.auth_reply = auth_reply
        self.logins: list[tuple[str, str]] = []
        self.security = security
        self.port = free_port()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8, **options}
        if users is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=security == "starttls",
                          auth_exclude_mechanism=list(exclude_auth))
        if security == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port,
            ssl_context=ctx if security == "ssl" else None, server_hostname="localhost",
            **kwargs)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.users is None:
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8")
        password = auth_data.password.decode("utf-8")
        self.logins.append((login, password))
        if self.auth_reply:
            return AuthResult(success=False, handled=False, message=self.auth_reply)
        return AuthResult(success=self.users.get(login) == password, handled=False)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


PATTERN = r"^(?P<doctype>RE|LS)_(?P<docno>\d+)_(?P<customer>\d+)\.pdf$"


@dataclass
class Site:
    """A laundry's set-up in a temporary folder: config, key, archive, recipients."""

    root: Path
    config: Path
    archive: Path

    def cli(self, *args: str) -> int:
        return main(["--config", str(self.config), *args])

    def mandant_folder(self, mandant: int = 1) -> Path:
        return self.archive / f"M{mandant}"


def write_site(
    root: Path,
    *,
    smtp: dict[str, Any] | None = None,
    password: str | None = None,
    recipients: str | None = None,
    mandants: list[dict[str, Any]] | None = None,
    extra: str = "",
    watch: dict[str, Any] | None = None,
    sender: dict[str, Any] | None = None,
    outbox: dict[str, Any] | None = None,
) -> Site:
    """Write tikos-outbox.toml (TOML by hand, as an admin would) and the key file."""
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "archive"
    smtp = {"host": "127.0.0.1", "port": 25, "security": "none", "auth": "anonymous",
            "max_per_minute": 0, "timeout_s": 10, **(smtp or {})}
    sender = {"address": "rechnung@musterwaescherei.example", "name": "Musterwäscherei GmbH",
              "reply_to": "info@musterwaescherei.example", **(sender or {})}
    watch = {"settle_s": 0, "poll_interval_s": 0.2, **(watch or {})}
    if mandants is None:
        mandants = [{"id": 1, "name": "Nord"}]
    if recipients is None:
        (root / "recipients.csv").write_text(
            "mandant;customer;email\n1;4711;kunde@example.org\n2;4711;kunde2@example.org\n",
            encoding="utf-8")
        recipients = 'csv = "recipients.csv"'
    lines = ["[outbox]", 'database = "outbox.db"', 'key_file = "tikos-outbox.key"']
    lines += [f"{k} = {_toml(v)}" for k, v in (outbox or {}).items()] + ["", "[smtp]"]
    lines += [f"{k} = {_toml(v)}" for k, v in smtp.items()]
    lines += ["", "[sender]"] + [f"{k} = {_toml(v)}" for k, v in sender.items()]
    lines += ["", "[watch]"] + [f"{k} = {_toml(v)}" for k, v in watch.items()]
    lines += ["", "[recipients]", recipients, ""]
    for m in mandants:
        m = {"folder": f"archive/M{m['id']}", "pattern": PATTERN, **m}
        (root / m["folder"]).mkdir(parents=True, exist_ok=True)
        lines += ["[[mandant]]"] + [f"{k} = {_toml(v)}" for k, v in m.items()] + [""]
    config = root / "tikos-outbox.toml"
    config.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    create_key_file(root / "tikos-outbox.key")
    if password is not None:
        set_secret(config, "password", password)
    return Site(root, config, archive)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value + "'" if "'" not in value and "\n" not in value else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(value)


def attachment_of(data: bytes) -> bytes:
    """The (single) PDF attached to a received message."""
    import email
    import email.policy

    msg = email.message_from_bytes(data, policy=email.policy.default)
    [part] = list(msg.iter_attachments())  # type: ignore[attr-defined]
    content = part.get_content()
    assert isinstance(content, bytes)
    return content


class FakeClock:
    """The only fake in the tests: time that moves when told (or when slept)."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = start
        self._mono = 1000.0
        self.slept = 0.0

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        self.slept += seconds

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)
        self._mono += seconds


def open_outbox(site: Site, clock: Clock | None = None, **kwargs: Any) -> Outbox:
    """The outbox of a site, opened by the composition root as the CLI opens it."""
    return wiring.open_outbox(load_config(site.config), clock=clock, **kwargs)


class MeetingHandler(Handler):
    """Holds every DATA until `parties` connections have begun a mail, so that
    processes started together all send, however long each takes to start."""

    def __init__(self, behaviour: Behaviour, parties: int = 2, deadline_s: float = 120.0
                 ) -> None:
        super().__init__(behaviour)
        self.parties = parties
        self.deadline_s = deadline_s
        self.peers: set[Any] = set()

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        self.peers.add(session.peer)
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        deadline = time.monotonic() + self.deadline_s  # then an assertion on peers says why
        while len(self.peers) < self.parties and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)


def status_json(site: Site, capsys: Any) -> dict[str, Any]:
    """`status --json` through the CLI, parsed."""
    import json

    capsys.readouterr()
    assert site.cli("status", "--json") == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


class BounceBox:
    """The laundry's mailbox in the test Dovecot, as the office's mail client sees it."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        ctx = ssl.create_default_context(cafile=info["ca_file"])
        self.conn = imaplib.IMAP4_SSL(info["host"], info["imaps_port"], ssl_context=ctx)
        user, password = info["user"], info["password"]
        self.conn.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())

    def empty(self) -> None:
        for folder in ("INBOX", "tikos-outbox.verarbeitet"):
            typ, count = self.conn.select(folder)
            if typ == "OK" and count[0] != b"0":
                self.conn.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                self.conn.expunge()

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        assert self.conn.append(folder, "", imaplib.Time2Internaldate(time.time()),
                                raw)[0] == "OK"

    def messages(self, folder: str) -> list[tuple[str, str]]:
        """(Subject, flags) of each message in `folder`, without marking any read."""
        typ, count = self.conn.select(folder, readonly=True)
        if typ != "OK" or count[0] == b"0":
            return []
        _, data = self.conn.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        out = []
        for item in data:
            if isinstance(item, tuple):
                subject = email.message_from_bytes(item[1], policy=email.policy.default)
                out.append((str(subject["Subject"]), item[0].decode()))
        return out

    def raw(self, folder: str) -> list[bytes]:
        """Each message of `folder` as bytes, without marking any read."""
        typ, count = self.conn.select(folder, readonly=True)
        if typ != "OK" or count[0] == b"0":
            return []
        _, data = self.conn.fetch("1:*", "(BODY.PEEK[])")
        return [item[1] for item in data if isinstance(item, tuple)]

    def close(self) -> None:
        self.conn.logout()


@contextmanager
def service_running(site: Site, timeout_s: float = 30) -> Iterator[Outbox]:
    """`run` in a thread on this site's outbox until the block ends (then stopped)."""
    from tikos_outbox.runner import run

    svc = open_outbox(site)
    ready = threading.Event()
    thread = threading.Thread(target=run, args=(svc, ready), daemon=True)
    thread.start()
    try:
        assert ready.wait(timeout_s)
        yield svc
    finally:
        svc.stop.set()
        thread.join(timeout_s)
        assert not thread.is_alive()
        svc.store.close()


@contextmanager
def serving_tls(srv: socketserver.BaseServer, cert: Cert) -> Iterator[None]:
    """A socketserver stand-in (IMAP, HTTPS) on a thread, its socket wrapped in TLS
    with the tests' certificate, until the block ends."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert.cert), str(cert.key))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)
