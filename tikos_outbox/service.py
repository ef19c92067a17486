"""The use cases: record a file, send what is due, and the administrator's moves.

The service wires the pure core to the adapters. Time comes from an injected
Clock; nothing here reads the wall clock itself.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from tikos_outbox.config import Config, Mandant, SmtpSettings
from tikos_outbox.core import intake
from tikos_outbox.core.message import (
    Mail,
    build_message,
    make_message_id,
    message_bytes,
    render,
    split_addresses,
)
from tikos_outbox.core.naming import parse_name
from tikos_outbox.core.pdf import mail_problem
from tikos_outbox.core.ports import Clock, LookupUnavailable, RecipientLookup
from tikos_outbox.core.replies import Outcome, classify, explain
from tikos_outbox.core.states import Event, State
from tikos_outbox.core.throttle import Throttle
from tikos_outbox.credentials import KeyFileError, KeyRing, SecretText
from tikos_outbox.lookup import make_lookup
from tikos_outbox.scanner import FileSeen, FolderError, IncrementalScanner
from tikos_outbox.smtp import Mailer, RunStopped, TokenSource
from tikos_outbox.store import Claimed, ListFilter, NewDocument, Recording, Store

log = logging.getLogger("tikos_outbox")

INTERRUPTED = "interrupted — may have been delivered"
NOT_READY = "not-ready"  # ingest: the file could not be read completely; try again later
BATCH_FILES = 200  # files recorded in one transaction
BATCH_BYTES = 32 * 1024 * 1024
HEARTBEAT_STALE_S = 180


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # no cheap check; the lease decides there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_worker(worker: str) -> bool:
    """Whether a claim's worker is a process on this host that no longer runs."""
    host, _, pid = worker.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


@dataclass
class ScanReport:
    files_seen: int = 0
    recorded: dict[str, int] = field(default_factory=dict)
    waiting: int = 0  # not settled yet, taken at a later pass
    errors: list[str] = field(default_factory=list)
    waiting_files: list[tuple[int, FileSeen]] = field(default_factory=list)  # (mandant, file)

    def count(self, state: str) -> None:
        self.recorded[state] = self.recorded.get(state, 0) + 1


@dataclass
class SendReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    stopped: list[str] = field(default_factory=list)  # why a run stopped, per server

    @property
    def ok(self) -> bool:
        return not (self.failed or self.stopped or self.deferred)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "deferred": self.deferred, "failed": self.failed,
                "skipped": self.skipped, "stopped": self.stopped}


