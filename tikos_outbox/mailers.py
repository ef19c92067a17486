"""The MailerFactory and the MailboxFactory: SMTP mailers and IMAP sessions with
their secrets decrypted only when one is made, and one OAuth2 token cache per app
and scope, shared by every run. A token is for one audience: Graph's is not taken
by Exchange Online's SMTP or IMAP, nor theirs by Graph. The bounce mailbox uses the
[smtp] OAuth2 app with Exchange Online's scope when [smtp] sends through Graph."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tikos_outbox.config_smtp import OUTLOOK_SCOPE
from tikos_outbox.core.ports import Clock, TokenSource
from tikos_outbox.core.settings import Auth, BounceSettings, SmtpSettings, Transport
from tikos_outbox.credentials import KeyRing, SecretText
from tikos_outbox.graph import GraphMailer
from tikos_outbox.imap import ImapMailbox
from tikos_outbox.oauth2 import token_source_for
from tikos_outbox.smtp import Mailer


class Mailers:
    def __init__(self, key_file: Path, clock: Clock,
                 token_source: TokenSource | None = None) -> None:
        self.key_file = key_file
        self.clock = clock
        self._keyring: KeyRing | None = None
        self._fixed_tokens = token_source
        self._tokens: dict[tuple[str, str | None, str], TokenSource] = {}

    @property
    def keyring(self) -> KeyRing:
        if self._keyring is None:
            self._keyring = KeyRing(self.key_file)
        return self._keyring

    def tokens(self, smtp: SmtpSettings) -> TokenSource:
        """The token cache of this app (token endpoint, client id) for this scope."""
        if self._fixed_tokens is not None:
            return self._fixed_tokens
        key = (smtp.oauth2_token_url or smtp.oauth2_tenant or "", smtp.oauth2_client_id,
               smtp.oauth2_scope)
        if key not in self._tokens:
            self._tokens[key] = token_source_for(smtp, self.keyring, self.clock)
        return self._tokens[key]

    def __call__(self, smtp: SmtpSettings) -> Mailer | GraphMailer:
        """A Mailer for these settings; raises KeyFileError (SecretUnavailable)."""
        if smtp.transport is Transport.GRAPH:
            return GraphMailer(smtp, self.tokens(smtp))
        password: SecretText | None = None
        if smtp.auth is Auth.PASSWORD and smtp.password:
            password = self.keyring.decrypt(smtp.password, "the SMTP password")
        tokens = self.tokens(smtp) if smtp.auth is Auth.OAUTH2 else None
        return Mailer(smtp, password=password, token_source=tokens)


class Mailboxes:
    """The bounce mailbox's sessions, with its password decrypted per session."""

    def __init__(self, mailers: Mailers, smtp: SmtpSettings) -> None:
        self.mailers = mailers
        self.smtp = smtp

    def __call__(self, settings: BounceSettings) -> ImapMailbox:
        password: SecretText | None = None
        if settings.auth is Auth.PASSWORD and settings.password:
            password = self.mailers.keyring.decrypt(settings.password,
                                                    "the bounce mailbox password")
        tokens = (self.mailers.tokens(mailbox_app(self.smtp)) if settings.auth is Auth.OAUTH2
                  else None)
        return ImapMailbox(settings, password=password, tokens=tokens)


def mailbox_app(smtp: SmtpSettings) -> SmtpSettings:
    """The [smtp] app as the bounce mailbox's IMAP login uses it: with [smtp]'s own
    scope for XOAUTH2 over SMTP (the same server's audience), with Exchange Online's
    when [smtp] sends through Graph (a Graph token does not open IMAP)."""
    if smtp.transport is Transport.GRAPH:
        return replace(smtp, oauth2_scope=OUTLOOK_SCOPE)
    return smtp
