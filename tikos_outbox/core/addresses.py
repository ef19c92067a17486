"""E-mail addresses as TIKOS holds them: split, checked one by one, made safe for
a header. Nothing from a TIKOS value can add a header or a recipient.

A TIKOS value may hold several addresses, separated by ';', ',' or line breaks,
each as `addr`, `<addr>`, `Name <addr>` or `"Name" <addr>`. The domain may be an
internationalised one (`info@müller-wäsche.de`): it is checked with IDNA 2008 (the
`idna` package; the standard library's `encodings.idna` is IDNA 2003, which accepts
or maps what IDNA 2008 rejects) and goes on the wire as its A-label.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.header import decode_header, make_header

import idna

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")
#: the ASCII characters of a local part (atext and '.'); RFC 5322, stricter in
#: that a quoted local part is not accepted
_LOCAL_ASCII = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                         ".!#$%&'*+/=?^_`{|}~-")
#: what may follow the closing quote of a quoted display name: its `<addr>`
_ANGLE_NEXT = re.compile(r"\s*<")
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_MAX_ADDRESS = 254  # octets of the envelope form (RFC 5321: a path is at most 256)
_MAX_LOCAL = 64  # octets of the local part (RFC 5321, 4.5.3.1.1)


def clean_text(value: str) -> str:
    """A single line: line breaks and control characters become one space."""
    return _CONTROL.sub(" ", value).strip()


@dataclass(frozen=True)
class Address:
    """One checked e-mail address, with its display name (may be empty).

    `addr` is the addr-spec, the local part as written and the domain in its
    Unicode form, lower-cased and NFC (an A-label domain is shown decoded);
    `name` is a single clean line, unquoted. Constructing an Address checks it:
    an invalid addr-spec raises ValueError, so every Address can be mailed.
    """

    addr: str
    name: str = ""
    _envelope: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        addr, envelope = _check_addr_spec(self.addr)
        object.__setattr__(self, "addr", addr)
        object.__setattr__(self, "name", _clean_name(self.name))
        object.__setattr__(self, "_envelope", envelope)

    @property
    def local(self) -> str:
        """The local part, as written."""
        return self.addr.rsplit("@", 1)[0]

    @property
    def domain(self) -> str:
        """The domain in its Unicode form (U-labels)."""
        return self.addr.rsplit("@", 1)[1]

    @property
    def envelope(self) -> str:
        """The form for MAIL FROM / RCPT TO: the domain as IDNA 2008 A-label, the
        local part unchanged."""
        return self._envelope

    @property
    def ascii_domain(self) -> str:
        """The domain as A-labels (all ASCII)."""
        return self._envelope.rsplit("@", 1)[1]

    @property
    def needs_smtputf8(self) -> bool:
        """The local part is not ASCII: deliverable only where the server offers
        SMTPUTF8 (RFC 6531); no A-label form of a local part exists."""
        return not self.local.isascii()

    @property
    def display(self) -> str:
        """`"Name" <addr>` (or the addr-spec alone): how the outbox stores a recipient;
        parse_address reads it back to the same Address."""
        if not self.name:
            return self.addr
        quoted = self.name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{self.addr}>'

    def __str__(self) -> str:
        return self.addr


def _check_addr_spec(value: str) -> tuple[str, str]:
    """(addr normalised, envelope form) of a plain addr-spec; ValueError if invalid."""
    if not isinstance(value, str) or value.count("@") != 1:
        raise ValueError("not exactly one '@'")
    local, domain = value.split("@")
    _check_local(local)
    u_domain, a_domain = _check_domain(domain)
    envelope = f"{local}@{a_domain}"
    if len(envelope.encode("utf-8", "surrogatepass")) > _MAX_ADDRESS:
        raise ValueError(f"longer than {_MAX_ADDRESS} octets")
    return f"{local}@{u_domain}", envelope


def _check_local(local: str) -> None:
    if not local:
        raise ValueError("empty local part")
    if len(local.encode("utf-8", "surrogatepass")) > _MAX_LOCAL:
        raise ValueError(f"local part longer than {_MAX_LOCAL} octets")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise ValueError("misplaced '.' in the local part")
    for ch in local:
        if ch.isascii():
            if ch not in _LOCAL_ASCII:
                raise ValueError(f"{ch!r} in the local part")
        # non-ASCII (RFC 6531 UTF8-non-ascii): no control, format, surrogate,
        # private-use or unassigned character and no white space
        elif unicodedata.category(ch)[0] in "CZ":
            raise ValueError(f"U+{ord(ch):04X} in the local part")


@functools.lru_cache(maxsize=4096)
def _check_domain(domain: str) -> tuple[str, str]:
    """(U-label form, A-label form) of a domain, checked with IDNA 2008. Remembered:
    the same few domains are checked for every document (the sender's, above all),
    and the check costs most of a millisecond."""
    if not domain or any(ch.isascii() and not (ch.isalnum() or ch in ".-") for ch in domain):
        raise ValueError("invalid character in the domain")
    lowered = unicodedata.normalize("NFC", domain.lower())
    if lowered.startswith(".") or lowered.endswith("."):
        raise ValueError("misplaced '.' in the domain")
    try:
        a_label = idna.encode(lowered).decode("ascii")
        u_label = idna.decode(a_label)
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"invalid domain (IDNA 2008): {exc}") from None
    if "." not in a_label.strip("."):
        raise ValueError("no '.' in the domain")
    if a_label.endswith("."):  # an ideographic full stop at the end is one too
        raise ValueError("misplaced '.' in the domain")
    return u_label, a_label


def header_text(value: str) -> str:
    """A text for a header (a display name, a subject, a file name) as one clean
    line that the header carries unchanged: encoded words in it are decoded (as
    a mail program would show them), line breaks and control characters become
    a space, and a '=?' that is left is broken up ('= ?'). No encoded word
    reaches the email package, which (before Python 3.11.10: gh-121650,
    CVE-2024-6923) writes a decoded one back as it is, CR LF and all."""
    if "=?" in value:
        with suppress(HeaderParseError, LookupError, UnicodeError, ValueError):
            value = str(make_header(decode_header(value)))
    value = "".join("\ufffd" if unicodedata.category(ch) == "Cs" else ch for ch in value)
    return clean_text(value).replace("=?", "= ?")


def _clean_name(name: str) -> str:
    """A display name: `header_text`, white space runs as one space."""
    if not isinstance(name, str):
        raise ValueError("a display name must be text")
    return " ".join(header_text(name).split())


# -- splitting and parsing ------------------------------------------------------------------


def _quoted_end(text: str, start: int) -> int:
    """The index of the quote that closes the quoted display name opened at
    `start`, or -1: a closing quote is an unescaped one followed by `<`; an
    unescaped quote anywhere else (or none) means there is no quoted name."""
    j = start + 1
    while j < len(text):
        ch = text[j]
        if ch == "\\":
            j += 2
            continue
        if ch == '"':
            return j if _ANGLE_NEXT.match(text, j + 1) else -1
        j += 1
    return -1


def _split_line(line: str) -> list[str]:
    """Split one line on ';' and ',' except inside a quoted display name. A
    quote opens one only at the start of a piece and only if it closes before
    a `<` on the same line; a stray quote is just a character (and makes its
    own piece invalid, never its neighbours)."""
    pieces: list[str] = []
    start = i = 0
    blank = True  # nothing but white space in the piece so far
    while i < len(line):
        ch = line[i]
        if ch in ";,":
            pieces.append(line[start:i])
            start, blank = i + 1, True
        else:
            if ch == '"' and blank:
                end = _quoted_end(line, i)
                if end >= 0:
                    i = end
            blank = blank and ch.isspace()
        i += 1
    pieces.append(line[start:])
    return pieces


def _pieces(values: Iterable[str | None]) -> Iterable[str]:
    for raw in values:
        if raw is None:
            continue
        for line in str(raw).splitlines():  # every kind of line break separates
            for piece in _split_line(line):
                if clean_text(piece):  # white space and control characters only: nothing
                    yield piece.strip()


def _parse_piece(piece: str) -> Address:
    """One piece: `addr`, `<addr>`, `Name <addr>` or `"Name" <addr>`."""
    if not piece.endswith(">"):
        return Address(piece)
    if piece.startswith('"'):
        end = _quoted_end(piece, 0)
        if end < 0:
            raise ValueError("unbalanced quotes")
        name = _ESCAPED.sub(r"\1", piece[1:end])
        rest = piece[end + 1:].lstrip()
    else:
        lt = piece.find("<")
        if lt < 0:
            raise ValueError("'>' without '<'")
        name, rest = piece[:lt], piece[lt:]
        if any(ch in name for ch in '"\\>'):
            raise ValueError("quote, backslash or '>' in an unquoted display name")
    inner = rest[1:-1].strip()
    if "<" in inner or ">" in inner:
        raise ValueError("nested angle brackets")
    return Address(inner, name)


def parse_address(value: str) -> Address | None:
    """Exactly one address in any accepted form, or None."""
    pieces = list(_pieces([value]))
    if len(pieces) != 1:
        return None
    try:
        return _parse_piece(pieces[0])
    except ValueError:
        return None


def parse_addresses(values: Iterable[str | None]) -> tuple[list[Address], list[str]]:
    """Split raw values on ';', ',' and line breaks into (valid addresses,
    rejected pieces, cleaned for a log line). A quoted display name may hold ','
    and ';'. Duplicates (same envelope form, ignoring case) are dropped; order
    is kept; an invalid piece never hides a valid one beside it."""
    valid: list[Address] = []
    rejected: list[str] = []
    seen: set[str] = set()
    for piece in _pieces(values):
        try:
            address = _parse_piece(piece)
        except ValueError:
            rejected.append(clean_text(piece))
            continue
        key = address.envelope.lower()
        if key not in seen:
            seen.add(key)
            valid.append(address)
    return valid, rejected


def is_valid_address(value: str, *, smtputf8: bool = False) -> bool:
    """Whether `value` is exactly one plain address (local@domain) and nothing
    else: an addr-spec `parse_addresses` accepts (an IDN domain too), without a
    display name or angle brackets, as the configuration's sender, Bcc and
    report addresses must be. One with a non-ASCII local part only with
    `smtputf8` (the caller can send where the server offers SMTPUTF8)."""
    try:
        address = Address(value)
    except ValueError:
        return False
    return smtputf8 or not address.needs_smtputf8


def split_addresses(values: Iterable[str | None], *,
                    smtputf8: bool = False) -> tuple[list[str], list[str]]:
    """`parse_addresses` as strings: (envelope forms of the valid addresses,
    rejected pieces). The envelope form (domain as A-label) is what a mailer
    can hand to RCPT TO as it is; display names are dropped. An address with a
    non-ASCII local part is rejected ("... (needs SMTPUTF8)") unless `smtputf8`:
    a mailer that does not ask for SMTPUTF8 cannot even write it into RCPT TO."""
    valid, rejected = parse_addresses(values)
    if not smtputf8:
        rejected += [f"{a} (needs SMTPUTF8)" for a in valid if a.needs_smtputf8]
        valid = [a for a in valid if not a.needs_smtputf8]
    return [a.envelope for a in valid], rejected


# -- the header form ------------------------------------------------------------------------

_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                   "!#$%&'*+-/=?^_`{|}~")
#: what RFC 2047 (5.3) lets an encoded word in a phrase carry as it is
_Q_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!*+-/")
_EW_TEXT = 75 - len("=?utf-8?q??=")  # an encoded word is at most 75 characters
_MAX_QUOTED = 60  # a longer name that needs quotes goes as encoded words
_LINE = 78


def _encoded_words(text: str) -> list[str]:
    """`text` as RFC 2047 Q encoded words (UTF-8), split between characters,
    preferably after a space (encoded inside the word, as '_')."""
    chunks: list[str] = []
    chunk = ""
    for ch in text:
        enc = ("_" if ch == " " else ch if ch in _Q_LITERAL
               else "".join(f"={b:02X}" for b in ch.encode("utf-8")))
        if len(chunk) + len(enc) > _EW_TEXT:
            cut = chunk.rfind("_") + 1
            if cut == 0 or len(chunk) - cut + len(enc) > _EW_TEXT:
                cut = len(chunk)
            chunks.append(chunk[:cut])
            chunk = chunk[cut:]
        chunk += enc
    chunks.append(chunk)
    return [f"=?utf-8?q?{c}?=" for c in chunks]


def _phrase(name: str) -> list[str]:
    """A display name as header words: atoms, one quoted string or encoded words;
    never anything a mail program could read as an address or a separator."""
    if not name:
        return []
    words = name.split()
    if name.isascii():
        if all(set(w) <= _ATEXT for w in words):
            return words
        quoted = '"' + " ".join(words).replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(quoted) <= _MAX_QUOTED:
            return [quoted]
    return _encoded_words(" ".join(words))


def header_value(header: str, addresses: Iterable[Address], *, utf8: bool = False) -> str:
    """The value of an address header (From, To, Reply-To), folded with LF + space.

    Written here rather than by the email package: its folding of long quoted
    display names drops the quotes in the Python releases before the fixes of
    CPython gh-80222 and gh-121284 (a name could then read as more recipients).
    Display names go as atoms, a short quoted string or RFC 2047 encoded words;
    the domain as A-label, unless `utf8` (an SMTPUTF8 message, RFC 6532: the
    domain as written, a non-ASCII local part as it is). All parts were checked
    by `Address`, so nothing can end the header or add an address.
    """
    tokens: list[str] = []
    for address in addresses:
        if tokens:
            tokens[-1] += ","
        spec = f"{address.local}@{address.domain if utf8 else address.ascii_domain}"
        phrase = _phrase(address.name)
        tokens.extend([*phrase, f"<{spec}>"] if phrase else [spec])
    lines: list[str] = []
    line, width = "", len(header) + 2
    for token in tokens:
        if line and width + len(line) + 1 + len(token) > _LINE:
            lines.append(line)
            line, width = token, 1
        else:
            line = f"{line} {token}" if line else token
    lines.append(line)
    return "\n ".join(lines)
