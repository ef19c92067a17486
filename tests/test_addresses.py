"""Addresses as TIKOS holds them: display names, internationalised domains (IDNA
2008), several per value; and what the message makes of them."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from datetime import datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import getaddresses
from zoneinfo import ZoneInfo

import idna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tikos_outbox.core.addresses import (
    Address,
    clean_text,
    header_text,
    is_valid_address,
    parse_address,
    parse_addresses,
    split_addresses,
)
from tikos_outbox.core.message import (
    Mail,
    build_message,
    envelope,
    make_message_id,
    message_bytes,
    needs_smtputf8,
)

BERLIN = ZoneInfo("Europe/Berlin")
#: the A-label of müller-wäsche.de, as the idna package computes it (asserted below)
MUELLER_A = "xn--mller-wsche-r8a91a.de"


def parse(values: list[str | None]) -> tuple[list[tuple[str, str]], list[str]]:
    valid, rejected = parse_addresses(values)
    return [(a.name, a.addr) for a in valid], rejected


def mail(**kw: object) -> Mail:
    base: dict[str, object] = dict(
        sender_address="rechnung@w.example", sender_name="Wäscherei Müller & Söhne",
        reply_to=None, to=("a@kunde.example",), subject="Ihre Rechnung 1", body="Grüße",
        filename="RE_1_4711.pdf", pdf=None, message_id="<x@w.example>",
        date=datetime(2026, 11, 26, 9, tzinfo=BERLIN))
    base.update(kw)
    return Mail(**base)  # type: ignore[arg-type]


def parsed_back(raw: bytes) -> EmailMessage:
    """A built message read back as a mail program would (UTF-8 headers allowed)."""
    msg = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def addresses_in(raw: bytes, header: str = "To") -> list[tuple[str, str, str]]:
    """(display name, local part, domain) of each address of a header, read by two
    parsers that must agree: the email package's, and `getaddresses` with the
    names decoded by `decode_header` (Python 3.11's header parser keeps the
    white space between adjacent encoded words, which RFC 2047 6.2 drops)."""
    modern = parsed_back(raw)
    old = email.message_from_string(raw.decode("utf-8"), policy=email.policy.compat32)
    [value] = old.get_all(header)
    classic = getaddresses(["".join(value.splitlines())])
    found = [(a.username, a.domain) for a in modern[header].addresses]
    assert [tuple(a.rsplit("@", 1)) for _, a in classic] == found
    return [(str(make_header(decode_header(name))), *spec)
            for (name, _), spec in zip(classic, found, strict=True)]


def headers_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


# -- the forms of one address ------------------------------------------------------------


@pytest.mark.parametrize(("value", "name", "addr"), [
    ("info@müller-wäsche.de", "", "info@müller-wäsche.de"),
    ('"Hotel Adler" <adler@hotel-adler.example>', "Hotel Adler", "adler@hotel-adler.example"),
    ("Hotel Adler <adler@hotel-adler.example>", "Hotel Adler", "adler@hotel-adler.example"),
    ("<adler@hotel-adler.example>", "", "adler@hotel-adler.example"),
    ("< adler@hotel-adler.example >", "", "adler@hotel-adler.example"),
    ("Hotel Adler<adler@hotel-adler.example>", "Hotel Adler", "adler@hotel-adler.example"),
    ('"Müller, Wäscherei" <info@müller-wäsche.de>', "Müller, Wäscherei", "info@müller-wäsche.de"),
    ('"Wäscherei; Müller" <a@b.de>', "Wäscherei; Müller", "a@b.de"),
    ('"Hotel \\"Adler\\"" <a@b.de>', 'Hotel "Adler"', "a@b.de"),
    ('"" <a@b.de>', "", "a@b.de"),
    ("  Hotel   Adler   <a@b.de>  ", "Hotel Adler", "a@b.de"),
    # the domain normalised: lower-cased, NFC, an A-label shown as its U-label;
    # the local part as written
    ("INFO@Müller-Wäsche.DE", "", "INFO@müller-wäsche.de"),
    ("info@mu\u0308ller.de", "", "info@müller.de"),
    (f"info@{MUELLER_A.upper()}", "", "info@müller-wäsche.de"),
    ("jürgen@straße.de", "", "jürgen@straße.de"),
    ("o'brien+rechnung@b.de", "", "o'brien+rechnung@b.de"),
    # an encoded word is shown as a mail program would show it
    ("=?utf-8?q?M=C3=BCller?= <a@b.de>", "Müller", "a@b.de"),
])
def test_accepted_forms(value: str, name: str, addr: str) -> None:
    assert parse([value]) == ([(name, addr)], [])
    found = parse_address(value)
    assert found is not None and (found.name, found.addr) == (name, addr)


def test_envelope_is_the_idna_2008_a_label() -> None:
    assert idna.encode("müller-wäsche.de").decode() == MUELLER_A
    a = Address("info@müller-wäsche.de")
    assert a.envelope == f"info@{MUELLER_A}" and a.ascii_domain == MUELLER_A
    assert (a.local, a.domain, str(a)) == ("info", "müller-wäsche.de", "info@müller-wäsche.de")
    assert not a.needs_smtputf8
    # IDNA 2008 keeps ß; the standard library's IDNA 2003 maps it to ss
    assert Address("a@straße.de").envelope == "a@" + idna.encode("straße.de").decode()
    assert Address("a@straße.de").envelope == "a@xn--strae-oqa.de"
    assert "straße.de".encode("idna") == b"strasse.de"
    assert Address("a@b.example").envelope == "a@b.example"


def test_a_non_ascii_local_part_needs_smtputf8() -> None:
    a = Address("jürgen@müller-wäsche.de")
    assert a.needs_smtputf8
    assert a.envelope == f"jürgen@{MUELLER_A}"  # the local part unchanged
    assert not Address("juergen@müller-wäsche.de").needs_smtputf8


def test_address_is_checked_and_cleaned_when_made() -> None:
    for bad in ("x\r\n@b.de", "a@b.de\r\nBcc: c@d.de", "", "a@b", "Name <a@b.de>"):
        with pytest.raises(ValueError):
            Address(bad)
    a = Address("a@b.de", "x\r\nBcc: evil@x.example\x00")
    assert a.name == "x Bcc: evil@x.example"
    assert Address("a@b.de", "a =?b").name == "a = ?b"  # no mail program decodes it
    assert Address("A@B.DE") == Address("A@b.de") and hash(Address("a@b.de")) == hash(
        Address("a@B.de"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "y"  # type: ignore[misc]


# -- rejected ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    # IDNA 2008 rejects (IDNA 2003, the standard library's, takes the first and last)
    "a@☃.example", "a@ab--c.de", "a@-a.de", "a@a-.de", "a@xn--abc-.de", "a@foo_bar.de",
    "a@ａｂ.de", "a@" + "x" * 64 + ".de",
    # no dot, misplaced dots, a domain literal, nothing
    "a@localhost", "a@b.de.", "a@b.de\u3002", "a@.b.de", "a@b..de", "a@[192.0.2.1]", "a@",
    "@b.de", "a",
    # white space, control characters, quotes, angle brackets in the addr-spec
    "a b@c.de", "a\tb@c.de", "a\x00b@c.de", "a\x7fb@c.de", 'a"b@c.de', '"a"@c.de',
    "a<b@c.de", "a>b@c.de", "a@c.de>", "<a@c.de", "<<a@c.de>>", "a@c\u00a0d.de",
    "ä\u00a0b@c.de", "a\u200b@c.de", "a\\b@c.de", "a(b)@c.de", "a@b@c.de", "a:b@c.de",
    ".a@b.de", "a.@b.de", "a..b@c.de",
    # too long: 64 octets in the local part, 254 in all (the envelope form)
    "x" * 65 + "@b.de", "a@" + ".".join(["x" * 50] * 5) + ".de",
    "ä" * 33 + "@b.de",
    # broken display names
    '"Hotel Adler <a@b.de>', 'Hotel "Adler" <a@b.de>', 'Hotel\\ Adler <a@b.de>',
    "Hotel > Adler <a@b.de>", '"Hotel" "Adler" <a@b.de>', '"Hotel" <a@b.de> x',
    "Hotel <a@b.de> <c@d.de>", "Hotel <>", "a@b.de Hotel",
])
def test_rejected(value: str) -> None:
    valid, rejected = parse_addresses([value])
    assert valid == []
    assert rejected and all("\n" not in r and "\x00" not in r for r in rejected)
    assert parse_address(value) is None
    assert not is_valid_address(value, smtputf8=True)


def test_idna_2003_would_have_taken_what_2008_rejects() -> None:
    assert "☃.example".encode("idna") == b"xn--n3h.example"
    assert "ａｂ.de".encode("idna") == b"ab.de"
    with pytest.raises(idna.IDNAError):
        idna.encode("☃.example")


def test_length_limit_is_on_the_envelope_form() -> None:
    domain = ".".join(["x" * 63] * 3) + ".de"  # 194 octets
    local = "y" * (254 - 1 - len(domain))
    assert is_valid_address(f"{local}@{domain}")
    assert not is_valid_address(f"{local}y@{domain}")
    # the A-label of an IDN domain is longer than its Unicode form: it counts
    u_domain = "x" * 63 + "." + "y" * 63 + "." + "w" * 40 + "." + "ü" * 20 + ".de"
    a_domain = idna.encode(u_domain).decode()
    assert (len(u_domain), len(a_domain)) == (192, 198)
    assert is_valid_address("z" * 55 + "@" + u_domain)
    assert not is_valid_address("z" * 56 + "@" + u_domain)  # 249 chars, 255 on the wire


# -- several in a value -----------------------------------------------------------------


def test_separators_mixed() -> None:
    value = "a@x.de; b@x.de,c@x.de\nd@x.de\r\ne@x.de\rf@x.de\u2028g@x.de ;; , \n\n"
    valid, rejected = parse([value, None, "", " \r\n ", "h@x.de"])
    assert [a for _, a in valid] == [f"{c}@x.de" for c in "abcdefgh"]
    assert rejected == []


def test_quoted_names_with_separators_stay_one_address() -> None:
    value = ('"Müller, Wäscherei" <info@müller-wäsche.de>; Hotel Adler <adler@hotel-adler.example>,'
             '"Adler; Hotel, Restaurant" <r@hotel-adler.example>')
    assert parse([value]) == ([
        ("Müller, Wäscherei", "info@müller-wäsche.de"),
        ("Hotel Adler", "adler@hotel-adler.example"),
        ("Adler; Hotel, Restaurant", "r@hotel-adler.example"),
    ], [])


def test_an_unquoted_comma_splits_a_name() -> None:
    assert parse(["Müller, Wäscherei <a@b.de>"]) == ([("Wäscherei", "a@b.de")], ["Müller"])


@pytest.mark.parametrize(("value", "valid", "rejected"), [
    ("a@x.de; kaputt; b@x.de", ["a@x.de", "b@x.de"], ["kaputt"]),
    ("a@x.de, a b@x.de, b@x.de", ["a@x.de", "b@x.de"], ["a b@x.de"]),
    ("a@x.de\nBcc: evil@x.example\nb@x.de", ["a@x.de", "b@x.de"], ["Bcc: evil@x.example"]),
    ("a@☃.example; info@müller-wäsche.de", ["info@müller-wäsche.de"], ["a@☃.example"]),
    # a stray quote is a character of its own piece and never swallows the next ones
    ('"Müller; a@x.de; b@x.de', ["a@x.de", "b@x.de"], ['"Müller']),
    ('"Müller, a@x.de, "Hotel" <b@x.de>', ["a@x.de", "b@x.de"], ['"Müller']),
    ('a"b@x.de, "Name, x" <b@x.de>', ["b@x.de"], ['a"b@x.de']),
    ('"Hotel\nAdler" <a@x.de>, b@x.de', ["b@x.de"], ['"Hotel', 'Adler" <a@x.de>']),
    ('<a@x.de, b@x.de>, c@x.de', ["c@x.de"], ["<a@x.de", "b@x.de>"]),
    ('"x" <a@x.de> junk, b@x.de', ["b@x.de"], ['"x" <a@x.de> junk']),
    ("a@x.de;\x00;b@x.de\x00c", ["a@x.de"], ["b@x.de c"]),
])
def test_an_invalid_piece_never_hides_the_valid_ones(
        value: str, valid: list[str], rejected: list[str]) -> None:
    found, bad = parse([value])
    assert [a for _, a in found] == valid
    assert bad == rejected


def test_duplicates_are_dropped_ignoring_case_order_kept() -> None:
    values = ["A@X.de, b@x.de; a@x.DE", '"Name" <a@x.de>',
              f"info@müller-wäsche.de; INFO@{MUELLER_A}; Info@MÜLLER-wäsche.de", "b@X.DE"]
    assert parse(values) == ([("", "A@x.de"), ("", "b@x.de"), ("", "info@müller-wäsche.de")],
                             [])


def test_is_valid_address_takes_one_plain_addr_spec() -> None:
    for good in ("info@müller-wäsche.de", f"info@{MUELLER_A}", "juergen@straße.de",
                 "a.b-c+d@sub.b.example"):
        assert is_valid_address(good)
    for bad in ("Name <a@b.de>", "<a@b.de>", " a@b.de", "a@b.de ", "a@b.de, c@d.de", ""):
        assert not is_valid_address(bad)


def test_split_addresses_gives_envelope_forms() -> None:
    valid, rejected = split_addresses(
        ['"Müller, W" <info@müller-wäsche.de>; Hotel <a@b.de>\nkaputt', None,
         f"INFO@{MUELLER_A}"])
    assert valid == [f"info@{MUELLER_A}", "a@b.de"]
    assert rejected == ["kaputt"]


def test_smtputf8_addresses_only_for_callers_that_can_send_them() -> None:
    values = ["jürgen@straße.de, a@b.de"]
    assert split_addresses(values) == (["a@b.de"], ["jürgen@straße.de (needs SMTPUTF8)"])
    assert split_addresses(values, smtputf8=True) == (
        ["jürgen@xn--strae-oqa.de", "a@b.de"], [])
    assert not is_valid_address("jürgen@straße.de")
    assert is_valid_address("jürgen@straße.de", smtputf8=True)
    assert is_valid_address("juergen@straße.de")


def test_parse_address_takes_exactly_one() -> None:
    assert parse_address("a@b.de, c@d.de") is None
    assert parse_address("") is None
    assert parse_address("a@b.de;") == Address("a@b.de")


# -- the message ------------------------------------------------------------------------


def test_to_header_keeps_names_and_idn_domains() -> None:
    to = parse_addresses(['"Müller, Wäscherei" <info@müller-wäsche.de>; '
                          "Hotel Adler <adler@hotel-adler.example>, plain@b.example"])[0]
    m = mail(to=(*to, "Gäste <gast@hotel-adler.example>", '"Dr. Weber" <w@b.example>'),
             reply_to="Büro <buero@müller-wäsche.de>")
    assert not needs_smtputf8(m)
    raw = message_bytes(m)
    head = headers_of(raw)
    assert head.isascii()  # IDN domains as A-labels, non-ASCII names RFC 2047-encoded
    assert (b"\r\nTo: =?utf-8?q?M=C3=BCller=2C_W=C3=A4scherei?=\r\n <info@"
            + MUELLER_A.encode() + b">, Hotel Adler <adler@hotel-adler.example>,\r\n"
            b" plain@b.example, =?utf-8?q?G=C3=A4ste?= <gast@hotel-adler.example>,\r\n"
            b' "Dr. Weber" <w@b.example>\r\n') in head
    assert b'"Dr. Weber" <w@b.example>' in head
    assert addresses_in(raw) == [
        ("Müller, Wäscherei", "info", MUELLER_A),
        ("Hotel Adler", "adler", "hotel-adler.example"),
        ("", "plain", "b.example"),
        ("Gäste", "gast", "hotel-adler.example"),
        ("Dr. Weber", "w", "b.example"),
    ]
    assert addresses_in(raw, "Reply-To") == [("Büro", "buero", MUELLER_A)]
    assert addresses_in(raw, "From") == [("Wäscherei Müller & Söhne", "rechnung", "w.example")]
    assert envelope(m) == ("rechnung@w.example", [
        f"info@{MUELLER_A}", "adler@hotel-adler.example", "plain@b.example",
        "gast@hotel-adler.example", "w@b.example"])
    assert build_message(m)["To"].addresses[0].domain == MUELLER_A


def test_long_names_fold_and_survive() -> None:
    long_ascii = "Hotel Adler GmbH & Co. KG, Buchhaltung, z. Hd. Frau Dr. Mustermann-Schulze"
    long_umlaut = "Wäscherei Müller & Söhne GmbH, Abteilung Rechnungswesen und Außendienst Süd"
    no_space = "ä" * 40 + "@" * 10
    to = (Address("a@b.example", long_ascii), Address("b@b.example", long_umlaut),
          Address("c@b.example", no_space))
    raw = message_bytes(mail(to=to))
    assert all(len(line) <= 78 for line in headers_of(raw).split(b"\r\n"))
    assert b"=?utf-8?q?Hotel_Adler_GmbH_=26_Co=2E_KG=2C_Buchhaltung=2C_z=2E_Hd=2E_?=" in raw
    assert addresses_in(raw) == [(a.name, a.local, a.domain) for a in to]
    # a word longer than a line cannot be folded; it still goes whole (RFC 5322: 998)
    raw = message_bytes(mail(to=(Address("d@b.example", "x" * 90),)))
    assert addresses_in(raw) == [("x" * 90, "d", "b.example")]


ENCODED_CRLF = "=?utf-8?q?x=0D=0ABcc:_e@x.example?="


def test_encoded_words_cannot_smuggle_a_line_break() -> None:
    # the email package of Python < 3.11.10 writes a parsed encoded word back
    # decoded (CVE-2024-6923); so no encoded word from a value reaches it
    m = mail(subject=f"Rechnung {ENCODED_CRLF}", sender_name=ENCODED_CRLF,
             filename=f"{ENCODED_CRLF}.pdf", pdf=b"%PDF-1.4\n",
             to=(Address("a@b.example", ENCODED_CRLF),))
    raw = message_bytes(m)
    assert b"\nBcc" not in raw
    msg = parsed_back(raw)
    assert "bcc" not in [k.lower() for k in msg]
    assert str(msg["Subject"]) == "Rechnung x Bcc: e@x.example"
    [att] = list(msg.iter_attachments())
    assert [k.lower() for k in att] == ["content-type", "content-transfer-encoding",
                                        "content-disposition"]
    assert att.get_filename() == "x Bcc: e@x.example .pdf" == header_text(m.filename)
    assert addresses_in(raw) == [("x Bcc: e@x.example", "a", "b.example")]
    assert header_text("a =?b") == "a = ?b" and header_text("a\r\nb") == "a b"


def test_a_non_ascii_local_part_makes_an_smtputf8_message() -> None:
    m = mail(to=(Address("jürgen@straße.de", "Jürgen Groß"), "a@müller-wäsche.de"))
    assert needs_smtputf8(m)
    assert not needs_smtputf8(mail(to=(Address("a@müller-wäsche.de"),)))
    assert needs_smtputf8(mail(sender_address="büro@w.example"))
    assert needs_smtputf8(mail(reply_to="büro@w.example"))
    raw = message_bytes(m)
    assert "<jürgen@straße.de>".encode() in raw  # RFC 6532: UTF-8 headers, as written
    assert addresses_in(raw) == [("Jürgen Groß", "jürgen", "straße.de"),
                                 ("", "a", "müller-wäsche.de")]
    assert envelope(m) == ("rechnung@w.example", ["jürgen@xn--strae-oqa.de", f"a@{MUELLER_A}"])


def test_mail_to_still_takes_plain_strings_and_rejects_invalid_ones() -> None:
    raw = message_bytes(mail(to=("a@kunde.example", "b@kunde.example")))
    assert b"\r\nTo: a@kunde.example, b@kunde.example\r\n" in raw
    assert addresses_in(raw) == [("", "a", "kunde.example"), ("", "b", "kunde.example")]
    for bad in ("a@b.de, c@d.de", "kaputt", "a@b.de\r\nBcc: c@d.de", "a@☃.example"):
        with pytest.raises(ValueError, match="not a valid e-mail address"):
            build_message(mail(to=(bad,)))
    with pytest.raises(ValueError, match="at least one recipient"):
        build_message(mail(to=()))
    with pytest.raises(ValueError):
        build_message(mail(sender_address="Name <a@b.de>"))


def test_message_id_uses_the_a_label() -> None:
    assert make_message_id("u1", "rechnung@müller-wäsche.de") == f"<u1@{MUELLER_A}>"
    assert make_message_id("u1", "rechnung@w.example") == "<u1@w.example>"
    assert make_message_id("u1", "kaputt") == "<u1@tikos-outbox>"


# -- properties -------------------------------------------------------------------------

EVIL = st.sampled_from(["\r", "\n", "\r\n", "\x00", '"', "<", ">", "\\", ";", ",", "@", " ",
                        "\t", "=?", "?=", "=?utf-8?q?x=0D=0ABcc:_e@x.example?=", "\u2028",
                        "\x85", "(", ")", ":", "Bcc: evil@x.example", "ä", "ß", "☃", "\u200b"])
PIECES = st.sampled_from(["a@x.example", "info@müller-wäsche.de", "jürgen@straße.de",
                          f"INFO@{MUELLER_A}", '"Müller, Wäscherei" <m@x.example>',
                          "Hotel Adler <adler@hotel-adler.example>", "<b@x.example>",
                          '"Hotel \\"A\\"" <c@x.example>', "=?utf-8?q?G=C3=A4ste?= <g@x.de>"])
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
VALUE = st.lists(st.one_of(PIECES, EVIL, TEXT), max_size=8).map("".join)
REFERENCE = [k.lower() for k in build_message(mail(reply_to="r@x.example", pdf=b"%PDF"))]
PART = ["content-type", "content-transfer-encoding", "content-disposition"]


@settings(max_examples=400, deadline=None)
@given(values=st.lists(st.one_of(VALUE, st.none()), max_size=4), evil=VALUE)
def test_no_value_adds_a_header_or_recipient_and_accepted_ones_round_trip(
        values: list[str | None], evil: str) -> None:
    valid, rejected = parse_addresses(values)
    assert all(r and r == r.strip() and r == clean_text(r) for r in rejected)
    assert len({a.envelope.lower() for a in valid}) == len(valid)
    assert split_addresses(values, smtputf8=True) == ([a.envelope for a in valid], rejected)
    plain, refused = split_addresses(values)
    assert plain == [a.envelope for a in valid if not a.needs_smtputf8]
    assert refused[:len(rejected)] == rejected
    if not valid:
        return
    named = [dataclasses.replace(a, name=evil + a.name) for a in valid]
    m = mail(to=tuple(named), subject=evil, sender_name=evil, reply_to="r@x.example",
             filename=evil, pdf=b"%PDF")
    raw = message_bytes(m)
    utf8 = needs_smtputf8(m)
    assert headers_of(raw).isascii() or utf8
    msg = parsed_back(raw)
    assert [k.lower() for k in msg] == REFERENCE  # the same headers, once each
    [att] = list(msg.iter_attachments())
    assert [k.lower() for k in att] == PART
    # (get_filename would strip a pair of angle brackets: email.utils.unquote)
    assert att["Content-Disposition"].params["filename"] == (header_text(evil) or "document.pdf")
    assert "\n" not in str(msg["Subject"]) and "\r" not in str(msg["Subject"])
    assert len(addresses_in(raw, "From")) == len(addresses_in(raw, "Reply-To")) == 1
    # every accepted address, and its name, survives the header
    assert addresses_in(raw) == [(a.name, a.local, a.domain if utf8 else a.ascii_domain)
                                 for a in named]
    assert envelope(m)[1] == [a.envelope for a in valid]


@settings(max_examples=300, deadline=None)
@given(value=VALUE)
def test_a_recipient_string_is_one_recipient_or_an_error(value: str) -> None:
    try:
        raw = message_bytes(mail(to=(value,), reply_to=value or None, pdf=b"%PDF"))
    except ValueError:
        assert parse_address(value) is None
        return
    expected = parse_address(value)
    assert expected is not None
    utf8 = expected.needs_smtputf8
    assert addresses_in(raw) == addresses_in(raw, "Reply-To") == [
        (expected.name, expected.local, expected.domain if utf8 else expected.ascii_domain)]
    assert [k.lower() for k in parsed_back(raw)] == REFERENCE
