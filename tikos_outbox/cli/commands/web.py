"""web, user: the office's console and who may log in to it."""

from __future__ import annotations

import getpass
import sys

from tikos_outbox.cli.context import Context, UsageError
from tikos_outbox.cli.output import print_json, table
from tikos_outbox.cli.parser import EXIT_OK
from tikos_outbox.core.console import WebRole
from tikos_outbox.usecases.users import UserError


def run_web(ctx: Context) -> int:
    from tikos_outbox.web.server import WebServer

    settings = ctx.config.web
    host = ctx.args.host or settings.host
    problem = settings.exposure_problem(host)
    if problem:
        raise UsageError(problem)
    if not ctx.outbox.users.all():
        print("note: no user may log in yet; add one with: tikos-outbox user add NAME"
              " --role admin", file=sys.stderr)
    server = WebServer(ctx.outbox, settings, host=host, port=ctx.args.port)
    sock = server.bind()
    print(f"web console at {server.url} (Ctrl+C stops it)", flush=True)
    server.serve(sock)
    return EXIT_OK


def run_user(ctx: Context) -> int:
    users = ctx.outbox.users
    what = ctx.args.user_command
    try:
        if what == "list":
            found = users.all()
            if ctx.json:
                print_json([{"name": u.name, "role": u.role.value,
                             "created_at": u.created_at.isoformat()} for u in found])
            elif found:
                print(table(["user", "role", "created"],
                            [[u.name, u.role.value, f"{u.created_at:%Y-%m-%d}"] for u in found]))
            else:
                print("no users yet: tikos-outbox user add NAME --role admin")
        elif what == "add":
            user = users.add(ctx.args.name, WebRole(ctx.args.role), _password(ctx), ctx.actor)
            print(f"added {user.name} ({user.role.value}); the console's login is /login")
        elif what == "password":
            users.set_password(ctx.args.name, _password(ctx), ctx.actor)
            print(f"stored a new password for {ctx.args.name}; their sessions have ended")
        else:
            users.remove(ctx.args.name, ctx.actor)
            print(f"removed {ctx.args.name}; their sessions have ended")
    except UserError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _password(ctx: Context) -> str:
    if ctx.args.stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password on; give it on one line with"
                         " --stdin")
    try:
        value = getpass.getpass("password: ")
        again = getpass.getpass("password (again): ")
    except EOFError:
        raise UsageError("no password was entered; nothing was stored") from None
    if again != value:
        raise UsageError("the two entries differ; nothing was stored")
    return value
