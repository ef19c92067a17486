"""The `tikos-outbox` command: parse, call one service function, print, exit.

Exit codes: 0 done; 1 the work ran but something failed; 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import logging.handlers
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy.exc import SQLAlchemyError

from tikos_outbox import __version__
from tikos_outbox.config import Config, ConfigError, find_config_path, load_config
from tikos_outbox.core.states import State
from tikos_outbox.credentials import KeyFileError
from tikos_outbox.store import EntryView, ListFilter, Store, StoreError

log = logging.getLogger("tikos_outbox")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad usage: one line for the administrator, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# -- output helpers ------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=_json_default, ensure_ascii=False, indent=2) + "\n")


def _console() -> Any:
    from rich.console import Console

    # a pipe or a log file gets full lines instead of 80 columns of folded text
    width = None if sys.stdout.isatty() else 200
    return Console(highlight=False, soft_wrap=False, width=width)


def _fmt_time(value: datetime | str | None, tz: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def entry_json(view: EntryView, full: bool) -> dict[str, Any]:
    """The JSON shape of an entry (contract: `attempts` is the list in show, a count in list)."""
    data = {
        "id": view.id, "state": view.state, "mandant": view.mandant, "path": view.path,
        "file_name": view.file_name, "sha256": view.sha256, "size": view.size,
        "doctype": view.doctype, "docno": view.docno, "customer": view.customer,
        "recipients": view.recipients or [], "refused": view.refused, "reason": view.reason,
        "attempts": view.attempts if full else view.attempt_count,
        "last_error": view.last_error, "created_at": view.created_at,
        "updated_at": view.updated_at, "sent_at": view.sent_at,
        "next_attempt_at": view.next_attempt_at, "message_id": view.message_id,
    }
    if full:
        data["stored_copy"] = view.stored_copy
    return data


# -- wiring --------------------------------------------------------------------------------


class App:
    """What every command needs, opened lazily from the config."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.config_path = find_config_path(args.config)
        self._config: Config | None = None
        self._store: Store | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
            add_log_file(default_log_file(self._config))
        return self._config

    @property
    def store(self) -> Store:
        if self._store is None:
            store = Store(self.config.outbox.database, self.config.outbox.busy_timeout_s)
            try:
                store.migrate()
            except SQLAlchemyError as exc:
                store.close()
                raise StoreError(f"the outbox database {self.config.outbox.database} cannot be"
                                 f" used: {_db_error(exc)}") from None
            self._store = store
        return self._store

    def service(self, **kwargs: Any) -> Any:
        from tikos_outbox.service import Service

        return Service(self.config, self.store, **kwargs)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _db_error(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).splitlines()[0]


def setup_logging(verbose: bool) -> None:
    """Warnings and errors to stderr (everything with -v)."""
    root = logging.getLogger("tikos_outbox")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    err.setLevel(logging.DEBUG if verbose else logging.WARNING)
    root.addHandler(err)
    root.propagate = False


def add_log_file(path: Path) -> None:
    """One line per document event into a rotating file (5 MB, 10 files)."""
    root = logging.getLogger("tikos_outbox")
    for h in root.handlers:
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.absolute():
            return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=10,
                                                  encoding="utf-8", delay=True)
    except OSError as exc:
        log.warning("cannot write the log file %s: %s", path, exc)
        return
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    fh.setLevel(logging.INFO)
    root.addHandler(fh)


def default_log_file(cfg: Config) -> Path:
    if cfg.outbox.log_file is not None:
        return cfg.outbox.log_file
    url = cfg.outbox.database
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):]).parent / "tikos-outbox.log"
    return cfg.base_dir / "tikos-outbox.log"


# -- argument types ------------------------------------------------------------------------


