"""One mail transaction with PIPELINING (RFC 2920): MAIL FROM, every RCPT TO and
DATA go in one write and their answers are read in order; the message follows
only after DATA's 354. Over a provider 20 ms away that is two round trips a
mail instead of three plus one per recipient.

A transaction that must not go on after DATA was accepted anyway (no recipient
taken, or a recipient's answer that is about the session, like "slow down") is
ended by closing the connection before the message's final dot: a server
delivers nothing of a transaction whose connection was lost in DATA (RFC 5321
§4.1.1.4), where sending the dot would hand over an empty or partial mail.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Sequence

from tikos_outbox.core.replies import Reply, SendResult, Stage, stop_for
from tikos_outbox.smtp_login import lost_reply, reply_text

log = logging.getLogger("tikos_outbox.smtp")


def dot_stuffed(message: bytes) -> bytes:
    """The message as DATA carries it (RFC 5321 §4.5.2): a dot that begins a line is
    doubled, the last line ended, the final dot added. The same bytes as smtplib's
    `data()` sends, by `bytes.replace` instead of its multiline regular expression
    (0.15 against 0.65 ms for a mail with a 100 KB PDF: `python -m bench --only
    message`)."""
    body = message.replace(b"\n.", b"\n..")
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def data_refused(code: int, resp: bytes) -> Reply:
    """The answer to DATA when it was not 354 ("send the message"): nothing of the
    message went out. A refusal (4xx, 5xx) is the attempt's reply; anything else
    ("250 OK" to the command itself) is outside the protocol and must not count as
    delivered: it is taken as a lost connection (tried again later, the connection
    closed, as it is out of step)."""
    if 400 <= code < 600:
        return Reply(Stage.DATA, code, reply_text(resp))
    return Reply(Stage.DATA, None, f"the server answered DATA with \"{code} {reply_text(resp)}\""
                 " instead of 354; the message was not sent", lost=True)


#: said of a connection lost after the message's final dot: the server may have kept it
#: (RFC 5321 §6.1 has the client send it again; a second copy is the lesser harm)
MAY_HAVE_ARRIVED = ("after the whole message was sent, before the server confirmed it: it"
                    " may have arrived, and it is sent again (if the customer has it twice,"
                    " this is why)")


def send_data(conn: smtplib.SMTP, message: bytes) -> Reply:
    """The message after DATA's 354, and the server's answer to it (a connection lost
    while sending raises; lost while waiting for the answer is said as such)."""
    conn.send(dot_stuffed(message))
    try:
        code, resp = conn.getreply()
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        lost = lost_reply(Stage.DATA, exc)
        return Reply(Stage.DATA, None, f"{lost.text} {MAY_HAVE_ARRIVED}", lost=True)
    return Reply(Stage.DATA, code, reply_text(resp))


def offers_pipelining(conn: smtplib.SMTP) -> bool:
    return conn.has_extn("pipelining")


def positive(code: int) -> bool:
    """A 2yz answer: done. RFC 5321 §4.2.1 has the client act on the first digit, so an
    unusual one (252 to RCPT, 251 to MAIL) is taken as what it says, never as a
    refusal (that made the recipient "delivered" with no message sent)."""
    return 200 <= code < 300


def rcpt_outcome(rcpt: str, code: int, resp: bytes, accepted: list[str],
                 refused: dict[str, Reply]) -> Reply | None:
    """File one RCPT answer under accepted or refused; returns it when it is about
    the session (421, a throttle, the account), which decides no recipient's fate."""
    if positive(code):
        accepted.append(rcpt)
        return None
    reply = Reply(Stage.RCPT, code, reply_text(resp))
    if code == 421 or stop_for(reply) is not None:
        return reply
    refused[rcpt] = reply
    return None


def nobody_taken(refused: dict[str, Reply]) -> Reply:
    """The reply of a transaction no recipient was taken for: a temporary refusal
    first, so that the mail is tried again rather than given up."""
    replies = list(refused.values())
    transient = [r for r in replies if r.code is not None and r.code < 500]
    return (transient or replies)[0]


def pipelined(conn: smtplib.SMTP, server: str, sender: str, mail_options: Sequence[str],
              rcpts: Sequence[tuple[str, Sequence[str]]], message: bytes,
              refused: dict[str, Reply]) -> SendResult:
    """The transaction in one write; `refused` holds the recipients already refused
    here (never sent). Errors of the connection become a lost Reply; a 421 ends the
    reading at once (the server closes after it)."""
    conn.command_encoding = "utf-8" if "SMTPUTF8" in mail_options else "ascii"
    lines = [f"MAIL FROM:{smtplib.quoteaddr(sender)}{_opts(mail_options)}"]
    lines += [f"RCPT TO:{smtplib.quoteaddr(r)}{_opts(o)}" for r, o in rcpts]
    lines.append("DATA")
    stage = Stage.MAIL
    try:
        conn.send("".join(f"{line}\r\n" for line in lines))
        code, resp = conn.getreply()
        mail = Reply(Stage.MAIL, code, reply_text(resp))
        sender_ok = positive(code)
        if code == 421:
            return SendResult(mail)
        stage = Stage.RCPT
        accepted: list[str] = []
        session: Reply | None = None
        for rcpt, _ in rcpts:
            code, resp = conn.getreply()
            if code == 421:
                return SendResult(Reply(Stage.RCPT, code, reply_text(resp)))
            if sender_ok and session is None:
                session = rcpt_outcome(rcpt, code, resp, accepted, refused)
        stage = Stage.DATA
        code, resp = conn.getreply()
        if code != 354:
            if not sender_ok:
                return SendResult(mail)
            if session is not None:
                return SendResult(session)
            if not accepted:
                return SendResult(nobody_taken(refused), refused)
            return SendResult(data_refused(code, resp), refused, accepted)
        if not sender_ok or session is not None or not accepted:
            why = ("after refusing the sender" if not sender_ok else
                   f"after answering a recipient \"{session}\"" if session is not None
                   else "after refusing every recipient")
            log.warning("%s accepted DATA %s; closing the connection before the message"
                        " ends, so nothing is delivered", server, why)
            conn.close()
            if not sender_ok:
                return SendResult(mail)
            return SendResult(session) if session is not None else SendResult(
                nobody_taken(refused), refused)
        return SendResult(send_data(conn, message), refused, accepted)
    except (OSError, smtplib.SMTPServerDisconnected) as exc:  # smtplib's errors are
        return SendResult(lost_reply(stage, exc))  # OSErrors: a line too long, too


def _opts(options: Sequence[str]) -> str:
    return "".join(f" {o}" for o in options)
