"""The line that says what to do about an entry that will not reach the customer
without an administrator's move, for the office in its language (`[outbox]
language`: German by default, English when configured).

What is stored is the kind of problem and its facts (a small JSON object), not the
sentence: the line is written when it is read, in the language of the config that
reads it, with the entry's number. A line stored as plain text (before this form)
is shown as it is."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum

from tikos_outbox.core.recipients import DState, Recipient, Role


class Language(StrEnum):
    DE = "de"
    EN = "en"


Facts = Mapping[str, object]

#: the start of the reason a document without an address is skipped with
NO_ADDRESS_REASON = "no e-mail address found for customer"


def _store(kind: str, **facts: object) -> str:
    return json.dumps({"kind": kind, **facts}, ensure_ascii=False, sort_keys=True)


def no_address(customer: str, rejected: Sequence[str]) -> str:
    return _store("no_address", customer=customer, rejected=list(rejected))


def held(reason: str, needs_force: bool = False) -> str:
    return _store("held", reason=reason, force=needs_force)


def failed(customer: str, reason: str) -> str:
    return _store("failed", customer=customer, reason=reason)


def unsendable(customer: str, reason: str) -> str:
    """The document itself could not be sent (its copy is gone, it is empty)."""
    return _store("unsendable", customer=customer, reason=reason)


def partly_refused(customer: str, recipients: Sequence[Recipient]) -> str | None:
    """For a sent entry: the customer's addresses the server refused, if any."""
    refused = [[r.address, r.reply or ""] for r in recipients
               if r.role is Role.TO and r.state is DState.REFUSED]
    return _store("partly_refused", customer=customer, refused=refused) if refused else None


def bounced(customer: str, bounces: Sequence[tuple[str, str]], everyone: bool,
            refused: Sequence[tuple[str, str]] = ()) -> str:
    """Addresses whose mailbox sent the mail back after the server had accepted it
    (`everyone`: no customer address got it), and any the server refused outright."""
    return _store("bounced", customer=customer, bounced=[list(b) for b in bounces],
                  everyone=everyone, refused=[list(r) for r in refused])


def after_send(customer: str, recipients: Sequence[Recipient]) -> str | None:
    """For an entry that went out: what its customer addresses need, if anything — the
    bounced ones (reported back later) and the refused ones (at once), in one line."""
    to = [r for r in recipients if r.role is Role.TO]
    gone = [(r.address, r.reply or "") for r in to if r.state is DState.BOUNCED]
    if not gone:
        return partly_refused(customer, recipients)
    refused = [(r.address, r.reply or "") for r in to if r.state is DState.REFUSED]
    return bounced(customer, gone, not any(r.state is DState.DELIVERED for r in to), refused)


def einvoice_held(customer: str, docno: str, since: str, why: Facts,
                  sent_as: int | None = None) -> str:
    """An invoice held because it is not a valid e-invoice (`[einvoice] action = "hold"`);
    `sent_as`: the entry an earlier version of it went out as (this one is changed)."""
    if sent_as is not None:
        return _store("einvoice_changed", customer=customer, docno=docno, since=since,
                      sent_as=sent_as, **why)
    return _store("einvoice", customer=customer, docno=docno, since=since, **why)


def einvoice_sent(customer: str, docno: str, since: str, why: Facts) -> str:
    """A notice: the invoice goes out, but it is not a valid e-invoice."""
    return _store("einvoice_sent", customer=customer, docno=docno, since=since, **why)


def buyer_mismatch(customer: str, docno: str, buyer: str, found: Sequence[str],
                   used: str) -> str:
    """A notice: the e-invoice names another buyer address (BT-49) than the lookup."""
    return _store("buyer_mismatch", customer=customer, docno=docno, buyer=buyer,
                  found=list(found), used=used)


def _cmd(verb: str, entry_id: int) -> str:
    return f"`tikos-outbox {verb} {entry_id}`"


def _quoted(values: object) -> str:
    items = [str(v) for v in values] if isinstance(values, list) else []
    return f" ({', '.join(f'`{v}`' for v in items)})" if items else ""


def _joined(values: object) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, list) else ""


def _pairs(values: object, word: str) -> str:
    items = values if isinstance(values, list) else []
    return "; ".join(f"{p[0]} {word}: {p[1]}" for p in items
                     if isinstance(p, list) and len(p) == 2)


Writer = Callable[[Facts, int], str]

def _in(f: Facts, file_words: str) -> str:
    """Where the office corrects an address: TIKOS, or the address file by name."""
    source = str(f.get("source", "TIKOS"))
    return f"{file_words} {source}" if source != "TIKOS" else "TIKOS"


