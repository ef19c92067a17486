"""The database engine, the schema check and the migrations.

A command checks the schema with one query against `alembic_version`; Alembic
itself is loaded only when a migration is due. Every SQLAlchemy error is turned
into a StoreError here, at the store's edge, in one line an administrator can read.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from tikos_outbox.core.ports import StoreError

SQLITE_BUSY_TIMEOUT_S = 30.0
#: an execution option: this connection only reads (SQLite: a deferred BEGIN, so
#: that `status` never waits behind a writer for the write lock)
READ_ONLY = "tikos_read_only"

#: an execution option: this transaction's commit does not wait for the disk
#: (SQLite: synchronous NORMAL, which WAL mode keeps consistent; PostgreSQL:
#: synchronous_commit off) - for a record that a crash may lose at no cost
#: because the durable commit that matters comes right after it and writes it too:
#: both databases write their log in order. See `lazy_begin`.
LAZY = "tikos_lazy_commit"

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

#: the lengths an IN list is padded to (see `padded`); longer ones keep their length
SHAPES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 500)


#: the driver's words, and what they mean for the administrator
_MEANING = (
    ("database or disk is full", "the disk that holds the outbox database is full; free"
     " space there (nothing is lost: new documents wait in the archive)"),
    ("disk I/O error", "the outbox database cannot be written: its disk may be full,"
     " failing, read-only or a network share that went away"),
    ("attempt to write a readonly database", "the outbox database is read-only for this"
     " account: give it write access to the file and its folder"),
    ("unable to open database file", "the outbox database cannot be opened: check that"
     " its folder exists and this account may write there"),
)


def describe(exc: SQLAlchemyError) -> str:
    """The driver's own first line (e.g. 'database or disk is full'), with what it
    means in an administrator's words."""
    orig = getattr(exc, "orig", None)
    line = (str(orig or exc).splitlines() or [type(exc).__name__])[0]
    for words, meaning in _MEANING:
        if words in line:
            return f"{meaning} ({line})"
    return line


def safe_url(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL is shown as such, never raw
        return "(unparseable URL)"


def mapped(fn: Callable[P, R]) -> Callable[P, R]:
    """Database errors leave the store as StoreError, never as SQLAlchemy's own."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SQLAlchemyError as exc:
            raise StoreError(f"the outbox database failed: {describe(exc)}") from exc

    return wrapper


def padded(values: Iterable[T]) -> list[T]:
    """`values` with the last one repeated up to the next of a few lengths (`SHAPES`),
    for an IN list: each new length is a statement of its own, prepared again and
    kept in SQLite's cache of every connection (the soak found `run` growing by
    one statement per new file in the day's folder, up to 128 per connection)."""
    out = list(values)
    if out:
        out += out[-1:] * (next((n for n in SHAPES if n >= len(out)), len(out)) - len(out))
    return out


def make_engine(url: str, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> Engine:
    """An engine with the settings the outbox relies on (SQLite: WAL, busy timeout,
    BEGIN IMMEDIATE for writes so that a read-then-write transaction never fails
    half-way)."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        # LAZY relies on WAL (without it, synchronous NORMAL may corrupt on power loss);
        # a file system that cannot hold WAL's shared memory keeps its old mode
        wal = str(cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower() == "wal"
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        record.info["synchronous"] = "FULL"
        record.info["wal"] = wal
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        lazy = options.get(LAZY, False) and conn.info.get("wal", False)
        synchronous = "NORMAL" if lazy else "FULL"
        if conn.info.get("synchronous") != synchronous:  # per connection, kept between
            conn.exec_driver_sql(f"PRAGMA synchronous = {synchronous}")  # transactions
            conn.info["synchronous"] = synchronous
        conn.exec_driver_sql("BEGIN" if options.get(READ_ONLY, False) else "BEGIN IMMEDIATE")

    return engine


@contextmanager
def lazy_begin(engine: Engine) -> Iterator[Connection]:
    """A write transaction whose commit does not wait for the disk (`LAZY`)."""
    with engine.connect().execution_options(**{LAZY: True}) as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        yield conn


def migrations_dir() -> Path:
    """`migrations/` beside the package (a checkout) or inside it (an installed wheel)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StoreError("the database migrations are missing from this installation")


_REVISION = re.compile(r"^(\d{4})_\w+\.py$")


def head_revision() -> str:
    """The newest migration, by its file name (`0003_….py` is revision "0003")."""
    names = [m.group(1) for p in (migrations_dir() / "versions").iterdir()
             if (m := _REVISION.match(p.name))]
    if not names:
        raise StoreError("the database migrations are missing from this installation")
    return max(names)


def current_revision(engine: Engine) -> str | None:
    """The schema's revision, or None for a new database."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        if not engine.dialect.has_table(conn, "alembic_version"):
            return None
        value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return str(value) if value is not None else None


@mapped
def ensure_schema(engine: Engine) -> bool:
    """Bring the schema up to date if it is not; True if a migration ran."""
    if current_revision(engine) == head_revision():
        return False
    migrate(engine)
    return True


@mapped
def migrate(engine: Engine) -> None:
    """Run Alembic's upgrade to head (idempotent)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
