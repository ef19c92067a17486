"""Which file names are documents, and what their names say."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class DocName:
    """What a matching file name tells: the named groups of the mandant's pattern."""

    doctype: str
    docno: str
    customer: str
    fields: dict[str, str]


def is_ignored(name: str) -> bool:
    """Hidden and temporary files are never documents (`~$x.pdf`, `x.tmp`, `.x`)."""
    lower = name.lower()
    return name.startswith((".", "~")) or lower.endswith((".tmp", ".part", ".crdownload"))


def is_candidate(name: str) -> bool:
    """Whether a file name may be a document at all: a `.pdf` (any case), not hidden
    or temporary. The mandant's pattern decides the rest."""
    return name.lower().endswith(".pdf") and not is_ignored(name)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a mandant's file name pattern (always case-insensitive)."""
    return re.compile(pattern, re.IGNORECASE)


def parse_name(pattern: re.Pattern[str], name: str) -> DocName | None:
    """The document's fields, or None when the file is not a document."""
    if not is_candidate(name):
        return None
    match = pattern.fullmatch(name) or pattern.match(name)
    if match is None:
        return None
    fields = {k: v for k, v in match.groupdict().items() if v is not None}
    return DocName(
        doctype=fields.get("doctype", "").upper(),
        docno=fields.get("docno", ""),
        customer=fields.get("customer", ""),
        fields=fields,
    )
