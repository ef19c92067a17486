"""demo: the whole path on this machine, through the real commands."""

from __future__ import annotations

from tikos_outbox.cli.context import Context


def run_demo(ctx: Context) -> int:
    from tikos_outbox.cli import main
    from tikos_outbox.demo import run_demo as demo

    return demo(main, keep=ctx.args.keep)
