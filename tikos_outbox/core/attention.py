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


def _cmd(verb: str, entry_id: int) -> str:
    return f"`tikos-outbox {verb} {entry_id}`"


def _quoted(values: object) -> str:
    items = [str(v) for v in values] if isinstance(values, list) else []
    return f" ({', '.join(f'`{v}`' for v in items)})" if items else ""


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
