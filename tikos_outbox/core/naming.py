"""Which file names are documents, and what their names say."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath, PureWindowsPath
from typing import Protocol


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
    """Whether a file name may be a document at all: a `.pdf` or an e-invoice's `.xml`
    (any case), not hidden or temporary. The mandant's pattern decides the rest."""
    return name.lower().endswith((".pdf", ".xml")) and not is_ignored(name)


def is_xml_name(name: str) -> bool:
    """An XML document (an XRechnung file of its own), not a PDF."""
    return name.lower().endswith(".xml")


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


# -- names that are not valid UTF-8 ---------------------------------------------------------


def decode_name(raw: bytes) -> str:
    """A file or folder name's raw bytes as text: UTF-8 where they are valid UTF-8,
    else Latin-1 (what an unzip of a Windows archive leaves: b"M\\xfcller" reads
    "Müller"). Every byte string has exactly one reading, the same every time."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# -- which mandant a file belongs to --------------------------------------------------------

#: (mandant id, its folder, its file name pattern), in the order of the config
Claim = tuple[int, "PurePath | str", re.Pattern[str]]


def _parts(path: PurePath | str) -> tuple[str, ...]:
    """The path's components, '.' and '..' resolved by the letters alone (the
    file system is not asked), case-folded where paths ignore case (Windows)."""
    p = path if isinstance(path, PurePath) else PurePath(path)
    anchor = p.anchor
    out: list[str] = []
    for part in p.parts[1:] if anchor else p.parts:
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
                continue
            if anchor:
                continue  # '/..' is '/'
        out.append(part)
    parts = ((anchor,) if anchor else ()) + tuple(out)
    if isinstance(p, PureWindowsPath):
        parts = tuple(x.casefold() for x in parts)
    return parts


_Folder = tuple[int, tuple[str, ...], re.Pattern[str]]


def _pick(folders: Iterable[_Folder], parts: tuple[str, ...], name: str) -> int | None:
    best: int | None = None
    depth = -1
    for mandant_id, folder, pattern in folders:
        inside = len(folder) < len(parts) and parts[:len(folder)] == folder
        if inside and len(folder) > depth and parse_name(pattern, name) is not None:
            best, depth = mandant_id, len(folder)
    return best


def owner(claims: Iterable[Claim], path: PurePath | str) -> int | None:
    """The one mandant a file belongs to, or None: among the mandants whose folder
    contains `path` and whose pattern matches its name, the one with the deepest
    folder; of equal folders, the first. Folders and the path are compared as
    written (made absolute by the caller), the file system is not asked."""
    name = (path if isinstance(path, PurePath) else PurePath(path)).name
    return _pick([(m, _parts(f), p) for m, f, p in claims], _parts(path), name)


class _HasClaim(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def folder(self) -> Path: ...

    @property
    def pattern(self) -> re.Pattern[str]: ...


class Owners:
    """`owner` for one config's mandants, their folders split once.

    Give it every mandant of the config, disabled ones too: a disabled mandant
    still owns its files (they wait, they are not handed to another mandant)."""

    def __init__(self, claims: Iterable[Claim]) -> None:
        claims = list(claims)
        self._folders: list[_Folder] = [(m, _parts(f), p) for m, f, p in claims]
        self._own: dict[int, tuple[tuple[str, ...], bool]] = {}  # id -> (folder, fold case)
        self._rivals: dict[int, list[_Folder]] = {}  # id -> the mandants it overlaps with
        for (mandant_id, folder, _), (_, raw, _) in zip(self._folders, claims, strict=True):
            if mandant_id in self._own:
                continue  # an id twice: the config refuses it; the first one counts
            fold = isinstance(raw if isinstance(raw, PurePath) else PurePath(raw),
                              PureWindowsPath)
            self._own[mandant_id] = (folder, fold)
            self._rivals[mandant_id] = [
                c for c in self._folders
                if c[1][:len(folder)] == folder or folder[:len(c[1])] == c[1]]

    @classmethod
    def of(cls, mandants: Iterable[_HasClaim]) -> Owners:
        return cls([(m.id, m.folder, m.pattern) for m in mandants])

    def owner(self, path: PurePath | str) -> int | None:
        """See `owner`."""
        name = (path if isinstance(path, PurePath) else PurePath(path)).name
        return _pick(self._folders, _parts(path), name)

    def owns(self, mandant_id: int, rel_path: str) -> bool:
        """Whether the file at `rel_path` below this mandant's folder ('/'-separated,
        as in FileSeen.rel_path) belongs to this mandant and to no other."""
        own = self._own.get(mandant_id)
        if own is None:
            return False
        folder, fold = own
        rel = tuple(rel_path.split("/"))
        if fold:
            rel = tuple(x.casefold() for x in rel)
        return _pick(self._rivals[mandant_id], folder + rel,
                     rel_path.rsplit("/", 1)[-1]) == mandant_id


def share_hint(folder: str, windows: bool) -> str:
    """What to do when a Windows share path is configured on Linux: it is no folder
    there until the share is mounted."""
    if windows or not folder.startswith(("\\\\", "//")):
        return ""
    share = "/".join(folder.replace("\\", "/").lstrip("/").split("/")[:2])
    return (f" — {folder} is a Windows share path; on Linux, mount the share first (e.g."
            f" mount -t cifs //{share} /mnt/socom -o credentials=/etc/tikos-outbox/smb) and"
            " set folder to the mount point")
