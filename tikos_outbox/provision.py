"""Setting up and changing the files an administrator owns: the config template,
the key file, the encrypted secrets in the config, and copying an outbox."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from tikos_outbox.config import DEFAULT_NAME, ConfigError, resolve_path
from tikos_outbox.credentials import KeyRing, create_key_file, replace_keeping_owner
from tikos_outbox.init_template import TEMPLATE
from tikos_outbox.providers import PROVIDERS, Provider

#: Config keys that hold Fernet tokens, and what `secret set` calls them.
SECRET_KEYS = {"password": "password", "client-secret": "oauth2_client_secret",
               "bounce-password": "password"}
#: the table each secret lives in ([smtp], or a mandant's [mandant.smtp])
SECRET_TABLES = {"password": "smtp", "client-secret": "smtp", "bounce-password": "bounces"}


def init_dir(folder: Path, provider: str = "custom") -> list[Path]:
    """Write tikos-outbox.toml and a new key file into `folder`; never overwrite."""
    config = folder / DEFAULT_NAME
    key = folder / "tikos-outbox.key"
    for path in (config, key):
        if path.exists():
            raise ConfigError(path, None, "already exists; init never overwrites (move it away"
                                          " first if you really want a new one)")
    folder.mkdir(parents=True, exist_ok=True)
    doc = tomlkit.parse(TEMPLATE)
    if provider in PROVIDERS:
        _apply(doc, PROVIDERS[provider])
    create_key_file(key)
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
        if hasattr(os, "fchmod"):
            os.fchmod(f.fileno(), 0o640)  # the group may read it, whatever the umask
        f.write(tomlkit.dumps(doc))
    return [config, key]


def _apply(doc: tomlkit.TOMLDocument, p: Provider) -> None:
    """The provider's settings and its limits into [smtp], each limit with where it
    comes from."""
    smtp: Any = doc["smtp"]
    for k, v in {**p.smtp, **p.limits}.items():
        smtp[k] = v
    if p.smtp.get("auth") == "oauth2":  # the placeholder for the secret it uses instead
        smtp["oauth2_client_secret"] = ""
        smtp["oauth2_client_secret"].comment(
            "`tikos-outbox secret set client-secret` writes it here, encrypted")
        del smtp["password"]
    if p.smtp.get("transport") == "graph":  # no SMTP server: its keys would mislead
        for key in ("host", "port", "security"):
            if key in smtp:
                del smtp[key]
    smtp.add(tomlkit.comment(f"The limits above stay below what {p.label} publishes:"))
    smtp.add(tomlkit.comment(p.published))
    smtp.add(tomlkit.comment(f"Source: {p.source} (checked 2026-12-02)"))
    for note in p.notes:
        smtp.add(tomlkit.comment(f"Note: {note}"))
    smtp.add(tomlkit.nl())


def _load_doc(config: Path) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(config.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(config, None, "no such config file (create one with"
                                        " `tikos-outbox init`)") from None
    except (tomlkit.exceptions.TOMLKitError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(config, None, f"is not valid TOML: {exc}") from None


def _key_file(config: Path, doc: Any) -> Path:
    outbox = doc.get("outbox", {})
    return resolve_path(str(outbox.get("key_file", "tikos-outbox.key")), config.absolute().parent)


def _write_doc(config: Path, doc: tomlkit.TOMLDocument) -> None:
    """Replace the config atomically, keeping its owner, group and mode."""
    replace_keeping_owner(config, tomlkit.dumps(doc).encode("utf-8"))


#: `auth_of`'s "mandant" for the bounce mailbox's login
BOUNCES = -1


def auth_of(config: Path, mandant: int | None = None) -> str:
    """The `auth` a secret would be for, as the file says (the config may not load yet:
    its password is what is being stored)."""
    doc = _load_doc(config)
    smtp: Any = doc.get("smtp", {})
    auth = str(smtp.get("auth", "anonymous"))
    if mandant == BOUNCES:
        return str(doc.get("bounces", {}).get("auth", "password"))
    for m in doc.get("mandant", []) or []:
        if mandant is not None and m.get("id") == mandant:
            auth = str(m.get("smtp", {}).get("auth", auth))
    return auth


def set_secret(config: Path, which: str, plaintext: str, mandant: int | None = None) -> str:
    """Encrypt `plaintext` and store it in [smtp], or in the [mandant.smtp] of mandant
    `mandant` (its own login); returns the key name written."""
    doc = _load_doc(config)
    ring = KeyRing(_key_file(config, doc))
    key, table = SECRET_KEYS[which], SECRET_TABLES[which]
    owner: Any = doc
    if mandant is not None and table == "bounces":
        raise ConfigError(config, "bounces", "the bounce mailbox is one for all mandants:"
                          " store its password without --mandant")
    if mandant is not None:
        tables = [m for m in doc.get("mandant", []) or [] if m.get("id") == mandant]
        if not tables:
            raise ConfigError(config, "mandant", f"no [[mandant]] with id = {mandant}")
        owner = tables[0]
    if table not in owner:
        owner[table] = tomlkit.table()
    section: Any = owner[table]
    section[key] = ring.encrypt(plaintext)
    _write_doc(config, doc)
    return key


def _secret_tables(doc: Any) -> list[Any]:
    tables = [doc.get("smtp"), doc.get("bounces")]
    for m in doc.get("mandant", []) or []:
        tables.append(m.get("smtp"))
    return [t for t in tables if t is not None]


def rotate_key(config: Path) -> int:
    """Add a new key to the key file and re-encrypt every stored secret with it."""
    doc = _load_doc(config)
    ring = KeyRing(_key_file(config, doc))
    plain: list[tuple[Any, str, str]] = []
    for table in _secret_tables(doc):
        for key in dict.fromkeys(SECRET_KEYS.values()):
            if key in table:
                plain.append((table, key, ring.decrypt(str(table[key]), f"[smtp] {key}")))
    new_ring, _ = ring.rotate()  # the old keys stay: the old config stays readable
    for table, key, value in plain:
        table[key] = new_ring.encrypt(value)
    _write_doc(config, doc)
    return len(plain)
