"""Checks on single config values that need no I/O."""

from __future__ import annotations

import ipaddress
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
