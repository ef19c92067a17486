"""`check` and `test-mail`: everything that can be tried without mailing a customer."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from tikos_outbox.core.addresses import Address
from tikos_outbox.core.console import WebRole
from tikos_outbox.core.einvoice import Action
from tikos_outbox.core.message import (
    Mail,
    build_message,
    envelope,
    make_message_id,
    split_addresses,
)
from tikos_outbox.core.naming import is_ignored, is_xml_name, parse_name, share_hint
from tikos_outbox.core.pacing import account_of
from tikos_outbox.core.ports import (
    LookupUnavailable,
    MailboxUnavailable,
    SecretUnavailable,
    StoreError,
)
from tikos_outbox.core.replies import RunStopped, explain, explain_stop, stop_for
from tikos_outbox.core.settings import (
    Auth,
    Config,
    Mandant,
    RecipientSource,
    Security,
    Transport,
    is_loopback,
)
from tikos_outbox.credentials import KeyRing, insecure_permissions
from tikos_outbox.samples import make_pdf
from tikos_outbox.store import safe_url
from tikos_outbox.wiring import Outbox


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_checks(config: Config, opener: Callable[[Config], Outbox], smtp: bool = False,
               sql: bool = False) -> list[Check]:
    """Each check with ok/fail and a detail line. A bad config raised ConfigError before."""
    results = [Check("config", True, str(config.path)), *_key_checks(config)]
    outbox: Outbox | None = None
    url = config.outbox.database
    new_file = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    try:
        if new_file is not None and not new_file.exists():
            # check creates nothing: the login checks run on a database in memory
            outbox = opener(replace(config, outbox=replace(config.outbox, database="sqlite://")))
            results.append(Check("database", True, f"{new_file} does not exist yet: the first"
                                                   " scan or run creates it (check creates"
                                                   " nothing)"))
        else:
            outbox = opener(config)
            counts = outbox.store.queries.counts()
            results.append(Check("database", True, f"{safe_url(url)}"
                                                   f" ({sum(counts.values())} entries)"))
    except StoreError as exc:
        results.append(Check("database", False, str(exc)))
    results += _folder_checks(config)
    results += _setup_checks(config)
    if outbox is not None:
        results.append(_web_check(outbox))
        if smtp:
            results += _check_smtp(outbox)
        if sql:
            results.append(_check_sql(outbox))
        if smtp and config.bounces.enabled:
            results.append(_check_bounces(outbox))
    return results


def _key_checks(config: Config) -> list[Check]:
    key_file = config.outbox.key_file
    out: list[Check] = []
    try:
        ring = KeyRing(key_file)
        out.append(Check("key file", True, f"{key_file} ({len(ring.keys)} key(s))"))
        loose = insecure_permissions(key_file)
        if loose is not None:
            out.append(Check("key file permissions", False, loose))
        tokens: dict[str, str] = {}  # a mandant's own secret is checked as well
        for where, smtp in [("", config.smtp)] + [(f" of mandant {m.id}", m.smtp)
                                                  for m in config.mandants]:
            for label, token in (("SMTP password", smtp.password),
                                 ("OAuth2 client secret", smtp.oauth2_client_secret)):
                if token and token not in tokens.values():
                    tokens[label + where] = token
        if config.bounces.password:
            tokens["bounce mailbox password"] = config.bounces.password
        for label, token in tokens.items():
            ring.decrypt(token, f"the {label}")
            out.append(Check(label, True, "stored encrypted and readable with the key"))
    except SecretUnavailable as exc:
        out.append(Check("key file", False, str(exc)))
    return out


def _folder_checks(config: Config) -> list[Check]:
    out = []
    for m in config.mandants:
        name = f"mandant {m.id} folder"
        if not m.enabled:
            out.append(Check(name, True, f"{m.folder} (mandant disabled)"))
        elif not os.path.isdir(m.folder):
            out.append(Check(name, False, f"{m.folder} does not exist or is not a folder"
                                          + share_hint(str(m.folder), os.name == "nt")))
        elif not os.access(m.folder, os.R_OK | os.X_OK):
            out.append(Check(name, False, f"{m.folder} is not readable by this account"))
        else:
            out.append(Check(name, True, f"{m.folder} is readable"))
    return out


#: what `init` writes and an administrator must replace
EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net", "yourdomain")


def _setup_checks(config: Config) -> list[Check]:
    """What would make a document fail or go astray, found before the first run: the
    template's example values, a password without TLS, a pattern without the
    customer, doctypes without their own text, the address file."""
    out: list[Check] = []
    smtps = [("", config.smtp, config.sender)] + [
        (f"mandant {m.id} ", m.smtp, m.sender) for m in config.enabled_mandants]
    seen: set[tuple[str, str | None]] = set()
    for where, smtp, sender in smtps:
        for key, value in ((f"{where}[smtp] host", smtp.host),
                           (f"{where}[smtp] username", smtp.username),
                           (f"{where}[sender] address", sender.address),
                           (f"{where}[sender] reply_to", sender.reply_to)):
            example = value and any(value.lower().endswith(d) for d in EXAMPLE_DOMAINS)
            if not example or (key.split("] ")[-1], value) in seen:
                continue
            seen.add((key.split("] ")[-1], value))
            out.append(Check(key.strip(), False, f"{value} is still the example from `init`:"
                                                 " put in the laundry's own"))
        if (smtp.server, smtp.auth) in seen:
            continue
        seen.add((smtp.server, smtp.auth))
        if smtp.auth is Auth.PASSWORD and smtp.security is Security.NONE:
            out.append(Check(f"{where}[smtp] security".strip(), False,
                             f"the password would travel to {smtp.server} unencrypted"
                             " (security = \"none\"): use \"starttls\" (587) or \"ssl\" (465)"))
    for m in config.enabled_mandants:
        groups = set(m.pattern.groupindex)
        if "customer" not in groups:
            out.append(Check(f"mandant {m.id} pattern", False, "has no (?P<customer>…) group:"
                             " no document can be matched to its customer's address"))
    out += _template_checks(config)
    out += _einvoice_checks(config)
    out += _pair_checks(config)
    if config.recipients.csv is not None:
        out.append(_csv_check(config))
    return out


_DOCTYPES = re.compile(r"\(\?P<doctype>([A-Za-z0-9]+(?:\|[A-Za-z0-9]+)*)\)")


def _template_checks(config: Config) -> list[Check]:
    """The doctypes a pattern names literally (`(?P<doctype>RE|LS|GS)`) and which text
    each gets; one without its own template gets the general one, which is allowed
    and said here (ok) so that nobody is surprised by "Ihr Dokument …"."""
    out: list[Check] = []
    for m in config.enabled_mandants:
        found = _DOCTYPES.search(m.pattern.pattern)
        if found is None:
            continue
        names = sorted({d.upper() for d in found.group(1).split("|")})
        general = [d for d in names if d not in config.templates]
        detail = ", ".join(f"{d}: \"{config.template(d).subject}\"" for d in names)
        if general:
            detail += (f" ({', '.join(general)} without a [templates.…] of its own: the"
                       " general text)")
        out.append(Check(f"mandant {m.id} templates", True, detail))
    return out


def _einvoice_checks(config: Config) -> list[Check]:
    """The e-invoice rule in words, and invoice types no pattern can give."""
    rule = config.einvoice
    kinds = ", ".join(rule.doctypes)
    if rule.required_from is None:
        out = [Check("e-invoices", True, f"recognised and counted ({kinds}); nothing held or"
                     " flagged: set [einvoice] required_from (e.g. 2027-01-01) for the rule")]
    else:
        then = ("held until released" if rule.action is Action.HOLD
                else "sent, and listed in the daily report")
        out = [Check("e-invoices", True, f"from {rule.required_from:%d.%m.%Y}, {kinds} that"
                     f" are not a valid e-invoice are {then}")]
    for m in config.enabled_mandants:
        found = _DOCTYPES.search(m.pattern.pattern)
        names = {d.upper() for d in found.group(1).split("|")} if found else None
        missing = [d for d in rule.doctypes if names is not None and d not in names]
        if missing:
            out.append(Check(f"mandant {m.id} e-invoice doctypes", False,
                             f"[einvoice] doctypes names {', '.join(missing)}, which mandant"
                             f" {m.id}'s pattern never gives ({'|'.join(sorted(names or []))}):"
                             " those invoices would not be checked"))
    if config.recipients.source is RecipientSource.EINVOICE and not (
            config.recipients.sql_dsn or config.recipients.csv):
        out.append(Check("addresses", True, "only from the e-invoice (BT-49): a document"
                         " without one finds nobody and is listed for attention"))
    return out


def _web_check(outbox: Outbox) -> Check:
    """Where the console is served, and whether anyone can log in to it."""
    web = outbox.config.web
    users = outbox.users.all()
    admins = sum(1 for u in users if u.role is WebRole.ADMIN)
    who = f"{len(users)} user(s), {admins} admin(s)"
    if not web.enabled:
        return Check("web console", True, f"not inside run ([web] enabled = false); {who};"
                                          " `tikos-outbox web` serves it on its own")
    where = (f"{'https' if web.tls else 'http'}://{web.host}:{web.port}/ inside run"
             + ("" if web.tls or is_loopback(web.host) else ", WITHOUT TLS (allow_plain_http)"))
    if not users:
        return Check("web console", False, f"{where}, but no user may log in: tikos-outbox"
                                           " user add NAME --role admin")
    return Check("web console", True, f"{where}; {who}")


def _pair_checks(config: Config) -> list[Check]:
    """A pattern that takes both the PDF and the XML file TIKOS writes for one invoice
    (a ZUGFeRD PDF and an XRechnung) mails the invoice twice: each file is a
    document of its own. Found in the folder as it is now."""
    out: list[Check] = []
    for m in config.enabled_mandants:
        kinds: dict[tuple[str, str, str], dict[str, str]] = {}
        pairs: list[dict[str, str]] = []
        for path, dirs, names in os.walk(m.folder):
            dirs[:] = sorted(d for d in dirs if not is_ignored(d))
            for name in sorted(names):
                doc = parse_name(m.pattern, name)
                if doc is None or not doc.docno:
                    continue
                seen = kinds.setdefault((doc.doctype, doc.docno, doc.customer), {})
                kind = "xml" if is_xml_name(name) else "pdf"
                if kind not in seen:
                    seen[kind] = os.path.relpath(os.path.join(path, name), m.folder)
                    if len(seen) == 2:
                        pairs.append(seen)
        if pairs:
            more = f" (and {len(pairs) - 1} more)" if len(pairs) > 1 else ""
            out.append(Check(f"mandant {m.id} pattern", False,
                             f"takes both {pairs[0]['pdf']} and {pairs[0]['xml']}{more}: each"
                             " file is mailed as a document of its own, so the customer gets"
                             " the invoice twice; let the pattern take only the .pdf or only"
                             " the .xml files, unless TIKOS writes one file per invoice"))
    return out


def _csv_check(config: Config) -> Check:
    from tikos_outbox.lookup import CsvLookup

    path = config.recipients.csv
    assert path is not None
    try:
        rows = CsvLookup(path).rows()
    except LookupUnavailable as exc:
        return Check("address file", False, str(exc))
    return Check("address file", rows > 0, f"{path}: {rows} customer row(s)"
                 + ("" if rows else "; no customer has an address yet"))


def _check_smtp(outbox: Outbox) -> list[Check]:
    """Every distinct sending account (server and login) logs in, and offers MAIL FROM
    for each sender its mandants use (then RSET: nothing is sent)."""
    out: list[Check] = []
    accounts: dict[str, list[Mandant]] = {}
    for m in outbox.config.enabled_mandants or outbox.config.mandants[:1]:
        accounts.setdefault(account_of(m.smtp), []).append(m)
    for account, mandants in accounts.items():
        smtp = mandants[0].smtp
        name = f"SMTP {account} (mandant {', '.join(str(m.id) for m in mandants)})"
        try:
            with outbox.mailers(smtp) as mailer:
                mailer.open()
                greeting = mailer.last_greeting
                refused = []
                for sender in dict.fromkeys(_envelope_sender(outbox.config, m)
                                            for m in mandants):
                    reply = mailer.probe_sender(sender)
                    if reply.code != 250:
                        stop = stop_for(reply)
                        refused.append(explain(reply) if stop is None else
                                       explain_stop(stop, reply, smtp.username, sender))
            if refused:
                outbox.monitor.note_error(f"check --smtp: {refused[0]}")
                out.append(Check(name, False, "; ".join(refused)))
            else:
                senders = dict.fromkeys(_envelope_sender(outbox.config, m) for m in mandants)
                if smtp.transport is Transport.GRAPH:  # Graph has no MAIL FROM to ask
                    out.append(Check(name, True, f"{greeting}: the app's token was fetched;"
                                     " whether it may send as the mailbox shows when a mail"
                                     " goes: tikos-outbox test-mail ADDRESS"))
                    continue
                out.append(Check(name, True, f"connected ({smtp.security}), logged in"
                                             f" ({smtp.auth}) and may send as"
                                             f" {', '.join(senders)}; server {greeting}"))
        except RunStopped as exc:
            outbox.monitor.note_error(f"check --smtp: {explain(exc.reply)}")
            out.append(Check(name, False, explain(exc.reply)))
        except SecretUnavailable as exc:
            out.append(Check(name, False, str(exc)))
    return out


def _envelope_sender(config: Config, m: Mandant) -> str:
    """MAIL FROM as the send run gives it: [bounces] address, else the mandant's sender."""
    return Address(config.bounces.address or m.sender.address).envelope


