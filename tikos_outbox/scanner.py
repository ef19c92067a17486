"""Walks a mandant folder: every candidate PDF with its stat, nothing read."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tikos_outbox.core.naming import is_candidate, is_ignored
from tikos_outbox.core.ports import FolderUnavailable
from tikos_outbox.core.views import FileSeen

__all__ = ["FileSeen", "FolderError", "IncrementalScanner", "rel_path"]

log = logging.getLogger(__name__)


class FolderError(FolderUnavailable):
    """The mandant folder itself cannot be read (gone, no permission, network down)."""


def _list_dir(path: str, prefix: str,
              errors: list[str] | None) -> tuple[list[FileSeen], list[tuple[str, str]]]:
    """The candidate PDFs and the subfolders of one folder; raises OSError if it
    cannot be listed. Hidden and temporary names are left out; symlinked
    folders are not followed (no loops)."""
    files: list[FileSeen] = []
    subdirs: list[tuple[str, str]] = []
    with os.scandir(path) as it:
        for de in sorted(it, key=lambda d: d.name):  # a stable, readable order
            name = de.name
            if is_ignored(name):
                continue
            try:
                if de.is_dir(follow_symlinks=False):
                    subdirs.append((de.path, prefix + name + "/"))
                    continue
                if not is_candidate(name) or not de.is_file():
                    continue
                st = de.stat()
            except OSError as exc:
                if errors is not None:
                    errors.append(f"{de.path}: {exc.strerror or exc}")
                continue
            files.append(FileSeen(de.path, prefix + name, name, st.st_size, st.st_mtime_ns))
    return files, subdirs


def _folder_error(root: str, exc: OSError) -> FolderError:
    return FolderError(exc.errno, f"cannot read folder {root}: {exc.strerror or exc}")


def rel_path(folder: Path, abs_path: str) -> str | None:
    """The '/'-separated path below `folder`, or None if it is not below it."""
    try:
        rel = os.path.relpath(abs_path, str(folder))
    except ValueError:  # another drive on Windows
        return None
    if rel.startswith(".."):
        return None
    return rel.replace(os.sep, "/")


@dataclass
class _Dir:
    mtime_ns: int
    subdirs: list[tuple[str, str]]  # (absolute path, relative prefix)
    trusted: bool  # False: listed too close to its last change to trust the mtime


class IncrementalScanner:
    """A polling scanner that lists only the folders whose mtime changed.

    A new, removed or renamed file changes its folder's mtime, so an unchanged
    pass costs one stat per folder instead of one per file, and the scanner
    keeps nothing per file: memory does not grow with the archive. It yields
    every file of a folder it lists; the caller asks the outbox which of them
    are new. A file rewritten in place does not touch its folder: the caller
    runs a full pass (`full=True`, every folder listed) at a longer interval as
    the safety net. A folder listed within `granularity_s` of its own mtime is
    listed again next time, because a change in the same clock tick would not
    show in its mtime.
    """

    def __init__(self, root: Path, granularity_s: float = 2.0) -> None:
        self.root = str(root)
        self.granularity_ns = int(granularity_s * 1e9)
        self._dirs: dict[str, _Dir] = {}
        self.listed = 0  # folders listed in the last pass (for tests and benchmarks)

    def forget(self) -> None:
        self._dirs.clear()

    def scan(self, wall_ns: int, full: bool = False,
             errors: list[str] | None = None) -> Iterator[FileSeen]:
        """The files of the folders that changed (of all folders when `full`).
        Raises FolderError when the root cannot be read; the cache is then
        dropped, so that the next successful pass lists everything again."""
        self.listed = 0
        seen_dirs: set[str] = set()
        try:
            root_st = os.stat(self.root)
        except OSError as exc:
            self.forget()
            raise _folder_error(self.root, exc) from None
        stack: list[tuple[str, str, int]] = [(self.root, "", root_st.st_mtime_ns)]
        while stack:
            path, prefix, mtime = stack.pop()
            seen_dirs.add(path)
            cached = self._dirs.get(path)
            if cached is not None and cached.trusted and cached.mtime_ns == mtime and not full:
                subdirs = cached.subdirs
            else:
                try:
                    files, subdirs = _list_dir(path, prefix, errors)
                except OSError as exc:
                    if path == self.root:
                        self.forget()
                        raise _folder_error(self.root, exc) from None
                    if errors is not None:
                        errors.append(f"{path}: {exc.strerror or exc}")
                    self._dirs.pop(path, None)
                    continue
                self.listed += 1
                self._dirs[path] = _Dir(mtime, subdirs,
                                        trusted=wall_ns - mtime > self.granularity_ns)
                yield from files
            for sub_path, sub_prefix in subdirs:
                try:
                    sub_mtime = os.stat(sub_path).st_mtime_ns
                except OSError:
                    continue  # removed since: its parent's mtime changed too
                stack.append((sub_path, sub_prefix, sub_mtime))
        for gone in set(self._dirs) - seen_dirs:
            del self._dirs[gone]