def parse_date(text: str) -> datetime:
    """'2026-11-26' or an ISO timestamp -> aware UTC (a date means local midnight)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0)).astimezone(UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date like 2026-11-26") from None
    return value.astimezone(UTC) if value.tzinfo else value.astimezone().astimezone(UTC)


def parse_state(text: str) -> str:
    try:
        return State(text.lower()).value
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a state; use one of {', '.join(s.value for s in State)}") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"'{text}' must not be negative")
    return value


# -- commands ------------------------------------------------------------------------------


def cmd_init(app: App) -> int:
    from tikos_outbox.provision import init_dir

    written = init_dir(Path(app.args.dir or "."), provider=app.args.provider)
    for path in written:
        print(f"wrote {path}")
    print("next: edit tikos-outbox.toml, then `tikos-outbox secret set` and `tikos-outbox check`")
    return EXIT_OK


def cmd_secret(app: App) -> int:
    from tikos_outbox.provision import rotate_key, set_secret

    if app.args.secret_command == "rotate-key":
        n = rotate_key(app.config_path)
        print(f"added a new key to the key file and re-encrypted {n} stored secret(s)")
        return EXIT_OK
    which = app.args.which
    label = "OAuth2 client secret" if which == "client-secret" else "SMTP password"
    if app.args.stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    else:
        value = getpass.getpass(f"{label}: ")
        if getpass.getpass(f"{label} (again): ") != value:
            raise UsageError("the two entries differ; nothing was stored")
    if not value:
        raise UsageError(f"an empty {label} was not stored")
    key = set_secret(app.config_path, which, value)
    print(f"stored the {label} encrypted in {app.config_path} ([smtp] {key})")
    return EXIT_OK


def cmd_migrate(app: App) -> int:
    if app.args.copy_from:
        from tikos_outbox.provision import copy_outbox

        n = copy_outbox(app.args.copy_from, app.store)
        print(f"copied {n} entries from {app.args.copy_from}")
        return EXIT_OK
    _ = app.store
    print(f"the outbox database is up to date ({app.config.outbox.database})")
    return EXIT_OK


def cmd_check(app: App) -> int:
    from tikos_outbox.checks import run_checks

    results = run_checks(app, smtp=app.args.smtp, sql=app.args.sql)
    if app.args.json:
        print_json([{"check": n, "ok": ok, "detail": d} for n, ok, d in results])
    else:
        for name, ok, detail in results:
            print(f"{'ok  ' if ok else 'FAIL'}  {name}: {detail}")
    return EXIT_OK if all(ok for _, ok, _ in results) else EXIT_FAILED


def cmd_scan(app: App) -> int:
    svc = app.service()
    baseline = True if app.args.baseline else (False if app.args.no_baseline else None)
    if sys.stderr.isatty() and not app.args.json:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      transient=True) as bar:
            task = bar.add_task("scanning the archive …")

            def show(r: Any) -> None:
                bar.update(task, description=f"scanning the archive: {r.files_seen:,} files,"
                                             f" {sum(r.recorded.values()):,} new")

            report = svc.scan(baseline=baseline, since=app.args.since, progress=show)
    else:
        report = svc.scan(baseline=baseline, since=app.args.since)
    data = {"files_seen": report.files_seen, "recorded": report.recorded,
            "waiting": report.waiting, "errors": report.errors}
    if app.args.json:
        print_json(data)
    else:
        rec = ", ".join(f"{n} {s}" for s, n in sorted(report.recorded.items())) or "nothing new"
        print(f"{report.files_seen} files seen; recorded: {rec}")
        if report.waiting:
            print(f"{report.waiting} file(s) still being written; taken at the next scan")
        for e in report.errors:
            print(f"error: {e}", file=sys.stderr)
    return EXIT_FAILED if report.errors else EXIT_OK


def cmd_flush(app: App) -> int:
    svc = app.service()
    report = svc.send_due(force=True)
    if app.args.json:
        print_json(report.as_dict())
    else:
        print(f"sent {report.sent}, deferred {report.deferred}, failed {report.failed}"
              + (f", skipped {report.skipped}" if report.skipped else ""))
        for why in report.stopped:
            print(f"stopped: {why}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_run(app: App) -> int:
    from tikos_outbox.runner import run

    cfg = app.config
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGBREAK", None)):
        if sig is not None:
            signal.signal(sig, on_signal)
    svc = app.service(stop=stop)
    log.info("tikos-outbox %s starting (config %s)", __version__, cfg.path)
    run(svc)
    return EXIT_OK


def cmd_status(app: App) -> int:
    svc = app.service()
    st = svc.status()
    if app.args.json:
        print_json(st)
        return EXIT_OK
    tz = app.config.window.tz
    con = _console()
    from rich.table import Table

    table = Table(title="Outbox", show_header=True)
    table.add_column("state")
    table.add_column("entries", justify="right")
    for state, n in st["counts"].items():
        table.add_row(state, str(n))
    con.print(table)
    svc_state = st["service"]
    con.print(f"service:   {'running' if svc_state['running'] else 'not running'}"
              f" (last seen {_fmt_time(svc_state['last_seen'], tz)})")
    con.print(f"last run:  {_fmt_time(st['last_run'], tz)}")
    con.print(f"next run:  {_fmt_time(st['next_run'], tz)}")
    err = st["last_error"]
    con.print(f"last error: {err['text']} ({_fmt_time(err['at'], tz)})" if err else "last error: —")
    return EXIT_OK


def cmd_list(app: App) -> int:
    flt = ListFilter(states=tuple(app.args.state or ()), mandant=app.args.mandant,
                     since=app.args.since, customer=app.args.customer, docno=app.args.docno,
                     limit=app.args.limit)
    rows = app.store.list_entries(flt)
    if app.args.json:
        print_json([entry_json(v, full=False) for v in rows])
        return EXIT_OK
    from rich.table import Table

    tz = app.config.window.tz
    table = Table(show_header=True)
    for col in ("id", "state", "mandant", "file", "customer", "recipients", "created", "note"):
        table.add_column(col, overflow="fold")
    for v in rows:
        note = v.last_error if v.state in ("deferred", "failed") else (v.reason or "")
        table.add_row(str(v.id), v.state, str(v.mandant), v.path, v.customer,
                      ", ".join(v.recipients or []) or "—", _fmt_time(v.created_at, tz),
                      note or "")
    _console().print(table)
    if not rows:
        print("no entries match")
    return EXIT_OK


def cmd_show(app: App) -> int:
    view = app.store.get_entry(app.args.id)
    if view is None:
        raise UsageError(f"there is no entry {app.args.id}")
    if app.args.json:
        print_json(entry_json(view, full=True))
        return EXIT_OK
    tz = app.config.window.tz
    m = app.config.mandant(view.mandant)
    folder = m.folder if m else Path("?")
    lines = [
        f"entry {view.id}: {view.state}" + (f" — {view.reason}" if view.reason else ""),
        f"  document:    {view.path} (mandant {view.mandant}, {view.doctype} {view.docno},"
        f" customer {view.customer})",
        f"  archive:     {folder / view.path}",
        f"  stored copy: {'in the outbox database' if view.stored_copy else 'purged'}"
        f" (sha256 {view.sha256[:16]}…, {view.size} bytes)",
        "  recipients:  " + (", ".join(view.recipients) if view.recipients
                             else "— (not looked up yet)"),
        f"  message-id:  {view.message_id}",
        f"  recorded:    {_fmt_time(view.created_at, tz)}",
        f"  sent:        {_fmt_time(view.sent_at, tz)}",
    ]
    if view.next_attempt_at and view.state == "deferred":
        lines.append(f"  next try:    {_fmt_time(view.next_attempt_at, tz)}")
    if view.refused:
        for addr, why in view.refused.items():
            lines.append(f"  refused:     {addr}: {why}")
    if view.last_error:
        lines.append(f"  last error:  {view.last_error}")
    lines.append(f"  attempts:    {len(view.attempts)}")
    for a in view.attempts:
        code = a["code"] if a["code"] is not None else "—"
        lines.append(f"    {_fmt_time(a['at'], tz)}  {a['server'] or '—'}  {a['outcome']}"
                     f"  {code} {a['reply']}")
    print("\n".join(lines))
    return EXIT_OK


def _ids_or_state(app: App) -> list[int]:
    ids: list[int] = list(app.args.ids or [])
    state = getattr(app.args, "state", None)
    if state:
        ids += app.store.ids_in_state(State(state), since=getattr(app.args, "since", None))
    elif not ids:
        raise UsageError("name entry ids or --state")
    return ids


def _report_moves(app: App, verb: str, result: dict[int, str]) -> int:
    if getattr(app.args, "json", False):
        print_json({"results": [{"id": i, "result": r} for i, r in result.items()]})
    else:
        for entry_id, res in result.items():
            print(f"entry {entry_id}: {verb}" if res == "ok" else f"entry {entry_id}: {res}")
        if not result:
            print("no entries matched")
    if any(r == "no such entry" for r in result.values()):
        return EXIT_USAGE  # an unknown id is a usage error
    return EXIT_OK if all(r == "ok" for r in result.values()) else EXIT_FAILED


def cmd_requeue(app: App) -> int:
    return _report_moves(app, "requeued", app.service().requeue(_ids_or_state(app)))


def cmd_hold(app: App) -> int:
    return _report_moves(app, "held", app.service().hold(_ids_or_state(app)))


def cmd_release(app: App) -> int:
    return _report_moves(app, "released", app.service().release(_ids_or_state(app)))


def cmd_purge(app: App) -> int:
    n = app.service().purge(app.args.older_than)
    print(f"removed {n} stored document copies")
    return EXIT_OK


def cmd_test_mail(app: App) -> int:
    from tikos_outbox.checks import send_test_mail

    ok, detail = send_test_mail(app, app.args.to)
    print(detail if ok else f"FAIL: {detail}")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_demo(app: App) -> int:
    from tikos_outbox.demo import run_demo

    return run_demo(keep=app.args.keep)


# -- parser --------------------------------------------------------------------------------

EXAMPLES: dict[str, str] = {
    "init": "tikos-outbox init C:\\tikos-outbox --provider t-online",
    "secret": "tikos-outbox secret set            (asks for the SMTP password)",
    "check": "tikos-outbox check --smtp --sql",
    "migrate": "tikos-outbox migrate",
    "run": "tikos-outbox --config C:\\tikos-outbox\\tikos-outbox.toml run",
    "scan": "tikos-outbox scan --no-baseline",
    "flush": "tikos-outbox flush",
    "status": "tikos-outbox status --json",
    "list": "tikos-outbox list --state failed --since 2026-11-01",
    "show": "tikos-outbox show 42",
    "requeue": "tikos-outbox requeue --state failed --since 2026-11-25",
    "hold": "tikos-outbox hold 42 43",
    "release": "tikos-outbox release 42",
    "purge": "tikos-outbox purge --older-than 120",
    "test-mail": "tikos-outbox test-mail --to admin@example.com",
    "demo": "tikos-outbox demo",
}


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="tikos-outbox",
        description="Mails the PDFs that TIKOS writes into its archive to the customers.",
        epilog="Config: --config PATH, else $TIKOS_OUTBOX_CONFIG, else ./tikos-outbox.toml."
               " Exit codes: 0 done, 1 something failed, 2 bad usage or config.",
    )
    p.add_argument("--config", metavar="PATH", help="the config file (TOML)")
    p.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    p.add_argument("--version", action="version", version=f"tikos-outbox {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, func: Callable[[App], int], help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_,
                            epilog=f"example: {EXAMPLES[name]}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(func=func)
        return sp

    sp = add("init", cmd_init, "write a commented config template and a new key file")
    sp.add_argument("dir", nargs="?", help="folder to write into (default: the current one)")
    sp.add_argument("--provider", default="custom",
                    choices=["t-online", "m365", "google", "ionos", "strato", "custom"],
                    help="fill in the SMTP settings of this provider")

    sp = add("secret", cmd_secret, "store the SMTP password or OAuth2 secret encrypted")
    ssub = sp.add_subparsers(dest="secret_command", metavar="ACTION", required=True,
                             parser_class=_Parser)
    sset = ssub.add_parser("set", help="store a secret (asks without echo, or --stdin)")
    sset.add_argument("which", nargs="?", default="password",
                      choices=["password", "client-secret"])
    sset.add_argument("--stdin", action="store_true", help="read one line from stdin")
    ssub.add_parser("rotate-key", help="add a new key and re-encrypt every stored secret")

    sp = add("check", cmd_check, "validate config, key, database and folders")
    sp.add_argument("--smtp", action="store_true", help="also log in to the SMTP server")
    sp.add_argument("--sql", action="store_true", help="also run the address query once")
    sp.add_argument("--json", action="store_true", help="one JSON document on stdout")

    sp = add("migrate", cmd_migrate, "bring the database schema up to date")
    sp.add_argument("--copy-from", metavar="URL",
                    help="copy all entries from another outbox (e.g. sqlite:///old/outbox.db)")

    sp = add("run", cmd_run, "the service: watch the folders and send at the scheduled times")

    sp = add("scan", cmd_scan, "one pass over the folders: record new documents")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--baseline", action="store_true",
                   help="record what is there as skipped (never mailed)")
    g.add_argument("--no-baseline", action="store_true",
                   help="record what is there for sending, even on first use")
    sp.add_argument("--since", type=parse_date, metavar="DATE",
                    help="with the baseline: files changed since DATE are still mailed")
    sp.add_argument("--json", action="store_true", help="one JSON document on stdout")

    sp = add("flush", cmd_flush, "one send run now, whatever the time; deferred entries too")
    sp.add_argument("--json", action="store_true", help="one JSON document on stdout")

    sp = add("status", cmd_status, "counts per state, last and next run, last error")
    sp.add_argument("--json", action="store_true", help="one JSON document on stdout")

    sp = add("list", cmd_list, "entries, newest first")
    sp.add_argument("--state", type=parse_state, action="append", help="only this state")
    sp.add_argument("--mandant", type=positive_int, help="only this mandant id")
    sp.add_argument("--since", type=parse_date, metavar="DATE", help="recorded since DATE")
    sp.add_argument("--customer", help="only this customer number")
    sp.add_argument("--docno", help="only this document number")
    sp.add_argument("--limit", type=positive_int, default=50, help="at most N (default 50)")
    sp.add_argument("--json", action="store_true", help="one JSON document on stdout")

    sp = add("show", cmd_show, "one entry with all its attempts")
    sp.add_argument("id", type=positive_int)
    sp.add_argument("--json", action="store_true", help="one JSON document on stdout")

    for name, func, text in (
        ("requeue", cmd_requeue, "back to pending (addresses looked up again)"),
        ("hold", cmd_hold, "stop entries from being sent"),
        ("release", cmd_release, "let held entries be sent again"),
    ):
        sp = add(name, func, text)
        sp.add_argument("ids", nargs="*", type=positive_int, metavar="ID")
        sp.add_argument("--state", type=parse_state, help="all entries in this state")
        sp.add_argument("--since", type=parse_date, metavar="DATE",
                        help="with --state: recorded since DATE")
        sp.add_argument("--json", action="store_true", help="one JSON document on stdout")

    sp = add("purge", cmd_purge, "remove stored copies of sent documents past retention")
    sp.add_argument("--older-than", type=positive_int, metavar="DAYS",
                    help="default: keep_days from the config")

    sp = add("test-mail", cmd_test_mail, "send one test mail with the configured server")
    sp.add_argument("--to", required=True, metavar="ADDR")

    sp = add("demo", cmd_demo, "a self-contained demo: archive, outbox, capture server")
    sp.add_argument("--keep", action="store_true", help="keep the demo folder afterwards")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    setup_logging(args.verbose)
    app = App(args)
    try:
        return int(args.func(app))
    except (ConfigError, UsageError, KeyFileError, StoreError) as exc:
        print(f"tikos-outbox: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SQLAlchemyError as exc:
        print(f"tikos-outbox: the outbox database failed: {_db_error(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    except OSError as exc:  # a file or folder the command needs
        print(f"tikos-outbox: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # a bug: one line here, the traceback in the log (or with -v)
        log.debug("unexpected error", exc_info=True)
        for h in logging.getLogger("tikos_outbox").handlers:
            if isinstance(h, logging.FileHandler):
                h.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0,
                                        "unexpected error in %s", (args.command,),
                                        sys.exc_info()))
        print(f"tikos-outbox: unexpected error ({type(exc).__name__}: {exc}); the traceback is"
              " in the log file, or run again with -v", file=sys.stderr)
        return EXIT_FAILED
    finally:
        app.close()
        for h in list(logging.getLogger("tikos_outbox").handlers):
            if isinstance(h, logging.FileHandler):
                logging.getLogger("tikos_outbox").removeHandler(h)
                h.close()


