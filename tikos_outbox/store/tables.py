"""The outbox tables as the store uses them: read from the database itself, so
that commands need neither the models' library nor a second definition.

`models.py` declares the schema (Alembic creates exactly that); this module
reflects what Alembic created, with aware UTC datetimes on every engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, Table, event
from sqlalchemy.engine import Inspector

from tikos_outbox.store.engine import READ_ONLY
from tikos_outbox.store.types import UTCDateTime


@dataclass(frozen=True)
class Tables:
    entry: Table
    attempt: Table
    blob: Table
    meta: Table
    delivery: Table
    account: Table
    account_send: Table
    bounce: Table
    web_user: Table
    action: Table


def _utc(_inspector: Inspector, _table: Table, column: Any) -> None:
    if isinstance(column["type"], DateTime):
        column["type"] = UTCDateTime()


def reflect(engine: Engine) -> Tables:
    metadata = MetaData()
    event.listen(metadata, "column_reflect", _utc)
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        metadata.reflect(conn, only=["entry", "attempt", "blob", "meta", "delivery",
                                       "account", "account_send", "bounce", "web_user", "action"])
    t = metadata.tables
    return Tables(entry=t["entry"], attempt=t["attempt"], blob=t["blob"], meta=t["meta"],
                  delivery=t["delivery"], account=t["account"],
                  account_send=t["account_send"], bounce=t["bounce"],
                  web_user=t["web_user"], action=t["action"])
