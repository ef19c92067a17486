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
import tempfile
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


def insecure_permissions(path: Path) -> str | None:
    """Who may read or change the key file besides its owner and its group's readers,
    in words, with the fix; None when only they may (POSIX; on Windows the ACL)."""
    if sys.platform == "win32":
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & stat.S_IRWXO:
        return (f"{path} can be read by every account on this machine (mode {mode:04o});"
                f" run: chmod 640 {path} (its owner and its group, the service's, only)")
    if mode & stat.S_IWGRP:
        return (f"{path} can be changed by its group (mode {mode:04o}); run: chmod 640"
                f" {path}")
    return None


def replace_keeping_owner(path: Path, data: bytes) -> None:
    """Replace a file the administrator set up (config, key file) with `data`, keeping
    its owner, group and mode (and on Windows its ACL): after `secret set` as root
    the service account still reads it."""
    st = path.stat()
    if sys.platform == "win32":  # a new file would get the folder's ACL, not this one's
        with path.open("r+b") as f:
            f.write(data)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
            os.chown(tmp, st.st_uid, st.st_gid)  # root can; anyone else keeps their own
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        text = HEADER + "".join(k.decode("ascii") + "\n" for k in keys)
        replace_keeping_owner(self.path, text.encode("ascii"))
        return KeyRing(self.path), keys
