"""E-mail addresses as TIKOS holds them: split, checked one by one, made safe for
a header. Nothing from a TIKOS value can add a header or a recipient."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: addr-spec as it is used in practice: one @, no white space, no specials that
#: would change what a header means. Deliberately stricter than RFC 5322.
_ADDR = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")
_SEPARATORS = re.compile(r"[;,]")


def clean_text(value: str) -> str:
    """A single line: line breaks and control characters become one space."""
    return _CONTROL.sub(" ", value).strip()


def is_valid_address(value: str) -> bool:
    """Whether `value` is exactly one plain address (local@domain) and nothing else."""
    if len(value) > 254 or not _ADDR.match(value):
        return False
    domain = value.rsplit("@", 1)[1]
    return "." in domain and ".." not in value and not value.startswith(".")


def split_addresses(values: Iterable[str | None]) -> tuple[list[str], list[str]]:
    """Split raw values on ';' and ',' into (valid addresses, rejected pieces).

    Duplicates are dropped case-insensitively; order is kept.
    """
    valid: list[str] = []
    rejected: list[str] = []
    seen: set[str] = set()
    for raw in values:
        if raw is None:
            continue
        for piece in _SEPARATORS.split(str(raw)):
            addr = piece.strip()
            if addr.startswith("<") and addr.endswith(">"):
                addr = addr[1:-1].strip()
            if not addr:
                continue
            if not is_valid_address(addr):
                rejected.append(clean_text(addr))
                continue
            if addr.lower() not in seen:
                seen.add(addr.lower())
                valid.append(addr)
    return valid, rejected
