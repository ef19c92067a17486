"""What an SMTP server's answer means for an entry.

The SMTP adapter turns every answer, exception and lost connection into a
:class:`Reply`; this module alone decides what follows from it (RFC 5321
§4.2.1: 2yz done, 4yz transient, 5yz permanent; RFC 3463 enhanced codes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class Stage(StrEnum):
    CONNECT = "connect"  # TCP connect and greeting
    EHLO = "ehlo"  # the server refused our name in EHLO (and HELO)
    TLS = "tls"  # STARTTLS or the implicit TLS handshake
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


class Outcome(StrEnum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Reply:
    """One answer of the server, or what happened instead of one.

    `code` is None when there was no answer at all: the connection was lost,
    timed out or was refused (`lost` is then True).
    """

    stage: Stage
    code: int | None
    text: str
    lost: bool = False
    retry_after_s: float | None = None  # the server said when to try again (Graph 429)

    def __str__(self) -> str:
        return f"{self.code} {self.text}" if self.code is not None else self.text


_TOO_MANY_RECIPIENTS = re.compile(r"too many recipients|5\.5\.3", re.IGNORECASE)
# Microsoft: basic authentication switched off for SMTP AUTH in the tenant.
_BASIC_AUTH_OFF = re.compile(r"\b5\.7\.(?:30|3|139)\b")


def classify(reply: Reply) -> Outcome:
    """Delivered, transient or permanent: what this reply means for the entry."""
    if reply.code is None or reply.lost:
        return Outcome.TRANSIENT
    if 200 <= reply.code < 300:
        return Outcome.DELIVERED
    if 400 <= reply.code < 500:
        return Outcome.TRANSIENT
    if reply.code == 552 and _TOO_MANY_RECIPIENTS.search(reply.text):
        # RFC 5321 §4.5.3.1.10: old servers answer "too many recipients" with 552.
        return Outcome.TRANSIENT
    if 500 <= reply.code < 600:
        return Outcome.PERMANENT
    return Outcome.TRANSIENT  # a code outside the RFC: do not give up on it


class Stop(StrEnum):
    """A reply about the sending account, not about the message: the run stops for
    that account, and the entries in hand go back as they were (no attempt spent)."""

    THROTTLE = "throttle"  # "slow down": rate limit, too much mail, try again later
    QUOTA = "quota"  # the provider's own daily or hourly quota is used up
    BLOCKED = "blocked"  # the provider blocked the account for suspected outbound spam
    SESSION = "session"  # the session cannot send at all: sender refused, 421, EHLO


_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
#: an address the server echoes (`<no-spam@kunde.de>: User unknown`) says nothing
_ECHOED = re.compile(r"<[^<>]*>")
# Microsoft's submission system speaks for the mailbox, whatever the code says:
# "554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException" is
# the SENDER's mailbox (Sent Items) full, not the customer's.
_STOREDRV = re.compile(r"STOREDRV\.(?:Submission|ClientSubmit)", re.IGNORECASE)
# Unmistakably about the account, from the providers' own documented replies:
# Postfix anvil, IONOS, Strato, Microsoft, Google, cPanel/Exim hourly limits.
_CERTAIN = re.compile(
    r"too much mail from|Mail send limit exceeded|Transmit rate limit|thread limit"
    r"|OutboundSpam|bad outbound sender|\b5\.7\.70[58]\b|SubmissionQuotaExceeded"
    r"|QuotaExceededException|\b5\.4\.5\b|\b5\.7\.23[3-6]\b|max(?:imum)? (?:e-?mails|messages"
    r"|recipients|defers) per (?:hour|day)|STOREDRV|Microsoft Graph: too many requests",
    re.IGNORECASE)
# Rate limits and deferrals that mean "this account, not this mail".
_SLOW_DOWN = re.compile(
    r"too much mail|rate.?limit|limit exceeded|exceeded the .*limit|throttl|thread limit"
    r"|send(?:ing)? limit|too many (?:messages|mails|connections|sessions|concurrent)",
    re.IGNORECASE)
# …and weaker words that a greylisting or a content filter uses for one mail too:
# enough at MAIL, DATA or on connecting, not at RCPT.
_SLOW_DOWN_WEAK = re.compile(r"try again later|slow down|temporarily (?:deferred|rate)",
                             re.IGNORECASE)
# The provider's quota used up, answered with a 5yz: Google "550 5.4.5 Daily user
# sending limit exceeded", Microsoft "SubmissionQuotaExceededException", "5.7.233
# … tenant exceeded its daily limit", cPanel "has exceeded the max emails per hour".
_QUOTA = re.compile(
    r"\b5\.4\.5\b|Submission ?Quota|QuotaExceededException|sending (?:quota|limit)"
    r"|daily (?:user )?(?:sending )?(?:limit|quota)|daily limit for sending"
    r"|max(?:imum)? (?:e-?mails|messages|recipients|defers) per (?:hour|day)",
    re.IGNORECASE)
# Blocked for outbound spam: Microsoft "554 5.2.0 STOREDRV.Submission.Exception:
# OutboundSpamException", "550 5.1.8 Access denied, bad outbound sender", "5.7.708
# traffic not accepted from this IP", "5.7.705 tenant has exceeded threshold";
# anyone's "554 5.7.1 … spam" (a content filter's verdict on one mail says the same:
# see `certain`).
_BLOCKED = re.compile(r"OutboundSpam|bad outbound sender|\b5\.7\.70[58]\b|\bspam\b",
                      re.IGNORECASE)
# About the session, whatever command got the answer (Postfix rejects at RCPT
# what its sender and HELO restrictions found, smtpd_delay_reject): "Sender address
# rejected: not owned by user …", "Helo command rejected: need fully-qualified
# hostname", "Client host rejected"; Microsoft "5.7.60 … SendAsDenied"; a relay
# denied (the login did not take).
_SESSION_TEXT = re.compile(r"(?:Sender address|Helo command|Client host) rejected|not owned by"
                           r"|SendAsDenied|\b5\.7\.60\b|not (?:allowed|authori[sz]ed|permitted)"
                           r" to send as|Relay access denied|Unable to relay|relaying denied"
                           r"|not permitted to relay", re.IGNORECASE)
# Microsoft "550 5.2.251 Sender throttled due to continuous …": the mailbox rests
_THROTTLED = re.compile(r"\bthrottled\b", re.IGNORECASE)
_RECIPIENT_TEXT = re.compile(r"Recipient address rejected|greylist|mailbox (?:is )?full"
                             r"|mailbox quota|over quota|user unknown", re.IGNORECASE)
_HELO_TEXT = re.compile(r"Helo command rejected|\b(?:HELO|EHLO)\b", re.IGNORECASE)


def enhanced(reply: Reply) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code at the start of the reply text, if any."""
    m = _ENHANCED.match(reply.text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def _about_the_mail(ext: tuple[int, int, int] | None) -> bool:
    """Enhanced codes about one recipient or this message (RFC 3463): X.1.x addresses,
    X.2.1–X.2.4 mailboxes (full, disabled), X.3.4 too big, X.5.3 too many recipients.
    (Microsoft's X.2.0 STOREDRV is the submission system's, not a mailbox's.)"""
    if ext is None:
        return False
    _, subject, detail = ext
    return (subject == 1 or (subject == 2 and detail != 0) or (subject, detail) in {
        (3, 4), (5, 3)})


def stop_for(reply: Reply) -> Stop | None:
    """Whether this reply stops sending with the account (and how), or is about the
    message and its recipients (None)."""
    code = reply.code
    if code is None:
        return None  # a lost connection: the Mailer reconnects, or it is the mail's fate
    text = _ECHOED.sub("<>", reply.text)
    ext = enhanced(reply)
    if code >= 400 and _STOREDRV.search(text):
        if _BLOCKED.search(text):
            return Stop.BLOCKED
        if "SendAs" in text:
            return Stop.SESSION
        return Stop.QUOTA if "Quota" in text else Stop.THROTTLE
    if code >= 400 and (reply.stage is Stage.EHLO or _SESSION_TEXT.search(text)):
        return Stop.SESSION
    if 500 <= code < 600:
        if _BLOCKED.search(text):
            return Stop.BLOCKED
        if _THROTTLED.search(text):
            return Stop.THROTTLE
        if _QUOTA.search(text):
            return Stop.QUOTA
        if _about_the_mail(ext) or code == 552 or _RECIPIENT_TEXT.search(text):
            return None
        if reply.stage is Stage.MAIL:
            return Stop.SESSION  # the sender refused: the same for every mail of the run
        return None
    if 400 <= code < 500:
        if code != 421 and (_about_the_mail(ext) or _RECIPIENT_TEXT.search(text)):
            return None
        # a 4.7.x policy deferral at RCPT may be that recipient's alone (greylisting);
        # everywhere else, and with a rate-limit text anywhere, it is the account's
        at_rcpt = reply.stage is Stage.RCPT
        policy = ext is not None and ext[1] == 7 and not at_rcpt
        words = _SLOW_DOWN.search(text) or (not at_rcpt and _SLOW_DOWN_WEAK.search(text))
        if code in (421, 432, 450, 451, 452, 454) and (policy or words):
            return Stop.THROTTLE
        if code == 421 or reply.stage is Stage.MAIL:
            return Stop.SESSION  # the server ends the session, or defers every sender
    return None


def certain(reply: Reply) -> bool:
    """Whether a reply that `stop_for` takes as the account's cannot be one mail's own
    fate: said before any message was offered (connect, EHLO, login, MAIL FROM), or in
    a provider's documented words. Otherwise ("554 5.7.1 spam" from a content filter,
    "451 4.7.1 try again later" at DATA) the same reply to the same mail twice is that
    mail's fate, not the account's."""
    return (reply.stage in (Stage.CONNECT, Stage.EHLO, Stage.TLS, Stage.AUTH, Stage.MAIL)
            or bool(_CERTAIN.search(_ECHOED.sub("<>", reply.text))))


def closes_connection(reply: Reply) -> bool:
    """Whether the connection is unusable after this reply (421 or lost)."""
    return reply.lost or reply.code == 421


def basic_auth_disabled(reply: Reply) -> bool:
    """Whether a rejected password login means the provider turned basic auth off."""
    return reply.stage is Stage.AUTH and bool(_BASIC_AUTH_OFF.search(reply.text))


def explain(reply: Reply) -> str:
    """One line for an administrator: what failed, in the server's own words."""
    where = {
        Stage.CONNECT: "Could not connect to the SMTP server",
        Stage.EHLO: "The SMTP server refused this computer's name in EHLO",
        Stage.TLS: "TLS with the SMTP server failed",
        Stage.AUTH: "SMTP login rejected by the server",
        Stage.MAIL: "The server refused the sender",
        Stage.RCPT: "The server refused the recipient",
        Stage.DATA: "The server refused the message",
    }[reply.stage]
    if reply.text.startswith("Microsoft Graph"):
        where = "Sending through Microsoft Graph failed"
    line = f"{where}: {reply}"
    if basic_auth_disabled(reply):
        line += (
            " — basic authentication (user and password) is switched off for this"
            " mailbox's tenant; use auth = \"oauth2\" (see the README, section OAuth2)"
        )
    return line


@dataclass(frozen=True)
class SendResult:
    """What the server said to one message: the final reply, and per recipient."""

    reply: Reply
    refused: dict[str, Reply] = field(default_factory=dict)  # address -> its RCPT reply
    accepted: list[str] = field(default_factory=list)  # the server took these at RCPT


class RunStopped(Exception):
    """The run cannot go on: no connection, TLS failed, or the login was refused."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


def explain_stop(stop: Stop, reply: Reply, login: str | None, sender: str) -> str:
    """One line for an administrator on why sending with an account stopped, in the
    server's own words, and what to do."""
    if stop is Stop.THROTTLE:
        return (f"The server asked to slow down ({reply}); sending with this account"
                " pauses and resumes by itself, the documents were not counted as attempts")
    if stop is Stop.QUOTA:
        return (f"The provider's sending quota is used up ({reply}); sending with this"
                " account pauses and resumes by itself")
    if stop is Stop.BLOCKED:
        return (f"URGENT: the provider blocked this account for suspected spam ({reply});"
                " nothing was marked failed and nothing more is sent with it. Have the"
                " account unblocked at the provider (Microsoft 365: Defender portal, Email &"
                " collaboration, Restricted entities; others: the provider's support), then"
                " run `tikos-outbox flush`")
    if reply.stage is Stage.EHLO or _HELO_TEXT.search(reply.text):
        return (f"The server refuses the name this computer gives in EHLO ({reply}); set"
                " [smtp] helo_name to this server's fully qualified name (like"
                " \"fileserver.waescherei.de\")")
    if _SESSION_TEXT.search(reply.text) or (reply.stage is Stage.MAIL and reply.code == 553):
        who = f"user {login}" if login else "this connection"
        return (f"The server does not let {who} send as {sender} ({reply}); set [sender]"
                " address to an address this login may send as, or have the provider allow"
                " it. No document was marked failed")
    if reply.code == 421:
        return f"The server ended the session ({reply}); the documents stay due"
    return (f"The server refused the sender {sender} ({reply}); no document was marked"
            " failed")
