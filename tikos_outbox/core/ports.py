"""The boundaries the service talks to, as Protocols. Adapters implement them;
tests use the real adapters against real servers and a fake clock only."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait; a fake clock just advances."""
        ...


class RecipientLookup(Protocol):
    def lookup(self, mandant: int, fields: dict[str, str]) -> list[str]:
        """The raw address values for a document (may hold several separated by ';' or ',').

        Raises LookupUnavailable when the source cannot be asked right now.
        """
        ...


class LookupUnavailable(Exception):
    """The address source (SQL Server, CSV file) cannot be read right now."""
