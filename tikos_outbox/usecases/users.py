"""The web console's users: added, removed and listed by the administrator (CLI),
checked at login. Passwords are kept as scrypt hashes only (RFC 7914, the standard
library's; the cost is OWASP's recommendation for scrypt: N=2^17, r=8, p=1, 128 MiB)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from functools import cache

from tikos_outbox.core.console import WebRole, WebUser
from tikos_outbox.core.ports import Clock, ConsoleRecords

N, R, P = 2**17, 8, 1
MIN_PASSWORD = 10
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class UserError(ValueError):
    """A user name or password that cannot be used; the message says why."""


def hash_password(password: str, n: int = N, r: int = R, p: int = P) -> str:
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def password_matches(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, key = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(key)
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=2 * 128 * r * n + 1024 * 1024, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@cache
def _nobody() -> str:
    """Checked against when the name is unknown, so that a wrong name takes as long as
    a wrong password (no one learns which names exist)."""
    return hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Login:
    user: WebUser | None  # None: the name or the password is wrong


class Users:
    def __init__(self, records: ConsoleRecords, clock: Clock) -> None:
        self.records = records
        self.clock = clock

    def add(self, name: str, role: WebRole, password: str, actor: str) -> WebUser:
        if not NAME.fullmatch(name):
            raise UserError(f"{name!r} is not a user name: 1 to 64 letters, digits, or . _ @ -,"
                            " beginning with a letter or digit")
        _check_password(password)
        now = self.clock.now()
        user = WebUser(name, role, hash_password(password), now, now)
        if not self.records.add_user(user, actor):
            raise UserError(f"the user {name} exists already; remove it first, or set a new"
                            f" password with: tikos-outbox user password {name}")
        return user

    def set_password(self, name: str, password: str, actor: str) -> None:
        _check_password(password)
        if not self.records.set_password(name, hash_password(password), self.clock.now(),
                                         actor):
            raise UserError(f"there is no user {name} (tikos-outbox user list)")

    def remove(self, name: str, actor: str) -> None:
        if not self.records.remove_user(name, self.clock.now(), actor):
            raise UserError(f"there is no user {name} (tikos-outbox user list)")

    def all(self) -> list[WebUser]:
        return self.records.users()

    def get(self, name: str) -> WebUser | None:
        return self.records.user(name)

    def login(self, name: str, password: str) -> Login:
        user = self.records.user(name)
        ok = password_matches(password, user.password_hash if user else _nobody())
        return Login(user if ok and user is not None else None)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if password != password.strip() or "\n" in password:
        raise UserError("the password begins or ends with a space or holds a line break")
