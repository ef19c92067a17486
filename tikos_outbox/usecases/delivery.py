"""Delivery: claim what is due, send it outside any transaction, record each
result in its own commit right after the server's reply."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime

from tikos_outbox.core import attention
from tikos_outbox.core.addresses import Address
from tikos_outbox.core.bounces import envid_for
from tikos_outbox.core.pacing import Limits, Pause, PauseKind, Reserved, account_limits, account_of
from tikos_outbox.core.ports import (
    Clock,
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
from tikos_outbox.usecases.sendrun import (
    INTERRUPTED,
    MAX_BATCH,
    Halt,
    ProgressHook,
    Run,
    SendReport,
    Unsendable,
    lease_for,
    prebuilt,
)

log = logging.getLogger("tikos_outbox")


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
        self._progress: ProgressHook | None = None
        self._report = SendReport()
        # what a database failure kept from being written: results the server gave
        # (recorded, never sent again) and claims to give back, as soon as it answers
        self._unrecorded: dict[int, tuple[Claimed, Event, Finish]] = {}
        self._give_back: dict[int, Claimed] = {}

    def hand_back(self) -> int:
        """Record the results and give back the claims that a database failure held up
        (the runner calls this every few seconds; a send run does it first itself);
        returns how many are done."""
        if not (self._unrecorded or self._give_back) or not self._lock.acquire(blocking=False):
            return 0
        try:
            return self._hand_back()
        finally:
            self._lock.release()

    def _hand_back(self) -> int:
        done = 0
        for entry_id, (c, event, result) in list(self._unrecorded.items()):
            with contextlib.suppress(StoreError):
                self.commands.finish(c, self.worker, event, self.clock.now(), result)
                del self._unrecorded[entry_id]
                done += 1
        if self._give_back:
            with contextlib.suppress(StoreError):
                self.commands.unclaim(list(self._give_back.values()), self.worker, self.clock.now())
                done += len(self._give_back)
                self._give_back.clear()
        if done:
            log.warning("the outbox database answers again: %d entr%s recorded or given"
                        " back", done, "y" if done == 1 else "ies")
        return done

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

    def send_due(self, force: bool = False, progress: ProgressHook | None = None
                 ) -> SendReport:
        """One send run: every due entry, mandant by mandant, paced per account.

        `force` (flush) also takes deferred entries whose back-off has not run out,
        and sends with an account that is cooling down after a "slow down" (the
        administrator decided); quotas hold for it too. Only one run at a time per
        process; other processes are kept off each entry by the atomic claim, and
        share each account's pacing and quotas through the database.
        """
        report = SendReport()
        self._progress = progress
        with self._lock:
            started = self.clock.now()
            self._hand_back()
            self.recover_interrupted()
            self.intake.resolve_recipients()
            self._skip_disabled(report)
            counts = self.queries.counts()
            report.due = counts.get("pending", 0) + counts.get("deferred", 0)
            self._report = report
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
            with contextlib.suppress(StoreError):  # a run the database failed still reports
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
        run = Run(m, mailer, account, limits, started, force, report)
        # the next mail is built while the server takes the current one
        with mailer, ThreadPoolExecutor(max_workers=1, thread_name_prefix="build") as pool:
            for batch in self._batches(run):
                try:
                    for c, built in prebuilt(pool, self.composer, m, batch, self.clock):
                        if self.stop.is_set():
                            raise Halt(None)
                        self._send_one(run, c, built.result())
                        batch = batch[1:]
                except StoreError as exc:  # the database failed mid-run: give the claims
                    rest = [b for b in batch if b.id not in self._unrecorded]  # back, now
                    try:  # or as soon as it answers again (hand_back)
                        self.commands.unclaim(rest, self.worker, self.clock.now())
                    except StoreError:
                        self._give_back.update({b.id: b for b in rest})
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
                except Halt as halt:
                    self.commands.unclaim(batch, self.worker, self.clock.now(),
                                          stopped_by=halt.stopped_by)
                    if halt.line is not None:
                        (report.paused if halt.paused else report.stopped).append(halt.line)
                        (log.info if halt.paused else log.error)(
                            "sending with %s %s: %s", account,
                            "paused" if halt.paused else "stopped", halt.line)
                    return False
        return True

    def _stopped(self, run: Run, stop: Stop, reply: Reply) -> str:
        """The line for a reply about the account; a slow-down or a block also starts
        the account's cool-down (shared with every process sending with it)."""
        line = explain_stop(stop, reply, run.m.smtp.username, run.m.sender.address)
        pause = self.accounts.cool(run.account, stop, line, self.clock.now(), reply.retry_after_s)
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

    def _batches(self, run: Run) -> Iterator[list[Claimed]]:
        """Due entries of the mandant, claimed a few at a time, until none are left."""
        size = max(1, min(run.m.smtp.max_per_connection, MAX_BATCH))
        lease = lease_for(run.m, size)
        while not self.stop.is_set():
            now = self.clock.now()
            batch = self.commands.claim_due(now, self.worker, now + lease, size,
                                            mandant=run.m.id,
                                            force_before=run.started if run.force else None,
                                            bcc=run.m.sender.bcc)
            if not batch:
                return
            run.leased_until = now + lease
            yield batch

    def _wait_until(self, at: datetime) -> bool:
        """Wait for the account's pacing slot; False if told to stop meanwhile."""
        while not self.stop.is_set():
            left = (at - self.clock.now()).total_seconds()
            if self._progress is not None:
                self._report.waiting_s = max(0.0, left)
                self._progress(self._report)
            if left <= 0:
                return True
            self.clock.sleep(min(left, 0.5))
        return False

    def _send_one(self, run: Run, c: Claimed, built: Built | str) -> None:
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
            raise Halt(self._pause_line(run.account, slot), paused=not slot.blocked)
        try:
            result = self._offer(run, c, built, due, slot)
        except Unsendable as exc:
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
        # an ambiguous "slow down", "spam" or 421 to a mail that stopped the account once
        # is that mail's own fate: one mail never holds up its account for good (a refused
        # session, 5yz: sender, relay, stops every run until the admin acts)
        for_good = certain(reply) or (stop is Stop.SESSION and (reply.code or 0) >= 500)
        if stop is not None and (for_good or not c.account_stops):
            self.accounts.release(slot)  # the server took nothing
            raise Halt(self._stopped(run, stop, reply), stopped_by=c.id)
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

    def _unsendable(self, run: Run, c: Claimed, reason: str) -> None:
        now = self.clock.now()
        self._finish(run, c, fail_all(c.deliveries, reason, now),
                     Finish(server="", outcome=Outcome.PERMANENT.value, code=None,
                            reply=reason, reason=reason,
                            attention=attention.unsendable(c.customer, reason)))

    def _offer(self, run: Run, c: Claimed, built: Built, due: list[str],
               slot: Reserved) -> SendResult | None:
        """Wait for the slot, renew the claim if its batch lease ends sooner, hand the
        message over (7-bit without 8BITMIME); None if the claim was lost meanwhile."""
        if not self._wait_until(slot.at):
            raise Halt(None)
        fresh, lease = self.clock.now() + lease_for(run.m, 1), run.leased_until
        if (lease is None or lease < fresh) and not self.commands.renew(c, self.worker, fresh):
            log.error("entry %d: its claim ran out and another process took it over; not"
                      " sent from here", c.id)
            return None
        if built.eight_bit and not built.smtputf8 and not run.mailer.accepts_8bit():
            rebuilt = self.composer.build(run.m, c, self.clock.now(), seven_bit=True)
            if isinstance(rebuilt, str):  # gone meanwhile: the reason, not "8-bit"
                raise Unsendable(rebuilt)
            built = rebuilt
        return run.mailer.send(Address(self.config.bounces.address or run.m.sender.address)
                               .envelope, due, built.data, smtputf8=built.smtputf8,
                               envid=envid_for(c.message_id))

    def _finish(self, run: Run, c: Claimed, verdict: Verdict, attempt: Finish) -> None:
        if verdict.event is Event.DELIVERED:
            line = attention.after_send(c.customer, verdict.recipients)
        elif verdict.event is Event.TRANSIENT:
            line = None
        else:
            line = attempt.attention or attention.failed(c.customer,
                                                         verdict.reason or attempt.reply)
        result = replace(attempt, recipients=verdict.recipients, attention=line)
        try:
            finished = self.commands.finish(c, self.worker, verdict.event, self.clock.now(),
                                            result)
        except StoreError:  # the server's answer is kept, to be recorded, never resent
            self._unrecorded[c.id] = (c, verdict.event, result)
            log.error("entry %d: the outbox database failed after the server's reply (%s);"
                      " it is recorded as soon as the database answers", c.id,
                      result.reply)
            raise
        if not finished:
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
        if self._progress is not None:
            report.waiting_s = 0.0
            self._progress(report)
