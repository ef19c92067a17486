"""`tikos-outbox run`: the service loop.

The `schedule` library ticks the jobs; what is due when is decided by the
pure send window. Sending runs in its own thread so that recording goes on
during a long, throttled run. Signals only set the stop flag.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import schedule

from tikos_outbox.usecases.intake import FirstPass
from tikos_outbox.watcher import Watcher
from tikos_outbox.wiring import Outbox

if TYPE_CHECKING:
    from tikos_outbox.web.server import WebServer

log = logging.getLogger("tikos_outbox.run")

HEARTBEAT_S = 30
TICK_S = 0.5
HISTORY_READS = 50  # history files read every 10 s (see History.read_some)


class SendScheduler:
    """Starts a send run at each due slot; a slot passed during a run is skipped."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.window = outbox.config.window
        self.thread: threading.Thread | None = None
        now = outbox.clock.now()
        stored = outbox.store.queries.get_meta("consumed_slot")
        consumed = datetime.fromisoformat(stored) if stored else None
        latest = self.window.last_slot(now)
        # after downtime: no burst of missed runs, the next one is the next slot
        known = [x for x in (consumed, latest) if x is not None]
        self.consumed: datetime | None = max(known) if known else None

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def tick(self) -> bool:
        """Start a run if a slot is due and none is going; True if one was started."""
        if self.busy:
            return False
        now = self.outbox.clock.now()
        slot = self.window.due(self.consumed, now)
        if slot is None:
            return False
        self._consume(slot)
        log.info("send run for the slot %s", slot.astimezone(self.window.tz).strftime("%H:%M"))
        self.thread = threading.Thread(target=self._run, args=(slot,), name="send-run",
                                       daemon=True)
        self.thread.start()
        return True

    def _run(self, slot: datetime) -> None:
        try:
            self.outbox.delivery.send_due()
            day = slot.astimezone(self.window.tz).date()
            if slot == self.window.slots_on(day)[-1]:  # after the last run of the day
                self.outbox.report.send(day)
        except Exception:
            log.exception("the send run failed")
            self.outbox.monitor.note_error("The send run failed unexpectedly; see the log")
        finally:
            latest = self.window.last_slot(self.outbox.clock.now())
            if latest is not None and (self.consumed is None or latest > self.consumed):
                self._consume(latest)  # a slot that passed during the run is not doubled

    def _consume(self, slot: datetime) -> None:
        self.consumed = slot
        self.outbox.store.commands.set_meta("consumed_slot", slot.isoformat(),
                                            self.outbox.clock.now())

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


