"""HTTP for the Graph mailer: one request at a time with the standard library, the
app's token on the requests to Graph (fetched anew once when Graph answers 401),
and never a redirect followed. urllib by itself follows a 301/302/303 on a POST as
a GET and keeps the Authorization header, so a proxy's or a login portal's page
would count as "accepted" and get the token; here a redirect is an answer like
any other, and each request names the statuses that are its success."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import IO

from tikos_outbox.core.ports import TokenSource


@dataclass(frozen=True)
class Answer:
    """What one request got back; `ok` when the status is one its reference names
    as the success (Graph's 202 for sendMail, not any 2xx)."""

    what: str  # the request, for the words: "sendMail", "send of the draft", …
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    ok: bool = False
    in_draft: bool = False  # made on a draft this attempt created


class Lost(Exception):
    """No HTTP answer at all."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect comes back as the HTTPError it is, never followed."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int,
                         msg: str, headers: Message, newurl: str) -> None:
        return None


class GraphHttp:
    """Requests to one mailbox's Graph URLs (and to an upload session's own URL)."""

    def __init__(self, base_url: str, tokens: TokenSource, ctx: ssl.SSLContext,
                 timeout_s: float) -> None:
        self.base_url = base_url
        self.tokens = tokens
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ctx),
            _NoRedirects())

    def call(self, what: str, method: str, path: str, data: bytes | None, ctype: str | None,
             ok: tuple[int, ...]) -> Answer:
        """A request to `{base_url}/{path}` with the token; on 401 once more with a
        fresh one (it may have just expired). Raises Lost, or RunStopped when no token
        can be had."""
        url = f"{self.base_url}/{path}"
        answer = self.request(what, method, url, data, ctype, ok, token=True)
        if answer.status == 401:
            answer = self.request(what, method, url, data, ctype, ok, token=True, force=True)
        return answer

    def request(self, what: str, method: str, url: str, data: bytes | None,
                ctype: str | None, ok: tuple[int, ...], token: bool = False,
                force: bool = False, extra: Mapping[str, str] | None = None) -> Answer:
        headers = dict(extra or {})
        if ctype is not None:
            headers["Content-Type"] = ctype
        if token:
            headers["Authorization"] = f"Bearer {self.tokens(force)}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                status, body, got = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            status, got = exc.code, exc.headers
            body = exc.read() if exc.fp is not None else b""
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Lost(f"Microsoft Graph could not be reached ({reason}); the mail may or"
                       " may not have gone, it is tried again") from None
        return Answer(what, status, body, {k.lower(): v for k, v in got.items()},
                      ok=status in ok)


def quoted(part: str) -> str:
    """One path segment of a Graph URL (a mailbox's address, a message id)."""
    return urllib.parse.quote(part, safe="@")


def where_to(location: str) -> str:
    """A redirect's target for the words, without its query (it may carry anything)."""
    parts = urllib.parse.urlsplit(location)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) or "?"
