"""The TOML config file, read into frozen, validated settings.

Every problem is reported as a :class:`ConfigError` that names the file and
the key, in words an administrator understands (several at once, one per
section, as :class:`ConfigErrors`); nothing is touched before the whole file has
been validated.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tikos_outbox.config_keys import (
    NOT_STORED,
    REQUIRED,
    ConfigError,
    ConfigErrors,
    Section,
    resolve_path,
)
from tikos_outbox.config_sections import (
    bounces_section,
    einvoice_section,
    recipients_section,
    report_section,
    web_section,
)
from tikos_outbox.config_smtp import smtp_section
from tikos_outbox.core.addresses import is_valid_address
from tikos_outbox.core.attention import Language
from tikos_outbox.core.naming import compile_pattern
from tikos_outbox.core.retry import RetryPolicy
from tikos_outbox.core.settings import (
    Config,
    Mandant,
    OutboxSettings,
    SenderSettings,
    Template,
    WatchMode,
    WatchSettings,
)
from tikos_outbox.core.templates import (
    BASE_FIELDS,
    DEFAULT_TEMPLATES,
    TemplateError,
    template_fields,
)
from tikos_outbox.core.window import WEEKDAYS, SendWindow, parse_hhmm

__all__ = ["ConfigError", "find_config_path", "load_config", "parse_config", "resolve_path"]

ENV_VAR = "TIKOS_OUTBOX_CONFIG"
DEFAULT_NAME = "tikos-outbox.toml"
T = TypeVar("T")

def find_config_path(explicit: str | None, cwd: Path | None = None) -> Path:
    """--config, else $TIKOS_OUTBOX_CONFIG, else ./tikos-outbox.toml; a folder means
    the tikos-outbox.toml inside it."""
    given = explicit or os.environ.get(ENV_VAR)
    if given:
        path = Path(given)
        return path / DEFAULT_NAME if path.is_dir() else path
    return (cwd or Path.cwd()) / DEFAULT_NAME


def load_config(path: Path) -> Config:
    """Read and validate the config file; raises ConfigError."""
    path = path.absolute()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(path, None, "no such config file (create one with `tikos-outbox init`)"
                          ) from None
    except UnicodeDecodeError:
        raise ConfigError(path, None, "is not saved as UTF-8 (an editor wrote it as ANSI or"
                          " UTF-16); save it as UTF-8, e.g. in Notepad: Save as, Encoding:"
                          " UTF-8") from None
    except OSError as exc:
        raise ConfigError(path, None, f"cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        hint = ""
        if "escape" in str(exc).lower() or "\\" in str(exc):
            hint = (" — a Windows path in double quotes needs every \\ doubled; simpler,"
                    " write it in single quotes: folder = '\\\\fileserver\\SoCom$\\Archiv'")
        raise ConfigError(path, None, f"is not valid TOML: {exc}{hint}") from None
    return replace(parse_config(data, path),
                   digest=hashlib.sha256(text.encode("utf-8")).hexdigest()[:16])


def parse_config(data: dict[str, Any], path: Path) -> Config:
    """Validate parsed TOML into a Config; raises ConfigError, or ConfigErrors with
    every section's problem when there are several (an admin mends them in one go)."""
    base = path.parent
    errors: list[ConfigError] = []

    def part(read: Callable[[], T]) -> T | None:
        try:
            return read()
        except ConfigError as exc:
            errors.append(exc)
            return None

    known = {"outbox", "schedule", "smtp", "sender", "watch", "recipients", "mandant",
             "templates", "report", "bounces", "einvoice", "web"}
    errors += [ConfigError(path, key, "is not a known section (check the spelling)")
               for key in data if key not in known]
    outbox = part(lambda: _outbox(Section(path, "outbox", data.get("outbox", {})), base))
    window = part(lambda: _window(Section(path, "schedule", data.get("schedule", {}))))
    smtp_raw = data.get("smtp", {})
    sender_raw = data.get("sender", {})
    smtp = part(lambda: smtp_section(Section(path, "smtp", smtp_raw), base))
    sender = part(lambda: _sender(Section(path, "sender", sender_raw)))
    watch = part(lambda: _watch(Section(path, "watch", data.get("watch", {}))))
    recipients = part(lambda: recipients_section(
        Section(path, "recipients", data.get("recipients", {})), base))
    report = part(lambda: report_section(Section(path, "report", data.get("report", {}))))
    bounces = part(lambda: bounces_section(Section(path, "bounces", data.get("bounces", {})), base,
                                    data.get("smtp", {})))
    einvoice = part(lambda: einvoice_section(Section(path, "einvoice",
                                                     data.get("einvoice", {}))))
    web = part(lambda: web_section(Section(path, "web", data.get("web", {})), base))

    raw_mandants = data.get("mandant")
    if raw_mandants is None:
        errors.append(ConfigError(path, "mandant",
                                  "is missing: add at least one [[mandant]] table"))
    elif not isinstance(raw_mandants, list):
        errors.append(ConfigError(path, "mandant",
                                  "must be written as [[mandant]] (a list of tables)"))
    parsed = [part(partial(_mandant, path, i, raw, base, smtp_raw, sender_raw))
              for i, raw in enumerate(raw_mandants if isinstance(raw_mandants, list) else [])]
    mandants = [m for m in parsed if m is not None]
    ids = [raw.get("id") if isinstance(raw, dict) else None
           for raw in (raw_mandants if isinstance(raw_mandants, list) else [])]
    for twice in sorted({i for i in ids if isinstance(i, int) and ids.count(i) > 1}):
        errors.append(ConfigError(path, f"mandant[{ids.index(twice)}].id",
                                  f"id {twice} is used twice"))

    group_names = set().union(*(m.pattern.groupindex for m in mandants))
    templates = part(lambda: _templates(path, data.get("templates", {}),
                                        BASE_FIELDS | group_names))
    for where, snd in [("sender", sender)] + [(f"mandant[{i}].sender", m.sender)
                                              for i, m in enumerate(mandants)]:
        if snd is not None:
            part(partial(_check_fields, Section(path, where, {}), "signature",
                         snd.signature, BASE_FIELDS | group_names))
    errors = _once(errors)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    assert outbox and window and smtp and sender and watch and recipients and report
    assert bounces is not None and einvoice is not None and web is not None
    assert templates is not None
    return Config(path=path, outbox=outbox, window=window, smtp=smtp, sender=sender,
                  watch=watch, recipients=recipients, mandants=tuple(mandants),
                  templates=templates, report=report, bounces=bounces, einvoice=einvoice,
                  web=web, raw=data)


