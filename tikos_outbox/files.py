"""Reading documents from the archive (the DocumentFiles port)."""

from __future__ import annotations

import errno
import hashlib
import os

from tikos_outbox.core.views import FileSeen

CHUNK = 1 << 20


class ArchiveFiles:
    """Reads and hashes archive files, checking that they are what was listed."""

    def read(self, seen: FileSeen, limit: int) -> bytes:
        """At most `limit` + 1 bytes; OSError(EAGAIN) if the file changed since it
        was listed, so that the caller tries again once it has settled."""
        with open(seen.abs_path, "rb") as f:
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

    def archive_copy(self, path: str, sha256: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha256 else None
