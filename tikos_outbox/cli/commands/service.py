"""run, scan, flush: the service and its two one-shot passes."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from types import FrameType

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tikos_outbox import __version__
from tikos_outbox.cli.context import Context, Logs, UsageError
from tikos_outbox.cli.output import print_json
from tikos_outbox.cli.parser import EXIT_FAILED, EXIT_OK
from tikos_outbox.runner import run
from tikos_outbox.store import safe_url
from tikos_outbox.usecases.intake import FirstPass
from tikos_outbox.usecases.scan import ScanReport
from tikos_outbox.usecases.sendrun import SendReport
from tikos_outbox.wiring import Outbox
from tikos_outbox.workers import dead_worker

log = logging.getLogger("tikos_outbox")


def run_run(ctx: Context) -> int:
    outbox = ctx.outbox

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        outbox.stop.set()  # signals only set the flag; the loop stops cleanly

    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGBREAK", None)):
        if sig is not None:
            signal.signal(sig, on_signal)
    other = another_run(outbox)
    if other is not None:
        raise UsageError(other)
    log.info("tikos-outbox %s starting (config %s)", __version__, ctx.config.path)
    logs = [str(f.path) for f in Logs.files()]
    print(f"tikos-outbox {__version__} starting: config {ctx.config.path}; log "
          f"{', '.join(logs) or 'none'}", flush=True)
    run(outbox, announce=lambda line: print(line, flush=True))
    return EXIT_OK


def another_run(outbox: Outbox) -> str | None:
    """Why this `run` must not start: another one serves this outbox on this host (its
    recorded PID lives). One on another host is only warned about: several workers
    on one PostgreSQL outbox are a set-up of their own."""
    svc = outbox.monitor.status().service
    if not svc.running or svc.worker is None or svc.worker == outbox.worker:
        return None
    host, _, pid = svc.worker.rpartition(":")
    if host == socket.gethostname() and not dead_worker(svc.worker):
        return (f"another tikos-outbox run (PID {pid}) already serves this outbox"
                f" ({safe_url(outbox.config.outbox.database)}); stop it first (systemctl"
                " stop tikos-outbox, or the Windows service)")
    if host != socket.gethostname():
        log.warning("a tikos-outbox run on %s (PID %s) also serves this outbox; both send,"
                    " each entry once", host, pid)
    return None


def _flush_with_progress(ctx: Context) -> SendReport:
    """The send run, with its progress on a terminal (sent of due, the pacing wait), or
    a plain line every PLAIN_EVERY mails into a log or pipe."""
    delivery = ctx.outbox.delivery
    if ctx.json:
        return delivery.send_due(force=True)
    if not sys.stderr.isatty():
        said = [0]

        def line(r: SendReport) -> None:
            if r.done >= said[0] + PLAIN_EVERY:
                said[0] = r.done
                print(f"flush: {r.sent} of {r.due} sent, {r.deferred} deferred, {r.failed}"
                      " failed", file=sys.stderr, flush=True)

        return delivery.send_due(force=True, progress=line)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("sending …")

        def show(r: SendReport) -> None:
            wait = f" · next mail in {r.waiting_s:.0f} s (pacing)" if r.waiting_s >= 1 else ""
            bar.update(task, description=f"sending: {r.sent} of {r.due} sent"
                       + (f", {r.deferred} deferred" if r.deferred else "")
                       + (f", {r.failed} failed" if r.failed else "") + wait)

        return delivery.send_due(force=True, progress=show)


def run_scan(ctx: Context) -> int:
    a = ctx.args
    mode = (FirstPass.HISTORY if a.baseline else FirstPass.NONE if a.no_baseline
            else FirstPass.FOLLOW)
    outbox = ctx.outbox
    first = [m for m in ctx.config.enabled_mandants if not outbox.intake.first_pass_done(m)]
    if (a.since or a.baseline or a.no_baseline) and not first:
        print("note: the first start is over for every mandant, so --since, --baseline and"
              " --no-baseline change nothing now; to mail a document recorded as history:"
              " tikos-outbox list --state skipped, then tikos-outbox requeue ID",
              file=sys.stderr)
    if sys.stderr.isatty() and not ctx.json:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task("scanning the archive …")

            def show(r: ScanReport) -> None:
                bar.update(task, description=f"scanning the archive: {r.files_seen:,} files,"
                                             f" {sum(r.recorded.values()):,} new")

            report = outbox.scan(mode, since=ctx.since, progress=show)
    else:
        report = outbox.scan(mode, since=ctx.since)
    if ctx.json:
        print_json({"files_seen": report.files_seen, "recorded": report.recorded,
                    "history": report.history, "new": report.new,
                    "waiting": report.waiting, "errors": report.errors})
    else:
        rec = ", ".join(f"{n} {s}" for s, n in sorted(report.recorded.items())) or "nothing new"
        print(f"{report.files_seen} files seen; recorded: {rec}")
        if first or report.history:
            since = ctx.since.astimezone(ctx.config.window.tz) if ctx.since else None
            before = (f"modified before {since:%d.%m.%Y %H:%M}" if since
                      else "modified before the first start")
            print(f"{report.history} taken as history ({before}; never mailed),"
                  f" {report.new} as new")
        if report.waiting:
            print(f"{report.waiting} file(s) still being written; taken at the next scan")
        for e in report.errors:
            print(f"error: {e}", file=sys.stderr)
    return EXIT_FAILED if report.errors else EXIT_OK


#: without a terminal (a scheduled task, a pipe), one line every this many mails
PLAIN_EVERY = 10


def run_flush(ctx: Context) -> int:
    outbox = ctx.outbox
    interrupted = threading.Event()

    def on_interrupt(_signum: int, _frame: FrameType | None) -> None:
        if interrupted.is_set():  # a second Ctrl-C: at once
            raise KeyboardInterrupt
        interrupted.set()
        outbox.stop.set()  # the mail in hand is finished and recorded, nothing after it
        print("\nstopping after the mail in hand; the rest stays due for the next run"
              " (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        report = _flush_with_progress(ctx)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted.is_set():
        left = max(0, report.due - report.done)
        window = ctx.config.window
        nxt = window.next_slot(outbox.clock.now()).astimezone(window.tz)
        print(f"stopped by Ctrl-C: sent {report.sent}; {left} entr"
              f"{'y stays' if left == 1 else 'ies stay'} due, nothing is lost (next run"
              f" {nxt:%d.%m. %H:%M}, or flush again)", file=sys.stderr)
    if ctx.json:
        print_json(report.as_dict())
    else:
        print(f"sent {report.sent}, deferred {report.deferred}, failed {report.failed}"
              + (f", skipped {report.skipped}" if report.skipped else ""))
        for why in report.stopped:
            print(f"stopped: {why}", file=sys.stderr)
        for why in report.paused:
            print(f"paused: {why}", file=sys.stderr)
    return EXIT_OK if report.ok and not interrupted.is_set() else EXIT_FAILED


def run_bounces(ctx: Context) -> int:
    """One pass over the bounce mailbox ([bounces]); exit 1 when it could not be read."""
    if not ctx.config.bounces.enabled:
        raise UsageError("no bounce mailbox is configured: set [bounces] imap_host, username"
                         " and the password (tikos-outbox secret set bounce-password)")
    result = ctx.outbox.bounces.run()
    if ctx.json:
        print_json(result.as_json())
    else:
        print(result.error or result.summary())
        for title, lines in (("bounced", result.bounced), ("delayed (still tried)",
                             result.delayed), ("left in the mailbox", result.unmatched
                                               + result.unreadable)):
            for line in lines:
                print(f"  {title}: {line}")
        if result.bounced:
            print("what to do: tikos-outbox list --attention")
    return EXIT_FAILED if result.error else EXIT_OK
