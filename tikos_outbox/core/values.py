"""Checks on single config values that need no I/O."""

from __future__ import annotations

import ipaddress
from datetime import date
from urllib.parse import urlsplit


def check_token_url(url: str) -> None:
    """https only, except http to a loopback address (tests); raises ValueError."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http":
        host = parts.hostname or ""
        try:
            if host == "localhost" or ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            pass
    raise ValueError(f"the token URL must use https:// (got {url!r})")


#: Every Fernet token starts with the version byte 0x80, which base64 writes as "gAAAAA"
#: (the Fernet spec: https://github.com/fernet/spec/blob/master/Spec.md).
FERNET_TOKEN_PREFIX = "gAAAAA"


def looks_like_token(value: str) -> bool:
    """Whether a config value is a Fernet token (and not a secret pasted in clear)."""
    return value.startswith(FERNET_TOKEN_PREFIX)


def parse_day(text: str) -> date | None:
    """'2026-11-26' or '26.11.2026' (as an office writes it); None: not a date."""
    try:
        if len(text) == 10 and text[2] == "." and text[5] == ".":
            day, month, year = text.split(".")
            return date(int(year), int(month), int(day))
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None
