"""What every command gets: its arguments, and the config and outbox opened on
first use. Also the log set-up and the error the commands raise for bad usage."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from datetime import UTC, datetime, tzinfo
from functools import cached_property
from pathlib import Path

from sqlalchemy.engine import make_url

from tikos_outbox.config import ConfigError, find_config_path, load_config, load_config_for_check
from tikos_outbox.core.settings import Config
from tikos_outbox.wiring import Outbox, open_outbox

log = logging.getLogger("tikos_outbox")
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


#: commands that work before the secrets are stored: `check` lists the missing ones
#: among its findings; the web console and its users send no mail
NO_SECRETS = frozenset({"check", "user", "web"})


class UsageError(Exception):
    """Bad usage: one line for the administrator, exit 2."""


class Context:
    """The config and the outbox, opened lazily: `init` needs neither."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.config_path = find_config_path(args.config)
        self._outbox: Outbox | None = None
        self.not_stored: list[ConfigError] = []  # `check`: secrets still to be stored

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def actor(self) -> str:
        """Who makes a move from the command line, for the audit log: cli:<login>."""
        try:
            return f"cli:{getpass.getuser()}"
        except (OSError, KeyError):  # no login name (a service account without one)
            return "cli"

    @cached_property
    def config(self) -> Config:
        if self.args.command in NO_SECRETS:  # a secret not stored yet is no reason to stop
            config, self.not_stored = load_config_for_check(self.config_path)
        else:
            config = load_config(self.config_path)
        Logs.use_zone(config.window.tz)  # one zone everywhere: the config's
        Logs.add_file(log_file_of(config))
        return config

    @property
    def since(self) -> datetime | None:
        """--since as an instant: a date or a time without offset is in the config's
        zone (the laundry's midnight, not the server's)."""
        value: datetime | None = getattr(self.args, "since", None)
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.config.window.tz)
        return value.astimezone(UTC)

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._outbox = open_outbox(self.config)
        return self._outbox

    def open_outbox(self, config: Config | None = None) -> Outbox:
        """The outbox of the config, or of `config` (check: one in memory), closed with
        the context."""
        if config is None or config is self.config:
            return self.outbox
        self._outbox = open_outbox(config)
        return self._outbox

    def close(self) -> None:
        if self._outbox is not None:
            self._outbox.close()


def log_file_of(cfg: Config) -> Path:
    """`[outbox] log_file`, else tikos-outbox.log beside an SQLite database, else
    beside the config."""
    if cfg.outbox.log_file is not None:
        return cfg.outbox.log_file
    url = make_url(cfg.outbox.database)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = url.database.removeprefix("file:")  # an SQLite URI (…?mode=ro&uri=true)
        return Path(path).parent / "tikos-outbox.log"
    return cfg.base_dir / "tikos-outbox.log"


class ZoneFormatter(logging.Formatter):
    """Log times in the config's zone, with its abbreviation (10:02:11 CET): the log,
    `status` and `--since` speak of the same clock."""

    zone: tzinfo | None = None

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        when = datetime.fromtimestamp(record.created, self.zone or UTC)
        if self.zone is None:
            when = when.astimezone()  # the machine's, until the config is read
        return when.strftime(datefmt or "%Y-%m-%d %H:%M:%S %Z")


class LogFile(logging.Handler):
    """The rotating log file (5 MB, 10 files), opened at the first line written:
    a `status` that logs nothing loads and opens nothing."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._file: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._file is None:
            import logging.handlers

            try:
                self._file = logging.handlers.RotatingFileHandler(
                    self.path, maxBytes=5_000_000, backupCount=10, encoding="utf-8")
            except OSError:
                self.handleError(record)  # one line on stderr; the command goes on
                return
            self._file.setFormatter(self.formatter)
        self._file.handle(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        super().close()


class Logs:
    """The command's log handlers on the `tikos_outbox` logger: warnings to stderr
    (everything with -v), one line per document event into a rotating file.

    Managed here rather than with logging.config.dictConfig, which closes every
    handler of the process; `main` also runs inside tests and the demo."""

    @staticmethod
    def start(verbose: bool) -> None:
        root = logging.getLogger("tikos_outbox")
        Logs.stop()
        root.setLevel(logging.DEBUG if verbose else logging.INFO)
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(ZoneFormatter(LOG_FORMAT, "%H:%M:%S"))
        err.setLevel(logging.DEBUG if verbose else logging.WARNING)
        root.addHandler(err)
        root.propagate = False

    @staticmethod
    def use_zone(zone: tzinfo) -> None:
        ZoneFormatter.zone = zone

    @staticmethod
    def add_file(path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("cannot write the log file %s: %s", path, exc)
            return
        fh = LogFile(path)
        fh.setFormatter(ZoneFormatter(LOG_FORMAT))
        fh.setLevel(logging.INFO)
        logging.getLogger("tikos_outbox").addHandler(fh)

    @staticmethod
    def files() -> list[LogFile]:
        return [h for h in logging.getLogger("tikos_outbox").handlers if isinstance(h, LogFile)]

    @staticmethod
    def stop() -> None:
        root = logging.getLogger("tikos_outbox")
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
