"""init, secret, check, migrate, test-mail: setting up and trying the set-up."""

from __future__ import annotations

import getpass
import shutil
import sys
from pathlib import Path

from tikos_outbox.checks import Check, run_checks, send_test_mail
from tikos_outbox.cli.context import Context, UsageError
from tikos_outbox.cli.output import print_json
from tikos_outbox.cli.parser import EXIT_FAILED, EXIT_OK
from tikos_outbox.provision import BOUNCES, auth_of, init_dir, rotate_key, set_secret
from tikos_outbox.store import safe_url
from tikos_outbox.store.copy import copy_outbox

LABELS = {"password": "SMTP password", "client-secret": "OAuth2 client secret",
          "bounce-password": "bounce mailbox (IMAP) password"}


def run_init(ctx: Context) -> int:
    written = init_dir(Path(ctx.args.dir or "."), provider=ctx.args.provider)
    for path in written:
        print(f"wrote {path}")
    folder = Path(ctx.args.dir or ".").absolute()
    here = "" if folder == Path.cwd() else f" --config {_quoted(str(folder))}"
    prog = _program()
    print(f"next: edit {folder / 'tikos-outbox.toml'}, then `{prog}{here} secret set`"
          f" and `{prog}{here} check --smtp --sql` (--sql when the addresses come from the"
          " TIKOS database)")
    return EXIT_OK


def run_secret(ctx: Context) -> int:
    if ctx.args.secret_command == "rotate-key":
        n = rotate_key(ctx.config_path)
        print(f"added a new key to the key file and re-encrypted {n} stored secret(s)")
        return EXIT_OK
    which = ctx.args.which
    label = LABELS[which]
    if which == "bounce-password":
        _check_bounce_auth(ctx.config_path)
    else:
        _check_auth_wants(ctx.config_path, which, ctx.args.mandant)
    if ctx.args.stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        raise UsageError(f"no terminal to ask for the {label} on; give it on one line with"
                         f" --stdin, e.g. from a file: tikos-outbox secret set {which}"
                         " --stdin < secret.txt (then delete the file)")
    else:
        try:
            value = getpass.getpass(f"{label}: ")
            again = getpass.getpass(f"{label} (again): ")
        except EOFError:
            raise UsageError(f"no {label} was entered; nothing was stored") from None
        if again != value:
            raise UsageError("the two entries differ; nothing was stored")
    if not value:
        raise UsageError(f"an empty {label} was not stored")
    mandant = ctx.args.mandant
    key = set_secret(ctx.config_path, which, value, mandant=mandant)
    where = "[bounces]" if which == "bounce-password" else \
        "[smtp]" if mandant is None else f"[mandant.smtp] of mandant {mandant}"
    print(f"stored the {label} encrypted in {ctx.config_path} ({where} {key})")
    return EXIT_OK


def _program() -> str:
    """How to call tikos-outbox again: its name where it is on the PATH, else the full
    path of this one (a venv's bin or Scripts folder usually is not on the PATH)."""
    me = Path(sys.argv[0])
    if not me.name.lower().startswith("tikos-outbox"):
        return "tikos-outbox"  # python -m tikos_outbox, or called from a program
    found = shutil.which("tikos-outbox")
    if found and Path(found).resolve() == me.resolve():
        return "tikos-outbox"
    return _quoted(str(me.absolute()))


def _quoted(path: str) -> str:
    return f'"{path}"' if " " in path else path


def _check_auth_wants(config: Path, which: str, mandant: int | None) -> None:
    """A password for an OAuth2 login (or a client secret for a password login) would be
    stored and never used: say what the config wants instead."""
    wanted = {"oauth2": "client-secret", "password": "password"}.get(auth_of(config, mandant))
    if wanted is not None and wanted != which:
        raise UsageError(f"the config says auth = \"{auth_of(config, mandant)}\", which uses"
                         f" no {LABELS[which]}; store the {LABELS[wanted]} with: tikos-outbox"
                         f" secret set {wanted}")


def _check_bounce_auth(config: Path) -> None:
    if auth_of(config, BOUNCES) == "oauth2":
        raise UsageError("the config says [bounces] auth = \"oauth2\", which reads the"
                         " mailbox with the [smtp] OAuth2 app and no password; nothing was"
                         " stored")


def run_migrate(ctx: Context) -> int:
    outbox = ctx.outbox  # opening it migrates
    if ctx.args.copy_from:
        try:
            n = copy_outbox(ctx.args.copy_from, outbox.store)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(f"copied {n} entries from {ctx.args.copy_from}")
        return EXIT_OK
    print(f"the outbox database is up to date ({safe_url(ctx.config.outbox.database)})")
    return EXIT_OK


def run_check(ctx: Context) -> int:
    config = ctx.config
    results = [Check(f"secret [{e.key.rsplit('.', 1)[0] if e.key else ''}]"
                     f" {e.key.rsplit('.', 1)[-1] if e.key else ''}", False, e.problem)
               for e in ctx.not_stored]
    results += run_checks(config, ctx.open_outbox, smtp=ctx.args.smtp and not results,
                          sql=ctx.args.sql)
    if ctx.json:
        print_json([{"check": c.name, "ok": c.ok, "detail": c.detail} for c in results])
    else:
        fail = "\033[1;31mFAIL\033[0m" if sys.stdout.isatty() else "FAIL"  # red on a terminal
        for c in results:
            print(f"{'ok  ' if c.ok else fail}  {c.name}: {c.detail}")
    return EXIT_OK if all(c.ok for c in results) else EXIT_FAILED


def run_test_mail(ctx: Context) -> int:
    ok, detail = send_test_mail(ctx.outbox, ctx.args.to)
    print(detail if ok else f"FAIL: {detail}")
    return EXIT_OK if ok else EXIT_FAILED
