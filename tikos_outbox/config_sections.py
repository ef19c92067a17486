"""The config's smaller sections: where the addresses come from, the daily report,
the bounce mailbox, the e-invoice rule, the web console (read by
config.parse_config)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from tikos_outbox.config_keys import Section, missing_secret
from tikos_outbox.core.addresses import is_valid_address
from tikos_outbox.core.einvoice import Action, Rule
from tikos_outbox.core.settings import (
    Auth,
    BounceSettings,
    ImapSecurity,
    RecipientSettings,
    RecipientSource,
    ReportSettings,
    WebSettings,
)
from tikos_outbox.core.values import looks_like_token, parse_day


def recipients_section(s: Section, base: Path) -> RecipientSettings:
    dsn = s.str_("sql_dsn", None)
    query = s.str_("sql_query", None)
    params = s.str_list("sql_params", ["mandant", "customer"])
    timeout = s.int_("sql_timeout_s", 15, 1, 3600)
    csv = s.path("csv", base, None)
    source = s.choice("source", RecipientSource, RecipientSource.LOOKUP)
    s.finish()
    if dsn and not query:
        raise s.fail("sql_query", "is missing (sql_dsn is set)")
    if query and not dsn:
        raise s.fail("sql_dsn", "is missing (sql_query is set)")
    if query and query.count("?") != len(params):
        raise s.fail("sql_params", f"names {len(params)} parameters but sql_query has"
                                   f" {query.count('?')} '?' placeholders")
    if not dsn and csv is None and source is RecipientSource.LOOKUP:
        raise s.fail("sql_dsn", "is missing: set sql_dsn and sql_query, or csv")
    if dsn and csv is not None:
        raise s.fail("csv", "and sql_dsn are both set: the addresses come from one of them;"
                            " comment out sql_dsn, sql_query and sql_params to use the file,"
                            " or csv to use the TIKOS database")
    return RecipientSettings(sql_dsn=dsn, sql_query=query, sql_params=tuple(params),
                             sql_timeout_s=timeout, csv=csv, source=source)


def report_section(s: Section) -> ReportSettings:
    to = s.str_list("to", []) if not isinstance(s.data.get("to"), str) else [s.data["to"]]
    s.used.add("to")
    for addr in to:
        if not is_valid_address(addr):
            raise s.fail("to", f"{addr!r} is not a valid e-mail address")
    s.finish()
    return ReportSettings(to=tuple(to))


def bounces_section(s: Section, base: Path, smtp_raw: Any) -> BounceSettings:
    address = s.str_("address", None)
    if address is not None and not is_valid_address(address):
        raise s.fail("address", f"{address!r} is not a valid e-mail address")
    host = s.str_("imap_host", None)
    security = s.choice("imap_security", ImapSecurity, ImapSecurity.SSL)
    port = s.int_("imap_port", 993 if security is ImapSecurity.SSL else 143, 1, 65535)
    verify = s.bool_("verify_tls", True)
    ca_file = s.path("ca_file", base, None)
    auth = s.choice("auth", Auth, Auth.PASSWORD)
    username = s.str_("username", None)
    password = s.str_("password", None, empty=True) or None
    folder = s.str_("folder", "INBOX")
    processed = s.str_("processed_folder", "tikos-outbox/verarbeitet")
    poll = s.num("poll_minutes", 15, 1, 1440)
    timeout = s.num("timeout_s", 60, 1, 3600)
    s.finish()
    if host is not None:
        if auth is Auth.ANONYMOUS:
            raise s.fail("auth", "must be \"password\" or \"oauth2\": a mailbox needs a login")
        if not username:
            raise s.fail("username", "is missing (the login of the bounce mailbox)")
        if auth is Auth.PASSWORD and not password:
            missing_secret(s, "password", "is missing: store it with"
                                           " `tikos-outbox secret set bounce-password`")
        if password and not looks_like_token(password):
            raise s.fail("password", "must be the encrypted token that `tikos-outbox secret"
                                     " set bounce-password` writes, never the password itself")
        if auth is Auth.OAUTH2 and not (isinstance(smtp_raw, dict)
                                        and smtp_raw.get("oauth2_client_id")):
            raise s.fail("auth", "\"oauth2\" reads the mailbox with the [smtp] OAuth2 app:"
                                 " set [smtp] oauth2_client_id and its secret")
        if folder.strip() == processed.strip():
            raise s.fail("processed_folder", f"must differ from folder ({folder!r}):"
                                             " read bounces are moved there")
    elif auth is Auth.PASSWORD and password:
        raise s.fail("imap_host", "is missing (a password is set for the bounce mailbox)")
    if ca_file is not None and not ca_file.is_file():
        raise s.fail("ca_file", f"no such file: {ca_file}")
    return BounceSettings(address=address, imap_host=host.strip() if host else None,
                          imap_port=port, imap_security=security, verify_tls=verify,
                          ca_file=ca_file, auth=auth, username=username, password=password,
                          folder=folder, processed_folder=processed, poll_minutes=poll,
                          timeout_s=timeout)




def einvoice_section(s: Section) -> Rule:
    raw = s.data.get("required_from")
    s.used.add("required_from")
    required_from: date | None = None
    if isinstance(raw, date):  # TOML's own date: required_from = 2027-01-01
        required_from = raw
    elif isinstance(raw, str) and raw.strip():
        required_from = parse_day(raw.strip())
        if required_from is None:
            raise s.fail("required_from", f"{raw!r} is not a date like 2027-01-01 or"
                                          " 01.01.2027")
    elif raw is not None and raw != "":
        raise s.fail("required_from", "must be a date like 2027-01-01")
    doctypes = s.str_list("doctypes", ["RE"])
    action = s.choice("action", Action, Action.WARN)
    s.finish()
    if not doctypes or any(not d.strip() for d in doctypes):
        raise s.fail("doctypes", "must name the invoice document types, e.g. [\"RE\"]")
    return Rule(required_from=required_from, doctypes=tuple(d.strip().upper() for d in doctypes),
                action=action)


def web_section(s: Section, base: Path) -> WebSettings:
    cert = s.path("cert_file", base, None)
    key = s.path("key_file", base, None)
    web = WebSettings(enabled=s.bool_("enabled", False), host=s.str_("host", "127.0.0.1"),
                      port=s.int_("port", 8025, lo=0, hi=65535), cert_file=cert, key_file=key,
                      allow_plain_http=s.bool_("allow_plain_http", False),
                      idle_minutes=s.int_("idle_minutes", 30, lo=1, hi=24 * 60))
    s.finish()
    if (cert is None) != (key is None):
        raise s.fail("key_file" if key is None else "cert_file",
                     "cert_file and key_file go together: the certificate and its private key")
    for name, file in (("cert_file", cert), ("key_file", key)):
        if file is not None and not file.is_file():
            raise s.fail(name, f"{file} does not exist")
    problem = web.exposure_problem()
    if problem:
        raise s.fail("host", problem)
    return web
