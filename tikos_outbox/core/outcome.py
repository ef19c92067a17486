"""What one send attempt means for an entry: the event it takes, and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tikos_outbox.core.replies import Outcome, Reply, classify, explain
from tikos_outbox.core.retry import RetryPolicy
from tikos_outbox.core.states import Event


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    event: Event
    reason: str | None = None  # stored with a failed entry, in words
    next_attempt_at: datetime | None = None  # for a deferred entry


def judge(reply: Reply, *, first_attempt_at: datetime | None, transient_failures: int,
          now: datetime, policy: RetryPolicy) -> Verdict:
    """Delivered, deferred with its next try, or failed (also when the retry
    lifetime is used up)."""
    outcome = classify(reply)
    if outcome is Outcome.DELIVERED:
        return Verdict(outcome, Event.DELIVERED)
    if outcome is Outcome.PERMANENT:
        return Verdict(outcome, Event.PERMANENT, reason=explain(reply))
    if policy.expired(first_attempt_at or now, now):
        days = policy.lifetime.total_seconds() / 86400
        return Verdict(outcome, Event.EXPIRE, reason=f"gave up after {days:g} days;"
                                                     f" last reply: {reply}")
    return Verdict(outcome, Event.TRANSIENT,
                   next_attempt_at=policy.next_attempt(now, transient_failures + 1))
