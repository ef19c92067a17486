"""The outbox state machine as one readable transition table.

Every change of an entry's state goes through :func:`transition`; an event
that is not allowed in a state raises :class:`IllegalTransition`, so a bug
shows as an error instead of a lost or doubled document.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    HELD = "held"
    SKIPPED = "skipped"
    BOUNCED = "bounced"  # sent, then every customer address bounced


class Event(StrEnum):
    CLAIM = "claim"  # a send run takes the entry
    DELIVERED = "delivered"  # 250 after DATA
    TRANSIENT = "transient"  # 4xx, timeout, connection lost
    PERMANENT = "permanent"  # 5xx
    EXPIRE = "expire"  # retry lifetime used up
    INTERRUPTED = "interrupted"  # found in `sending` after a crash
    UNCLAIM_FRESH = "unclaim_fresh"  # run stopped before DATA, never tried before
    UNCLAIM_RETRY = "unclaim_retry"  # run stopped before DATA, tried before
    HOLD = "hold"
    RELEASE = "release"
    REQUEUE = "requeue"
    SKIP = "skip"  # no address, mandant disabled, superseded, duplicate
    BOUNCE = "bounce"  # every customer address reported back as undeliverable


S, E = State, Event

#: (state, event) -> new state. Anything not listed is illegal.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.PENDING, E.CLAIM): S.SENDING,
    (S.DEFERRED, E.CLAIM): S.SENDING,
    (S.SENDING, E.DELIVERED): S.SENT,
    (S.SENDING, E.TRANSIENT): S.DEFERRED,
    (S.SENDING, E.PERMANENT): S.FAILED,
    (S.SENDING, E.EXPIRE): S.FAILED,
    (S.SENDING, E.INTERRUPTED): S.DEFERRED,
    (S.SENDING, E.UNCLAIM_FRESH): S.PENDING,
    (S.SENDING, E.UNCLAIM_RETRY): S.DEFERRED,
    (S.DEFERRED, E.EXPIRE): S.FAILED,
    (S.PENDING, E.HOLD): S.HELD,
    (S.DEFERRED, E.HOLD): S.HELD,
    (S.FAILED, E.HOLD): S.HELD,
    (S.HELD, E.RELEASE): S.PENDING,
    (S.FAILED, E.REQUEUE): S.PENDING,
    (S.DEFERRED, E.REQUEUE): S.PENDING,
    (S.HELD, E.REQUEUE): S.PENDING,
    (S.SKIPPED, E.REQUEUE): S.PENDING,
    (S.SENT, E.REQUEUE): S.PENDING,
    (S.BOUNCED, E.REQUEUE): S.PENDING,
    (S.SENT, E.BOUNCE): S.BOUNCED,
    (S.PENDING, E.SKIP): S.SKIPPED,
    (S.DEFERRED, E.SKIP): S.SKIPPED,
    (S.HELD, E.SKIP): S.SKIPPED,
    (S.FAILED, E.SKIP): S.SKIPPED,
}

#: States a send run may take an entry from.
CLAIMABLE = frozenset({S.PENDING, S.DEFERRED})


class IllegalTransition(ValueError):
    """An event that the current state does not allow."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"an entry in state '{state}' cannot take the event '{event}'")
        self.state = state
        self.event = event


def transition(state: State, event: Event) -> State:
    """Return the state after `event`, or raise IllegalTransition."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def sources(event: Event) -> frozenset[State]:
    """The states in which `event` is legal (used to build guarded UPDATEs)."""
    return frozenset(s for (s, e) in TRANSITIONS if e is event)


def _targets() -> dict[Event, State]:
    out: dict[Event, State] = {}
    for (_, event), new in TRANSITIONS.items():
        if out.setdefault(event, new) is not new:
            raise AssertionError(f"event {event} leads to more than one state")
    return out


#: Every event leads to one state, whatever the source: so one guarded UPDATE
#: `SET state = target WHERE state IN sources` applies an event to many entries.
_TARGET = _targets()


def target(event: Event) -> State:
    """The state every legal `event` leads to."""
    return _TARGET[event]


class Refusal(StrEnum):
    """Why an event was not applied to an entry."""

    NO_SUCH_ENTRY = "no such entry"
    BUSY = "being sent"  # in `sending`: a send run holds it
    NEEDS_FORCE = "needs --force"  # held because its file is not a mailable PDF
    NOT_ALLOWED = "not allowed"
    UNCONFIRMED = "not confirmed"  # the customer has it already: a resend must be confirmed
    CONTENT_UNKNOWN = "content unknown"  # history never read, its file changed or unreadable


@dataclass(frozen=True)
class MoveResult:
    """What became of one entry asked to take an event."""

    entry_id: int
    event: Event
    state: State | None  # the state it is in now (None: no such entry)
    refusal: Refusal | None = None
    detail: str | None = None  # with NEEDS_FORCE: why the file is not mailable

    @property
    def ok(self) -> bool:
        return self.refusal is None

    def explain(self) -> str:
        """One line for an administrator."""
        if self.refusal is None:
            return f"entry {self.entry_id}: {self.state}"
        if self.refusal is Refusal.NO_SUCH_ENTRY:
            return f"entry {self.entry_id}: there is no such entry"
        if self.refusal is Refusal.NEEDS_FORCE:
            return (f"entry {self.entry_id}: held because its file cannot be mailed as it is"
                    f" ({self.detail}); `tikos-outbox release --force {self.entry_id}` sends"
                    " the recorded file anyway")
        if self.refusal is Refusal.CONTENT_UNKNOWN:
            return (f"entry {self.entry_id}: its archive file cannot be read now, or changed"
                    " since the first start took it as history without reading it: the"
                    " version to send is not known, nothing was changed (a file TIKOS"
                    " wrote anew is an entry of its own: tikos-outbox list --docno …)")
        if self.refusal is Refusal.BUSY:
            return (f"entry {self.entry_id}: it is being sent right now; nothing was changed"
                    " (try again when the send run is over)")
        return (f"entry {self.entry_id}: an entry in state '{self.state}' cannot take the"
                f" event '{self.event}'; nothing was changed")


#: Reasons of skipped entries whose document the customer has (or had before the
#: outbox): requeueing one mails it again, as requeueing a sent one does.
_HAD_IT = ("duplicate of entry", "baseline:")


def is_resend(state: State, reason: str | None) -> bool:
    """Whether requeueing an entry in this state mails the customer a document they
    have already (the console asks first)."""
    return state in (State.SENT, State.BOUNCED) or (
        state is State.SKIPPED and (reason or "").startswith(_HAD_IT))
