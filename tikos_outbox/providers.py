"""The providers `init --provider` knows: their SMTP settings and sending limits set
below what each publishes, with the source. Where a provider publishes no limit,
the preset says so and stays conservative; the run still stops at the server's
first "slow down" and rests (core.replies.stop_for).

Checked on 2026-12-02. Limits change: the sources are in the README's provider
table and in the config that `init` writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Provider:
    key: str
    label: str
    smtp: dict[str, str | int]
    limits: dict[str, int]  # max_per_minute, max_per_hour, max_per_day, max_recipients_per_day
    published: str  # what the provider publishes, in one line
    source: str  # where
    notes: tuple[str, ...] = field(default=())


PROVIDERS: dict[str, Provider] = {p.key: p for p in (
    Provider(
        "m365", "Microsoft 365 (SMTP AUTH)",
        {"host": "smtp.office365.com", "port": 587, "security": "starttls", "auth": "oauth2",
         "oauth2_tenant": "yourdomain.onmicrosoft.com",
         "oauth2_client_id": "00000000-0000-0000-0000-000000000000",
         "oauth2_scope": "https://outlook.office365.com/.default"},
        {"max_per_minute": 20, "max_per_hour": 0, "max_per_day": 0,
         "max_recipients_per_day": 9000},
        "30 messages a minute and 10,000 recipients in any 24 hours per mailbox;"
        " 3 connections at a time; trial tenants 5,000 external recipients a day",
        "https://learn.microsoft.com/en-us/defender-office-365/outbound-spam-sending-limits-"
        "troubleshoot",
        ("a young or trial tenant has lower tenant-wide limits: set max_recipients_per_day ="
         " 450 for its first two months",)),
    Provider(
        "m365-graph", "Microsoft 365 (Microsoft Graph, no SMTP AUTH)",
        {"transport": "graph", "auth": "oauth2",
         "oauth2_tenant": "yourdomain.onmicrosoft.com",
         "oauth2_client_id": "00000000-0000-0000-0000-000000000000",
         "oauth2_scope": "https://graph.microsoft.com/.default"},
        {"max_per_minute": 20, "max_per_hour": 0, "max_per_day": 0,
         "max_recipients_per_day": 9000},
        "30 messages a minute and 10,000 recipients in any 24 hours per mailbox (the same"
        " Exchange Online limits as SMTP); Graph itself answers 429 with Retry-After",
        "https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits",
        ("Entra ID: App registrations > New registration (this tenant only); API permissions"
         " > Add > Microsoft Graph > Application permissions > Mail.Send; Grant admin consent",
         "Entra ID: Certificates & secrets > New client secret; then `tikos-outbox secret set"
         " client-secret`; put the Application (client) ID above and username = the"
         " sending mailbox",
         "limit the app to that mailbox (Exchange Online PowerShell):"
         " New-ApplicationAccessPolicy -AppId <client id> -PolicyScopeGroupId"
         " <mail-enabled group with the mailbox> -AccessRight RestrictAccess",
         "no SMTP AUTH needed: it may stay switched off for the tenant")),
    Provider(
        "google", "Google Workspace",
        {"host": "smtp.gmail.com", "port": 587, "security": "starttls", "auth": "password"},
        {"max_per_minute": 20, "max_per_hour": 0, "max_per_day": 1800,
         "max_recipients_per_day": 2700},
        "2,000 messages and 3,000 external recipients a day per user (rolling 24 hours);"
        " trial accounts 500; no per-minute limit published",
        "https://support.google.com/a/answer/166852",
        ("the password is an app password (2-step verification on)",)),
    Provider(
        "ionos", "IONOS (1&1)",
        {"host": "smtp.ionos.de", "port": 587, "security": "starttls", "auth": "password"},
        {"max_per_minute": 10, "max_per_hour": 45, "max_per_day": 0,
         "max_recipients_per_day": 0},
        "a new mailbox may send to 50 recipients an hour in its first week, 100 in the"
        " second, 400 up to day 30, then 500 (UK page) or 5,000 (German page) an hour",
        "https://www.ionos.de/hilfe/e-mail/allgemeine-themen/welche-beschraenkungen-gibt-es-"
        "beim-versand-von-massenmails/",
        ("raise max_per_hour with the mailbox's age: 90 from day 8, 360 from day 15, 450"
         " from day 31",
         "IONOS counts recipients: with a [sender] bcc copy, halve max_per_hour")),
    Provider(
        "t-online", "T-Online (Telekom)",
        {"host": "securesmtp.t-online.de", "port": 465, "security": "ssl",
         "auth": "password"},
        {"max_per_minute": 5, "max_per_hour": 50, "max_per_day": 0,
         "max_recipients_per_day": 0},
        "no sending limit published",
        "https://www.telekom.de/hilfe/apps-dienste/e-mail/einstellungen/posteingang-"
        "postausgang-server",
        ("the password is the separate e-mail password from the customer centre",)),
    Provider(
        "strato", "Strato",
        {"host": "smtp.strato.de", "port": 465, "security": "ssl", "auth": "password"},
        {"max_per_minute": 5, "max_per_hour": 50, "max_per_day": 0,
         "max_recipients_per_day": 0},
        "no sending limit published; the server answers \"450 4.7.0 Transmit rate limit"
        " exceeded\" per account",
        "reply seen by Strato's support: https://github.com/knadh/listmonk/issues/1073",
    ),
    Provider(
        "gmx", "GMX",
        {"host": "mail.gmx.net", "port": 587, "security": "starttls", "auth": "password"},
        {"max_per_minute": 3, "max_per_hour": 30, "max_per_day": 0,
         "max_recipients_per_day": 0},
        "no sending limit published (FreeMail is for private use)",
        "server settings: https://autoconfig.thunderbird.net/v1.1/gmx.net",
        ("switch on POP3/IMAP access in the mailbox's settings first",)),
    Provider(
        "web.de", "WEB.DE",
        {"host": "smtp.web.de", "port": 587, "security": "starttls", "auth": "password"},
        {"max_per_minute": 3, "max_per_hour": 30, "max_per_day": 0,
         "max_recipients_per_day": 0},
        "no sending limit published (FreeMail is for private use)",
        "server settings: https://autoconfig.thunderbird.net/v1.1/web.de",
        ("switch on POP3/IMAP access in the mailbox's settings first; the user name is the"
         " part before the @",)),
)}
