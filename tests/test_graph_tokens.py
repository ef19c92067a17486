"""One OAuth2 app, several audiences (#20): a token is cached per app and scope, so
Graph gets the token for Graph's scope, and XOAUTH2 over SMTP or the bounce
mailbox's IMAP login the one for Exchange Online's — also when [smtp] sends through
Graph. Against the stand-in's token endpoint (one token per scope) and Graph, which
takes only its own (tests/graph_server.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from tests.graph_server import GRAPH_SCOPE, OUTLOOK_SCOPE, graph_server
from tests.helpers import Cert, FakeClock, write_site
from tests.imap_server import imap_server
from tests.test_graph import MAILBOX, graph_site
from tests.test_oauth2 import oauth_server
from tikos_outbox.config import load_config
from tikos_outbox.mailers import Mailers
from tikos_outbox.provision import set_secret
from tikos_outbox.samples import make_pdf


def test_two_scopes_of_one_app_get_two_tokens(tmp_path: Path, cert: Cert) -> None:
    with graph_server(cert) as (base, state):
        config = load_config(graph_site(tmp_path, cert, base, 0).config)
        mailers = Mailers(config.outbox.key_file, FakeClock(datetime(2026, 12, 2, tzinfo=UTC)))
        graph = config.smtp
        outlook = replace(graph, oauth2_scope=OUTLOOK_SCOPE)
        assert graph.oauth2_scope == GRAPH_SCOPE  # the default with transport = "graph"
        assert mailers.tokens(graph)(False) == state.token
        assert mailers.tokens(outlook)(False) == state.outlook_token
        assert mailers.tokens(graph)(False) == state.token  # each from its own cache
        assert mailers.tokens(outlook)(False) == state.outlook_token
        assert state.scopes == [GRAPH_SCOPE, OUTLOOK_SCOPE]


def test_one_app_sends_over_xoauth2_smtp_for_one_mandant_and_graph_for_the_other(
        tmp_path: Path, cert: Cert) -> None:
    with graph_server(cert) as (base, state):
        srv, handler = oauth_server(cert, {state.outlook_token})
        app = {"oauth2_token_url": f"{base}/token", "oauth2_client_id": "app-1",
               "oauth2_client_secret": "gAAAAAplaceholder"}
        with srv:
            site = write_site(
                tmp_path, smtp={"port": srv.port, "security": "starttls",
                                "ca_file": str(cert.cert), "auth": "oauth2",
                                "username": MAILBOX, **app},
                watch={"baseline": False},
                mandants=[{"id": 1, "name": "Nord"}, {"id": 2, "name": "Süd"}],
                extra="[mandant.smtp]\ntransport = 'graph'\nauth = 'oauth2'\n"
                      f"username = '{MAILBOX}'\ngraph_url = '{base}/v1.0'\n"
                      f"ca_file = '{cert.cert}'\n"
                      + "".join(f"{k} = '{v}'\n" for k, v in app.items()))
            set_secret(site.config, "client-secret", "das Geheimnis der App")
            set_secret(site.config, "client-secret", "das Geheimnis der App", mandant=2)
            (site.mandant_folder(1) / "RE_1_4711.pdf").write_bytes(make_pdf(["Nord"]))
            (site.mandant_folder(2) / "RE_2_4711.pdf").write_bytes(make_pdf(["Süd"]))
            assert site.cli("scan") == 0 and site.cli("flush") == 0
            assert len(srv.received) == 1 and len(state.sent) == 1
        assert handler.seen == [(MAILBOX, f"Bearer {state.outlook_token}")]
        assert state.auth_headers == {f"Bearer {state.token}"}
        assert sorted(state.scopes) == sorted([GRAPH_SCOPE, OUTLOOK_SCOPE])


def test_the_bounce_mailbox_logs_in_with_exchange_onlines_token_when_smtp_is_graph(
        tmp_path: Path, cert: Cert) -> None:
    with graph_server(cert) as (base, state), \
            imap_server(cert, {state.outlook_token}) as (port, imap):
        site = graph_site(tmp_path, cert, base, 0, extra=(
            f"[bounces]\nimap_host = '127.0.0.1'\nimap_port = {port}\n"
            f"imap_security = 'ssl'\nca_file = '{cert.cert}'\nauth = 'oauth2'\n"
            f"username = '{MAILBOX}'\n"))
        assert site.cli("bounces") == 0
        assert imap.logins == [(MAILBOX, state.outlook_token, True)]
        assert state.scopes == [OUTLOOK_SCOPE]
