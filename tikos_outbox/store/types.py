"""Column types the outbox relies on, shared by the models and the store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator

from tikos_outbox.core import addresses
from tikos_outbox.core.addresses import Address

#: a stored recipient read back (the same customers recur: reading one takes ~20 µs)
parse_address: Callable[[str], Address | None] = lru_cache(maxsize=4096)(
    addresses.parse_address)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as UTC without offset on
    every engine, so SQLite and PostgreSQL hold the same values."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError("the outbox stores timezone-aware datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)