def _also(f: Facts, word: str) -> str:
    refused = _pairs(f.get("refused"), word)
    return f"; {refused}" if refused else ""


def _de(f: Facts) -> str:
    return _in(f, "der Adressdatei")


def _day(f: Facts) -> str:
    y, m, d = [*str(f.get("since", "")).split("-"), "", "", ""][:3]
    return f"{d}.{m}.{y}" if d else str(f.get("since", ""))


_WHY_DE = {"plain": "nur PDF, ohne E-Rechnungsdaten (kein ZUGFeRD, keine XRechnung)",
           "profile": "{profile} ist keine E-Rechnung nach EN 16931",
           "schema": "{profile}, aber das XML besteht die Schemaprüfung nicht: {detail}",
           "unreadable": "{profile}, aber das XML ist nicht lesbar: {detail}"}
_WHY_EN = {"plain": "a PDF only, without e-invoice data (no ZUGFeRD, no XRechnung)",
           "profile": "{profile} is no e-invoice after EN 16931",
           "schema": "{profile}, but its XML fails the schema check: {detail}",
           "unreadable": "{profile}, but its XML cannot be read: {detail}"}


def _why(f: Facts, words: dict[str, str]) -> str:
    text = words.get(str(f.get("why")), words["profile"])
    return text.format(profile=f.get("profile", "?"), detail=f.get("detail", ""))


def _en(f: Facts) -> str:
    return _in(f, "the address file")


_DE: dict[str, Writer] = {
    "no_address": lambda f, n: (
        f"Kunde {f['customer']}: keine gültige E-Mail-Adresse{_quoted(f.get('rejected'))}"
        f" — in {_de(f)} eintragen oder korrigieren, dann {_cmd('requeue', n)}"),
    "held": lambda f, n: (
        f"angehalten: {f['reason']} — prüfen, dann"
        f" {_cmd('release --force' if f.get('force') else 'release', n)} (oder so lassen)"),
    "failed": lambda f, n: (
        f"Kunde {f['customer']}: nicht zugestellt: {f['reason']} — Adresse in {_de(f)} prüfen,"
        f" dann {_cmd('requeue', n)}"),
    "unsendable": lambda f, n: (
        f"Kunde {f['customer']}: nicht versendet: {f['reason']} — die Datei im Archiv"
        f" prüfen (oder neu erzeugen), dann {_cmd('requeue', n)}"),
    "partly_refused": lambda f, n: (
        f"Kunde {f['customer']}: {_pairs(f.get('refused'), 'abgelehnt')} — in {_de(f)}"
        f" korrigieren, dann {_cmd('requeue', n)} (die anderen Adressen haben es schon)"),
    "bounced": lambda f, n: (
        f"Kunde {f['customer']}: {_pairs(f.get('bounced'), 'unzustellbar')}"
        f"{_also(f, 'abgelehnt')} — Adresse von"
        f" Kunde {f['customer']} prüfen (beim Kunden erfragen), in {_de(f)} korrigieren, dann"
        f" {_cmd('requeue', n)}"
        + ("" if f.get("everyone") else " (die anderen Adressen haben es bekommen)")),
    "einvoice": lambda f, n: (
        f"Rechnung {f['docno']}, Kunde {f['customer']}: keine gültige E-Rechnung"
        f" ({_why(f, _WHY_DE)}), ab {_day(f)} Pflicht — in TIKOS als E-Rechnung (ZUGFeRD"
        " ab Profil BASIC oder XRechnung) neu erzeugen: die neue Datei geht von selbst"
        f" hinaus; oder {_cmd('release', n)}, um sie trotzdem so zu senden"),
    "einvoice_changed": lambda f, n: (
        f"Rechnung {f['docno']}, Kunde {f['customer']}: geändert, nachdem sie als Eintrag"
        f" {f['sent_as']} versendet wurde, und keine gültige E-Rechnung ({_why(f, _WHY_DE)}),"
        f" ab {_day(f)} Pflicht — in TIKOS als E-Rechnung neu erzeugen und die neue Datei"
        f" freigeben; oder {_cmd('release', n)}, um diese Fassung trotzdem zu senden (der"
        " Kunde bekommt die Rechnung dann ein zweites Mal)"),
    "einvoice_sent": lambda f, n: (
        f"Rechnung {f['docno']}, Kunde {f['customer']}: als keine gültige E-Rechnung"
        f" versendet ({_why(f, _WHY_DE)}), ab {_day(f)} Pflicht — in TIKOS als E-Rechnung"
        " neu erzeugen; die neue Datei wartet dann als geänderte Fassung auf"
        " `tikos-outbox release`"),
    "buyer_mismatch": lambda f, n: (
        f"Dokument {f['docno']}, Kunde {f['customer']}: die E-Rechnung nennt"
        f" {f['buyer']} als Adresse des Käufers (BT-49), {_de(f)} hat"
        f" {_joined(f.get('found')) or 'keine'}; gesendet an {f['used']}"
        f" — die Adresse in {_de(f)} oder in der Rechnung berichtigen"),
}

