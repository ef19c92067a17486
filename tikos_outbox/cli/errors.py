"""Every failure of a command as one line and an exit code."""

from __future__ import annotations

import logging
import sys

from tikos_outbox.cli.context import Logs, UsageError
from tikos_outbox.cli.parser import EXIT_FAILED, EXIT_USAGE
from tikos_outbox.config import ConfigError
from tikos_outbox.core.ports import SecretUnavailable, StoreError, StoreUnavailable

log = logging.getLogger("tikos_outbox")


def explain_failure(exc: Exception, command: str) -> tuple[int, str]:
    """(exit code, the line for stderr). A bug is one line here and its traceback in
    the log file (and on stderr with -v)."""
    if isinstance(exc, ConfigError | UsageError | SecretUnavailable | StoreUnavailable):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, StoreError):  # failed while the command ran
        return EXIT_FAILED, str(exc)
    if isinstance(exc, OSError):  # a file or folder the command needs
        return EXIT_FAILED, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    log.debug("unexpected error", exc_info=exc)
    for h in Logs.files():
        h.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0,
                                "unexpected error in %s", (command,), sys.exc_info()))
    return EXIT_FAILED, (f"unexpected error ({type(exc).__name__}: {exc}); the traceback is"
                         " in the log file, or run again with -v")
