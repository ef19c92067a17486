"""`migrate --copy-from`: every row of another outbox into an empty one."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select, text

from tikos_outbox.store import Store
from tikos_outbox.store.engine import mapped

CHUNK = 500


@mapped
def copy_outbox(source_url: str, target: Store) -> int:
    """Copy every row of another outbox (e.g. the old SQLite file) into `target`,
    which must be empty (ValueError otherwise). Ids, states, attempts and stored
    copies are kept; returns how many entries were copied."""
    if "://" not in source_url:
        source_url = "sqlite:///" + Path(source_url).absolute().as_posix()
    t = target.tables
    with target.engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(t.entry)).scalar():
            raise ValueError("the target outbox already holds entries; copy only into an"
                             " empty outbox")
    source = Store(source_url)
    try:
        copied = 0
        for name in ("blob", "entry", "attempt", "delivery", "meta"):
            src_table, dst_table = getattr(source.tables, name), getattr(t, name)
            with source.engine.connect() as src:
                rows = [dict(r._mapping) for r in src.execute(select(src_table))]
            with target.engine.begin() as dst:
                if name == "meta":
                    dst.execute(dst_table.delete())
                for i in range(0, len(rows), CHUNK):
                    dst.execute(dst_table.insert(), rows[i:i + CHUNK])
            if name == "entry":
                copied = len(rows)
        if target.engine.dialect.name == "postgresql":
            with target.engine.begin() as dst:
                for name in ("entry", "attempt", "delivery"):
                    dst.execute(text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'),"
                        f" COALESCE((SELECT MAX(id) FROM {name}), 1))"))
        return copied
    finally:
        source.close()
