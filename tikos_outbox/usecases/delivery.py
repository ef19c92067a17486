"""Delivery: claim what is due, send it outside any transaction, record each
result in its own commit right after the server's reply."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

from tikos_outbox.core import attention
from tikos_outbox.core.addresses import Address
from tikos_outbox.core.pacing import Limits, Pause, PauseKind, Reserved, account_limits, account_of
from tikos_outbox.core.ports import (
    Clock,
    Mailer,
    MailerFactory,
    Notes,
    OutboxCommands,
    OutboxQueries,
    SecretUnavailable,
    SendingAccounts,
    StoreError,
)
from tikos_outbox.core.recipients import DState, Role, Verdict, fail_all, judge, settle
from tikos_outbox.core.replies import (
    Outcome,
    Reply,
    RunStopped,
    SendResult,
    Stage,
    Stop,
    certain,
    explain,
    explain_stop,
    stop_for,
)
from tikos_outbox.core.settings import Config, Mandant
from tikos_outbox.core.states import Event
from tikos_outbox.core.views import Claimed, Finish
from tikos_outbox.usecases.compose import Built, Composer
from tikos_outbox.usecases.intake import Intake

log = logging.getLogger("tikos_outbox")

INTERRUPTED = "interrupted — may have been delivered"
MAX_BATCH = 20  # entries claimed at once


@dataclass
class SendReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    stopped: list[str] = field(default_factory=list)  # why a run stopped, per account
    paused: list[str] = field(default_factory=list)  # accounts resting: quota, cool-down

    @property
    def ok(self) -> bool:
        return not (self.failed or self.stopped or self.deferred)

    def as_dict(self) -> dict[str, int | list[str]]:
        return asdict(self)


@dataclass(frozen=True)
class _Run:
    """One mandant's part of a send run."""

    m: Mandant
    mailer: Mailer
    account: str
    limits: Limits
    started: datetime
    force: bool
    report: SendReport


