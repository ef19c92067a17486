"""When a deferred entry is tried again, and when it is given up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryPolicy:
    first_backoff: timedelta = timedelta(minutes=30)
    max_backoff: timedelta = timedelta(hours=8)
    lifetime: timedelta = timedelta(days=5)  # Postfix' maximal_queue_lifetime

    def next_attempt(self, now: datetime, transient_failures: int) -> datetime:
        """When to try again after the n-th transient failure (n >= 1): doubling back-off."""
        n = max(1, transient_failures)
        backoff: timedelta = self.first_backoff * (2 ** min(n - 1, 20))
        return now + min(backoff, self.max_backoff)

    def expired(self, first_attempt: datetime | None, now: datetime) -> bool:
        """Whether the entry has been retried for longer than the lifetime."""
        return first_attempt is not None and now - first_attempt >= self.lifetime
