"""Where a customer's e-mail addresses come from: TIKOS' SQL Server via pyodbc,
or a CSV map. Both return the raw values; splitting and checking is core's."""

from __future__ import annotations

import contextlib
import csv
import logging
from pathlib import Path
from typing import Any

from tikos_outbox.core.ports import LookupUnavailable
from tikos_outbox.core.settings import RecipientSettings

log = logging.getLogger("tikos_outbox")


class SqlLookup:
    """Runs the configured query with the document's fields as parameters."""

    def __init__(self, dsn: str, query: str, params: tuple[str, ...], timeout_s: int) -> None:
        self.dsn = dsn
        self.query = query
        self.params = params
        self.timeout_s = timeout_s
        self._conn: Any = None

    def _connect(self) -> Any:
        import pyodbc  # imported here: a CSV-only site needs no ODBC driver manager

        if self._conn is None:
            try:
                self._conn = pyodbc.connect(self.dsn, timeout=self.timeout_s, autocommit=True)
                self._conn.timeout = self.timeout_s
            except pyodbc.Error as exc:
                raise LookupUnavailable(f"cannot connect to the TIKOS database: {_odbc(exc)}"
                                        ) from None
        return self._conn

    def lookup(self, mandant: int, fields: dict[str, str]) -> list[str]:
        import pyodbc

        values = {**fields, "mandant": str(mandant)}
        missing = [p for p in self.params if p not in values]
        if missing:
            raise LookupUnavailable(
                f"sql_params names '{missing[0]}', which the file name pattern does not give")
        args = [values[p] for p in self.params]
        for attempt in range(2):
            conn = self._connect()
            try:
                cur = conn.cursor()
                try:
                    cur.execute(self.query, args)
                    rows = cur.fetchall()
                finally:
                    cur.close()
                return [str(v) for row in rows for v in row if v is not None]
            except pyodbc.Error as exc:
                self.close()
                if attempt == 1 or not _connection_lost(exc):
                    raise LookupUnavailable(f"the address query failed: {_odbc(exc)}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            import pyodbc

            with contextlib.suppress(pyodbc.Error):  # a dead connection may not close cleanly
                self._conn.close()
            self._conn = None


class CsvLookup:
    """A file with columns mandant;customer;email (';' or ',' separated, header row)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._map: dict[tuple[str, str], list[str]] = {}

    def rows(self) -> int:
        """How many (mandant, customer) rows the file holds; LookupUnavailable if it
        cannot be read."""
        self._load()
        return len(self._map)

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
            if mtime == self._mtime:
                return
            raw = self.path.read_bytes()
        except OSError as exc:
            raise LookupUnavailable(f"cannot read the address file {self.path}: {exc}") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            # German Excel's "CSV (Trennzeichen-getrennt)" is Windows-1252
            text = raw.decode("cp1252", errors="replace")
            log.warning("the address file %s is not UTF-8; read it as Windows-1252 (what"
                        " German Excel saves). To be sure, save it as \"CSV UTF-8\"", self.path)
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else "a;b;c", ";,")
        # extra cells after "email" are further addresses: 1;4711;a@x.de;b@x.de
        reader = csv.DictReader(text.splitlines(), dialect=dialect, restkey="\0more")
        header = [h.strip().lower() for h in reader.fieldnames or []]
        if not {"mandant", "customer", "email"} <= set(header):
            raise LookupUnavailable(
                f"the address file {self.path} needs the columns mandant;customer;email")
        table: dict[tuple[str, str], list[str]] = {}
        for row in reader:
            more = row.pop("\0more", None) or []
            norm = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            key = (norm.get("mandant", ""), norm.get("customer", "").lstrip("0"))
            table.setdefault(key, []).extend([norm.get("email", ""), *more])
        self._map = table
        self._mtime = mtime

    def lookup(self, mandant: int, fields: dict[str, str]) -> list[str]:
        self._load()
        customer = fields.get("customer", "").lstrip("0")
        return list(self._map.get((str(mandant), customer), []))

    def close(self) -> None:
        pass


class NoLookup:
    """`source = "einvoice"` without TIKOS or an address file: only the e-invoice's
    buyer address (BT-49) is used; a document without one finds nobody."""

    def lookup(self, mandant: int, fields: dict[str, str]) -> list[str]:
        return []


def make_lookup(settings: RecipientSettings) -> SqlLookup | CsvLookup | NoLookup:
    if settings.sql_dsn and settings.sql_query:
        return SqlLookup(settings.sql_dsn, settings.sql_query, settings.sql_params,
                         settings.sql_timeout_s)
    if settings.csv is None:
        return NoLookup()
    return CsvLookup(settings.csv)


def _odbc(exc: Exception) -> str:
    parts = [str(a) for a in exc.args]
    return " ".join(parts[-1:]) if parts else exc.__class__.__name__


def _connection_lost(exc: Exception) -> bool:
    state = str(exc.args[0]) if exc.args else ""
    return state.startswith("08")  # SQLSTATE class 08: connection exception
