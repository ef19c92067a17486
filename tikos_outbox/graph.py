"""The Mailer over Microsoft Graph (`[smtp] transport = "graph"`): the same MIME
message the SMTP path sends, posted to `sendMail` with the app's OAuth2 token
(client credentials, the token cache XOAUTH2 uses). No SMTP AUTH is needed; the
app needs the `Mail.Send` application permission, limited to the sending mailbox.

A message whose base64 form is larger than one request may carry goes as a draft
(the MIME without its attachment), then the attachment — under 3 MB as one
fileAttachment POST, from 3 MB through an upload session (Graph refuses a session
for less) — then `send`. Every HTTP status is turned into a :class:`Reply` here, in the classes the
SMTP path has: 202 delivered to Microsoft; 429/503 with Retry-After the account's
"slow down" (no attempt spent); 401/403/404 stop the run with what to fix in Entra
ID; 400 for an address refuses that recipient; 413 is too large. Sources: Microsoft
Graph v1.0 reference, user: sendMail, message: send, attachment: createUploadSession,
and "Microsoft Graph throttling guidance" (learn.microsoft.com).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from tikos_outbox.core.ports import TokenSource
from tikos_outbox.core.replies import Reply, RunStopped, SendResult, Stage
from tikos_outbox.core.settings import SmtpSettings
from tikos_outbox.graph_mime import addressed, split_attachment
from tikos_outbox.tls import tls_context

log = logging.getLogger("tikos_outbox.graph")

#: Graph takes at most 4 MB per request; the base64 MIME stays below that
INLINE_LIMIT = 3 * 1024 * 1024
#: Graph refuses an upload session for an attachment under 3 MB
#: (ErrorAttachmentSizeShouldNotBeLessThanMinimumSize): smaller ones go in one POST
UPLOAD_MINIMUM = 3 * 1024 * 1024
#: an upload session takes chunks of a multiple of 320 KiB, below 60 MiB
CHUNK = 320 * 1024 * 10
#: Exchange Online's largest message
MAX_MESSAGE = 150 * 1024 * 1024
RETRY_AFTER_DEFAULT_S = 60.0

ENTRA_HINT = {
    401: ("the app's token was not accepted: check [smtp] oauth2_tenant, oauth2_client_id and"
          " the client secret (`tikos-outbox secret set client-secret`; a secret expires in"
          " Entra ID after its set lifetime), and that oauth2_scope is"
          " https://graph.microsoft.com/.default"),
    403: ("the app may not send as this mailbox: in Entra ID, App registrations, API"
          " permissions, add Microsoft Graph > Application permissions > Mail.Send and grant"
          " admin consent; if an application access policy (or RBAC for Applications)"
          " limits the app, the mailbox must be in its group"),
    404: ("the mailbox does not exist in this tenant: [smtp] username must be the sending"
          " mailbox's address (a user or shared mailbox with an Exchange Online licence)"),
}


class GraphMailer:
    """One sending mailbox over Microsoft Graph (the Mailer protocol)."""

    def __init__(self, settings: SmtpSettings, tokens: TokenSource) -> None:
        self.settings = settings
        self.tokens = tokens
        self.mailbox = settings.username or ""
        self._ctx = tls_context(settings.ca_file, settings.verify_tls, settings.server)
        self._greeting = ""

    @property
    def server(self) -> str:
        return self.settings.server

    @property
    def last_greeting(self) -> str:
        return self._greeting

    def __enter__(self) -> GraphMailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass  # nothing is held open between requests

    def open(self) -> str:
        """Fetch the app's token (raises RunStopped with the token endpoint's words)."""
        self.tokens(False)
        self._greeting = f"Microsoft Graph, mailbox {self.mailbox}"
        return self._greeting

    def accepts_8bit(self) -> bool:
        return True  # the MIME goes base64-encoded: any byte is fine

    def probe_sender(self, sender: str) -> Reply:
        """Graph has no MAIL FROM to ask: the token is fetched, the mailbox answers
        when a mail is sent (`tikos-outbox test-mail`)."""
        self.open()
        return Reply(Stage.MAIL, 250, f"2.1.0 token for the app fetched; Microsoft Graph checks"
                                      f" {sender} as it sends (tikos-outbox test-mail)")

    # -- sending ----------------------------------------------------------------------------

    def send(self, sender: str, recipients: Sequence[str], message: bytes,
             smtputf8: bool = False, envid: str | None = None) -> SendResult:
        """Hand one message to Microsoft; raises RunStopped when the app or the mailbox
        is not set up (401, 403, 404) or no token can be had."""
        mime = addressed(message, recipients)
        if len(mime) > MAX_MESSAGE:
            return SendResult(Reply(Stage.DATA, 552, f"5.3.4 the message ({_mb(len(mime))})"
                                    " is larger than Exchange Online takes (150 MB)"))
        try:
            if 4 * math.ceil(len(mime) / 3) <= INLINE_LIMIT:
                status, body, headers = self._call(
                    "POST", "sendMail", base64.b64encode(mime), "text/plain")
            else:
                status, body, headers = self._send_large(mime)
        except _Lost as exc:
            return SendResult(Reply(Stage.DATA, None, str(exc), lost=True))
        return self._result(status, body, headers, recipients)

    def _send_large(self, mime: bytes) -> tuple[int, bytes, dict[str, str]]:
        """A draft from the MIME without its attachment, the attachment (in one POST, or
        by an upload session from 3 MB), then send: the first reply that is not a
        success ends it."""
        rest, name, ctype, data = split_attachment(mime)
        status, body, headers = self._call("POST", "messages", base64.b64encode(rest),
                                           "text/plain")
        if status // 100 != 2:
            return status, body, headers
        draft = str(json.loads(body).get("id", ""))
        if len(data) < UPLOAD_MINIMUM:  # an upload session refuses it: one POST
            item: dict[str, object] = {
                "@odata.type": "#microsoft.graph.fileAttachment", "name": name,
                "contentType": ctype, "contentBytes": base64.b64encode(data).decode("ascii")}
            status, body, headers = self._call("POST", f"messages/{_q(draft)}/attachments",
                                               json.dumps(item).encode(), "application/json")
        else:
            status, body, headers = self._upload(draft, name, ctype, data)
        if status // 100 != 2:
            return status, body, headers
        return self._call("POST", f"messages/{_q(draft)}/send", b"", "application/json")

    def _upload(self, draft: str, name: str, ctype: str, data: bytes
                ) -> tuple[int, bytes, dict[str, str]]:
        """An attachment of 3 MB or more: an upload session, then its ranges."""
        item = {"AttachmentItem": {"attachmentType": "file", "name": name, "size": len(data),
                                   "contentType": ctype}}
        status, body, headers = self._call(
            "POST", f"messages/{_q(draft)}/attachments/createUploadSession",
            json.dumps(item).encode(), "application/json")
        if status // 100 != 2:
            return status, body, headers
        upload_url = str(json.loads(body).get("uploadUrl", ""))
        for start in range(0, len(data), CHUNK):
            chunk = data[start:start + CHUNK]
            status, body, headers = self._request(
                "PUT", upload_url, chunk, "application/octet-stream", token=False,
                extra={"Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{len(data)}"})
            if status // 100 != 2:
                break
        return status, body, headers

    def _call(self, method: str, path: str, data: bytes, ctype: str
              ) -> tuple[int, bytes, dict[str, str]]:
        url = f"{self.settings.graph_url}/users/{_q(self.mailbox)}/{path}"
        status, body, headers = self._request(method, url, data, ctype)
        if status == 401:  # the token may have just expired: once with a fresh one
            status, body, headers = self._request(method, url, data, ctype, force=True)
        return status, body, headers

    def _request(self, method: str, url: str, data: bytes, ctype: str, token: bool = True,
                 force: bool = False, extra: dict[str, str] | None = None
                 ) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Content-Type": ctype, **(extra or {})}
        if token:
            headers["Authorization"] = f"Bearer {self.tokens(force)}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.settings.timeout_s,
                                        context=self._ctx) as resp:
                return resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as exc:
            body = exc.read() if exc.fp is not None else b""
            return exc.code, body, {k.lower(): v for k, v in exc.headers.items()}
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Lost(f"Microsoft Graph could not be reached ({reason}); the mail may or"
                        " may not have gone, it is tried again") from None

    def _result(self, status: int, body: bytes, headers: dict[str, str],
                recipients: Sequence[str]) -> SendResult:
        code, message = _error(body)
        said = f"{status} {code}: {message}".strip().rstrip(":")
        if status // 100 == 2:
            return SendResult(Reply(Stage.DATA, 250, f"2.0.0 Microsoft Graph accepted it"
                                    f" ({status})"), accepted=list(recipients))
        if status in (429, 503, 509):
            wait = retry_after(headers.get("retry-after"))
            return SendResult(Reply(Stage.DATA, 451, f"4.7.0 Microsoft Graph: too many requests"
                                    f" ({said}); Retry-After {wait:g} s",
                                    retry_after_s=wait))
        if status in ENTRA_HINT:
            raise RunStopped(Reply(Stage.AUTH, 535 if status == 401 else 550,
                                   f"Microsoft Graph refused ({said}): {ENTRA_HINT[status]}"))
        if status == 413:
            return SendResult(Reply(Stage.DATA, 552, f"5.3.4 Microsoft Graph: the message is"
                                    f" too large ({said})"))
        if status == 400 and re.search(r"recipient|address|smtp", f"{code} {message}", re.I):
            refusal = Reply(Stage.RCPT, 550, f"5.1.3 Microsoft Graph refused the address"
                                             f" ({said})")
            named = {a: refusal for a in recipients if a.lower() in message.lower()}
            refused = named or {a: refusal for a in recipients}
            if len(refused) == len(recipients):
                return SendResult(refusal, refused=refused)
            return SendResult(Reply(Stage.DATA, 451, "4.5.3 not sent: Microsoft Graph refused"
                                    " another recipient of it"), refused=refused)
        if 400 <= status < 500:
            return SendResult(Reply(Stage.DATA, 554, f"5.6.0 Microsoft Graph refused the"
                                    f" message ({said})"))
        return SendResult(Reply(Stage.DATA, 451, f"4.3.0 Microsoft Graph failed ({said})"))


class _Lost(Exception):
    """No HTTP answer at all."""


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="@")


def _mb(n: int) -> str:
    return f"{n / 1048576:.1f} MB"


def _error(body: bytes) -> tuple[str, str]:
    """Graph's {"error": {"code", "message"}}, or the start of the body."""
    try:
        err = json.loads(body.decode("utf-8")).get("error") or {}
        return str(err.get("code", "")), " ".join(str(err.get("message", "")).split())[:300]
    except (ValueError, AttributeError):
        return "", " ".join(body[:200].decode("utf-8", "replace").split())


def retry_after(value: str | None) -> float:
    """Retry-After in seconds (Graph sends a number); a date or nothing: one minute."""
    try:
        return max(1.0, min(float(value or ""), 3600.0))
    except ValueError:
        return RETRY_AFTER_DEFAULT_S