_EN: dict[str, Writer] = {
    "no_address": lambda f, n: (
        f"customer {f['customer']}: no valid e-mail address{_quoted(f.get('rejected'))}"
        f" — enter or correct it in {_en(f)}, then {_cmd('requeue', n)}"),
    "held": lambda f, n: (
        f"held: {f['reason']} — check, then"
        f" {_cmd('release --force' if f.get('force') else 'release', n)} (or leave it)"),
    "failed": lambda f, n: (
        f"customer {f['customer']}: not delivered: {f['reason']} — check the address in"
        f" {_en(f)}, then {_cmd('requeue', n)}"),
    "unsendable": lambda f, n: (
        f"customer {f['customer']}: not sent: {f['reason']} — check the file in the"
        f" archive (or create it again), then {_cmd('requeue', n)}"),
    "partly_refused": lambda f, n: (
        f"customer {f['customer']}: {_pairs(f.get('refused'), 'refused')} — correct it in"
        f" {_en(f)}, then {_cmd('requeue', n)} (the other addresses have it)"),
    "bounced": lambda f, n: (
        f"customer {f['customer']}: {_pairs(f.get('bounced'), 'undeliverable')}"
        f"{_also(f, 'refused')} — check"
        f" customer {f['customer']}'s address (ask the customer), correct it in {_en(f)},"
        f" then {_cmd('requeue', n)}"
        + ("" if f.get("everyone") else " (the other addresses got it)")),
    "einvoice": lambda f, n: (
        f"invoice {f['docno']}, customer {f['customer']}: not a valid e-invoice"
        f" ({_why(f, _WHY_EN)}), required from {f.get('since')} — create it again in TIKOS"
        " as an e-invoice (ZUGFeRD from profile BASIC, or XRechnung): the new file goes"
        f" out by itself; or {_cmd('release', n)} to send it as it is"),
    "einvoice_changed": lambda f, n: (
        f"invoice {f['docno']}, customer {f['customer']}: changed after it was sent as entry"
        f" {f['sent_as']}, and not a valid e-invoice ({_why(f, _WHY_EN)}), required from"
        f" {f.get('since')} — create it again in TIKOS as an e-invoice and release the new"
        f" file; or {_cmd('release', n)} to send this version anyway (the customer then"
        " gets the invoice a second time)"),
    "einvoice_sent": lambda f, n: (
        f"invoice {f['docno']}, customer {f['customer']}: sent, but not a valid e-invoice"
        f" ({_why(f, _WHY_EN)}), required from {f.get('since')} — create it again in TIKOS"
        " as an e-invoice; the new file then waits as a changed version for"
        " `tikos-outbox release`"),
    "buyer_mismatch": lambda f, n: (
        f"document {f['docno']}, customer {f['customer']}: the e-invoice names"
        f" {f['buyer']} as the buyer's address (BT-49), {_en(f)} has"
        f" {_joined(f.get('found')) or 'none'}; sent to {f['used']}"
        f" — correct the address in {_en(f)} or in the invoice"),
}

WRITERS: dict[Language, dict[str, Writer]] = {Language.DE: _DE, Language.EN: _EN}


def for_entry(stored: str | None, entry_id: int, language: Language = Language.DE,
              source: str = "TIKOS") -> str | None:
    """The line for the office, from what was stored; `source` is where the office
    corrects an address (TIKOS, or the name of the address file)."""
    if not stored:
        return None
    try:
        facts = json.loads(stored)
    except ValueError:
        facts = None
    if not isinstance(facts, dict):
        return stored.replace("{id}", str(entry_id))  # a line stored as text
    writer = WRITERS[language].get(str(facts.get("kind")))
    if writer is None:
        return f"{facts.get('kind')}: {stored}"
    try:
        return writer({**facts, "source": source}, entry_id)
    except KeyError:
        return stored


def notices_for(stored: str | None, entry_id: int, language: Language = Language.DE,
                source: str = "TIKOS") -> list[str]:
    """The notices of an entry that went out (or goes out) anyway, worded."""
    try:
        items = json.loads(stored) if stored else []
    except ValueError:
        items = []
    lines = []
    for item in items if isinstance(items, list) else []:
        line = for_entry(json.dumps(item, ensure_ascii=False), entry_id, language, source)
        if line:
            lines.append(line)
    return lines
