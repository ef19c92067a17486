"""The pure core: state machine, send window, replies, messages, naming — no I/O."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tikos_outbox.core.intake import Decision, Prior, decide
from tikos_outbox.core.message import (
    Mail,
    build_message,
    clean_text,
    message_bytes,
    split_addresses,
)
from tikos_outbox.core.naming import compile_pattern, parse_name
from tikos_outbox.core.replies import Outcome, Reply, Stage, classify, explain
from tikos_outbox.core.retry import RetryPolicy
from tikos_outbox.core.states import (
    CLAIMABLE,
    TRANSITIONS,
    Event,
    IllegalTransition,
    State,
    transition,
)
from tikos_outbox.core.window import SendWindow

BERLIN = ZoneInfo("Europe/Berlin")
WORKDAY = SendWindow(BERLIN, time(8), time(18), 60, frozenset(range(7)))

# -- states ---------------------------------------------------------------------------------


def test_sent_is_left_only_by_a_deliberate_requeue_or_the_customers_bounce() -> None:
    assert {e for (s, e) in TRANSITIONS if s is State.SENT} == {Event.REQUEUE, Event.BOUNCE}
    assert {e for (s, e) in TRANSITIONS if s is State.BOUNCED} == {Event.REQUEUE}
    with pytest.raises(IllegalTransition):
        transition(State.SENT, Event.CLAIM)
    with pytest.raises(IllegalTransition):
        transition(State.SENDING, Event.HOLD)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 4), st.sampled_from(list(Event))), max_size=60))
def test_random_event_sequences_never_lose_or_corrupt_an_entry(
        steps: list[tuple[int, Event]]) -> None:
    """Five entries get random events; illegal ones raise and change nothing.
    Every entry always has exactly one legal state, and an entry that reached
    `sent` only leaves it by an explicit requeue or the customer's bounce."""
    states = [State.PENDING] * 5
    for index, ev in steps:
        before = states[index]
        try:
            after = transition(before, ev)
        except IllegalTransition:
            assert (before, ev) not in TRANSITIONS
            continue
        if before is State.SENT:
            assert ev in (Event.REQUEUE, Event.BOUNCE)
        if after is State.SENDING:
            assert before in CLAIMABLE
        states[index] = after
    assert len(states) == 5 and all(isinstance(s, State) for s in states)


# -- send window --------------------------------------------------------------------------


def local(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=BERLIN)


@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 10, 25), date(2026, 11, 26)])
def test_slots_are_local_full_hours_also_on_dst_days(day: date) -> None:
    slots = WORKDAY.slots_on(day)
    assert [s.astimezone(BERLIN).hour for s in slots] == list(range(8, 19))
    assert all(s.astimezone(BERLIN).minute == 0 for s in slots)


def test_dst_change_shifts_utc_not_local() -> None:
    before, after = WORKDAY.slots_on(date(2026, 3, 28))[0], WORKDAY.slots_on(date(2026, 3, 29))[0]
    assert (before.hour, after.hour) == (7, 6)  # 08:00 CET = 07:00 UTC, 08:00 CEST = 06:00 UTC
    autumn = WORKDAY.slots_on(date(2026, 10, 25))[0]
    assert autumn.hour == 7


def test_night_window_skips_missing_hour_and_runs_repeated_hour_once() -> None:
    night = SendWindow(BERLIN, time(0), time(23, 30), 30, frozenset(range(7)))
    spring = [s.astimezone(BERLIN).strftime("%H:%M") for s in night.slots_on(date(2026, 3, 29))]
    assert "02:00" not in spring and "02:30" not in spring and len(spring) == 46
    autumn = night.slots_on(date(2026, 10, 25))
    assert len(autumn) == 48 and len(set(autumn)) == 48


def test_next_slot_and_days() -> None:
    weekdays = SendWindow(BERLIN, time(8), time(18), 60, frozenset(range(5)))
    friday_evening = local(2026, 11, 27, 18, 30)
    assert weekdays.next_slot(friday_evening) == local(2026, 11, 30, 8).astimezone(UTC)
    assert WORKDAY.next_slot(local(2026, 11, 26, 9)) == local(2026, 11, 26, 10).astimezone(UTC)


def test_after_downtime_one_run_not_a_burst() -> None:
    consumed = local(2026, 11, 26, 9).astimezone(UTC)
    now = local(2026, 11, 26, 14, 5)
    assert WORKDAY.due(consumed, now) == local(2026, 11, 26, 14).astimezone(UTC)
    assert WORKDAY.due(local(2026, 11, 26, 14), now) is None
    assert WORKDAY.due(None, local(2026, 11, 26, 7, 59)) == local(2026, 11, 25, 18).astimezone(UTC)


