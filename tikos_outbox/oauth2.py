"""OAuth2 client-credentials tokens for SMTP XOAUTH2 (Microsoft 365, Google).

A plain HTTPS POST with the standard library (RFC 6749 §4.4): no extra
dependency, and the same code for Microsoft's and any other token endpoint.
The token is cached and reused until shortly before it expires.
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request

from tikos_outbox.core.ports import Clock, TokenSource
from tikos_outbox.core.replies import Reply, RunStopped, Stage
from tikos_outbox.core.settings import SmtpSettings
from tikos_outbox.core.values import check_token_url
from tikos_outbox.credentials import KeyRing

MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
REFRESH_MARGIN_S = 120


def token_url(smtp: SmtpSettings) -> str:
    if smtp.oauth2_token_url:
        return smtp.oauth2_token_url
    return MICROSOFT_TOKEN_URL.format(tenant=urllib.parse.quote(smtp.oauth2_tenant or "", safe=""))


class TokenCache:
    """Fetches and caches an access token; thread-safe."""

    def __init__(self, url: str, client_id: str, client_secret: str, scope: str, clock: Clock,
                 timeout_s: float = 30, ca_file: str | None = None) -> None:
        check_token_url(url)
        self.url = url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.clock = clock
        self.timeout_s = timeout_s
        self.ca_file = ca_file
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.requests = 0

    def __call__(self, force: bool = False) -> str:
        with self._lock:
            now = self.clock.now().timestamp()
            if not force and self._token and now < self._expires_at - REFRESH_MARGIN_S:
                return self._token
            self._token, lifetime = self._fetch()
            self._expires_at = now + lifetime
            return self._token

    def _fetch(self) -> tuple[str, float]:
        body = urllib.parse.urlencode({
            "grant_type": "client_credentials", "client_id": self.client_id,
            "client_secret": self._secret, "scope": self.scope,
        }).encode("ascii")
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        ctx = ssl.create_default_context()
        if self.ca_file:
            ctx.load_verify_locations(cafile=self.ca_file)
        self.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=ctx) as resp:
                payload = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise RunStopped(Reply(Stage.AUTH, None,
                                   f"token endpoint refused: {_endpoint_error(exc)}")) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RunStopped(Reply(Stage.AUTH, None, f"token endpoint unreachable: {exc}",
                                   lost=True)) from None
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise RunStopped(Reply(Stage.AUTH, None, "token endpoint sent no access_token"))
        return token, float(payload.get("expires_in", 3600))


def _endpoint_error(exc: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(exc.read().decode("utf-8"))
        desc = data.get("error_description") or ""
        return f"HTTP {exc.code} {data.get('error', '')}: {desc.splitlines()[0] if desc else ''}"
    except (ValueError, AttributeError, OSError):
        return f"HTTP {exc.code} {exc.reason}"


def token_source_for(smtp: SmtpSettings, keyring: KeyRing, clock: Clock) -> TokenSource:
    secret = keyring.decrypt(smtp.oauth2_client_secret or "", "the OAuth2 client secret")
    return TokenCache(token_url(smtp), smtp.oauth2_client_id or "", secret, smtp.oauth2_scope,
                      clock, timeout_s=smtp.timeout_s,
                      ca_file=str(smtp.ca_file) if smtp.ca_file else None)