class _Unsendable(Exception):
    """The message cannot be built (any more): the entry fails with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Halt(Exception):
    """Sending with this account ends for this run; the entries in hand go back."""

    def __init__(self, line: str | None, paused: bool = False,
                 stopped_by: int | None = None) -> None:
        super().__init__(line or "stopped")
        self.line = line
        self.paused = paused
        self.stopped_by = stopped_by  # the entry whose reply was about the account


class Delivery:
    def __init__(self, config: Config, queries: OutboxQueries, commands: OutboxCommands,
                 accounts: SendingAccounts, intake: Intake, composer: Composer,
                 mailers: MailerFactory, clock: Clock, notes: Notes, worker: str,
                 dead_worker: Callable[[str], bool], stop: threading.Event) -> None:
        self.config = config
        self.queries = queries
        self.commands = commands
        self.accounts = accounts
        self.intake = intake
        self.composer = composer
        self.mailers = mailers
        self.clock = clock
        self.notes = notes
        self.worker = worker
        self.dead_worker = dead_worker
        self.stop = stop
        self._lock = threading.Lock()

    def recover_interrupted(self) -> list[int]:
        """Entries a crashed run left in `sending` become deferred, to be sent again
        with the same Message-ID."""
        now = self.clock.now()
        recovered = []
        for stale in self.queries.stale_claims(now, self.dead_worker):
            if self.commands.recover(stale, now, INTERRUPTED):
                log.warning("entry %d deferred: %s", stale.entry_id, INTERRUPTED)
                recovered.append(stale.entry_id)
        return recovered

    def send_due(self, force: bool = False) -> SendReport:
        """One send run: every due entry, mandant by mandant, paced per account.

        `force` (flush) also takes deferred entries whose back-off has not run out,
        and sends with an account that is cooling down after a "slow down" (the
        administrator decided); quotas hold for it too. Only one run at a time per
        process; other processes are kept off each entry by the atomic claim, and
        share each account's pacing and quotas through the database.
        """
        report = SendReport()
        with self._lock:
            started = self.clock.now()
            self.recover_interrupted()
            self.intake.resolve_recipients()
            self._skip_disabled(report)
            halted: set[str] = set()  # accounts that stopped in this run: once per run
            limits = account_limits(m.smtp for m in self.config.enabled_mandants)
            for m in self.config.enabled_mandants:
                if self.stop.is_set():
                    break
                account = account_of(m.smtp)
                if account not in halted and not self._send_mandant(
                        m, account, limits[account], started, force, report):
                    halted.add(account)
            finished = self.clock.now()
            self.commands.set_meta("last_run", finished.isoformat(), finished)
            self.commands.set_meta("last_run_report", json.dumps(report.as_dict()), finished)
            if report.stopped:
                self.notes.note_error(report.stopped[-1])
            log.info("send run: %d sent, %d deferred, %d failed%s%s", report.sent,
                     report.deferred, report.failed,
                     f"; stopped: {report.stopped[-1]}" if report.stopped else "",
                     f"; paused: {report.paused[-1]}" if report.paused else "")
        return report

    def _skip_disabled(self, report: SendReport) -> None:
        now = self.clock.now()
        enabled = {m.id for m in self.config.enabled_mandants}
        configured = {m.id for m in self.config.mandants}
        for entry_id, mandant in self.queries.due_outside(enabled):
            why = ("mandant disabled" if mandant in configured
                   else f"mandant {mandant} is no longer in the config")
            if self.commands.move([entry_id], Event.SKIP, now, reason=why)[entry_id].ok:
                report.skipped += 1
                log.info("entry %d skipped: %s", entry_id, why)

    def _send_mandant(self, m: Mandant, account: str, limits: Limits, started: datetime,
                      force: bool, report: SendReport) -> bool:
        """Send the mandant's due entries; False if sending with its account stopped."""
        try:
            resting = self.accounts.pause(account, limits, self.clock.now(), force)
            if resting is not None:  # not even a connection or a login while it rests
                line = self._pause_line(account, resting)
                report.paused.append(line)
                log.info("sending with %s paused: %s", account, line)
                return False
            mailer = self.mailers(m.smtp)
        except SecretUnavailable as exc:  # says which file and what to do
            report.stopped.append(str(exc))
            return False
        run = _Run(m, mailer, account, limits, started, force, report)
        # the next mail is built while the server takes the current one
        with mailer, ThreadPoolExecutor(max_workers=1, thread_name_prefix="build") as pool:
            for batch in self._batches(run):
                try:
                    for c, built in _prebuilt(pool, self.composer, m, batch, self.clock):
                        if self.stop.is_set():
                            raise _Halt(None)
                        self._send_one(run, c, built.result())
                        batch = batch[1:]
                except StoreError as exc:  # the database failed mid-run: give back
                    with contextlib.suppress(StoreError):  # what it can; the lease does
                        self.commands.unclaim(batch, self.worker, self.clock.now())  # the rest
                    report.stopped.append(str(exc))
                    log.error("send run stopped for %s: %s", account, exc)
                    return False
                except RunStopped as exc:
                    self.commands.unclaim(batch, self.worker, self.clock.now())
                    stop = stop_for(exc.reply)
                    line = (self._stopped(run, stop, exc.reply) if stop is not None
                            else explain(exc.reply))
                    report.stopped.append(line)
                    log.error("send run stopped for %s: %s", account, line)
                    return False
                except _Halt as halt:
                    self.commands.unclaim(batch, self.worker, self.clock.now(),
                                          stopped_by=halt.stopped_by)
                    if halt.line is not None:
                        (report.paused if halt.paused else report.stopped).append(halt.line)
                        (log.info if halt.paused else log.error)(
                            "sending with %s %s: %s", account,
                            "paused" if halt.paused else "stopped", halt.line)
                    return False
        return True

    def _stopped(self, run: _Run, stop: Stop, reply: Reply) -> str:
        """The line for a reply about the account; a slow-down or a block also starts
        the account's cool-down (shared with every process sending with it)."""
        line = explain_stop(stop, reply, run.m.smtp.username, run.m.sender.address)
        pause = self.accounts.cool(run.account, stop, line, self.clock.now())
        return line if stop is Stop.SESSION else f"{line}; resumes {self._local(pause.until)}"

    def _local(self, when: datetime) -> str:
        local = when.astimezone(self.config.window.tz)
        today = self.clock.now().astimezone(self.config.window.tz).date()
        return local.strftime("%H:%M" if local.date() == today else "%d.%m.%Y %H:%M")

    def _pause_line(self, account: str, pause: Pause) -> str:
        if pause.blocked:  # the reason says URGENT and what to do
            return f"sending with {account} waits until {self._local(pause.until)}: {pause.reason}"
        what = ("cooling down after the provider said slow down"
                if pause.kind is PauseKind.COOL_DOWN else "quota reached")
        return (f"sending with {account} waits until {self._local(pause.until)} ({what}:"
                f" {pause.reason})")

    def _batches(self, run: _Run) -> Iterator[list[Claimed]]:
        """Due entries of the mandant, claimed a few at a time, until none are left."""
        size = max(1, min(run.m.smtp.max_per_connection, MAX_BATCH))
        lease = _lease(run.m, size)
        while not self.stop.is_set():
            now = self.clock.now()
            batch = self.commands.claim_due(now, self.worker, now + lease, size,
                                            mandant=run.m.id,
                                            force_before=run.started if run.force else None,
                                            bcc=run.m.sender.bcc)
            if not batch:
                return
            yield batch

    def _wait_until(self, at: datetime) -> bool:
        """Wait for the account's pacing slot; False if told to stop meanwhile."""
        while not self.stop.is_set():
            left = (at - self.clock.now()).total_seconds()
            if left <= 0:
                return True
            self.clock.sleep(min(left, 0.5))
        return False

    def _send_one(self, run: _Run, c: Claimed, built: Built | str) -> None:
        """Offer the message to the recipients still due, and record what each got."""
        now = self.clock.now()
        if isinstance(built, str):  # cannot be built or read: fails without a word sent
            self._unsendable(run, c, built)
            return
        due = c.due
        if not due:  # nobody left (an entry carried over from before per-recipient delivery)
            verdict = judge(c.deliveries, Reply(Stage.DATA, 250, "nothing left to send"),
                            first_attempt_at=c.first_attempt_at,
                            transient_failures=c.transient_failures, now=now,
                            policy=self.config.outbox.retry)
            self._finish(run, c, verdict, Finish(server="", outcome=verdict.outcome.value,
                                                 code=None, reply="nothing left to send"))
            return
        slot = self.accounts.reserve(run.account, run.limits, len(due), self.clock.now(),
                                     force=run.force)
        if isinstance(slot, Pause):
            raise _Halt(self._pause_line(run.account, slot), paused=not slot.blocked)
        try:
            result = self._offer(run, c, built, due, slot)
        except _Unsendable as exc:
            self.accounts.release(slot)
            self._unsendable(run, c, exc.reason)
            return
        except BaseException:
            self.accounts.release(slot)  # not offered: it does not count
            raise
        if result is None:
            return
        now = self.clock.now()
        reply = result.reply
        stop = stop_for(reply)
        # an ambiguous "slow down" or "spam" to the mail that already stopped the account
        # once is that mail's own fate: one mail never holds up its account for good
        if stop is not None and (certain(reply) or stop is Stop.SESSION or not c.account_stops):
            self.accounts.release(slot)  # the server took nothing
            raise _Halt(self._stopped(run, stop, reply), stopped_by=c.id)
        verdict = judge(settle(c.deliveries, result, now), reply,
                        first_attempt_at=c.first_attempt_at,
                        transient_failures=c.transient_failures, now=now,
                        policy=self.config.outbox.retry)
        self._finish(run, c, verdict, Finish(
            server=run.mailer.server, outcome=verdict.outcome.value, code=reply.code,
            reply=reply.text, refused={a: str(r) for a, r in result.refused.items()} or None,
            next_attempt_at=verdict.next_attempt_at, reason=verdict.reason))
        if slot.troubled and verdict.event is Event.DELIVERED:  # after the result is kept
            self.accounts.cleared(run.account, now)

    def _unsendable(self, run: _Run, c: Claimed, reason: str) -> None:
        now = self.clock.now()
        self._finish(run, c, fail_all(c.deliveries, reason, now),
                     Finish(server="", outcome=Outcome.PERMANENT.value, code=None,
                            reply=reason, reason=reason,
                            attention=attention.unsendable(c.customer, reason)))

    def _offer(self, run: _Run, c: Claimed, built: Built, due: list[str],
               slot: Reserved) -> SendResult | None:
        """Wait for the slot, renew the claim, and hand the message over (7-bit for a
        server without 8BITMIME); None if the claim was lost meanwhile."""
        if not self._wait_until(slot.at):
            raise _Halt(None)
        if not self.commands.renew(c, self.worker, self.clock.now() + _lease(run.m, 1)):
            log.error("entry %d: its claim ran out and another process took it over; not"
                      " sent from here", c.id)
            return None
        if built.eight_bit and not built.smtputf8 and not run.mailer.accepts_8bit():
            rebuilt = self.composer.build(run.m, c, self.clock.now(), seven_bit=True)
            if isinstance(rebuilt, str):  # gone meanwhile: the reason, not "8-bit"
                raise _Unsendable(rebuilt)
            built = rebuilt
        return run.mailer.send(Address(run.m.sender.address).envelope, due, built.data,
                               smtputf8=built.smtputf8)

    def _finish(self, run: _Run, c: Claimed, verdict: Verdict, attempt: Finish) -> None:
        if verdict.event is Event.DELIVERED:
            line = attention.partly_refused(c.customer, verdict.recipients)
        elif verdict.event is Event.TRANSIENT:
            line = None
        else:
            line = attempt.attention or attention.failed(c.customer,
                                                         verdict.reason or attempt.reply)
        result = replace(attempt, recipients=verdict.recipients, attention=line)
        if not self.commands.finish(c, self.worker, verdict.event, self.clock.now(), result):
            log.error("entry %d was taken over by another worker while sending", c.id)
            return
        report = run.report
        shown = f"{result.code} {result.reply}".strip() if result.code else result.reply
        if verdict.event is Event.DELIVERED:
            report.sent += 1
            got = [r.address for r in verdict.recipients if r.state is DState.DELIVERED
                   and r.role is Role.TO]
            log.info("entry %d sent: %s to %s (%s)", c.id, c.file_name, ", ".join(got), shown)
            for r in verdict.recipients:
                if r.state is DState.REFUSED:
                    log.warning("entry %d: %s %s refused: %s", c.id,
                                "Bcc copy" if r.role is Role.BCC else "address", r.address,
                                r.reply)
        elif verdict.event is Event.TRANSIENT:
            report.deferred += 1
            waiting = [r.address for r in verdict.recipients if r.due and r.role is Role.TO]
            log.warning("entry %d deferred for %s: %s (%s)", c.id, ", ".join(waiting),
                        c.file_name, shown)
        else:
            report.failed += 1
            log.error("entry %d failed: %s (%s)", c.id, c.file_name, result.reason or shown)


def _lease(m: Mandant, mails: int) -> timedelta:
    """How long a claim of `mails` entries may take before another process may
    take them over: generous, since every mail's claim is renewed before its DATA."""
    smtp = m.smtp
    per_mail_s = 60.0 / smtp.max_per_minute if smtp.max_per_minute else 0.0
    return timedelta(seconds=900 + mails * (per_mail_s + smtp.timeout_s))


def _prebuilt(pool: ThreadPoolExecutor, composer: Composer, m: Mandant,
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