class Background:
    """A job that may take long (reading the bounce mailbox over a slow line) in its
    own thread, so that recording and the heartbeat go on; one at a time."""

    def __init__(self, name: str, job: Callable[[], Any]) -> None:
        self.name = name
        self.job = _guarded(name, job)
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        self.thread = threading.Thread(target=self.job, name=self.name, daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


class BackwardsGuard:
    """Notices the local wall clock going back (the end of summer time, or an admin
    setting the clock). The `schedule` library keeps naive local times: after
    such a jump its jobs would wait until the old time came round again (an hour
    without recording or heartbeat), so the loop then re-creates them."""

    def __init__(self, wall: Callable[[], datetime] = datetime.now) -> None:
        self.wall = wall
        self.last = wall()

    def went_back(self) -> bool:
        now = self.wall()
        back = now < self.last - timedelta(seconds=1)
        self.last = now
        return back


def _guarded(name: str, job: Callable[[], Any]) -> Callable[[], None]:
    """Each job catches and logs its own errors; the loop goes on."""

    @functools.wraps(job)
    def wrapper() -> None:
        try:
            job()
        except Exception:
            log.exception("%s failed; continuing", name)

    return wrapper


def _web_console(outbox: Outbox) -> WebServer | None:
    """The console beside the loop, with `[web] enabled = true`. A port in use is said
    in the log and in status; the service goes on without its console."""
    if not outbox.config.web.enabled:
        return None
    from tikos_outbox.web.server import WebServer

    server = WebServer(outbox, outbox.config.web)
    try:
        server.start()
    except OSError as exc:
        log.error("%s; the service runs without it", exc)
        outbox.monitor.note_error(f"{exc}; the service runs without it")
        return None
    return server


def run(outbox: Outbox, ready: threading.Event | None = None,
        announce: Callable[[str], None] | None = None) -> None:
    """Watch and send until outbox.stop is set; `announce` gets the start line (what
    is watched and how, the next send run) and the stop line."""
    cfg = outbox.config
    monitor = outbox.monitor
    for m in cfg.enabled_mandants:  # before anything: what is older is history
        outbox.intake.begin_pass(m, FirstPass.FOLLOW)
    monitor.heartbeat()
    outbox.delivery.recover_interrupted()
    watcher = Watcher(outbox.intake, monitor, outbox.clock)
    watcher.start()  # the watcher first: nothing that arrives during the pass is missed
    # catch-up on start (and the baseline on the very first one); the pass fills the
    # polling scanners, so their first poll lists only what changed since
    report = outbox.scan(scanners=watcher.scanners,
                         progress=lambda _: monitor.heartbeat())  # alive during a long pass
    watcher.track(report.waiting_files)  # still being written: taken once they settle
    for mandant, why in report.unavailable.items():
        watcher.mark_unavailable(mandant, why)  # in status, and retried with back-off
    log.info("start-up pass: %d files seen, recorded %s", report.files_seen,
             report.recorded or "nothing new")
    _guarded("purge", outbox.admin.purge)()  # and daily after: the outbox does not grow
    sender = SendScheduler(outbox)
    bounces = Background("bounce mailbox", outbox.bounces.run)
    if cfg.bounces.enabled:
        bounces.start()  # at start, then every poll_minutes
    web = _web_console(outbox)
    next_run = (cfg.window.next_slot(outbox.clock.now()).astimezone(cfg.window.tz)
                .strftime("%Y-%m-%d %H:%M %Z"))
    log.info("next send run at %s", next_run)
    if announce is not None:
        watched = "; ".join(
            f"mandant {st.mandant.id} {st.mandant.folder} ({st.mode}"
            f"{'' if st.available else ', NOT READABLE now: retried, see status'})"
            for st in watcher.folders.values()) or "no enabled mandant"
        reading = (f"; bounce mailbox {cfg.bounces.username} at {cfg.bounces.server}, every"
                   f" {cfg.bounces.poll_minutes:g} min" if cfg.bounces.enabled else "")
        console = f"; web console at {web.url}" if web else ""
        announce(f"tikos-outbox runs: watching {watched}; next send run {next_run}{reading}"
                 f"{console}")

    def reconcile() -> None:
        """Events can be lost: compare every folder with the outbox (cheap: only
        folders whose mtime changed are listed)."""
        watcher.reconcile_requested = False
        watcher.poll(everything=True)

    def full_pass() -> None:
        """The safety net: list everything, also files rewritten in place."""
        watcher.poll(everything=True, full=True)

    def watch_health() -> None:
        watcher.check_observer()
        if watcher.reconcile_requested:
            reconcile()

    jobs = schedule.Scheduler()

    def every(seconds: float, name: str, job: Callable[[], Any]) -> None:
        # schedule takes fractional intervals, though its hints say int
        jobs.every(cast(int, seconds)).seconds.do(_guarded(name, job))

    def plan() -> None:
        jobs.clear()
        every(cfg.watch.poll_interval_s, "polling", watcher.poll)
        every(cfg.watch.reconcile_minutes * 60, "reconciliation", reconcile)
        every(cfg.watch.full_scan_minutes * 60, "full pass", full_pass)
        every(TICK_S, "recording", watcher.process)
        every(5, "watcher check", watch_health)
        every(HEARTBEAT_S, "heartbeat", monitor.heartbeat)
        every(TICK_S, "send schedule", sender.tick)
        every(5, "hand back", outbox.delivery.hand_back)
        every(24 * 3600, "daily purge", outbox.admin.purge)  # keep_days, then compacted
        # the history the first start did not read, a little at a time (5 files a
        # second: the share is not hammered; 500,000 files take about a day)
        every(10, "reading history", lambda: outbox.history.read_some(HISTORY_READS))
        if cfg.bounces.enabled:
            every(cfg.bounces.poll_minutes * 60, "bounce mailbox", bounces.start)

    plan()
    clock_guard = BackwardsGuard()
    if ready is not None:
        ready.set()
    try:
        while not outbox.stop.is_set():
            if clock_guard.went_back():
                log.warning("the local clock went back; re-planning the service's jobs")
                plan()
            jobs.run_pending()
            idle = jobs.idle_seconds
            outbox.stop.wait(TICK_S if idle is None else max(0.05, min(TICK_S, idle)))
    finally:
        if sender.busy:
            log.info("stopping: waiting for the send run in progress to reach a safe point")
        else:
            log.info("stopping")
        watcher.stop()
        if web is not None:
            web.stop()
        sender.join(timeout=cfg.smtp.timeout_s + 5)
        bounces.join(timeout=cfg.bounces.timeout_s + 5)
        monitor.heartbeat(running=False)
        log.info("stopped")
        if announce is not None:
            announce("tikos-outbox stopped")
