"""The pieces of one send run: its report, the mandant's part of it, why it halts,
the claim's lease, and the messages built ahead."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from tikos_outbox.core.pacing import Limits
from tikos_outbox.core.ports import Clock, Mailer
from tikos_outbox.core.settings import Mandant
from tikos_outbox.core.views import Claimed
from tikos_outbox.usecases.compose import Built, Composer

INTERRUPTED = "interrupted — may have been delivered"
#: told after every mail and during every pacing wait (a terminal's progress display)
ProgressHook = Callable[["SendReport"], None]
MAX_BATCH = 20  # entries claimed at once


@dataclass
class SendReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    stopped: list[str] = field(default_factory=list)  # why a run stopped, per account
    paused: list[str] = field(default_factory=list)  # accounts resting: quota, cool-down
    due: int = 0  # entries due when the run began (for a progress display)
    waiting_s: float = field(default=0.0, compare=False)  # the pacing wait right now

    @property
    def done(self) -> int:
        return self.sent + self.deferred + self.failed

    @property
    def ok(self) -> bool:
        return not (self.failed or self.stopped or self.deferred)

    def as_dict(self) -> dict[str, int | list[str]]:
        data: dict[str, int | list[str]] = asdict(self)
        del data["waiting_s"]
        return data


@dataclass
class Run:
    """One mandant's part of a send run."""

    m: Mandant
    mailer: Mailer
    account: str
    limits: Limits
    started: datetime
    force: bool
    report: SendReport
    leased_until: datetime | None = None  # the current batch's claims, as claimed


class Unsendable(Exception):
    """The message cannot be built (any more): the entry fails with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Halt(Exception):
    """Sending with this account ends for this run; the entries in hand go back."""

    def __init__(self, line: str | None, paused: bool = False,
                 stopped_by: int | None = None) -> None:
        super().__init__(line or "stopped")
        self.line = line
        self.paused = paused
        self.stopped_by = stopped_by  # the entry whose reply was about the account


def lease_for(m: Mandant, mails: int) -> timedelta:
    """How long a claim of `mails` entries may take before another process may
    take them over: generous, since a mail's claim is renewed before its DATA once the
    batch's lease would end sooner than a fresh one."""
    smtp = m.smtp
    per_mail_s = 60.0 / smtp.max_per_minute if smtp.max_per_minute else 0.0
    return timedelta(seconds=900 + mails * (per_mail_s + smtp.timeout_s))


def prebuilt(pool: ThreadPoolExecutor, composer: Composer, m: Mandant,
              batch: list[Claimed], clock: Clock) -> Iterator[tuple[Claimed, Future[Built | str]]]:
    """Each claimed entry with its message, the next one built while the current
    one is sent."""
    upcoming = pool.submit(composer.build, m, batch[0], clock.now()) if batch else None
    for i, c in enumerate(batch):
        assert upcoming is not None
        current = upcoming
        if i + 1 < len(batch):
            upcoming = pool.submit(composer.build, m, batch[i + 1], clock.now())
        yield c, current
