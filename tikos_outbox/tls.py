"""TLS for every server tikos-outbox talks to (SMTP, IMAP): the system's trusted CAs
plus the config's `ca_file`; certificate checks off only when the config says so,
and then with a warning in the log."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

log = logging.getLogger("tikos_outbox")


def tls_context(ca_file: Path | None, verify: bool, server: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    if not verify:
        log.warning("TLS certificate checks are off for %s (verify_tls = false in the config)",
                    server)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
