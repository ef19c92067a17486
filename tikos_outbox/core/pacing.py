"""Sending the way providers accept it: mails spaced evenly, quotas per sending
account over rolling windows, and a cool-down that doubles when the server keeps
saying "slow down".

Pure rules; the store keeps the counts (shared by every process with the same
account) and the use case waits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from tikos_outbox.core.replies import Stop
from tikos_outbox.core.settings import SmtpSettings

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: how long the log of sends is kept: the longest window and a margin
KEEP_SENDS = DAY + HOUR

#: the first cool-down after a "slow down", doubled on each repeat up to MAX_COOL
COOL_FIRST = {Stop.THROTTLE: timedelta(minutes=15), Stop.QUOTA: timedelta(hours=1),
              Stop.BLOCKED: timedelta(hours=1), Stop.SESSION: timedelta(0)}
MAX_COOL = timedelta(hours=24)


@dataclass(frozen=True)
class Limits:
    """An account's limits as configured; 0 = unlimited."""

    per_minute: int = 0
    per_hour: int = 0
    per_day: int = 0
    recipients_per_day: int = 0

    @classmethod
    def of(cls, smtp: SmtpSettings) -> Limits:
        return cls(per_minute=smtp.max_per_minute, per_hour=smtp.max_per_hour,
                   per_day=smtp.max_per_day, recipients_per_day=smtp.max_recipients_per_day)

    @property
    def interval(self) -> timedelta:
        """The even spacing between two mails (RFC-free: 60 s / max_per_minute)."""
        return timedelta(seconds=60.0 / self.per_minute) if self.per_minute > 0 else timedelta(0)

    @property
    def counted(self) -> bool:
        """Whether any quota needs the log of sends."""
        return bool(self.per_hour or self.per_day or self.recipients_per_day)


def account_of(smtp: SmtpSettings) -> str:
    """The sending account: server and login (every process with these shares one budget)."""
    return f"{smtp.username or '(no login)'} at {smtp.host.lower()}:{smtp.port}"


def _strictest(a: int, b: int) -> int:
    return min(x for x in (a, b) if x) if (a or b) else 0


def account_limits(smtps: Iterable[SmtpSettings]) -> dict[str, Limits]:
    """Each account's limits: where mandants sharing a login configure different ones,
    the strictest of each (one budget, whichever mandant sends)."""
    out: dict[str, Limits] = {}
    for smtp in smtps:
        mine, seen = Limits.of(smtp), out.get(account_of(smtp))
        out[account_of(smtp)] = mine if seen is None else Limits(
            *(_strictest(x, y) for x, y in zip(astuple(mine), astuple(seen), strict=True)))
    return out


@dataclass(frozen=True)
class Send:
    """One mail counted against an account: when, and to how many recipients."""

    at: datetime
    recipients: int


class PauseKind(StrEnum):
    QUOTA = "quota"  # our own configured quota: waits, a flush does not override it
    COOL_DOWN = "cool-down"  # the provider said slow down (or blocked): a flush overrides


@dataclass(frozen=True)
class Pause:
    """The account may not send now: until when, and why (one line for status)."""

    kind: PauseKind
    until: datetime
    reason: str
    blocked: bool = False  # the provider blocked the account for spam: urgent


def quota_pause(sends: Sequence[Send], limits: Limits, now: datetime,
                recipients: int) -> Pause | None:
    """Whether one more mail to `recipients` addresses would exceed a quota over its
    rolling window (`sends`: the account's log, oldest first); if so, until when."""
    checks: list[tuple[int, timedelta, str, bool]] = [
        (limits.per_hour, HOUR, "max_per_hour", False),
        (limits.per_day, DAY, "max_per_day", False),
        (limits.recipients_per_day, DAY, "max_recipients_per_day", True),
    ]
    latest: Pause | None = None
    for limit, window, key, by_recipients in checks:
        if limit <= 0:
            continue
        inside = [s for s in sends if s.at > now - window]
        weight = [s.recipients if by_recipients else 1 for s in inside]
        # a mail to more recipients than a day allows goes when the day is empty
        needed = min(recipients, limit) if by_recipients else 1
        excess = sum(weight) + needed - limit
        if excess <= 0:
            continue
        # the window must lose `excess` of its weight: the oldest sends drop out first
        dropped, until = 0, now + window
        for s, w in zip(inside, weight, strict=True):
            dropped += w
            if dropped >= excess:
                until = s.at + window
                break
        unit = "recipients" if by_recipients else "mails"
        per = "day" if window == DAY else "hour"
        reason = f"{key} = {limit} reached ({sum(weight)} {unit} in the last {per})"
        pause = Pause(PauseKind.QUOTA, until, reason)
        if latest is None or pause.until > latest.until:
            latest = pause
    return latest


def cool_down(stop: Stop, level: int) -> timedelta:
    """How long an account rests after its `level`-th "slow down" in a row (1, 2, …)."""
    first: timedelta = COOL_FIRST[stop]
    if not first:
        return first
    doubled: timedelta = first * (2 ** max(0, level - 1))
    return min(MAX_COOL, doubled)


@dataclass(frozen=True)
class Reserved:
    """A slot the store gave one mail: it may go at `at` (and not before)."""

    send_id: int
    account: str
    at: datetime
    troubled: bool  # the account had a slow-down or a session problem: a delivery clears it


@dataclass(frozen=True)
class AccountState:
    """What `status` shows of one sending account."""

    name: str
    sent_last_hour: int
    sent_last_day: int
    recipients_last_day: int
    cool_until: datetime | None
    cool_kind: Stop | None
    cool_reason: str | None
    quota_until: datetime | None
    quota_reason: str | None

    @property
    def problem(self) -> str | None:
        """A session problem (sender refused, HELO refused) since the last delivery:
        no pause to wait out, an administrator's move."""
        return self.cool_reason if self.cool_kind is Stop.SESSION else None

    def pause(self, now: datetime) -> Pause | None:
        """Why the account does not send now, if it does not."""
        if self.cool_until is not None and self.cool_until > now:
            return Pause(PauseKind.COOL_DOWN, self.cool_until, self.cool_reason or "",
                         blocked=self.cool_kind is Stop.BLOCKED)
        if self.quota_until is not None and self.quota_until > now:
            return Pause(PauseKind.QUOTA, self.quota_until, self.quota_reason or "")
        return None
