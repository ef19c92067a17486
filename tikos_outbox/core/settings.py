"""The validated settings, as frozen values. `config.py` reads the TOML file into
these; everything else only reads them. Choices are enums, never bare strings."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from tikos_outbox.core.attention import Language
from tikos_outbox.core.einvoice import Rule
from tikos_outbox.core.retry import RetryPolicy
from tikos_outbox.core.window import SendWindow


class Security(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"  # implicit TLS, usually port 465


class Auth(StrEnum):
    ANONYMOUS = "anonymous"
    PASSWORD = "password"
    OAUTH2 = "oauth2"


class Transport(StrEnum):
    SMTP = "smtp"
    GRAPH = "graph"  # Microsoft Graph sendMail, with the app's OAuth2 token


class WatchMode(StrEnum):
    EVENTS = "events"
    POLLING = "polling"
    AUTO = "auto"  # polling on network paths, events elsewhere


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: Security
    verify_tls: bool
    ca_file: Path | None
    auth: Auth
    username: str | None
    password: str | None  # a Fernet token, never the plaintext
    oauth2_tenant: str | None
    oauth2_token_url: str | None
    oauth2_client_id: str | None
    oauth2_client_secret: str | None  # a Fernet token
    oauth2_scope: str
    timeout_s: float
    max_per_minute: int  # pacing: mails spaced 60/max_per_minute seconds apart
    max_per_connection: int
    helo_name: str | None  # the name said in EHLO; None: this host's fully qualified name
    max_per_hour: int = 0  # quotas per sending account, over rolling windows; 0 = none
    max_per_day: int = 0
    max_recipients_per_day: int = 0
    transport: Transport = Transport.SMTP
    graph_url: str = "https://graph.microsoft.com/v1.0"
    pipelining: bool = True  # MAIL, RCPT and DATA in one write where offered (RFC 2920)

    @property
    def server(self) -> str:
        if self.transport is Transport.GRAPH:
            return f"Microsoft Graph ({self.graph_url})"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SenderSettings:
    address: str
    name: str
    reply_to: str | None
    bcc: tuple[str, ...]
    signature: str = ""  # after every template's text: the company's legal details


@dataclass(frozen=True)
class WatchSettings:
    mode: WatchMode
    poll_interval_s: float
    settle_s: float
    baseline: bool
    max_size_mb: float
    full_scan_minutes: float
    reconcile_minutes: float

    @property
    def max_size_bytes(self) -> int:
        return int(self.max_size_mb * 1024 * 1024)


class RecipientSource(StrEnum):
    LOOKUP = "lookup"  # TIKOS (sql_dsn) or the address file (csv)
    EINVOICE = "einvoice"  # the e-invoice's buyer address (BT-49), else the lookup


@dataclass(frozen=True)
class RecipientSettings:
    sql_dsn: str | None
    sql_query: str | None
    sql_params: tuple[str, ...]
    sql_timeout_s: int
    csv: Path | None
    source: RecipientSource = RecipientSource.LOOKUP


@dataclass(frozen=True)
class Template:
    subject: str
    body: str


@dataclass(frozen=True)
class Mandant:
    id: int
    name: str
    enabled: bool
    folder: Path
    pattern: re.Pattern[str]
    smtp: SmtpSettings
    sender: SenderSettings


@dataclass(frozen=True)
class OutboxSettings:
    database: str  # a SQLAlchemy URL
    key_file: Path
    keep_days: int
    log_file: Path | None
    retry: RetryPolicy
    busy_timeout_s: float
    language: Language = Language.DE  # the office's: daily report, "what to do" lines


class ImapSecurity(StrEnum):
    SSL = "ssl"  # implicit TLS, usually 993
    STARTTLS = "starttls"  # usually 143


@dataclass(frozen=True)
class BounceSettings:
    """`[bounces]`: where bounces come back to, and the mailbox they are read from
    (None: no mailbox to read; `address` alone still sets the envelope sender)."""

    address: str | None = None  # the envelope sender (MAIL FROM); None: the sender's
    imap_host: str | None = None
    imap_port: int = 993
    imap_security: ImapSecurity = ImapSecurity.SSL
    verify_tls: bool = True
    ca_file: Path | None = None
    auth: Auth = Auth.PASSWORD  # password | oauth2 (the [smtp] app's client credentials)
    username: str | None = None
    password: str | None = None  # a Fernet token
    folder: str = "INBOX"
    processed_folder: str = "tikos-outbox/verarbeitet"
    poll_minutes: float = 15
    timeout_s: float = 60

    @property
    def enabled(self) -> bool:
        return self.imap_host is not None

    @property
    def server(self) -> str:
        return f"{self.imap_host}:{self.imap_port}"


@dataclass(frozen=True)
class ReportSettings:
    to: tuple[str, ...]


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class WebSettings:
    """`[web]`: the office's console, served by `web` or inside `run`."""

    enabled: bool = False  # inside `run`
    host: str = "127.0.0.1"
    port: int = 8025
    cert_file: Path | None = None
    key_file: Path | None = None
    allow_plain_http: bool = False  # on an address other than loopback, without TLS
    idle_minutes: int = 30  # a session ends after this long without a request

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def exposure_problem(self, host: str | None = None) -> str | None:
        """Why serving on `host` (default: the configured one) is refused, or None."""
        host = host or self.host
        if self.tls or self.allow_plain_http or is_loopback(host):
            return None
        return (f"the console would be served on {host} without TLS: anyone on the network"
                " could read the passwords. Set [web] cert_file and key_file (a certificate"
                " for this server), or allow_plain_http = true if the network is trusted")


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Config:
    path: Path
    outbox: OutboxSettings
    window: SendWindow
    smtp: SmtpSettings
    sender: SenderSettings
    watch: WatchSettings
    recipients: RecipientSettings
    mandants: tuple[Mandant, ...]
    templates: Mapping[str, Template]
    report: ReportSettings
    bounces: BounceSettings = field(default_factory=BounceSettings)
    einvoice: Rule = field(default_factory=Rule)
    web: WebSettings = field(default_factory=WebSettings)
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)
    digest: str = ""  # of the file as read: a running service knows its config is older

    def mandant(self, mandant_id: int) -> Mandant | None:
        return next((m for m in self.mandants if m.id == mandant_id), None)

    def template(self, doctype: str) -> Template:
        return self.templates.get(doctype.upper()) or self.templates["default"]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def enabled_mandants(self) -> tuple[Mandant, ...]:
        return tuple(m for m in self.mandants if m.enabled)
