"""Per-recipient delivery, modelled like a mail server's queue file: each entry
has its recipients, each with a role, its own state and its last reply. What
the server said to one transaction becomes each recipient's new state; the
customer's addresses (role `to`) alone decide the entry's outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from tikos_outbox.core.replies import Outcome, Reply, SendResult, classify, explain
from tikos_outbox.core.retry import RetryPolicy
from tikos_outbox.core.states import Event


class Role(StrEnum):
    TO = "to"  # the customer's address from TIKOS
    BCC = "bcc"  # the laundry's own copy


class DState(StrEnum):
    PENDING = "pending"
    DEFERRED = "deferred"  # a 4xx or a lost connection: tried again at a later run
    DELIVERED = "delivered"  # the server took it (250 after DATA)
    REFUSED = "refused"  # a 5xx, or given up
    BOUNCED = "bounced"  # accepted, then bounced by the customer's provider


DUE = frozenset({DState.PENDING, DState.DEFERRED})


@dataclass(frozen=True)
class Recipient:
    """One recipient of an entry, as stored."""

    address: str  # the envelope address
    role: Role
    state: DState = DState.PENDING
    reply: str | None = None
    at: datetime | None = None
    name: str = ""

    @property
    def due(self) -> bool:
        return self.state in DUE


@dataclass(frozen=True)
class Verdict:
    """What one attempt means: the entry's event, and each recipient's new state."""

    outcome: Outcome
    event: Event
    recipients: tuple[Recipient, ...]
    reason: str | None = None  # stored with a failed entry, in words
    next_attempt_at: datetime | None = None  # for a deferred entry


def settle(recipients: Sequence[Recipient], result: SendResult, now: datetime
           ) -> tuple[Recipient, ...]:
    """Each due recipient's state after one transaction offered to all due ones.

    A recipient refused at RCPT takes its own reply; one accepted at RCPT takes the
    reply to DATA; one the transaction never reached (MAIL refused, connection
    lost) takes the transaction's reply. Nothing confirmed is ever delivered.
    """
    final = classify(result.reply)
    out = []
    for r in recipients:
        if not r.due:
            out.append(r)
            continue
        own = result.refused.get(r.address)
        if own is not None:
            state = _state(classify(own))
            out.append(replace(r, state=state, reply=str(own), at=now))
        elif r.address in result.accepted or final is not Outcome.DELIVERED:
            out.append(replace(r, state=_state(final), reply=str(result.reply), at=now))
        else:  # DATA accepted, yet the server never took this one at RCPT: not confirmed
            out.append(replace(r, state=DState.DEFERRED, reply="not confirmed by the server",
                               at=now))
    return tuple(out)


def _state(outcome: Outcome) -> DState:
    return {Outcome.DELIVERED: DState.DELIVERED, Outcome.TRANSIENT: DState.DEFERRED,
            Outcome.PERMANENT: DState.REFUSED}[outcome]


def judge(recipients: Sequence[Recipient], reply: Reply, *, first_attempt_at: datetime | None,
          transient_failures: int, now: datetime, policy: RetryPolicy) -> Verdict:
    """The entry's outcome from its customers' states after an attempt:

    - a customer address still due: deferred (retried alone later), unless the
      retry lifetime is used up — then it is refused as given up;
    - none due, at least one delivered: sent (refused ones need attention);
    - none due, none delivered: failed, whatever the Bcc copy got.

    The Bcc copy never decides; once the entry is done, a Bcc still due is not
    retried on its own.
    """
    rows = list(recipients)
    due = [r for r in rows if r.role is Role.TO and r.due]
    if due and policy.expired(first_attempt_at or now, now):
        days = policy.lifetime.total_seconds() / 86400
        gave_up = f"gave up after {days:g} days; last reply: {reply}"
        rows = [replace(r, state=DState.REFUSED, reply=gave_up, at=now)
                if r.role is Role.TO and r.due else r for r in rows]
        return _done(rows, now, Event.EXPIRE, Outcome.TRANSIENT, gave_up)
    if due:
        return Verdict(classify(reply), Event.TRANSIENT, tuple(rows),
                       next_attempt_at=policy.next_attempt(now, transient_failures + 1))
    return _done(rows, now, Event.PERMANENT, classify(reply), explain(reply))


def _done(rows: list[Recipient], now: datetime, failed: Event, outcome: Outcome,
          reason: str) -> Verdict:
    customers = [r for r in rows if r.role is Role.TO]
    finished = tuple(replace(r, state=DState.REFUSED, at=now,
                             reply=f"{r.reply or ''} (not retried: the customer's copy is done)"
                             .strip()) if r.role is Role.BCC and r.due else r for r in rows)
    if any(r.state is DState.DELIVERED for r in customers):
        return Verdict(Outcome.DELIVERED, Event.DELIVERED, finished)
    if failed is Event.PERMANENT and (len(customers) > 1 or outcome is Outcome.DELIVERED):
        # each customer address its own reply (the transaction as such may have gone
        # through, for the Bcc copy)
        reason = "; ".join(f"{r.address}: {r.reply}" for r in customers)
        outcome = Outcome.PERMANENT
    return Verdict(outcome, failed, finished, reason=reason)


def fail_all(recipients: Sequence[Recipient], why: str, now: datetime) -> Verdict:
    """The message cannot be built or read: every due recipient refused, entry failed."""
    rows = tuple(replace(r, state=DState.REFUSED, reply=why, at=now) if r.due else r
                 for r in recipients)
    return Verdict(Outcome.PERMANENT, Event.PERMANENT, rows, reason=why)
