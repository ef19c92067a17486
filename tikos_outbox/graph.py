"""The Mailer over Microsoft Graph (`[smtp] transport = "graph"`): the same MIME
message the SMTP path sends, posted to `sendMail` with the app's OAuth2 token
(client credentials, the token cache XOAUTH2 uses, for Graph's scope). No SMTP AUTH
is needed; the app needs the `Mail.Send` application permission, limited to the
sending mailbox.

A message whose base64 form is larger than one request may carry goes as a draft
(the MIME without its attachment), then the attachment — under 3 MB as one
fileAttachment POST, from 3 MB through an upload session (Graph refuses a session
for less) — then `send`. Every HTTP status is turned into a :class:`Reply` here, in
the classes the SMTP path has: 202 delivered to Microsoft (only the documented
success of each request counts: a redirect, never followed, or another 2xx is not
delivered); 429/503 with Retry-After the account's "slow down" (no attempt spent);
401/403/404 stop the run with what to fix in Entra ID; 400 for an address refuses
that recipient; 413 is too large. Sources: Microsoft Graph v1.0 reference, user:
sendMail, message: send, attachment: createUploadSession, and "Microsoft Graph
throttling guidance" (learn.microsoft.com).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import replace

from tikos_outbox.core.ports import TokenSource
from tikos_outbox.core.replies import Reply, RunStopped, SendResult, Stage
from tikos_outbox.core.settings import SmtpSettings
from tikos_outbox.graph_http import Answer, GraphHttp, Lost, quoted, where_to
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
        ctx = tls_context(settings.ca_file, settings.verify_tls, settings.server)
        self.http = GraphHttp(f"{settings.graph_url}/users/{quoted(self.mailbox)}", tokens,
                              ctx, settings.timeout_s)
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
                answer = self.http.call("sendMail", "POST", "sendMail", base64.b64encode(mime),
                                        "text/plain", ok=(202,))
            else:
                answer = self._send_large(mime)
        except Lost as exc:
            return SendResult(Reply(Stage.DATA, None, str(exc), lost=True))
        return self._result(answer, recipients)

    def _send_large(self, mime: bytes) -> Answer:
        """A draft from the MIME without its attachment, the attachment (in one POST, or
        by an upload session from 3 MB), then send: the first answer that is not its
        request's success ends it."""
        rest, name, ctype, data = split_attachment(mime)
        made = self.http.call("the draft", "POST", "messages", base64.b64encode(rest),
                              "text/plain", ok=(201,))
        if not made.ok:
            return made
        draft = _field(made.body, "id")
        if not draft:
            return replace(made, ok=False, what="the draft (its answer names no id)")
        path = f"messages/{quoted(draft)}"
        try:
            answer = replace(self._fill_and_send(path, name, ctype, data), in_draft=True)
        except (Lost, RunStopped):
            self._discard(path)
            raise
        if not answer.ok:
            self._discard(path)
        return answer

    def _fill_and_send(self, path: str, name: str, ctype: str, data: bytes) -> Answer:
        if len(data) < UPLOAD_MINIMUM:  # an upload session refuses it: one POST
            item: dict[str, object] = {
                "@odata.type": "#microsoft.graph.fileAttachment", "name": name,
                "contentType": ctype, "contentBytes": base64.b64encode(data).decode("ascii")}
            answer = self.http.call("the attachment", "POST", f"{path}/attachments",
                                    json.dumps(item).encode(), "application/json", ok=(201,))
        else:
            answer = self._upload(path, name, ctype, data)
        if not answer.ok:
            return answer
        return self.http.call("send of the draft", "POST", f"{path}/send", b"",
                              "application/json", ok=(202,))

    def _discard(self, path: str) -> None:
        """Best effort: the draft of a failed try is deleted, or each retry would leave
        one more copy of the invoice in the mailbox's Drafts."""
        try:
            answer = self.http.call("deleting the draft", "DELETE", path, None, None,
                                    ok=(204,))
        except (Lost, RunStopped) as exc:
            log.warning("the draft of a failed try stays in %s's Drafts folder: %s",
                        self.mailbox, exc)
            return
        if not answer.ok and answer.status != 404:  # 404: it is gone already
            log.warning("the draft of a failed try stays in %s's Drafts folder: deleting it"
                        " was answered %d", self.mailbox, answer.status)

    def _upload(self, path: str, name: str, ctype: str, data: bytes) -> Answer:
        """An attachment of 3 MB or more: an upload session, then its ranges (the upload
        URL carries its own authorisation: no token goes there)."""
        item = {"AttachmentItem": {"attachmentType": "file", "name": name, "size": len(data),
                                   "contentType": ctype}}
        answer = self.http.call("the upload session", "POST",
                                f"{path}/attachments/createUploadSession",
                                json.dumps(item).encode(), "application/json", ok=(201,))
        if not answer.ok:
            return answer
        upload_url = _field(answer.body, "uploadUrl")
        if not upload_url.startswith("https://"):
            return replace(answer, ok=False, what="the upload session (no https uploadUrl)")
        for start in range(0, len(data), CHUNK):
            chunk = data[start:start + CHUNK]
            answer = self.http.request(
                "the upload", "PUT", upload_url, chunk, "application/octet-stream",
                ok=(200, 201),
                extra={"Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{len(data)}"})
            if not answer.ok:
                break
        return answer

    def _result(self, answer: Answer, recipients: Sequence[str]) -> SendResult:
        status, what = answer.status, answer.what
        code, message = _error(answer.body)
        said = (f"{status} {code}: {message}" if code else f"{status} {message}").strip()
        said = said.rstrip(":")
        if answer.ok:
            return SendResult(Reply(Stage.DATA, 250, f"2.0.0 Microsoft Graph accepted it"
                                    f" ({status})"), accepted=list(recipients))
        if 300 <= status < 400:
            return SendResult(Reply(Stage.DATA, 451, f"4.4.0 not sent: {what} was answered"
                                    f" {status} with a redirect to"
                                    f" {where_to(answer.headers.get('location', ''))}, which"
                                    " is not followed (a proxy or a login portal between this"
                                    " server and Microsoft Graph?); tried again"))
        if 200 <= status < 300:
            return SendResult(Reply(Stage.DATA, 451, f"4.4.0 not sent: {what} was answered"
                                    f" {status}, not Microsoft Graph's documented success"
                                    f" ({said}); tried again"))
        if status in (429, 503, 509):
            wait = retry_after(answer.headers.get("retry-after"))
            return SendResult(Reply(Stage.DATA, 451, f"4.7.0 Microsoft Graph: too many requests"
                                    f" ({said}); Retry-After {wait:g} s",
                                    retry_after_s=wait))
        if status == 404 and answer.in_draft:  # Graph is eventually consistent
            return SendResult(Reply(Stage.DATA, 451, f"4.4.0 not sent: Microsoft Graph did"
                                    f" not find the draft it had just made ({what}: {said});"
                                    " tried again"))
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


def _field(body: bytes, name: str) -> str:
    """A string field of a JSON answer ("" when the answer has none)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return ""
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


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
