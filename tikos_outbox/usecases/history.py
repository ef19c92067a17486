"""History files recorded without reading them (the first start reads no file
contents: a ten-year archive on the `SoCom$` share is not read for nothing). Their
content is read when it matters, and only then:

- a new file of the same size arrives: it may be the same document under another
  name (the duplicate rule), so the history files of that size are read first;
- an administrator requeues one, or the console shows it: the bytes to be sent
  or shown are those of the file as it was when the first start saw it.

A history file that changed since (another size or time) is not read: what it was
is not known, and its entry keeps its unread mark."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

from tikos_outbox.core.intake import unknown_sha, unread_sha
from tikos_outbox.core.ports import DocumentFiles, OutboxCommands, OutboxQueries
from tikos_outbox.core.settings import Config, Mandant

log = logging.getLogger("tikos_outbox")


class History:
    def __init__(self, config: Config, queries: OutboxQueries, commands: OutboxCommands,
                 files: DocumentFiles) -> None:
        self.config = config
        self.queries = queries
        self.commands = commands
        self.files = files

    def read_of_sizes(self, m: Mandant, sizes: Collection[int]) -> int:
        """Read the unread history files of these sizes; how many were read."""
        return self._read(m, self.queries.unread_history(m.id, sizes=sizes)) if sizes else 0

    def read_entries(self, mandant_id: int, ids: Iterable[int]) -> int:
        m = self.config.mandant(mandant_id)
        if m is None:
            return 0
        return self._read(m, self.queries.unread_history(m.id, ids=list(ids)))

    def read_some(self, limit: int) -> int:
        """Read up to `limit` unread history files, in the background of `run`, so
        that in time every rule sees every content again (a history file changed
        while unread is held: what it was is not known). Files that changed since
        are passed over for good."""
        n = 0
        for m in self.config.enabled_mandants:
            rows = self.queries.unread_history(m.id, limit=limit)
            n += self._read(m, rows, forget_changed=True)
            limit -= len(rows)
            if limit <= 0:
                break
        return n

    def _read(self, m: Mandant, rows: list[tuple[int, str, int, int]],
              forget_changed: bool = False) -> int:
        n = 0
        for entry_id, path, size, mtime_ns in rows:
            sha = self.files.sha256_if_unchanged(str(m.folder / path), size, mtime_ns,
                                                 m.folder)
            if sha is None:
                log.debug("entry %d: %s changed since it was taken as history; what it"
                          " was stays unknown", entry_id, path)
                if forget_changed:  # not asked again: its mark says it was never read
                    self.commands.reveal(entry_id, unread_sha(size, mtime_ns),
                                         unknown_sha(size, mtime_ns))
                continue
            if self.commands.reveal(entry_id, unread_sha(size, mtime_ns), sha):
                n += 1
        return n
