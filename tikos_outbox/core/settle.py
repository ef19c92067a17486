"""When a file is completely written: its size and mtime unchanged for `settle_s`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic seconds when this size/mtime was first seen


class SettleTracker:
    """Remembers candidate files until they have stopped changing.

    Keys are whatever the caller uses for a file (its absolute path). A file
    whose mtime already lies `settle_s` in the past (by the wall clock) counts
    as settled on first sight, so a catch-up pass does not wait for old files.
    """

    def __init__(self, settle_s: float, empty_after_s: float = 600.0) -> None:
        self.settle_s = settle_s
        self.empty_after_s = max(empty_after_s, settle_s)
        self._seen: dict[str, _Seen] = {}

    def observe(self, key: str, size: int, mtime_ns: int, mono: float, wall_s: float) -> bool:
        """Note the file's current size and mtime; True when it is settled now. An
        empty file settles only after `empty_after_s` (a writer that crashed leaves
        one; it is then recorded and held, never waited for for ever)."""
        wait_s = self.settle_s if size > 0 else self.empty_after_s
        seen = self._seen.get(key)
        if seen is None or seen.size != size or seen.mtime_ns != mtime_ns:
            self._seen[key] = _Seen(size, mtime_ns, mono)
            return seen is None and wall_s - mtime_ns / 1e9 >= wait_s
        return mono - seen.since >= wait_s

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)
