"""The outbox on SQLAlchemy Core (SQLite by default, PostgreSQL for larger sites):
reads in `queries`, writes in `commands`, the engine and migrations in `engine`."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from tikos_outbox.core.attention import Language
from tikos_outbox.core.ports import StoreError, StoreUnavailable
from tikos_outbox.store.accounts import Accounts
from tikos_outbox.store.bounces import Bounces
from tikos_outbox.store.commands import Commands
from tikos_outbox.store.console import ConsoleStore
from tikos_outbox.store.engine import (
    SQLITE_BUSY_TIMEOUT_S,
    ensure_schema,
    make_engine,
    mapped,
    migrations_dir,
    safe_url,
)
from tikos_outbox.store.queries import Queries
from tikos_outbox.store.tables import Tables, reflect

__all__ = ["Store", "StoreError", "StoreUnavailable", "migrations_dir", "safe_url"]


class Store:
    """One outbox database: `queries` read, `commands` write."""

    def __init__(self, url: str, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S,
                 language: Language = Language.DE, address_source: str = "TIKOS") -> None:
        self.url = url
        try:
            self.engine = make_engine(url, busy_timeout_s)
        except (SQLAlchemyError, ValueError, ImportError) as exc:  # no such driver, bad URL
            raise StoreUnavailable(f"the outbox database {safe_url(url)} cannot be used:"
                                   f" {str(exc).splitlines()[0]}") from None
        try:
            self.migrated = ensure_schema(self.engine)
            self.tables: Tables = mapped(reflect)(self.engine)
        except StoreError as exc:
            self.engine.dispose()
            raise StoreUnavailable(f"the outbox database {safe_url(url)} cannot be used:"
                             f" {str(exc).removeprefix('the outbox database failed: ')}"
                             ) from None
        self.queries = Queries(self.engine, self.tables, language, address_source)
        self.commands = Commands(self.engine, self.tables)
        self.accounts = Accounts(self.engine, self.tables)
        self.bounces = Bounces(self.engine, self.tables)
        self.console = ConsoleStore(self.engine, self.tables, self.queries)

    def close(self) -> None:
        self.engine.dispose()

