"""Secrets at rest: Fernet tokens under the key(s) of the key file.

The key file holds one Fernet key per line, newest first (lines starting
with '#' are comments). Tokens are decrypted with any of the keys
(MultiFernet) and new ones are made with the newest, so a key can be rotated
without losing old tokens.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from tikos_outbox.core.ports import SecretUnavailable

HEADER = (
    "# tikos-outbox key file: Fernet keys, newest first. Keep it secret and keep a backup;\n"
    "# without it the stored SMTP password cannot be read. Never mail or commit it.\n"
)


class KeyFileError(SecretUnavailable):
    """The key file is missing, unreadable or does not fit the stored secret."""


class SecretText(str):
    """A plaintext secret. Its repr never shows the value, so it cannot land in a log."""

    def __repr__(self) -> str:
        return "SecretText('***')"


def create_key_file(path: Path) -> None:
    """Write a new key file with one key, readable only by its owner; never overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(HEADER + Fernet.generate_key().decode("ascii") + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_keys(path: Path) -> list[bytes]:
    """The keys of the key file, newest first; raises KeyFileError with advice."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} is missing: restore it from your backup, or create a new one"
            " with `tikos-outbox init` and store the password again with `secret set`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"key file {path} cannot be read: {exc}") from None
    keys = [ln.strip().encode("ascii") for ln in text.splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]
    if not keys:
        raise KeyFileError(f"key file {path} holds no key")
    for k in keys:
        try:
            Fernet(k)
        except ValueError:
            raise KeyFileError(f"key file {path} holds a line that is not a Fernet key") from None
    return keys


def insecure_permissions(path: Path) -> bool:
    """Whether others than the owner may read the key file (POSIX only)."""
    if sys.platform == "win32":
        return False
    mode = path.stat().st_mode
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


class KeyRing:
    """Encrypts with the newest key, decrypts with any."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.keys = read_keys(path)
        self._fernet = MultiFernet([Fernet(k) for k in self.keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str, what: str = "the stored secret") -> SecretText:
        try:
            return SecretText(self._fernet.decrypt(token.encode("ascii")).decode("utf-8"))
        except (InvalidToken, UnicodeError):
            raise KeyFileError(
                f"{what} cannot be decrypted with the keys in {self.path}: the key file does"
                " not belong to this config. Restore the right key file, or store the secret"
                " again with `tikos-outbox secret set`"
            ) from None

    def rotate(self) -> tuple[KeyRing, list[bytes]]:
        """Prepend a new key to the key file (atomically) and return the new ring."""
        new = Fernet.generate_key()
        keys = [new, *self.keys]
        tmp = self.path.with_name(self.path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(HEADER + "".join(k.decode("ascii") + "\n" for k in keys))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return KeyRing(self.path), keys
