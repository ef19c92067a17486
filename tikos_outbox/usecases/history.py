"""History files recorded without reading them (the first start reads no file
contents: a ten-year archive on the `SoCom$` share is not read for nothing). Their
content is read when it matters, and only then:

- new files arrive: one may be a history file under another name (the duplicate
  rule compares contents), so the history files of their sizes are read first;
- an administrator requeues one, or the console shows it: the bytes to be sent or
  shown are those of the file as it was when the first start saw it;
- in the background of `run`, a few at a time, until every content is known.

A history file that has another size or time now changed: what it was is not
known, for good (its mark says so). One that cannot be read (gone, the share
down, locked) says nothing and is tried again later."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

from tikos_outbox.core.intake import unknown_sha, unread_sha
from tikos_outbox.core.ports import DocumentFiles, OutboxCommands, OutboxQueries
from tikos_outbox.core.settings import Config, Mandant

log = logging.getLogger("tikos_outbox")

BYTES_PER_TURN = 20 * 1024 * 1024  # the background reads at most this much at a time


class History:
    def __init__(self, config: Config, queries: OutboxQueries, commands: OutboxCommands,
                 files: DocumentFiles) -> None:
        self.config = config
        self.queries = queries
        self.commands = commands
        self.files = files
        self._after: dict[int, int] = {}  # the background's place, per mandant

    def read_of_sizes(self, m: Mandant, sizes: Collection[int]) -> int:
        """Read the unread history files of these sizes; how many were read. OSError
        when one of them cannot be read now: a new file of its size cannot be told
        apart from it yet (the caller takes the new file again later)."""
        if not sizes:
            return 0
        return self._read(m, self.queries.unread_history(m.id, sizes=sizes), strict=True)

    def read_entries(self, mandant_id: int, ids: Iterable[int]) -> int:
        m = self.config.mandant(mandant_id)
        if m is None:
            return 0
        try:
            return self._read(m, self.queries.unread_history(m.id, ids=list(ids)))
        except OSError:
            return 0

    def read_some(self, limit: int, max_bytes: int = BYTES_PER_TURN) -> int:
        """Read up to `limit` unread history files (and about `max_bytes`), after those
        of the last turn; at the end of a mandant's entries it begins again (a file
        that could not be read is tried again then)."""
        n = 0
        for m in self.config.enabled_mandants:
            rows = self.queries.unread_history(m.id, limit=limit,
                                               after_id=self._after.get(m.id, 0))
            budget, take = max_bytes, []
            for row in rows:
                take.append(row)
                budget -= row[2]
                if budget <= 0:
                    break
            self._after[m.id] = take[-1][0] if len(take) == limit or budget <= 0 else 0
            read = self._read(m, take)
            if take:
                log.info("history of mandant %d: read %d of %d files in the background"
                         " (%d not read yet in all)", m.id, read, len(take),
                         self.queries.unread_count())
            n += read
            limit -= len(take)
            if limit <= 0:
                break
        return n

    def _read(self, m: Mandant, rows: list[tuple[int, str, int, int]],
              strict: bool = False) -> int:
        n = 0
        for entry_id, path, size, mtime_ns in rows:
            mark = unread_sha(size, mtime_ns)
            try:
                sha = self.files.sha256_if_unchanged(str(m.folder / path), size, mtime_ns,
                                                     m.folder)
            except OSError as exc:
                if strict:
                    raise
                log.debug("entry %d: %s cannot be read now (%s); tried again later",
                          entry_id, path, exc)
                continue
            if sha is None:
                self.commands.reveal(entry_id, mark, unknown_sha(size, mtime_ns))
                log.info("entry %d: %s changed since the first start took it as history;"
                         " what it was stays unknown", entry_id, path)
            elif self.commands.reveal(entry_id, mark, sha):
                n += 1
            else:  # read by another process meanwhile, or this content is recorded for
                # the same path already (its time was put back): not asked again
                self.commands.reveal(entry_id, mark, unknown_sha(size, mtime_ns))
        return n