def load_config_for_check(path: Path) -> tuple[Config, list[ConfigError]]:
    """The config as `check` reads it: with the secrets that are not stored yet
    returned as problems beside it, not raised."""
    noted: list[ConfigError] = []
    token = NOT_STORED.set(noted)
    try:
        return load_config(path), _once(noted)
    finally:
        NOT_STORED.reset(token)


def _once(errors: list[ConfigError]) -> list[ConfigError]:
    """Without a mandant's copy of a shared key's error (a bad [smtp] port is bad
    for every mandant that inherits it): each problem once, at its own key."""
    seen = {(e.key, e.problem) for e in errors}
    return [e for e in errors
            if not (e.key and e.key.startswith("mandant[") and "." in e.key
                    and (e.key.split(".", 1)[1], e.problem) in seen)]


def _outbox(s: Section, base: Path) -> OutboxSettings:
    db = s.str_("database", "outbox.db")
    url = db if "://" in db else "sqlite:///" + resolve_path(db, base).as_posix()
    if not url.startswith(("sqlite", "postgresql")):
        raise s.fail("database", "must be an SQLite file name or a postgresql+psycopg:// URL")
    key_file = s.path("key_file", base, "tikos-outbox.key")
    keep_days = s.int_("keep_days", 90, 1, 36500)
    log_file_raw = s.str_("log_file", None)
    lifetime_days = s.num("max_lifetime_days", 5, 0.01, 365)
    busy = s.num("busy_timeout_s", 30, 0.1, 3600)
    language = s.choice("language", Language, Language.DE)
    s.finish()
    assert key_file is not None
    log_file = resolve_path(log_file_raw, base) if log_file_raw else None
    return OutboxSettings(database=url, key_file=key_file, keep_days=keep_days,
                          log_file=log_file,
                          retry=RetryPolicy(lifetime=timedelta(days=lifetime_days)),
                          busy_timeout_s=busy, language=language)