def _check_bounces(outbox: Outbox) -> Check:
    """The bounce mailbox: TLS, login and the folder, read without touching a message."""
    s = outbox.config.bounces
    name = f"bounce mailbox {s.username} at {s.server}"
    try:
        with outbox.bounces.mailboxes(s) as box:
            waiting = len(box.uids_after(0))
    except (MailboxUnavailable, SecretUnavailable) as exc:
        return Check(name, False, str(exc))
    return Check(name, True, f"connected ({s.imap_security}), logged in ({s.auth}), folder"
                             f" {s.folder!r} holds {waiting} message(s); read bounces go to"
                             f" {s.processed_folder!r}")


def _check_sql(outbox: Outbox) -> Check:
    cfg = outbox.config
    if cfg.recipients.sql_dsn is None:
        return Check("address lookup", True, "no SQL query configured: the addresses come"
                                             " from the address file (see above)")
    m = next(iter(cfg.enabled_mandants), cfg.mandants[0])
    try:
        values = outbox.lookup.lookup(m.id, {"customer": "0", "docno": "0", "doctype": ""})
    except LookupUnavailable as exc:
        return Check("address lookup", False, str(exc))
    return Check("address lookup", True, f"query ran; {len(values)} row value(s) for customer 0")


def send_test_mail(outbox: Outbox, to: str) -> tuple[bool, str]:
    valid, _ = split_addresses([to])
    if len(valid) != 1:
        return False, f"'{to}' is not one valid e-mail address"
    cfg = outbox.config
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
        with outbox.mailers(cfg.smtp) as mailer:
            result = mailer.send(*envelope(mail), build_message(mail).as_bytes())
    except RunStopped as exc:
        return False, explain(exc.reply)
    except SecretUnavailable as exc:
        return False, str(exc)
    reply = result.reply
    if reply.code is not None and 200 <= reply.code < 300:
        return True, f"sent to {valid[0]} via {cfg.smtp.server}; the server said: {reply}"
    stop = stop_for(reply)  # a refusal of the sender or the session, not of `to`
    return False, (explain(reply) if stop is None
                   else explain_stop(stop, reply, cfg.smtp.username, cfg.sender.address))
