"""The line that says what to do about an entry that will not reach the customer
without an administrator's move. Written for the office, in German; `{id}` stands
for the entry's number until it is known."""

from __future__ import annotations

from collections.abc import Sequence

from tikos_outbox.core.recipients import DState, Recipient, Role

ID = "{id}"


def _cmd(verb: str) -> str:
    return f"`tikos-outbox {verb} {ID}`"


def no_address(customer: str, rejected: Sequence[str]) -> str:
    shown = f" ({', '.join(f'`{r}`' for r in rejected)})" if rejected else ""
    return (f"Kunde {customer}: keine gültige E-Mail-Adresse{shown} — in TIKOS eintragen"
            f" oder korrigieren, dann {_cmd('requeue')}")


def held(reason: str, needs_force: bool = False) -> str:
    verb = "release --force" if needs_force else "release"
    return f"angehalten: {reason} — prüfen, dann {_cmd(verb)} (oder so lassen)"


def failed(customer: str, reason: str) -> str:
    return (f"Kunde {customer}: nicht zugestellt: {reason} — Adresse in TIKOS prüfen,"
            f" dann {_cmd('requeue')}")


def unsendable(customer: str, reason: str) -> str:
    """The document itself could not be sent (its copy is gone, it is empty)."""
    return (f"Kunde {customer}: nicht versendet: {reason} — die Datei im Archiv prüfen"
            f" (oder neu erzeugen), dann {_cmd('requeue')}")


def partly_refused(customer: str, recipients: Sequence[Recipient]) -> str | None:
    """For a sent entry: the customer's addresses the server refused, if any."""
    refused = [r for r in recipients if r.role is Role.TO and r.state is DState.REFUSED]
    if not refused:
        return None
    which = "; ".join(f"{r.address} abgelehnt: {r.reply}" for r in refused)
    return (f"Kunde {customer}: {which} — in TIKOS korrigieren, dann {_cmd('requeue')}"
            " (die anderen Adressen haben es schon)")


def for_entry(line: str | None, entry_id: int) -> str | None:
    return line.replace(ID, str(entry_id)) if line else None
