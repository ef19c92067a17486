"""Reading documents from the archive (the DocumentFiles port)."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

from tikos_outbox.core.views import FileSeen

CHUNK = 1 << 20
#: a file swapped for a symlink after it was listed is not opened through the link
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def _open_within(path: str, within: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | NOFOLLOW | _BINARY)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
    real, folder = os.path.realpath(path), os.path.realpath(within)
    if not real.startswith(folder.rstrip(os.sep) + os.sep):
        raise OSError(errno.ELOOP, "it is now a link to a file outside the mandant folder")
    return os.open(real, os.O_RDONLY | NOFOLLOW | _BINARY)


class ArchiveFiles:
    """Reads and hashes archive files, checking that they are what was listed."""

    def read(self, seen: FileSeen, limit: int, within: Path) -> bytes:
        """At most `limit` + 1 bytes; OSError(EAGAIN) if the file changed since it
        was listed, so that the caller tries again once it has settled. A link is
        read only at a real target inside `within` (the mandant folder): a file
        swapped for a link to elsewhere after it was listed is never opened."""
        with os.fdopen(_open_within(seen.abs_path, within), "rb") as f:
            data = f.read(limit + 1)
            st = os.fstat(f.fileno())
        if len(data) != st.st_size or st.st_mtime_ns != seen.mtime_ns:
            raise OSError(errno.EAGAIN, "it changed while it was read")
        return data

    def sha256(self, path: str) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
        return h.hexdigest()

    def sha256_if_unchanged(self, path: str, size: int, mtime_ns: int, within: Path
                            ) -> str | None:
        """The content hash of a file that still has this size and time; None when it
        has another one now (it changed); OSError when it cannot be read (gone, the
        share down, locked, a link out of `within`): that says nothing of it."""
        with os.fdopen(_open_within(path, within), "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size != size or st.st_mtime_ns != mtime_ns:
                return None
            h = hashlib.sha256()
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
            st = os.fstat(f.fileno())
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            raise OSError(errno.EAGAIN, "it changed while it was read")
        return h.hexdigest()

    def archive_copy(self, path: str, sha256: str, within: Path) -> bytes | None:
        try:
            with os.fdopen(_open_within(path, within), "rb") as f:
                data = f.read()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha256 else None