def _window(s: Section) -> SendWindow:
    tzname = s.str_("timezone", "Europe/Berlin")
    try:
        tz = ZoneInfo(tzname)
    except (ZoneInfoNotFoundError, ValueError):
        raise s.fail("timezone", f"{tzname!r} is not a known time zone like 'Europe/Berlin'"
                     ) from None
    times = {}
    for key, default in (("first", "08:00"), ("last", "18:00")):
        try:
            times[key] = parse_hhmm(s.str_(key, default))
        except ValueError as exc:
            raise s.fail(key, str(exc)) from None
    every = s.int_("every_minutes", 60, 1, 1440)
    days = s.str_list("days", list(WEEKDAYS))
    for d in days:
        if d.lower() not in WEEKDAYS:
            raise s.fail("days", f"{d!r} is not a day; use {', '.join(WEEKDAYS)}")
    if not days:
        raise s.fail("days", "must name at least one day")
    s.finish()
    if times["last"] < times["first"]:
        raise s.fail("last", "must not be earlier than 'first'")
    return SendWindow(tz=tz, first=times["first"], last=times["last"], every_minutes=every,
                      days=frozenset(WEEKDAYS.index(d.lower()) for d in days))


def _sender(s: Section) -> SenderSettings:
    address = s.address("address")
    name = s.str_("name", "", empty=True)
    reply_to = s.address("reply_to", None)
    bcc = s.str_list("bcc", [])
    for b in bcc:
        if not is_valid_address(b):
            raise s.fail("bcc", f"{b!r} is not a valid e-mail address")
    signature = s.str_("signature", "", empty=True)
    s.finish()
    return SenderSettings(address=address, name=name, reply_to=reply_to, bcc=tuple(bcc),
                          signature=signature.strip("\n"))


def _watch(s: Section) -> WatchSettings:
    w = WatchSettings(
        mode=s.choice("mode", WatchMode, WatchMode.AUTO),
        poll_interval_s=s.num("poll_interval_s", 10, 0.05, 86400),
        settle_s=s.num("settle_s", 5, 0, 86400),
        baseline=s.bool_("baseline", True),
        max_size_mb=s.num("max_size_mb", 20, 0.001, 10000),
        full_scan_minutes=s.num("full_scan_minutes", 60, 0.01, 100000),
        reconcile_minutes=s.num("reconcile_minutes", 60, 0.01, 100000),
    )
    s.finish()
    return w


def _mandant(file: Path, i: int, raw: Any, base: Path, smtp_raw: Any, sender_raw: Any) -> Mandant:
    s = Section(file, f"mandant[{i}]", raw)
    mid = s.int_("id", REQUIRED, 0, 10**9)
    name = s.str_("name", f"Mandant {mid}")
    enabled = s.bool_("enabled", True)
    folder = s.path("folder", base)
    assert folder is not None
    pattern_text = s.str_("pattern")
    try:
        pattern = compile_pattern(pattern_text)
    except re.error as exc:
        raise s.fail("pattern", f"is not a valid regular expression: {exc}") from None
    smtp_over = s.data.get("smtp", {})
    sender_over = s.data.get("sender", {})
    s.used.update({"smtp", "sender"})
    s.finish()
    if not isinstance(smtp_over, dict) or not isinstance(sender_over, dict):
        raise s.fail("smtp", "overrides must be tables: [mandant.smtp] / [mandant.sender]")
    smtp = smtp_section(Section(file, f"mandant[{i}].smtp", {**smtp_raw, **smtp_over}), base)
    sender = _sender(Section(file, f"mandant[{i}].sender", {**sender_raw, **sender_over}))
    return Mandant(id=mid, name=name, enabled=enabled, folder=folder, pattern=pattern,
                   smtp=smtp, sender=sender)


def _templates(file: Path, raw: Any, allowed: set[str] | frozenset[str]) -> dict[str, Template]:
    if not isinstance(raw, dict):
        raise ConfigError(file, "templates", "must be tables like [templates.RE]")
    out = {k: Template(subject=v[0], body=v[1]) for k, v in DEFAULT_TEMPLATES.items()}
    for doctype, table in raw.items():
        s = Section(file, f"templates.{doctype}", table)
        subject = s.str_("subject")
        body = s.str_("body")
        s.finish()
        for key, text in (("subject", subject), ("body", body)):
            _check_fields(s, key, text, allowed)
        out[doctype if doctype == "default" else doctype.upper()] = Template(subject, body)
    return out


def _check_fields(s: Section, key: str, text: str, allowed: set[str] | frozenset[str]) -> None:
    """A template text uses only fields there are (a stray { is a clear error here,
    not a failed mail later)."""
    try:
        unknown = template_fields(text) - allowed
    except TemplateError as exc:
        raise s.fail(key, str(exc)) from None
    if unknown:
        raise s.fail(key, f"uses the unknown field {{{sorted(unknown)[0]}}}; known:"
                          f" {', '.join(sorted(allowed))}")