@settings(max_examples=300)
@given(
    st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31),
                 timezones=st.just(UTC)),
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC",
                     "Asia/Kolkata"]),
    st.integers(1, 180),
    st.integers(0, 23), st.integers(0, 23),
)
def test_window_properties_over_random_instants_and_zones(
        now: datetime, tzname: str, every: int, h1: int, h2: int) -> None:
    first, last = sorted((h1, h2))
    w = SendWindow(ZoneInfo(tzname), time(first), time(last), every, frozenset(range(7)))
    nxt = w.next_slot(now)
    assert nxt > now
    assert nxt - now <= timedelta(days=1, hours=3)
    loc = nxt.astimezone(w.tz)
    assert w.first <= loc.time().replace(tzinfo=None) <= w.last
    minutes = loc.hour * 60 + loc.minute - (first * 60)
    assert minutes % every == 0
    prev = w.last_slot(now)
    assert prev is not None and prev <= now
    # nothing lies strictly between the last and the next slot
    assert w.next_slot(prev) == nxt
    assert w.due(prev, now) is None and w.due(prev - timedelta(seconds=1), now) == prev


# -- replies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text", "outcome"),
    [
        (250, "2.0.0 Ok", Outcome.DELIVERED),
        (421, "4.3.2 shutting down", Outcome.TRANSIENT),
        (451, "4.3.0 local error", Outcome.TRANSIENT),
        (452, "4.5.3 too many recipients", Outcome.TRANSIENT),
        (552, "5.5.3 Too many recipients", Outcome.TRANSIENT),
        (550, "5.1.1 user unknown", Outcome.PERMANENT),
        (552, "5.3.4 message too big", Outcome.PERMANENT),
        (554, "5.7.1 rejected as spam", Outcome.PERMANENT),
        (None, "timed out", Outcome.TRANSIENT),
    ],
)
def test_classify(code: int | None, text: str, outcome: Outcome) -> None:
    assert classify(Reply(Stage.DATA, code, text, lost=code is None)) is outcome


def test_a_login_refused_for_basic_auth_points_to_oauth2() -> None:
    auth = Reply(Stage.AUTH, 535, "5.7.139 Authentication unsuccessful, basic auth blocked")
    assert "basic authentication" in explain(auth) and "OAuth2" in explain(auth)
    plain = Reply(Stage.AUTH, 535, "5.7.8 Error: authentication failed")
    assert "OAuth2" not in explain(plain) and "535 5.7.8" in explain(plain)


def test_retry_backoff_grows_and_lifetime_ends() -> None:
    p = RetryPolicy()
    now = datetime(2026, 11, 26, tzinfo=UTC)
    gaps = [p.next_attempt(now, n) - now for n in range(1, 7)]
    assert gaps == sorted(gaps) and gaps[0] == timedelta(minutes=30)
    assert gaps[-1] == timedelta(hours=8)
    assert not p.expired(now, now + timedelta(days=4, hours=23))
    assert p.expired(now, now + timedelta(days=5))


# -- message -------------------------------------------------------------------------------


def mail(**kw: object) -> Mail:
    base: dict[str, object] = dict(
        sender_address="rechnung@w.example", sender_name="Wäscherei Müller & Söhne",
        reply_to="info@w.example", to=("a@kunde.example",), subject="Ihre Rechnung 1",
        body="Grüße", filename="RE_1_4711.pdf", pdf=b"%PDF-1.4\n%%EOF\n",
        message_id="<x@w.example>", date=datetime(2026, 11, 26, 9, tzinfo=BERLIN))
    base.update(kw)
    return Mail(**base)  # type: ignore[arg-type]


def test_umlaut_file_name_uses_rfc2231() -> None:
    raw = build_message(mail(filename="Rechnung Müller.pdf")).as_bytes()
    assert b"filename*=utf-8''Rechnung%20M%C3%BCller.pdf" in raw
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    [att] = list(msg.iter_attachments())  # type: ignore[attr-defined]
    assert att.get_filename() == "Rechnung Müller.pdf"


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_no_field_can_add_a_header_or_recipient(evil: str) -> None:
    m = mail(subject="Rechnung " + evil, sender_name=evil, filename=evil + ".pdf")
    raw = build_message(m).as_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    headers = [k.lower() for k in msg]
    assert headers.count("to") == 1 and "bcc" not in headers and "cc" not in headers
    assert [a.addr_spec for a in msg["To"].addresses] == ["a@kunde.example"]
    assert msg["From"].addresses[0].addr_spec == "rechnung@w.example"
    assert len(msg["From"].addresses) == 1


@pytest.mark.parametrize(("value", "expected"), [
    # a line break separates two values; the header-like piece is not an address
    ("x@y.example\r\nBcc: evil@x.example", ["x@y.example"]),
    ("a@b.example, c@d.example", ["a@b.example", "c@d.example"]),  # a list, by design
    ("<a@b.example>", ["a@b.example"]),
    ("=?utf-8?q?evil=40x.example?=", []),
    ("Name <a@b.example>", ["a@b.example"]),  # the name goes into To, never a header
    ("a@b.example\nX: y", ["a@b.example"]),
])
def test_tikos_values_cannot_inject_headers(value: str, expected: list[str]) -> None:
    valid, _ = split_addresses([value])
    assert valid == expected
    assert clean_text("a\r\nb\x00c") == "a b c"


