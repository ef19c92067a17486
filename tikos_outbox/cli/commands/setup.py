"""init, secret, check, migrate, test-mail: setting up and trying the set-up."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from tikos_outbox.checks import run_checks, send_test_mail
from tikos_outbox.cli.context import Context, UsageError
from tikos_outbox.cli.output import print_json
from tikos_outbox.cli.parser import EXIT_FAILED, EXIT_OK
from tikos_outbox.provision import init_dir, rotate_key, set_secret
from tikos_outbox.store.copy import copy_outbox

LABELS = {"password": "SMTP password", "client-secret": "OAuth2 client secret"}


def run_init(ctx: Context) -> int:
    written = init_dir(Path(ctx.args.dir or "."), provider=ctx.args.provider)
    for path in written:
        print(f"wrote {path}")
    print("next: edit tikos-outbox.toml, then `tikos-outbox secret set` and `tikos-outbox check`")
    return EXIT_OK


def run_secret(ctx: Context) -> int:
    if ctx.args.secret_command == "rotate-key":
        n = rotate_key(ctx.config_path)
        print(f"added a new key to the key file and re-encrypted {n} stored secret(s)")
        return EXIT_OK
    which = ctx.args.which
    label = LABELS[which]
    if ctx.args.stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    else:
        value = getpass.getpass(f"{label}: ")
        if getpass.getpass(f"{label} (again): ") != value:
            raise UsageError("the two entries differ; nothing was stored")
    if not value:
        raise UsageError(f"an empty {label} was not stored")
    mandant = ctx.args.mandant
    key = set_secret(ctx.config_path, which, value, mandant=mandant)
    where = "[smtp]" if mandant is None else f"[mandant.smtp] of mandant {mandant}"
    print(f"stored the {label} encrypted in {ctx.config_path} ({where} {key})")
    return EXIT_OK


def run_migrate(ctx: Context) -> int:
    outbox = ctx.outbox  # opening it migrates
    if ctx.args.copy_from:
        try:
            n = copy_outbox(ctx.args.copy_from, outbox.store)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(f"copied {n} entries from {ctx.args.copy_from}")
        return EXIT_OK
    print(f"the outbox database is up to date ({ctx.config.outbox.database})")
    return EXIT_OK


def run_check(ctx: Context) -> int:
    results = run_checks(ctx.config, ctx.open_outbox, smtp=ctx.args.smtp, sql=ctx.args.sql)
    if ctx.json:
        print_json([{"check": c.name, "ok": c.ok, "detail": c.detail} for c in results])
    else:
        for c in results:
            print(f"{'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
    return EXIT_OK if all(c.ok for c in results) else EXIT_FAILED


def run_test_mail(ctx: Context) -> int:
    ok, detail = send_test_mail(ctx.outbox, ctx.args.to)
    print(detail if ok else f"FAIL: {detail}")
    return EXIT_OK if ok else EXIT_FAILED
