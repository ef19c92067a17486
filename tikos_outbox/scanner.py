"""Walks a mandant folder: every candidate PDF with its stat, nothing read."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tikos_outbox.core.naming import is_ignored

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileSeen:
    abs_path: str
    rel_path: str  # '/'-separated, relative to the mandant folder
    name: str
    size: int
    mtime_ns: int


class FolderError(OSError):
    """The mandant folder itself cannot be read (gone, no permission, network down)."""


def walk(folder: Path, errors: list[str] | None = None) -> Iterator[FileSeen]:
    """Every `*.pdf` below `folder` (recursively), hidden and temporary files left out.

    Raises FolderError when the folder itself cannot be listed; an unreadable
    subfolder is noted in `errors` and passed over.
    """
    root = str(folder)
    try:
        top = os.scandir(root)
    except OSError as exc:
        raise FolderError(exc.errno, f"cannot read folder {root}: {exc.strerror or exc}"
                          ) from None
    stack: list[tuple[Iterator[os.DirEntry[str]], str]] = [(top, "")]
    while stack:
        it, prefix = stack.pop()
        with it:  # type: ignore[attr-defined]
            subdirs: list[tuple[str, str]] = []
            for de in sorted(it, key=lambda d: d.name):  # a stable, readable order
                name = de.name
                if is_ignored(name):
                    continue
                try:
                    if de.is_dir(follow_symlinks=False):
                        subdirs.append((de.path, prefix + name + "/"))
                        continue
                    if not name.lower().endswith(".pdf") or not de.is_file():
                        continue
                    st = de.stat()
                except OSError as exc:
                    if errors is not None:
                        errors.append(f"{de.path}: {exc.strerror or exc}")
                    continue
                yield FileSeen(de.path, prefix + name, name, st.st_size, st.st_mtime_ns)
        for path, sub_prefix in reversed(subdirs):
            try:
                stack.append((os.scandir(path), sub_prefix))
            except OSError as exc:
                if errors is not None:
                    errors.append(f"{path}: {exc.strerror or exc}")


def rel_path(folder: Path, abs_path: str) -> str | None:
    """The '/'-separated path below `folder`, or None if it is not below it."""
    try:
        rel = os.path.relpath(abs_path, str(folder))
    except ValueError:  # another drive on Windows
        return None
    if rel.startswith(".."):
        return None
    return rel.replace(os.sep, "/")
