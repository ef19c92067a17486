"""Is a byte string a complete PDF? Cheap checks on the bytes only."""

from __future__ import annotations

#: A PDF writer ends with %%EOF; some add a line break or a few bytes after it.
_TAIL = 2048


def incomplete_reason(data: bytes) -> str | None:
    """None for a complete PDF, else why it is not one, in words for an admin."""
    if not data:
        return "the file is empty"
    if b"%PDF-" not in data[:1024]:
        return "not a PDF file (no %PDF- header)"
    if b"%%EOF" not in data[-_TAIL:]:
        return "incomplete PDF (no %%EOF at the end; truncated or still being written)"
    return None


def is_encrypted(data: bytes) -> bool:
    """Whether the PDF names an /Encrypt dictionary (in its trailer, or in a
    cross-reference stream, which may stand anywhere)."""
    return b"/Encrypt" in data[-65536:] or b"/Encrypt " in data


def encrypted_reason(data: bytes) -> str | None:
    """Why a complete PDF should not be mailed without a look, or None."""
    if is_encrypted(data):
        return ("encrypted PDF (password-protected): the customer may not be able to open"
                " it; release the entry to send it anyway")
    return None