class Service:
    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Clock | None = None,
        *,
        lookup: RecipientLookup | None = None,
        worker: str | None = None,
        stop: threading.Event | None = None,
        token_source: TokenSource | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self._lookup = lookup
        self.worker = worker or worker_id()
        self.stop = stop or threading.Event()
        self._keyring: KeyRing | None = None
        self._token_source = token_source
        self._send_lock = threading.Lock()

    # -- wiring ---------------------------------------------------------------------------

    @property
    def lookup(self) -> RecipientLookup:
        if self._lookup is None:
            self._lookup = make_lookup(self.config.recipients)
        return self._lookup

    @property
    def keyring(self) -> KeyRing:
        if self._keyring is None:
            self._keyring = KeyRing(self.config.outbox.key_file)
        return self._keyring

    def mailer(self, smtp: SmtpSettings) -> Mailer:
        """A Mailer for these settings, with the secret decrypted only now."""
        password: SecretText | None = None
        if smtp.auth == "password" and smtp.password:
            password = self.keyring.decrypt(smtp.password, "the SMTP password")
        tokens = self._token_source
        if smtp.auth == "oauth2" and tokens is None:
            from tikos_outbox.oauth2 import token_source_for

            tokens = token_source_for(smtp, self.keyring, self.clock)
            self._token_source = tokens
        return Mailer(smtp, password=password, token_source=tokens)

    # -- intake ---------------------------------------------------------------------------

    def baseline_due(self, mandant: Mandant) -> bool:
        """Whether this mandant's first pass is still to be recorded as the baseline."""
        return self.config.watch.baseline and self.store.get_meta(f"baseline:{mandant.id}") is None

    def mark_baseline_done(self, mandant: Mandant) -> None:
        self.store.set_meta(f"baseline:{mandant.id}", self.clock.now().isoformat(),
                            self.clock.now())

    def ingest(self, mandant: Mandant, seen: FileSeen, baseline: bool = False) -> str | None:
        """Record one settled file; see ingest_many."""
        return self.ingest_many(mandant, [seen], baseline)[0]

    def ingest_many(self, mandant: Mandant, files: Sequence[FileSeen],
                    baseline: bool = False) -> list[str | None]:
        """Record settled files of one mandant in one transaction; returns each new
        entry's state, None where there was nothing to record (already known, not
        a document), or NOT_READY where the file could not be read completely
        (locked, changed while it was read): it is to be tried again."""
        prepared: list[tuple[int, Recording]] = []
        results: list[str | None] = [None] * len(files)
        for index, seen in enumerate(files):
            try:
                item = self._prepare(mandant, seen, baseline)
            except OSError as exc:
                log.warning("cannot read %s yet: %s", seen.abs_path, exc.strerror or exc)
                results[index] = NOT_READY
                continue
            if item is not None:
                prepared.append((index, item))
        if not prepared:
            return results
        recorded = self.store.record_many([item for _, item in prepared], self.clock.now())
        for (index, item), outcome in zip(prepared, recorded, strict=True):
            if outcome is None:
                continue
            entry_id, decision = outcome
            quiet = decision.state is State.SKIPPED and baseline
            log.log(logging.DEBUG if quiet else logging.INFO, "entry %d %s: %s%s", entry_id,
                    decision.state, item.doc.path,
                    f" ({decision.reason})" if decision.reason else "")
            for old in decision.supersede:
                log.info("entry %d skipped: superseded by entry %d", old, entry_id)
            results[index] = decision.state.value
        return results

    def _prepare(self, mandant: Mandant, seen: FileSeen, baseline: bool) -> Recording | None:
        doc = parse_name(mandant.pattern, seen.name)
        if doc is None:
            return None
        limit = self.config.watch.max_size_bytes
        problem: str | None = None
        data = b""
        if seen.size > limit:
            problem = (f"larger than the limit of {self.config.watch.max_size_mb:g} MB"
                       f" ({seen.size / 1048576:.1f} MB); providers reject such mails")
            sha = _sha256_file(seen.abs_path)
        else:
            with open(seen.abs_path, "rb") as f:
                data = f.read(limit + 1)
                st = os.fstat(f.fileno())
            if len(data) != st.st_size or st.st_mtime_ns != seen.mtime_ns:
                raise OSError(errno.EAGAIN, "it changed while it was read")
            sha = hashlib.sha256(data).hexdigest()
            problem = mail_problem(data)
        recipients: list[str] | None = None
        no_address: str | None = None
        if not baseline and problem is None:
            recipients, no_address = self._addresses(mandant.id, doc.fields)
        new = NewDocument(
            mandant=mandant.id, path=seen.rel_path, file_name=seen.name, sha256=sha,
            size=seen.size, mtime_ns=seen.mtime_ns, doctype=doc.doctype, docno=doc.docno,
            customer=doc.customer, fields=doc.fields, data=data,
        )

        def decide(same_path: list[intake.Prior], same_content: intake.Prior | None
                   ) -> intake.Decision | None:
            return intake.decide(sha256=sha, same_path=same_path, same_content=same_content,
                                 baseline=baseline, problem=problem, no_address=no_address)

        message_id = make_message_id(uuid.uuid4().hex, mandant.sender.address)
        return Recording(new, decide, message_id, recipients)

    def _addresses(self, mandant_id: int, fields: dict[str, str]
                   ) -> tuple[list[str] | None, str | None]:
        """(addresses, None), or (None, why nobody) — or (None, None) when the source
        cannot be asked now: the entry then waits, pending, for a later run."""
        try:
            values = self.lookup.lookup(mandant_id, fields)
        except LookupUnavailable as exc:
            log.warning("addresses not looked up yet (will retry): %s", exc)
            self.note_error(f"Address lookup: {exc}")
            return None, None
        valid, rejected = split_addresses(values)
        if rejected:
            log.warning("customer %s: ignored invalid address value(s): %s",
                        fields.get("customer", "?"), "; ".join(rejected))
        if valid:
            return valid, None
        reason = f"no e-mail address found for customer {fields.get('customer', '?')}"
        if rejected:
            reason += f" (invalid: {'; '.join(rejected)})"
        return None, reason

    def scan(self, baseline: bool | None = None, since: datetime | None = None,
             progress: Callable[[ScanReport], None] | None = None,
             scanners: Mapping[int, IncrementalScanner] | None = None) -> ScanReport:
        """One pass over every enabled mandant's folder, recording what has settled.

        `baseline`: None follows the config (only the very first pass of a mandant);
        True/False force it. `since`: with a baseline, files modified at or after
        this instant are still recorded normally. `progress` is called every
        1,000 files; a plain log line is written every 20,000. With `scanners`
        (the service's polling scanners per mandant) the pass lists through them,
        so that their next pass lists only what changed.
        """
        report = ScanReport()
        for m in self.config.mandants:
            if not m.enabled:
                continue
            first = self.baseline_due(m) if baseline is None else baseline
            try:
                self._scan_mandant(m, first, since, report, progress,
                                   scanners.get(m.id) if scanners else None)
            except FolderError as exc:
                report.errors.append(f"mandant {m.id} ({m.name}): {exc.strerror}")
                log.error("mandant %d (%s): %s", m.id, m.name, exc.strerror)
                continue
            if first and baseline is None:
                self.mark_baseline_done(m)
        self.resolve_recipients()
        return report

    def _scan_mandant(self, m: Mandant, first: bool, since: datetime | None,
                      report: ScanReport, progress: Callable[[ScanReport], None] | None,
                      scanner: IncrementalScanner | None) -> None:
        wall = self.clock.now().timestamp()
        settle_s = self.config.watch.settle_s
        listed: list[FileSeen] = []
        batch: list[FileSeen] = []
        batch_bytes = 0

        def record_batch() -> None:
            nonlocal batch_bytes
            for seen, state in zip(batch, self.ingest_many(m, batch, first), strict=True):
                self._count(report, seen, state)
            batch.clear()
            batch_bytes = 0

        def take_listed() -> None:
            """Files the outbox does not have as they are now go to the batch."""
            nonlocal batch_bytes
            for seen in self.unknown(m, listed):
                if seen.size == 0 or wall - seen.mtime_ns / 1e9 < settle_s:
                    report.waiting += 1
                    report.waiting_files.append((m.id, seen))
                elif first and since is not None and seen.mtime_ns / 1e9 >= since.timestamp():
                    # newer than --since: recorded normally, not as the baseline
                    self._count(report, seen, self.ingest(m, seen, baseline=False))
                else:
                    batch.append(seen)
                    batch_bytes += seen.size
                    if len(batch) >= BATCH_FILES or batch_bytes >= BATCH_BYTES:
                        record_batch()
            listed.clear()

        files = (scanner or IncrementalScanner(m.folder)).scan(
            int(wall * 1e9), full=True, errors=report.errors)
        for seen in files:
            report.files_seen += 1
            listed.append(seen)
            if len(listed) >= 500:
                take_listed()
            if report.files_seen % 1000 == 0:
                if progress is not None:
                    progress(report)
                if report.files_seen % 20000 == 0:
                    log.info("scanning: %d files seen, %d new so far", report.files_seen,
                             sum(report.recorded.values()))
        take_listed()
        record_batch()

    def unknown(self, m: Mandant, files: Sequence[FileSeen]) -> list[FileSeen]:
        """Those of `files` that the outbox does not hold with this size and mtime."""
        known = self.store.known_among(m.id, [f.rel_path for f in files])
        return [f for f in files if known.get(f.rel_path) != (f.size, f.mtime_ns)]

    @staticmethod
    def _count(report: ScanReport, seen: FileSeen, state: str | None) -> None:
        if state == NOT_READY:
            report.errors.append(f"{seen.abs_path}: cannot be read yet")
        elif state is not None:
            report.count(state)

    def resolve_recipients(self) -> int:
        """Look up the addresses of pending entries that have none yet (the source
        was unreachable, or the entry was requeued); returns how many were resolved.
        An unreachable source leaves them pending for a later run."""
        done = 0
        while batch := self.store.unresolved():
            for entry_id, mandant_id, fields in batch:
                valid, reason = self._addresses(mandant_id, fields)
                now = self.clock.now()
                if valid:
                    self.store.set_recipients(entry_id, valid, now)
                elif reason:
                    self.store.apply([entry_id], Event.SKIP, now, reason=reason)
                    log.info("entry %d skipped: %s", entry_id, reason)
                else:
                    return done
                done += 1
        return done

    # -- sending --------------------------------------------------------------------------

    def recover_interrupted(self) -> list[int]:
        """Entries a crashed run left in `sending` become deferred, to be sent again
        with the same Message-ID."""
        now = self.clock.now()
        recovered = []
        for entry_id, worker in self.store.stale_claims(now, dead_worker):
            if self.store.recover(entry_id, worker, now, INTERRUPTED):
                log.warning("entry %d deferred: %s", entry_id, INTERRUPTED)
                recovered.append(entry_id)
        return recovered

    def send_due(self, force: bool = False) -> SendReport:
        """One send run: every due entry, mandant by mandant, throttled.

        `force` (flush) also takes deferred entries whose back-off has not run out.
        Only one run at a time per process; other processes are kept off each
        entry by the atomic claim.
        """
        report = SendReport()
        with self._send_lock:
            started = self.clock.now()
            self.recover_interrupted()
            self.resolve_recipients()
            self._skip_disabled(report)
            throttles: dict[str, Throttle] = {}
            for m in self.config.mandants:
                if self.stop.is_set():
                    break
                if not m.enabled:
                    continue
                throttle = throttles.setdefault(m.smtp.server, Throttle(m.smtp.max_per_minute))
                self._send_mandant(m, force, started, throttle, report)
            finished = self.clock.now()
            self.store.set_meta("last_run", finished.isoformat(), finished)
            self.store.set_meta("last_run_report", json.dumps(report.as_dict()), finished)
            if report.stopped:
                self.note_error(report.stopped[-1])
            log.info("send run: %d sent, %d deferred, %d failed%s", report.sent, report.deferred,
                     report.failed, f"; stopped: {report.stopped[-1]}" if report.stopped else "")
        return report

    def _skip_disabled(self, report: SendReport) -> None:
        now = self.clock.now()
        enabled = {m.id for m in self.config.mandants if m.enabled}
        configured = {m.id for m in self.config.mandants}
        for entry_id, mandant in self.store.due_outside(enabled):
            why = ("mandant disabled" if mandant in configured
                   else f"mandant {mandant} is no longer in the config")
            if self.store.apply([entry_id], Event.SKIP, now, reason=why)[entry_id] == "ok":
                report.skipped += 1
                log.info("entry %d skipped: %s", entry_id, why)

    def _send_mandant(self, m: Mandant, force: bool, started: datetime, throttle: Throttle,
                      report: SendReport) -> None:
        batch_size = max(1, min(m.smtp.max_per_connection, 20))
        per_mail_s = 60.0 / m.smtp.max_per_minute if m.smtp.max_per_minute else 0.0
        lease = timedelta(seconds=900 + batch_size * (per_mail_s + m.smtp.timeout_s))
        try:
            mailer = self.mailer(m.smtp)
        except KeyFileError as exc:  # says which file and what to do
            report.stopped.append(str(exc))
            return
        # the next mail is built while the server takes the current one
        with mailer, ThreadPoolExecutor(max_workers=1, thread_name_prefix="build") as pool:
            while not self.stop.is_set():
                now = self.clock.now()
                batch = self.store.claim_due(now, self.worker, now + lease, batch_size,
                                             mandant=m.id, force_before=started if force else None)
                if not batch:
                    return
                upcoming = pool.submit(self._build, m, batch[0])
                for i, claimed in enumerate(batch):
                    built = upcoming.result()
                    if i + 1 < len(batch):
                        upcoming = pool.submit(self._build, m, batch[i + 1])
                    if self.stop.is_set():
                        self.store.unclaim(batch[i:], self.worker, self.clock.now())
                        return
                    wait = throttle.wait_time(self.clock.monotonic())
                    while wait > 0 and not self.stop.is_set():
                        self.clock.sleep(min(wait, 1.0))
                        wait = throttle.wait_time(self.clock.monotonic())
                    try:
                        self._send_one(m, mailer, claimed, built, report)
                    except RunStopped as exc:
                        self.store.unclaim(batch[i:], self.worker, self.clock.now())
                        report.stopped.append(explain(exc.reply))
                        log.error("send run stopped for %s: %s", m.smtp.server, explain(exc.reply))
                        return
                    throttle.record(self.clock.monotonic())

    def _build(self, m: Mandant, c: Claimed) -> bytes | str:
        """The message bytes of a claimed entry, or why it cannot be sent."""
        data = self._document_bytes(m, c)
        if data is None:
            return "the stored copy was purged and the archive file is gone or changed"
        try:
            return message_bytes(self.mail_for(m, c, data, self.clock.now()))
        except ValueError as exc:  # an address or template value that cannot be mailed
            return f"the message cannot be built: {exc}"

    def _send_one(self, m: Mandant, mailer: Mailer, c: Claimed, built: bytes | str,
                  report: SendReport) -> None:
        if isinstance(built, str):
            self._finish(c, Event.PERMANENT, report, server="", code=None, reply=built,
                         outcome=Outcome.PERMANENT, reason=built)
            return
        result = mailer.send(m.sender.address, [*c.recipients, *m.sender.bcc], built)
        now = self.clock.now()
        outcome = classify(result.reply)
        reply = result.reply
        if outcome is Outcome.DELIVERED:
            self._finish(c, Event.DELIVERED, report, server=mailer.server, code=reply.code,
                         reply=reply.text, outcome=outcome, refused=result.refused)
        elif outcome is Outcome.TRANSIENT:
            policy = self.config.outbox.retry
            first = c.first_attempt_at or now
            if policy.expired(first, now):
                days = policy.lifetime.total_seconds() / 86400
                self._finish(c, Event.EXPIRE, report, server=mailer.server, code=reply.code,
                             reply=reply.text, outcome=outcome, refused=result.refused,
                             reason=f"gave up after {days:g} days; last reply: {reply}")
            else:
                self._finish(c, Event.TRANSIENT, report, server=mailer.server, code=reply.code,
                             reply=reply.text, outcome=outcome, refused=result.refused,
                             next_at=policy.next_attempt(now, c.transient_failures + 1))
        else:
            self._finish(c, Event.PERMANENT, report, server=mailer.server, code=reply.code,
                         reply=reply.text, outcome=outcome, refused=result.refused,
                         reason=explain(reply))

    def _finish(self, c: Claimed, ev: Event, report: SendReport, *, server: str,
                code: int | None, reply: str, outcome: Outcome,
                refused: dict[str, str] | None = None, next_at: datetime | None = None,
                reason: str | None = None) -> None:
        now = self.clock.now()
        ok = self.store.finish(c, self.worker, ev, now, server=server, outcome=outcome.value,
                               code=code, reply=reply, refused=refused, next_attempt_at=next_at,
                               reason=reason)
        if not ok:
            log.error("entry %d was taken over by another worker while sending", c.id)
            return
        shown = f"{code} {reply}".strip()
        if ev is Event.DELIVERED:
            report.sent += 1
            extra = f"; refused: {', '.join(refused)}" if refused else ""
            log.info("entry %d sent: %s to %s (%s)%s", c.id, c.file_name,
                     ", ".join(c.recipients), shown, extra)
        elif ev is Event.TRANSIENT:
            report.deferred += 1
            log.warning("entry %d deferred: %s (%s)", c.id, c.file_name, shown)
        else:
            report.failed += 1
            log.error("entry %d failed: %s (%s)", c.id, c.file_name, reason or shown)

    def _document_bytes(self, m: Mandant, c: Claimed) -> bytes | None:
        data = self.store.load_copy(c.sha256)
        if data is not None:
            return data
        path = m.folder / c.path
        try:
            data = path.read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == c.sha256 else None

    def mail_for(self, m: Mandant, c: Claimed, pdf: bytes, now: datetime) -> Mail:
        """The mail for a claimed entry: template, sender, recipients, attachment."""
        local_now = now.astimezone(self.config.window.tz)
        fields = {name: "" for name in m.pattern.groupindex}
        fields.update(c.fields)
        fields.update(
            doctype=c.doctype, docno=c.docno, customer=c.customer, mandant=str(m.id),
            mandant_name=m.name, sender_name=m.sender.name, sender_address=m.sender.address,
            file_name=c.file_name, date=local_now.strftime("%d.%m.%Y"),
        )
        template = self.config.template(c.doctype)
        return Mail(
            sender_address=m.sender.address, sender_name=m.sender.name,
            reply_to=m.sender.reply_to, to=tuple(c.recipients),
            subject=render(template.subject, fields), body=render(template.body, fields),
            filename=c.file_name, pdf=pdf, message_id=c.message_id, date=local_now,
        )

    # -- administration -------------------------------------------------------------------

    def requeue(self, ids: Iterable[int]) -> dict[int, str]:
        """Back to pending, addresses looked up again. A sent entry is a deliberate
        resend and gets a new Message-ID; attempts are kept."""
        now = self.clock.now()
        out: dict[int, str] = {}
        for entry_id in ids:
            view = self.store.get_entry(entry_id)
            extra: dict[str, Any] = {}
            if view is not None and view.state == State.SENT.value:
                m = self.config.mandant(view.mandant)
                extra["message_id"] = make_message_id(
                    uuid.uuid4().hex, m.sender.address if m else self.config.sender.address)
                extra["sent_at"] = None
            out.update(self.store.apply(
                [entry_id], Event.REQUEUE, now, reason=None, recipients_json=None,
                refused_json=None, next_attempt_at=None, first_attempt_at=None,
                transient_failures=0, last_error=None, **extra))
            if out[entry_id] == "ok":
                log.info("entry %d requeued by the administrator", entry_id)
        return out

    def hold(self, ids: Iterable[int]) -> dict[int, str]:
        out = self.store.apply(ids, Event.HOLD, self.clock.now(),
                               reason="held by the administrator")
        for entry_id, res in out.items():
            if res == "ok":
                log.info("entry %d held by the administrator", entry_id)
        return out

    def release(self, ids: Iterable[int]) -> dict[int, str]:
        out = self.store.apply(ids, Event.RELEASE, self.clock.now(), reason=None)
        for entry_id, res in out.items():
            if res == "ok":
                log.info("entry %d released by the administrator", entry_id)
        return out

    def purge(self, older_than_days: int | None = None) -> int:
        days = older_than_days if older_than_days is not None else self.config.outbox.keep_days
        now = self.clock.now()
        n = self.store.purge(now - timedelta(days=days), now)
        log.info("purged %d stored document copies older than %d days", n, days)
        return n

    # -- daily report ---------------------------------------------------------------------

    def daily_report(self, day: date) -> bool:
        """Mail `[report] to` the failed and held entries of a local day, once.
        Returns True when a report was sent; none is sent when all went well."""
        to = self.config.report.to
        key = f"report:{day.isoformat()}"
        if not to or self.store.get_meta(key):
            return False
        tz = self.config.window.tz
        start = datetime.combine(day, dtime(0), tzinfo=tz)
        rows = [v for v in self.store.list_entries(ListFilter(
            states=(State.FAILED.value, State.HELD.value), changed_since=start, limit=10000))
            if v.updated_at < start + timedelta(days=1)]
        now = self.clock.now()
        if not rows:
            self.store.set_meta(key, "nothing to report", now)
            return False
        lines = [f"tikos-outbox on {socket.gethostname()}: {len(rows)} document(s) were not"
                 f" sent on {day:%d.%m.%Y}.", ""]
        for v in sorted(rows, key=lambda v: v.id):
            why = v.last_error if v.state == State.FAILED.value else v.reason
            lines.append(f"- entry {v.id} ({v.state}), mandant {v.mandant}, {v.path},"
                         f" customer {v.customer}: {why or 'no reason recorded'}")
        lines += ["", "Details: tikos-outbox show ID; to send again: tikos-outbox requeue ID"
                      " (failed) or tikos-outbox release ID (held)."]
        sender = self.config.sender
        mail = Mail(sender_address=sender.address, sender_name=sender.name or "tikos-outbox",
                    reply_to=None, to=tuple(to),
                    subject=f"tikos-outbox: {len(rows)} Dokument(e) nicht versendet"
                            f" ({day:%d.%m.%Y})",
                    body="\n".join(lines) + "\n", filename="", pdf=None,
                    message_id=make_message_id(uuid.uuid4().hex, sender.address),
                    date=now.astimezone(tz))
        try:
            with self.mailer(self.config.smtp) as mailer:
                result = mailer.send(sender.address, list(to), build_message(mail).as_bytes())
        except (RunStopped, KeyFileError) as exc:
            log.error("daily report not sent: %s", exc)
            return False
        if classify(result.reply) is not Outcome.DELIVERED:
            log.error("daily report not sent: %s", explain(result.reply))
            return False
        self.store.set_meta(key, f"sent to {', '.join(to)}", now)
        log.info("daily report sent to %s: %d problem(s)", ", ".join(to), len(rows))
        return True

    # -- status ---------------------------------------------------------------------------

    def note_error(self, text: str) -> None:
        now = self.clock.now()
        self.store.set_meta("last_error", json.dumps({"at": now.isoformat(), "text": text}), now)

    def heartbeat(self, running: bool = True) -> None:
        now = self.clock.now()
        self.store.set_meta("heartbeat", json.dumps(
            {"at": now.isoformat(), "worker": self.worker, "running": running}), now)

    def status(self) -> dict[str, Any]:
        now = self.clock.now()
        last_error = self.store.get_meta("last_error")
        heartbeat = json.loads(self.store.get_meta("heartbeat") or "null")
        last_seen = heartbeat["at"] if heartbeat else None
        running = bool(
            heartbeat and heartbeat.get("running")
            and (now - datetime.fromisoformat(heartbeat["at"])).total_seconds()
            < HEARTBEAT_STALE_S
        )
        report = self.store.get_meta("last_run_report")
        return {
            "counts": self.store.counts(),
            "last_run": self.store.get_meta("last_run"),
            "last_run_report": json.loads(report) if report else None,
            "next_run": self.config.window.next_slot(now).isoformat(),
            "last_error": json.loads(last_error) if last_error else None,
            "service": {"running": running, "last_seen": last_seen,
                        "worker": heartbeat.get("worker") if heartbeat else None},
        }


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

