"""The [smtp] section (and each mandant's override of it): the server, the login,
the transport (SMTP, or Microsoft Graph) and the sending limits."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from tikos_outbox.config_keys import REQUIRED, Section, missing_secret
from tikos_outbox.core.settings import Auth, Security, SmtpSettings, Transport
from tikos_outbox.core.values import check_token_url, looks_like_token

GRAPH_URL = "https://graph.microsoft.com/v1.0"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
#: Exchange Online's: SMTP XOAUTH2 and the bounce mailbox's IMAP XOAUTH2
OUTLOOK_SCOPE = "https://outlook.office365.com/.default"


def smtp_section(s: Section, base: Path) -> SmtpSettings:
    transport = s.choice("transport", Transport, Transport.SMTP)
    graph = transport is Transport.GRAPH
    graph_url = s.str_("graph_url", GRAPH_URL).rstrip("/")
    host = s.str_("host", None if graph else REQUIRED)
    security = s.choice("security", Security, Security.NONE)
    default_port = {Security.NONE: 25, Security.STARTTLS: 587, Security.SSL: 465}[security]
    port = s.int_("port", default_port, 1, 65535)
    verify = s.bool_("verify_tls", True)
    ca_file = s.path("ca_file", base, None)
    auth = s.choice("auth", Auth, Auth.OAUTH2 if graph else Auth.ANONYMOUS)
    username = s.str_("username", None)
    password = s.str_("password", None, empty=True) or None  # "": init's placeholder
    tenant = s.str_("oauth2_tenant", None)
    token_url = s.str_("oauth2_token_url", None)
    client_id = s.str_("oauth2_client_id", None)
    client_secret = s.str_("oauth2_client_secret", None, empty=True) or None
    scope = s.str_("oauth2_scope", GRAPH_SCOPE if graph else OUTLOOK_SCOPE)
    timeout = s.num("timeout_s", 60, 1, 3600)
    per_minute = s.int_("max_per_minute", 30, 0, 100000)
    per_conn = s.int_("max_per_connection", 50, 1, 100000)
    per_hour = s.int_("max_per_hour", 0, 0, 10**7)
    per_day = s.int_("max_per_day", 0, 0, 10**8)
    rcpts_per_day = s.int_("max_recipients_per_day", 0, 0, 10**8)
    helo = s.str_("helo_name", None)
    pipelining = s.bool_("pipelining", True)
    s.finish()
    if graph:
        if auth is not Auth.OAUTH2:
            raise s.fail("auth", 'must be "oauth2" with transport = "graph" (Graph takes an'
                                 " app's token, never a password)")
        if not graph_url.startswith("https://"):
            raise s.fail("graph_url", f"{graph_url!r} must be an https:// URL")
        host, port = urlsplit(graph_url).hostname or "graph.microsoft.com", 443
    elif not host:
        raise s.fail("host", "is missing (the SMTP server's name)")
    if helo is not None:
        helo = helo.strip()
        if not HELO_NAME.match(helo):
            raise s.fail("helo_name", f"{helo!r} is not a fully qualified host name (like"
                         " \"server.waescherei.de\") nor an address literal (like \"[192.0.2.7]\")")
    if auth is Auth.PASSWORD:
        if not username:
            raise s.fail("username", "is missing (auth = \"password\" needs a user name)")
        if not password:
            missing_secret(s, "password", "is missing: store it with `tikos-outbox secret"
                                           " set`")
        elif not looks_like_token(password):
            raise s.fail("password", "must be the encrypted token that `tikos-outbox secret"
                                     " set` writes, never the password itself")
    if auth is Auth.OAUTH2:
        if not username:
            raise s.fail("username", "is missing (the mailbox that sends"
                                     + (", whose Graph sendMail is used)" if graph
                                        else ", for XOAUTH2)"))
        if not (tenant or token_url):
            raise s.fail("oauth2_tenant", "is missing (or give oauth2_token_url)")
        if not client_id:
            raise s.fail("oauth2_client_id", "is missing")
        if not client_secret:
            missing_secret(s, "oauth2_client_secret", "is missing: store it with"
                            " `tikos-outbox secret set client-secret`")
        elif not looks_like_token(client_secret):
            raise s.fail("oauth2_client_secret", "must be the encrypted token that"
                         " `tikos-outbox secret set client-secret` writes, never the secret")
        if token_url:
            try:
                check_token_url(token_url)
            except ValueError as exc:
                raise s.fail("oauth2_token_url", str(exc)) from None
    if ca_file is not None and not ca_file.is_file():
        raise s.fail("ca_file", f"no such file: {ca_file}")
    assert host is not None
    return SmtpSettings(host=host.strip(), port=port, security=security, verify_tls=verify,
                        ca_file=ca_file, auth=auth, username=username, password=password,
                        oauth2_tenant=tenant, oauth2_token_url=token_url,
                        oauth2_client_id=client_id, oauth2_client_secret=client_secret,
                        oauth2_scope=scope, timeout_s=timeout, max_per_minute=per_minute,
                        max_per_connection=per_conn, helo_name=helo, max_per_hour=per_hour,
                        max_per_day=per_day, max_recipients_per_day=rcpts_per_day,
                        transport=transport, graph_url=graph_url, pipelining=pipelining)


#: RFC 5321 §4.1.1.1: EHLO takes the client's fully qualified domain name or an
#: address literal.
HELO_NAME = re.compile(r"^(?:(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                       r"[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]|\[[0-9A-Fa-f:.]+\]|"
                       r"\[IPv6:[0-9A-Fa-f:.]+\])$")


