"""Printing for the commands: one JSON document, plain aligned tables, local times."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from tikos_outbox.core.intake import is_unread
from tikos_outbox.core.states import MoveResult
from tikos_outbox.core.views import EntryView


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, default=_default, ensure_ascii=False, indent=2) + "\n")


def fmt_time(value: datetime | str | None, tz: tzinfo) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")  # the config's zone, named


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last one is never cut, so a pipe or a
    log file gets whole lines."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, ["─" * w for w in widths], *rows]:
        cells = [str(c).ljust(w) for c, w in zip(r, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def entry_json(view: EntryView, full: bool) -> dict[str, object]:
    """The JSON shape of an entry (contract: `attempts` is the list in show, a count in list)."""
    data: dict[str, object] = {
        "id": view.id, "state": view.state, "mandant": view.mandant, "path": view.path,
        "file_name": view.file_name, "size": view.size,
        "sha256": None if is_unread(view.sha256) else view.sha256,  # history not read yet
        "doctype": view.doctype, "docno": view.docno, "customer": view.customer,
        "recipients": view.recipients or [], "refused": view.refused, "reason": view.reason,
        "attempts": [asdict(a) for a in view.attempts] if full else view.attempt_count,
        "last_error": view.last_error, "created_at": view.created_at,
        "updated_at": view.updated_at, "sent_at": view.sent_at,
        "next_attempt_at": view.next_attempt_at, "message_id": view.message_id,
        "attention": view.attention, "problem": view.problem,
        "einvoice": view.einvoice.as_contract() if view.einvoice else None,
        "notices": view.notices,
    }
    if full:
        data["stored_copy"] = view.stored_copy
        data["deliveries"] = [{"address": d.address, "name": d.name, "role": d.role.value,
                               "state": d.state.value, "reply": d.reply, "at": d.at}
                              for d in view.deliveries]
        data["bounces"] = [{"address": b.address, "kind": b.kind.value, "status": b.status,
                            "diagnostic": b.diagnostic, "at": b.at} for b in view.bounces]
    return data


def einvoice_text(view: EntryView) -> str:
    """The e-invoice data in a few words: "ZUGFeRD EN 16931 ✓", "Factur-X MINIMUM ✗", "—"."""
    e = view.einvoice
    if e is None:
        return "—"
    return f"{e.format} {e.profile} {'✓' if e.valid_invoice else '✗'}"


def move_json(results: dict[int, MoveResult]) -> dict[str, object]:
    return {"results": [{"id": i, "result": "ok" if r.ok else r.explain()}
                        for i, r in results.items()]}
