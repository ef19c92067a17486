"""`check` and `test-mail`: everything that can be tried without mailing a customer."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

from tikos_outbox.core.message import Mail, build_message, make_message_id, split_addresses
from tikos_outbox.core.ports import LookupUnavailable
from tikos_outbox.core.replies import explain
from tikos_outbox.credentials import KeyFileError, KeyRing, insecure_permissions
from tikos_outbox.samples import make_pdf
from tikos_outbox.smtp import RunStopped

Result = tuple[str, bool, str]


def run_checks(app: Any, smtp: bool = False, sql: bool = False) -> list[Result]:
    """Each check with ok/fail and a detail line. A bad config raises ConfigError."""
    cfg = app.config
    results: list[Result] = [("config", True, str(cfg.path))]
    key_file = cfg.outbox.key_file
    try:
        ring = KeyRing(key_file)
        results.append(("key file", True, f"{key_file} ({len(ring.keys)} key(s))"))
        if insecure_permissions(key_file):
            results.append(("key file permissions", False,
                            f"{key_file} is readable by other users; run: chmod 600 {key_file}"))
        for label, token in (("SMTP password", cfg.smtp.password),
                             ("OAuth2 client secret", cfg.smtp.oauth2_client_secret)):
            if token:
                ring.decrypt(token, f"the {label}")
                results.append((label, True, "stored encrypted and readable with the key"))
    except KeyFileError as exc:
        results.append(("key file", False, str(exc)))
    try:
        counts = app.store.counts()
        results.append(("database", True, f"{_safe_url(cfg.outbox.database)}"
                                          f" ({sum(counts.values())} entries)"))
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        results.append(("database", False, str(exc)))
    for m in cfg.mandants:
        name = f"mandant {m.id} folder"
        if not m.enabled:
            results.append((name, True, f"{m.folder} (mandant disabled)"))
        elif not os.path.isdir(m.folder):
            results.append((name, False, f"{m.folder} does not exist or is not a folder"))
        elif not os.access(m.folder, os.R_OK | os.X_OK):
            results.append((name, False, f"{m.folder} is not readable by this account"))
        else:
            results.append((name, True, f"{m.folder} is readable"))
    if smtp:
        results.extend(_check_smtp(app))
    if sql:
        results.append(_check_sql(app))
    return results


def _check_smtp(app: Any) -> list[Result]:
    out: list[Result] = []
    seen: set[str] = set()
    svc = app.service()
    for m in app.config.mandants:
        if m.smtp.server in seen:
            continue
        seen.add(m.smtp.server)
        try:
            with svc.mailer(m.smtp) as mailer:
                mailer.open()
                greeting = mailer.last_greeting
            out.append((f"SMTP {m.smtp.server}", True,
                        f"connected ({m.smtp.security}) and logged in ({m.smtp.auth});"
                        f" server {greeting}"))
        except RunStopped as exc:
            svc.note_error(explain(exc.reply))
            out.append((f"SMTP {m.smtp.server}", False, explain(exc.reply)))
        except KeyFileError as exc:
            out.append((f"SMTP {m.smtp.server}", False, str(exc)))
    return out


def _check_sql(app: Any) -> Result:
    svc = app.service()
    m = next((m for m in app.config.mandants if m.enabled), app.config.mandants[0])
    try:
        values = svc.lookup.lookup(m.id, {"customer": "0", "docno": "0", "doctype": ""})
    except LookupUnavailable as exc:
        return ("address lookup", False, str(exc))
    return ("address lookup", True, f"query ran; {len(values)} row value(s) for customer 0")


def send_test_mail(app: Any, to: str) -> tuple[bool, str]:
    valid, _ = split_addresses([to])
    if len(valid) != 1:
        return False, f"'{to}' is not one valid e-mail address"
    cfg = app.config
    svc = app.service()
    now = datetime.now(UTC).astimezone(cfg.window.tz)
    mail = Mail(
        sender_address=cfg.sender.address, sender_name=cfg.sender.name,
        reply_to=cfg.sender.reply_to, to=(valid[0],), subject="tikos-outbox: Testnachricht",
        body="Dies ist eine Testnachricht von tikos-outbox.\n"
             "This is a test message from tikos-outbox.\n",
        filename="Test.pdf", pdf=make_pdf(["tikos-outbox", "Testdokument / test document"]),
        message_id=make_message_id(uuid.uuid4().hex, cfg.sender.address), date=now,
    )
    try:
        with svc.mailer(cfg.smtp) as mailer:
            result = mailer.send(cfg.sender.address, [valid[0]], build_message(mail).as_bytes())
    except RunStopped as exc:
        return False, explain(exc.reply)
    except KeyFileError as exc:
        return False, str(exc)
    reply = result.reply
    if reply.code is not None and 200 <= reply.code < 300:
        return True, f"sent to {valid[0]} via {cfg.smtp.server}; the server said: {reply}"
    return False, explain(reply)


def _safe_url(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "(unparseable URL)"
