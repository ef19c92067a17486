"""The `tikos-outbox` command: parse, call the use case, print, exit.

Exit codes: 0 done; 1 the work ran but something failed; 2 bad usage or config.
Only the module of the command that runs is imported.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from tikos_outbox.cli.parser import EXIT_FAILED, EXIT_USAGE, build_parser

log = logging.getLogger("tikos_outbox")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    command = args.command_def
    module = importlib.import_module(f"tikos_outbox.cli.commands.{command.module}")
    run: Callable[..., int] = getattr(module, "run_" + command.name.replace("-", "_"))
    from tikos_outbox.cli.context import Context, Logs
    from tikos_outbox.cli.errors import explain_failure

    Logs.start(args.verbose)
    # the outbox database, its WAL and the log hold every invoice and address: new
    # files are the owner's alone (init sets the config's group bit itself)
    umask = os.umask(0o077) if os.name == "posix" else None
    ctx: Context | None = None
    try:
        ctx = Context(args)
        return int(run(ctx))
    except KeyboardInterrupt:
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line and an exit code
        code, line = explain_failure(exc, args.command)
        print(f"tikos-outbox: {line}", file=sys.stderr)
        return code
    finally:
        if ctx is not None:
            ctx.close()
        Logs.stop()
        if umask is not None:
            os.umask(umask)


__all__ = ["EXIT_USAGE", "main"]
