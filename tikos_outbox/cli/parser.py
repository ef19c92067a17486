"""The command line: every command's name, help, example and arguments. Building
the parser imports no command, so `--help` answers at once; `main` imports the
one module that runs (like pip's `commands/__init__.py`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time
from typing import NoReturn

from tikos_outbox import __version__
from tikos_outbox.core.states import State
from tikos_outbox.core.values import parse_day

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STATES = tuple(s.value for s in State)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# -- argument types ------------------------------------------------------------------------


def parse_date(text: str) -> datetime:
    """'2026-11-26', '26.11.2026' or an ISO timestamp. A date is midnight and a time
    without offset is wall time, both in the config's zone: they stay naive here,
    and the command makes them an instant (Context.since)."""
    day = parse_day(text)
    if day is not None:
        return datetime.combine(day, time(0))
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a date like 2026-11-26 or 26.11.2026") from None


def parse_state(text: str) -> str:
    if text.lower() not in STATES:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a state; use one of {', '.join(STATES)}")
    return text.lower()


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"'{text}' must not be negative")
    return value


# -- the commands ------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # tikos_outbox.cli.commands.<module> holds `run_<name>` (dashes as _)
    help: str
    example: str
    args: Callable[[argparse.ArgumentParser], None] | None = None
    json: bool = False  # takes --json


def _init(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", help="folder to write into (default: the current one)")
    p.add_argument("--provider", default="custom",
                   choices=["m365", "m365-graph", "google", "ionos", "t-online", "strato",
                            "gmx", "web.de", "custom"],
                   help="fill in the SMTP settings and sending limits of this provider")


def _secret(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="secret_command", metavar="ACTION", required=True,
                           parser_class=Parser)
    sset = sub.add_parser("set", help="store a secret (asks without echo, or --stdin)")
    sset.add_argument("which", nargs="?", default="password",
                      choices=["password", "client-secret", "bounce-password"])
    sset.add_argument("--stdin", action="store_true", help="read one line from stdin")
    sset.add_argument("--mandant", type=int, metavar="N",
                      help="a mandant's own login: stored in its [mandant.smtp]")
    sub.add_parser("rotate-key", help="add a new key and re-encrypt every stored secret")


def _check(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smtp", action="store_true", help="also log in to the SMTP server")
    p.add_argument("--sql", action="store_true", help="also run the address query once")


def _migrate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--copy-from", metavar="URL",
                   help="copy all entries from another outbox (e.g. sqlite:///old/outbox.db)")


def _scan(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--baseline", action="store_true",
                   help="record what is there as skipped (never mailed)")
    g.add_argument("--no-baseline", action="store_true",
                   help="record what is there for sending, even on first use")
    p.add_argument("--since", type=parse_date, metavar="DATE",
                   help="with the baseline: files changed since DATE are still mailed")


def _list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", type=parse_state, action="append", help="only this state")
    p.add_argument("--mandant", type=positive_int, help="only this mandant id")
    p.add_argument("--since", type=parse_date, metavar="DATE", help="recorded since DATE")
    p.add_argument("--customer", help="only this customer number")
    p.add_argument("--docno", help="only this document number")
    p.add_argument("--attention", action="store_true",
                   help="only entries that need an administrator's move, with what to do")
    p.add_argument("--limit", type=positive_int, default=50, help="at most N (default 50)")


def _show(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", type=positive_int)


def _moves(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", nargs="*", type=positive_int, metavar="ID")
    p.add_argument("--state", type=parse_state, help="all entries in this state")
    p.add_argument("--since", type=parse_date, metavar="DATE",
                   help="with --state: recorded since DATE")


def _release(p: argparse.ArgumentParser) -> None:
    _moves(p)
    p.add_argument("--force", action="store_true",
                   help="also entries held because their file is not a mailable PDF"
                        " (truncated, not a PDF, too large, empty): the recorded file is sent")


def _purge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--older-than", type=positive_int, metavar="DAYS",
                   help="default: keep_days from the config")


def _backup(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the copy to write (must not exist yet)")


def _test_mail(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", required=True, metavar="ADDR")


def _web(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="the address to serve on (default: [web] host, 127.0.0.1)")
    p.add_argument("--port", type=positive_int, help="the port (default: [web] port, 8025)")


def _user(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="user_command", metavar="ACTION", required=True,
                           parser_class=Parser)
    add = sub.add_parser("add", help="a new user of the web console (asks for the password)")
    add.add_argument("name")
    add.add_argument("--role", choices=["admin", "viewer"], required=True,
                     help="admin: also requeue, hold, release, audit log; viewer: read only")
    add.add_argument("--stdin", action="store_true", help="read the password from stdin")
    pw = sub.add_parser("password", help="a new password (ends the user's sessions)")
    pw.add_argument("name")
    pw.add_argument("--stdin", action="store_true", help="read the password from stdin")
    rm = sub.add_parser("remove", help="the user may no longer log in (sessions end)")
    rm.add_argument("name")
    ls = sub.add_parser("list", help="the users and their roles")
    ls.add_argument("--json", action="store_true", help="one JSON document on stdout")


def _demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep", action="store_true", help="keep the demo folder afterwards")


COMMANDS: tuple[Command, ...] = (
    Command("init", "setup", "write a commented config template and a new key file",
            "tikos-outbox init C:\\tikos-outbox --provider t-online", _init),
    Command("secret", "setup", "store the SMTP password or OAuth2 secret encrypted",
            "tikos-outbox secret set            (asks for the SMTP password)", _secret),
    Command("check", "setup", "validate config, key, database and folders",
            "tikos-outbox check --smtp --sql", _check, json=True),
    Command("migrate", "setup", "bring the database schema up to date",
            "tikos-outbox migrate", _migrate),
    Command("run", "service", "the service: watch the folders and send at the scheduled times",
            "tikos-outbox --config C:\\tikos-outbox\\tikos-outbox.toml run"),
    Command("scan", "service", "one pass over the folders: record new documents",
            "tikos-outbox scan --no-baseline", _scan, json=True),
    Command("flush", "service", "one send run now, whatever the time; deferred entries too",
            "tikos-outbox flush", json=True),
    Command("bounces", "service", "read the bounce mailbox once: mark bounced recipients",
            "tikos-outbox bounces", json=True),
    Command("status", "inspect", "counts per state, last and next run, last error",
            "tikos-outbox status --json", json=True),
    Command("list", "inspect", "entries, newest first",
            "tikos-outbox list --state failed --since 2026-11-01", _list, json=True),
    Command("show", "inspect", "one entry with all its attempts", "tikos-outbox show 42",
            _show, json=True),
    Command("requeue", "moves", "back to pending (addresses looked up again)",
            "tikos-outbox requeue --state failed --since 2026-11-25", _moves, json=True),
    Command("hold", "moves", "stop entries from being sent", "tikos-outbox hold 42 43",
            _moves, json=True),
    Command("release", "moves", "let held entries be sent again", "tikos-outbox release 42",
            _release, json=True),
    Command("backup", "moves", "a consistent copy of the outbox database, also while it runs",
            "tikos-outbox backup D:\\Sicherung\\outbox-2026-12-02.db", _backup),
    Command("purge", "moves", "remove stored copies of sent documents past retention",
            "tikos-outbox purge --older-than 120", _purge),
    Command("test-mail", "setup", "send one test mail with the configured server",
            "tikos-outbox test-mail --to admin@example.com", _test_mail),
    Command("web", "web", "the office's web console (search, entries, send log)",
            "tikos-outbox web --port 8025", _web),
    Command("user", "web", "who may log in to the web console",
            "tikos-outbox user add anna --role admin", _user),
    Command("demo", "demo", "a self-contained demo: archive, outbox, capture server",
            "tikos-outbox demo", _demo),
)


def _common(p: argparse.ArgumentParser, default: object) -> None:
    """--config and -v, taken before or after the command name (SUPPRESS: the one not
    given does not overwrite the one given)."""
    p.add_argument("--config", metavar="PATH", default=default,
                   help="the config file (TOML), or the folder that holds tikos-outbox.toml")
    p.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="log details to stderr")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="tikos-outbox",
        description="Mails the PDFs that TIKOS writes into its archive to the customers.",
        epilog="Config: --config PATH, else $TIKOS_OUTBOX_CONFIG, else ./tikos-outbox.toml."
               " Exit codes: 0 done, 1 something failed, 2 bad usage or config.",
    )
    _common(p, argparse.SUPPRESS)  # before the command …
    p.set_defaults(config=None, verbose=False)
    p.add_argument("--version", action="version", version=f"tikos-outbox {__version__}")
    common = Parser(add_help=False)
    _common(common, argparse.SUPPRESS)  # … or after it: `tikos-outbox status --config X`
    json_flag = Parser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="one JSON document on stdout")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for c in COMMANDS:
        sp = sub.add_parser(c.name, help=c.help, description=c.help,
                            epilog=f"example: {c.example}",
                            parents=[common, json_flag] if c.json else [common],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(command_def=c)
        if c.args is not None:
            c.args(sp)
    return p
