"""Walks a mandant folder: every candidate PDF with its stat, nothing read."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tikos_outbox.core.naming import decode_name, is_candidate, is_ignored
from tikos_outbox.core.ports import FolderUnavailable
from tikos_outbox.core.views import FileSeen

__all__ = ["FileSeen", "FolderError", "IncrementalScanner", "outside_target", "reachable",
           "readable_name", "readable_path", "rel_path"]

log = logging.getLogger(__name__)


class FolderError(FolderUnavailable):
    """The mandant folder itself cannot be read (gone, no permission, network down)."""


def readable_name(name: str) -> str:
    """A name as os.scandir gives it, as valid text: itself when it is; else (bytes
    that are not UTF-8 come with surrogate escapes) its raw bytes read as UTF-8,
    or else as Latin-1. The path that opens the file keeps the name as it was."""
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return decode_name(os.fsencode(name))
    return name


def readable_path(path: str) -> str:
    """A path for messages and logs: every component as readable_name gives it."""
    return os.sep.join(readable_name(part) for part in path.split(os.sep))


def _clash_error(path: str, text: str) -> str:
    return (f"{readable_path(path)}: the name is not valid UTF-8 and reads like {text!r}"
            " beside it; rename one of the two")


def _inside(target: str, root_real: str) -> bool:
    target, root_real = os.path.normcase(target), os.path.normcase(root_real)
    return target == root_real or target.startswith(root_real.rstrip(os.sep) + os.sep)


def outside_target(path: str, root_real: str) -> str | None:
    """For a symlink: its real target when that lies outside `root_real` (the
    realpath of the mandant folder), else None (an ordinary file, or a link that
    stays inside)."""
    target = os.path.realpath(path)
    return None if _inside(target, root_real) else target


def _list_dir(path: str, prefix: str, root_real: str,
              errors: list[str] | None) -> tuple[list[FileSeen], list[tuple[str, str]]]:
    """The candidate PDFs and the subfolders of one folder; raises OSError if it
    cannot be listed. Hidden and temporary names are left out; symlinked
    folders are not followed (no loops); a symlinked file whose target lies
    outside the mandant folder is given with its link_target and the link's own
    stat, the target is not read. A name that is not valid UTF-8 is read as
    Latin-1; one that then reads like a name beside it is left out (reported)."""
    files: list[FileSeen] = []
    subdirs: list[tuple[str, str]] = []
    with os.scandir(path) as it:
        entries = sorted(it, key=lambda d: d.name)  # a stable, readable order
    names = {de.name for de in entries}
    for de in entries:
        name = readable_name(de.name)
        if is_ignored(name):
            continue
        clash = name != de.name and name in names  # two entries would read the same
        try:
            is_dir = de.is_dir(follow_symlinks=False)
            if not is_dir and not is_candidate(name):
                continue
            if clash:
                if errors is not None:
                    errors.append(_clash_error(de.path, name))
                continue
            if is_dir:
                subdirs.append((de.path, prefix + name + "/"))
                continue
            target = outside_target(de.path, root_real) if de.is_symlink() else None
            if target is not None:
                st = de.stat(follow_symlinks=False)
            elif de.is_file():
                st = de.stat()
            else:
                continue
        except OSError as exc:
            if errors is not None:
                errors.append(f"{readable_path(de.path)}: {exc.strerror or exc}")
            continue
        files.append(FileSeen(de.path, prefix + name, name, st.st_size, st.st_mtime_ns,
                              link_target=target))
    return files, subdirs


def _folder_error(root: str, exc: OSError) -> FolderError:
    return FolderError(exc.errno, f"cannot read folder {readable_path(root)}:"
                                  f" {exc.strerror or exc}")


def _relative(folder: Path | str, abs_path: str) -> list[str] | None:
    try:
        rel = os.path.relpath(abs_path, str(folder))
    except ValueError:  # another drive on Windows
        return None
    parts = rel.split(os.sep)
    if parts[0] in (os.curdir, os.pardir):
        return None
    return parts


def rel_path(folder: Path, abs_path: str) -> str | None:
    """The '/'-separated path below `folder`, every name as readable_name gives it
    (as the scanner's listing gives it), or None if it is not below it."""
    parts = _relative(folder, abs_path)
    return None if parts is None else "/".join(readable_name(p) for p in parts)


def reachable(folder: Path, abs_path: str) -> bool:
    """Whether a listing of `folder` gives this path (for event paths): no hidden or
    symlinked folder on the way (they are not listed, not followed) and no name
    that is not UTF-8 and reads like a name beside it. One lstat per folder on
    the way."""
    parts = _relative(folder, abs_path)
    if parts is None:
        return False
    here = str(folder)
    for i, part in enumerate(parts):
        text = readable_name(part)
        if is_ignored(text) or (text != part and os.path.lexists(os.path.join(here, text))):
            return False
        here = os.path.join(here, part)
        if i < len(parts) - 1 and os.path.islink(here):
            return False
    return True


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
        self.listed_all = False  # the last pass listed every folder (none from the cache)

    def forget(self) -> None:
        self._dirs.clear()

    def scan(self, wall_ns: int, full: bool = False,
             errors: list[str] | None = None) -> Iterator[FileSeen]:
        """The files of the folders that changed (of all folders when `full`).
        Raises FolderError when the root cannot be read; the cache is then
        dropped, so that the next successful pass lists everything again."""
        self.listed = 0
        self.listed_all = False
        from_cache = False
        seen_dirs: set[str] = set()
        try:
            root_st = os.stat(self.root)
        except OSError as exc:
            self.forget()
            raise _folder_error(self.root, exc) from None
        root_real = os.path.realpath(self.root)  # links are judged against the real folder
        stack: list[tuple[str, str, int]] = [(self.root, "", root_st.st_mtime_ns)]
        while stack:
            path, prefix, mtime = stack.pop()
            seen_dirs.add(path)
            cached = self._dirs.get(path)
            if cached is not None and cached.trusted and cached.mtime_ns == mtime and not full:
                subdirs = cached.subdirs
                from_cache = True
            else:
                try:
                    files, subdirs = _list_dir(path, prefix, root_real, errors)
                except OSError as exc:
                    if path == self.root:
                        self.forget()
                        raise _folder_error(self.root, exc) from None
                    if errors is not None:
                        errors.append(f"{readable_path(path)}: {exc.strerror or exc}")
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
        self.listed_all = not from_cache


# (with SMB through FUSE, smbnetfs and gvfs: inotify sees nothing other machines write)
NETWORK_FS = {"cifs", "smb3", "smbfs", "nfs", "nfs4", "fuse.sshfs", "9p", "afs", "ncpfs",
              "fuse.rclone", "davfs", "fuse.davfs2", "fuse.smbnetfs", "fuse.gvfsd-fuse",
              "fuse.gvfs-fuse-daemon"}


def is_network_path(path: Path, mounts_file: str = "/proc/mounts") -> bool:
    """UNC paths, mapped network drives (Windows) and cifs/smb/nfs mounts (Linux)."""
    text = str(path)
    if text.startswith(("\\\\", "//")):
        return True
    if sys.platform == "win32":
        drive = os.path.splitdrive(os.path.abspath(text))[0]
        if drive:
            import ctypes

            DRIVE_REMOTE = 4
            return bool(ctypes.windll.kernel32.GetDriveTypeW(drive + "\\") == DRIVE_REMOTE)  # type: ignore[attr-defined]
        return False
    try:
        with open(mounts_file, encoding="utf-8") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return False
    target = os.path.realpath(text)
    best, best_fs = "", ""
    for parts in mounts:
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_fs = mount_point, parts[2]
    return best_fs in NETWORK_FS