def test_split_addresses() -> None:
    valid, rejected = split_addresses(["a@x.example; B@y.example,a@X.example", None, " ",
                                       "kaputt", "c@z.example"])
    assert valid == ["a@x.example", "B@y.example", "c@z.example"]
    assert rejected == ["kaputt"]


# -- naming and intake -------------------------------------------------------------------


def test_parse_name() -> None:
    pattern = compile_pattern(r"^(?P<doctype>RE|LS)_(?P<docno>\d+)_(?P<customer>\d+)\.pdf$")
    doc = parse_name(pattern, "re_123_4711.PDF")
    assert doc is not None and (doc.doctype, doc.docno, doc.customer) == ("RE", "123", "4711")
    for name in ("~$RE_1_2.pdf", ".RE_1_2.pdf", "RE_1_2.pdf.tmp", "RE_1_2.txt", "XX_1_2.pdf"):
        assert parse_name(pattern, name) is None


def test_intake_rules() -> None:
    p = Prior
    assert decide(sha256="a", same_path=[p(1, State.SENT, "a")], same_content=None,
                  baseline=False, problem=None) is None
    d = decide(sha256="b", same_path=[p(1, State.SENT, "a"), p(2, State.HELD, "c")],
               same_content=None, baseline=False, problem=None)
    assert d is not None and d.state is State.HELD and d.supersede == (2,)
    assert d.reason == "changed after it was sent as entry 1"
    d = decide(sha256="b", same_path=[p(1, State.DEFERRED, "a")], same_content=None,
               baseline=False, problem=None)
    assert d is not None and d.state is State.PENDING and d.supersede == (1,)
    d = decide(sha256="b", same_path=[], same_content=p(7, State.SENT, "b"), baseline=False,
               problem=None)
    assert d is not None and (d.state, d.reason) == (State.SKIPPED, "duplicate of entry 7")
    d = decide(sha256="b", same_path=[], same_content=None, baseline=True, problem="x")
    assert d is not None and d.state is State.SKIPPED


def test_the_einvoice_hold_comes_after_the_identity_rules() -> None:
    p, why = Prior, "not a valid e-invoice: a PDF without e-invoice data"
    lines: list[int | None] = []

    def line(sent_as: int | None) -> str:
        lines.append(sent_as)
        return f"line {sent_as}"

    def rule(same_path: list[Prior], same_content: Prior | None) -> Decision | None:
        return decide(sha256="b", same_path=same_path, same_content=same_content,
                      baseline=False, problem=None, einvoice=why, einvoice_line=line)

    d = rule([], p(7, State.HELD, "b"))
    assert d is not None and (d.state, d.reason) == (State.SKIPPED, "duplicate of entry 7")
    d = rule([p(3, State.SENT, "a")], None)
    assert d is not None and (d.state, d.attention) == (State.HELD, "line 3")
    assert d.reason == f"changed after it was sent as entry 3; {why}"
    d = rule([p(4, State.HELD, "a")], None)  # held by the administrator
    assert d is not None and d.reason == f"a new version of entry 4, which is held; {why}"
    d = rule([p(5, State.HELD, "a", file_problem=True)], None)  # held for its file only
    assert d is not None and (d.state, d.reason, d.supersede) == (State.HELD, why, (5,))
    assert lines == [3, None]


def test_message_bytes_are_those_of_the_email_package() -> None:
    import os as _os

    for size in (0, 1, 56, 57, 58, 1000, 100_000):
        m = mail(pdf=_os.urandom(size), filename="Rechnung Müller.pdf")
        fast = message_bytes(m)
        slow = build_message(m).as_bytes()
        # equal up to the MIME boundary, which the email package draws at random
        boundary = lambda raw: raw.split(b'boundary="')[1].split(b'"')[0]  # noqa: E731
        assert fast.replace(boundary(fast), b"B") == slow.replace(boundary(slow), b"B")
        parsed = email.message_from_bytes(fast, policy=email.policy.default)
        [att] = list(parsed.iter_attachments())  # type: ignore[attr-defined]
        assert att.get_content() == m.pdf


def test_messages_share_their_header_classes_and_choose_their_boundary() -> None:
    """The email package's registry made a class for every header of every message
    (freed only by the cyclic collector: the soak saw them pile up); and it compiled
    a regular expression per message to check its random boundary."""
    first, second = build_message(mail(pdf=b"%PDF-1")), build_message(mail(pdf=b"%PDF-2"))
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        assert type(first[name]) is type(second[name]), name
    assert type(first["To"]) is not type(first["Subject"])  # each kind still its own
    boundaries = {m.get_boundary() for m in (first, second)}
    assert len(boundaries) == 2 and all(b and b.startswith("=_tikos_") for b in boundaries)
    for m in (first, second):
        body = m.get_body(preferencelist=("plain",))
        assert body is not None and m.get_boundary() not in body.get_content()
        # as the email package's own: Content-Type with its boundary on one line
        assert f'Content-Type: multipart/mixed; boundary="{m.get_boundary()}"\r\n' in str(m)
