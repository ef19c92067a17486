"""requeue, hold, release, purge: the administrator's moves."""

from __future__ import annotations

from pathlib import Path

from tikos_outbox.cli.context import Context, UsageError
from tikos_outbox.cli.output import move_json, print_json
from tikos_outbox.cli.parser import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from tikos_outbox.core.states import MoveResult, Refusal, State


def _ids(ctx: Context) -> list[int]:
    ids: list[int] = list(ctx.args.ids or [])
    if ctx.args.state:
        ids += ctx.outbox.admin.ids_in_state(State(ctx.args.state), since=ctx.since)
    elif not ids:
        raise UsageError("name entry ids or --state")
    return ids


def _report(ctx: Context, verb: str, results: dict[int, MoveResult]) -> int:
    if ctx.json:
        print_json(move_json(results))
    else:
        for entry_id, res in results.items():
            print(f"entry {entry_id}: {verb}" if res.ok else res.explain())
        if not results:
            print("no entries matched")
    if any(r.refusal is Refusal.NO_SUCH_ENTRY for r in results.values()):
        return EXIT_USAGE  # an unknown id is a usage error
    return EXIT_OK if all(r.ok for r in results.values()) else EXIT_FAILED


def run_requeue(ctx: Context) -> int:
    return _report(ctx, "requeued", ctx.outbox.admin.requeue(_ids(ctx), ctx.actor))


def run_hold(ctx: Context) -> int:
    return _report(ctx, "held", ctx.outbox.admin.hold(_ids(ctx), ctx.actor))


def run_release(ctx: Context) -> int:
    return _report(ctx, "released", ctx.outbox.admin.release(_ids(ctx), ctx.actor,
                                                             force=ctx.args.force))


def run_backup(ctx: Context) -> int:
    target = Path(ctx.args.file).absolute()
    if target.exists():
        raise UsageError(f"{target} exists already; backup never overwrites")
    if not ctx.outbox.store.engine.dialect.name == "sqlite":
        raise UsageError("the outbox is in PostgreSQL: back it up with pg_dump (it is"
                         " consistent while the service runs)")
    ctx.outbox.store.commands.backup_to(target)
    print(f"wrote {target} ({target.stat().st_size / 1048576:.1f} MB): a consistent copy"
          " of the outbox database; to restore, stop the service and put it in place of"
          f" {ctx.config.outbox.database.removeprefix('sqlite:///')}")
    return EXIT_OK


def run_purge(ctx: Context) -> int:
    n = ctx.outbox.admin.purge(ctx.args.older_than)
    print(f"removed {n} stored document copies")
    return EXIT_OK
