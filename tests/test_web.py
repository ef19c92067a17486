"""The web console's HTTP layer, every route and status code, without a browser:
Starlette's test client against the real app on a real outbox (documents recorded
from a folder and sent to a real SMTP server on loopback). Only the clock is fake."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.helpers import Cert
from tests.web_site import ADMIN, VIEWER, XSS_REPLY, Console, console_site
from tikos_outbox.samples import make_pdf
from tikos_outbox.usecases.intake import FirstPass
from tikos_outbox.web.app import ConsoleApp
from tikos_outbox.web.sessions import COOKIE


@pytest.fixture
def console(tmp_path: Path, cert: Cert) -> Iterator[Console]:
    with console_site(tmp_path, cert) as c:
        yield c


def client_for(c: Console, app: ConsoleApp | None = None, address: str = "127.0.0.1",
               base_url: str = "http://127.0.0.1:8025") -> TestClient:
    app = app or ConsoleApp(c.outbox, c.outbox.config.web)
    return TestClient(app.asgi(), base_url=base_url, follow_redirects=False,
                      client=(address, 50000))


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def login(client: TestClient, user: tuple[str, str], target: str = "") -> None:
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"user": user[0], "password": user[1], "csrf": token,
                                     "next": target})
    assert r.status_code == 303, r.text


def test_an_unauthenticated_request_gets_the_login_page_and_comes_back_after(
        console: Console) -> None:
    client = client_for(console)
    r = client.get("/search?q=10023")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fsearch%3Fq%3D10023"
    page = client.get(r.headers["location"])
    assert page.status_code == 200 and "Anmelden" in page.text
    token = csrf_of(page.text)
    r = client.post("/login", data={"user": "anna", "password": ADMIN[1], "csrf": token,
                                     "next": "/search?q=10023"})
    assert r.status_code == 303 and r.headers["location"] == "/search?q=10023"
    assert "RE 10023" in client.get("/search?q=10023").text
    for path in ("/", "/entries/1", "/entries/1/document", "/export.csv", "/audit"):
        assert TestClient(client.app, follow_redirects=False).get(path).status_code == 303


def test_the_session_cookie_is_signed_httponly_and_samesite_strict(console: Console) -> None:
    client = client_for(console)
    login(client, ADMIN)
    r = client.get("/")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; with TLS it is Secure
    value = client.cookies[COOKIE]
    body, sig = value.rsplit(".", 1)
    client.cookies.clear()
    client.cookies.set(COOKIE, body + "." + sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB"))
    assert client.get("/").status_code == 303  # a forged signature is no session
    assert ADMIN[1] not in value  # the cookie never holds the password


def test_security_headers_on_every_page(console: Console) -> None:
    client = client_for(console)
    for r in (client.get("/login"), client.get("/nowhere")):
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"


def test_login_without_the_csrf_token_is_refused(console: Console) -> None:
    client = client_for(console)
    client.get("/login")
    r = client.post("/login", data={"user": "anna", "password": ADMIN[1]})
    assert r.status_code == 403
    assert COOKIE not in r.headers.get("set-cookie", "") or "anna" not in r.text


def test_the_wrong_password_five_times_slows_the_next_attempts_down(
        console: Console) -> None:
    client = client_for(console)
    for _ in range(5):
        token = csrf_of(client.get("/login").text)
        r = client.post("/login", data={"user": "anna", "password": "falsch", "csrf": token})
        assert r.status_code == 401
        assert "Benutzername oder Passwort ist falsch." in r.text
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"user": "anna", "password": ADMIN[1], "csrf": token})
    assert r.status_code == 429  # even the right password waits now
    assert "Zu viele Fehlversuche. Bitte in 30 Sekunden erneut versuchen." in r.text
    console.clock.advance(31)
    login(client, ADMIN)  # after the wait it works, and the count starts again
    assert client.get("/").status_code == 200


def test_an_unknown_name_reads_like_a_wrong_password(console: Console) -> None:
    client = client_for(console)
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"user": "mallory", "password": "x" * 12, "csrf": token})
    assert r.status_code == 401 and "Benutzername oder Passwort ist falsch." in r.text


def test_after_login_only_a_local_path_is_a_place_to_go(console: Console) -> None:
    client = client_for(console)
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"user": "anna", "password": ADMIN[1], "csrf": token,
                                     "next": "//evil.example/x"})
    assert r.headers["location"] == "/"


def test_the_overview_shows_counts_attention_service_and_the_chart(console: Console) -> None:
    client = client_for(console)
    login(client, ADMIN)
    r = client.get("/")
    assert r.status_code == 200
    html = r.text
    assert re.search(r'state-sent.*?<td class="num">2</td>', html, re.S)
    assert re.search(r'state-failed.*?<td class="num">1</td>', html, re.S)
    assert "Braucht Aufmerksamkeit (2)" in html  # the failed one and the held one
    assert "Kunde 4712" in html  # the failed entry's line says what to do
    assert "läuft nicht" in html  # no `run` serves this outbox
    assert html.count("<rect ") == 30
    assert "<title>03.12.: 2</title>" in html  # two mails sent today


def test_search_by_number_customer_address_file_state_mandant_and_days(
        console: Console) -> None:
    client = client_for(console)
    login(client, VIEWER)

    def found(query: str) -> set[str]:
        r = client.get("/search" + query)
        assert r.status_code == 200, r.text
        return set(re.findall(r"RE (\d{5})</a>", r.text))

    assert found("?q=10023") == {"10023"}
    assert found("?q=4716") == {"10023"}
    assert found("?q=PFLEGEHEIM") == {"10023"}  # part of an address, any case
    assert found("?q=RE_10024") == {"10024"}
    assert found("?state=failed") == {"10022"}
    assert found("?mandant=1&state=pending") == {"10025"}
    assert found("?from=2026-12-03&to=03.12.2026") == {"10021", "10022", "10023", "10024",
                                                       "10025"}
    assert found("?to=2026-12-02") == set()
    assert found("?q=gibt-es-nicht") == set()
    assert found("?q=%25") == set()  # a LIKE wildcard is a character to search for
    assert client.get("/search?from=gestern").status_code == 400
    assert client.get("/search?state=nonsense").status_code == 400
    assert client.get("/search?page=x").status_code == 400


def test_search_pages_through_the_newest_first(console: Console) -> None:
    from tikos_outbox.core.console import Search

    first = console.outbox.console.search(Search(per_page=2))
    second = console.outbox.console.search(Search(per_page=2, page=2))
    third = console.outbox.console.search(Search(per_page=2, page=3))
    ids = [e.id for e in first.entries + second.entries + third.entries]
    assert ids == [5, 4, 3, 2, 1] and first.more and second.more and not third.more
    client = client_for(console)
    login(client, VIEWER)
    assert "ältere" not in client.get("/search").text  # five entries: one page of 50


def test_the_entry_shows_deliveries_attempts_and_escapes_what_servers_say(
        console: Console) -> None:
    client = client_for(console)
    login(client, VIEWER)
    failed = console.entry_of("10022")
    html = client.get(f"/entries/{failed}").text
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "weg@kunden.example" in html and "abgelehnt" in html
    two = client.get(f"/entries/{console.entry_of('10023')}").text
    assert two.count("zugestellt") >= 2
    assert "einkauf@pflegeheim.example" in two and "leitung@pflegeheim.example" in two
    assert client.get("/entries/999").status_code == 404


def test_the_document_inline_and_as_a_download_byte_for_byte(console: Console) -> None:
    client = client_for(console)
    login(client, VIEWER)
    entry = console.entry_of("10023")
    r = client.get(f"/entries/{entry}/document")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"].startswith("inline;")
    assert r.content == console.pdfs["10023"]
    r = client.get(f"/entries/{entry}/document?download=1")
    assert r.headers["content-disposition"] == \
        "attachment; filename*=UTF-8''RE_10023_4716.pdf"
    assert r.content == console.pdfs["10023"]
    assert client.get("/entries/999/document").status_code == 404


def test_an_admin_requeues_a_failed_entry_and_the_entry_says_who(console: Console) -> None:
    client = client_for(console)
    login(client, ADMIN)
    failed = console.entry_of("10022")
    page = client.get(f"/entries/{failed}").text
    assert f'action="/entries/{failed}/requeue"' in page
    r = client.post(f"/entries/{failed}/requeue", data={"csrf": csrf_of(page)})
    assert r.status_code == 303 and r.headers["location"] == f"/entries/{failed}?done=requeue"
    view = console.outbox.admin.entry(failed)
    assert view is not None and view.state == "pending"
    page = client.get(r.headers["location"]).text
    assert "Erledigt: Eintrag 2 erneut eingereiht." in page
    assert "web:anna" in page  # the history names the user
    [action] = console.outbox.console.actions()[:1]
    assert (action.actor, action.action.value, action.entry_id) == ("web:anna", "requeue",
                                                                    failed)
    assert "web:anna" in client.get("/audit").text


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
        console: Console) -> None:
    client = client_for(console)
    login(client, ADMIN)
    failed = console.entry_of("10022")
    for data in ({}, {"csrf": "not-the-token"}):
        r = client.post(f"/entries/{failed}/requeue", data=data)
        assert r.status_code == 403
        assert "Sicherheitsprüfung" in r.text
    view = console.outbox.admin.entry(failed)
    assert view is not None and view.state == "failed"
    assert client.post("/logout").status_code == 403  # logging out needs it too


def test_a_viewer_gets_no_buttons_and_a_forged_post_is_refused(console: Console) -> None:
    client = client_for(console)
    login(client, VIEWER)
    failed = console.entry_of("10022")
    page = client.get(f"/entries/{failed}").text
    assert "/requeue" not in page and "Nur Lesen" in page
    for move in ("requeue", "hold", "release"):
        r = client.post(f"/entries/{failed}/{move}", data={"csrf": csrf_of(page)})
        assert r.status_code == 403 and "nur für Administratoren" in r.text
    assert client.get("/audit").status_code == 403
    view = console.outbox.admin.entry(failed)
    assert view is not None and view.state == "failed"
    assert console.outbox.console.actions()[0].action.value != "requeue"


def test_sending_a_sent_invoice_again_needs_a_confirmation(console: Console) -> None:
    client = client_for(console)
    login(client, ADMIN)
    sent = console.entry_of("10021")
    before = console.outbox.admin.entry(sent)
    assert before is not None
    page = client.get(f"/entries/{sent}").text
    assert 'name="confirm"' in page
    r = client.post(f"/entries/{sent}/requeue", data={"csrf": csrf_of(page)})
    assert r.headers["location"] == f"/entries/{sent}?refused=not%20confirmed"
    assert "noch einmal gesendet werden soll" in client.get(r.headers["location"]).text
    after = console.outbox.admin.entry(sent)
    assert after is not None and after.state == "sent"
    r = client.post(f"/entries/{sent}/requeue", data={"csrf": csrf_of(page), "confirm": "1"})
    again = console.outbox.admin.entry(sent)
    assert again is not None and again.state == "pending"
    assert again.message_id != before.message_id  # a deliberate resend is a new mail


def test_hold_and_release_and_a_move_the_state_does_not_allow(console: Console) -> None:
    client = client_for(console)
    login(client, ADMIN)
    pending = console.entry_of("10025")
    token = csrf_of(client.get(f"/entries/{pending}").text)
    assert client.post(f"/entries/{pending}/hold", data={"csrf": token}).status_code == 303
    assert console.outbox.admin.entry(pending).state == "held"  # type: ignore[union-attr]
    r = client.post(f"/entries/{pending}/hold", data={"csrf": token})
    assert r.headers["location"] == f"/entries/{pending}?refused=not%20allowed"
    assert "geht das nicht" in client.get(r.headers["location"]).text
    assert client.post(f"/entries/{pending}/release", data={"csrf": token}).status_code == 303
    assert console.outbox.admin.entry(pending).state == "pending"  # type: ignore[union-attr]
    assert client.post(f"/entries/{pending}/delete", data={"csrf": token}).status_code == 404
    assert client.post("/entries/999/hold", data={"csrf": token}).status_code == 404
    moves = [(a.action.value, a.actor) for a in console.outbox.console.actions()]
    assert moves[:2] == [("release", "web:anna"), ("hold", "web:anna")]


def test_the_send_log_is_csv_for_excel(console: Console) -> None:
    client = client_for(console)
    login(client, VIEWER)
    r = client.get("/export.csv?from=2026-12-01&to=2026-12-03")
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == \
        'attachment; filename="versandnachweis-2026-12-01-bis-2026-12-03.csv"'
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:4] == ["Zeit", "Mandant", "Belegart", "Belegnummer"]
    lines = {(row[3], row[6], row[8]) for row in rows[1:]}
    assert lines == {("10021", "buchhaltung@hotel-adler.example", "zugestellt"),
                     ("10022", "weg@kunden.example", "abgelehnt"),
                     ("10023", "einkauf@pflegeheim.example", "zugestellt"),
                     ("10023", "leitung@pflegeheim.example", "zugestellt")}
    refused = next(row for row in rows if row[3] == "10022")
    assert refused[9] == XSS_REPLY and refused[0].startswith("03.12.2026 ")
    assert len(client.get("/export.csv?from=2026-11-01&to=2026-11-30").content
               .decode("utf-8-sig").splitlines()) == 1  # the header alone
    assert client.get("/export.csv?from=2026-12-03&to=2026-12-01").status_code == 400


def test_an_idle_session_ends_and_the_login_page_says_so(console: Console) -> None:
    client = client_for(console)
    login(client, ADMIN)
    console.clock.advance(29 * 60)
    assert client.get("/").status_code == 200  # and renews the session
    console.clock.advance(29 * 60)
    assert client.get("/").status_code == 200
    console.clock.advance(31 * 60)
    r = client.get("/")
    assert r.headers["location"] == "/login?next=%2F&ended=1"
    assert "Die Sitzung ist abgelaufen" in client.get(r.headers["location"]).text


def test_removing_a_user_or_a_new_password_ends_their_sessions(console: Console) -> None:
    anna, ben = client_for(console), client_for(console)
    login(anna, ADMIN)
    login(ben, VIEWER)
    console.clock.advance(1)
    console.outbox.users.set_password("anna", "Neues-Passwort-3", "cli:root")
    assert anna.get("/").status_code == 303
    console.outbox.users.remove("ben", "cli:root")
    assert ben.get("/").status_code == 303


def test_logout_ends_the_session(console: Console) -> None:
    client = client_for(console)
    login(client, VIEWER)
    token = csrf_of(client.get("/").text)
    copied = client.cookies[COOKIE]
    r = client.post("/logout", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/").status_code == 303
    client.cookies.clear()
    client.cookies.set(COOKIE, copied)  # a copy of the cookie is logged out too
    assert client.get("/").status_code == 303


def test_unknown_paths_and_methods(console: Console) -> None:
    client = client_for(console)
    assert client.get("/nowhere").status_code == 404
    assert client.get("/logout").status_code == 405
    assert client.get("/static/style.css").status_code == 200


def test_english_by_setting(console: Console) -> None:
    c = console
    c.outbox.close()
    text = c.site.config.read_text(encoding="utf-8")
    c.site.config.write_text(text.replace("[outbox]\n", "[outbox]\nlanguage = 'en'\n", 1),
                             encoding="utf-8")
    from tests.helpers import open_outbox

    c.outbox = open_outbox(c.site, c.clock)
    client = client_for(c)
    assert "Log in" in client.get("/login").text
    login(client, ADMIN)
    html = client.get("/").text
    assert "Entries by state" in html and "Needs attention (2)" in html


def test_every_test_the_readme_names_for_the_console_exists() -> None:
    """The README's security table names its tests; each must be one of ours."""
    root = Path(__file__).parent
    readme = (root.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Web console", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(test_\w+)`", section))
    assert len(named) >= 15
    defined = set()
    for file in ("test_web.py", "test_web_browser.py", "test_web_cli.py",
                 "reliability/test_secrets.py"):
        defined |= set(re.findall(r"^def (test_\w+)", (root / file).read_text("utf-8"), re.M))
    assert named <= defined, named - defined


# -- from the review: the unhappy paths -------------------------------------------------------


def export_rows(client: TestClient, first: str = "2026-12-01", last: str = "2026-12-31"
                ) -> list[list[str]]:
    r = client.get(f"/export.csv?from={first}&to={last}")
    assert r.status_code == 200
    return list(csv.reader(io.StringIO(r.content.decode("utf-8-sig")), delimiter=";"))[1:]


def test_the_send_log_names_each_recipient_once_per_attempt_it_was_in(
        console: Console) -> None:
    """A partly delivered mail: the address that had it is not logged again when the
    other one is retried."""
    pdf = make_pdf(["Rechnung 10026"])
    console.write(console.site.mandant_folder() / "RE_10026_4716.pdf", pdf)
    console.outbox.scan(FirstPass.NONE)
    console.behaviour.rcpt_replies["leitung@pflegeheim.example"] = "450 4.2.0 mailbox busy"
    console.outbox.delivery.send_due(force=True)
    del console.behaviour.rcpt_replies["leitung@pflegeheim.example"]
    console.clock.advance(3600)
    console.outbox.delivery.send_due(force=True)
    client = client_for(console)
    login(client, VIEWER)
    lines = [(r[6], r[8]) for r in export_rows(client) if r[3] == "10026"]
    assert lines == [("einkauf@pflegeheim.example", "zugestellt"),
                     ("leitung@pflegeheim.example", "wird wiederholt"),
                     ("leitung@pflegeheim.example", "zugestellt")]


def test_a_resend_keeps_the_first_mail_in_the_send_log_with_its_message_id(
        console: Console) -> None:
    sent = console.entry_of("10021")
    first = console.outbox.admin.entry(sent)
    assert first is not None
    console.clock.advance(24 * 3600)  # the next day
    assert console.outbox.admin.requeue([sent], "web:anna")[sent].ok
    assert console.outbox.delivery.send_due(force=True).sent == 2  # and 10025, pending
    again = console.outbox.admin.entry(sent)
    assert again is not None and again.message_id != first.message_id
    client = client_for(console)
    login(client, VIEWER)
    lines = [(r[0][:10], r[8], r[10]) for r in export_rows(client) if r[3] == "10021"]
    assert lines == [("03.12.2026", "zugestellt", first.message_id),
                     ("04.12.2026", "zugestellt", again.message_id)]
    html = client.get("/").text  # the chart counts the mail on each of its days
    assert "<title>03.12.: 2</title>" in html and "<title>04.12.: 2</title>" in html


def test_a_bounce_is_in_the_send_log(console: Console) -> None:
    from tikos_outbox.core.bounces import Kind, Notice

    store = console.outbox.store.bounces
    sent = console.outbox.admin.entry(console.entry_of("10021"))
    assert sent is not None
    found = store.entry_for(None, [sent.message_id])
    assert found is not None
    console.clock.advance(600)
    store.record(found, "<report-1@mx.example>", [Notice(
        "buchhaltung@hotel-adler.example", Kind.FAILED, "5.1.1",
        "550 5.1.1 user unknown")], console.clock.now())
    client = client_for(console)
    login(client, VIEWER)
    lines = [(r[6], r[8], r[9]) for r in export_rows(client) if r[3] == "10021"]
    assert lines == [("buchhaltung@hotel-adler.example", "zugestellt", "250 2.0.0 Ok: queued"),
                     ("buchhaltung@hotel-adler.example", "unzustellbar",
                      "5.1.1 550 5.1.1 user unknown")]


def test_parallel_wrong_logins_all_meet_the_brake(console: Console) -> None:
    import threading
    import urllib.error
    import urllib.parse
    import urllib.request
    from http.cookiejar import CookieJar

    from tikos_outbox.web.server import WebServer

    server = WebServer(console.outbox, console.outbox.config.web, port=0)
    server.start()
    base = server.url.rstrip("/")
    tries = 12
    ready = threading.Barrier(tries)
    codes: list[int] = []

    def attempt() -> None:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        with opener.open(base + "/login", timeout=60) as r:
            token = csrf_of(r.read().decode())
        form = urllib.parse.urlencode({"user": "anna", "password": "falsch-falsch",
                                       "csrf": token}).encode()
        ready.wait(60)
        try:
            opener.open(base + "/login", data=form, timeout=60)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)

    threads = [threading.Thread(target=attempt) for _ in range(tries)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    server.stop()
    assert len(codes) == tries
    assert codes.count(401) <= 5  # no more passwords were checked than the brake allows
    assert set(codes) <= {401, 429}


def test_the_brake_is_per_name_and_address_so_a_colleague_is_not_locked_out(
        console: Console) -> None:
    app = ConsoleApp(console.outbox, console.outbox.config.web)
    guesser, office = client_for(console, app, "10.0.0.66"), client_for(console, app, "10.0.0.7")
    for _ in range(5):
        token = csrf_of(guesser.get("/login").text)
        guesser.post("/login", data={"user": "anna", "password": "falsch", "csrf": token})
    token = csrf_of(guesser.get("/login").text)
    assert guesser.post("/login", data={"user": "ANNA ", "password": ADMIN[1],
                                        "csrf": token}).status_code == 429  # case, spaces
    login(office, ADMIN)  # anna at her own desk logs in
    for i in range(15):  # many names from one address
        token = csrf_of(guesser.get("/login").text)
        guesser.post("/login", data={"user": f"name{i}", "password": "x", "csrf": token})
    token = csrf_of(guesser.get("/login").text)
    assert guesser.post("/login", data={"user": "ben", "password": VIEWER[1],
                                        "csrf": token}).status_code == 429


def test_a_session_ends_after_twelve_hours_however_busy(console: Console) -> None:
    client = client_for(console)
    login(client, VIEWER)
    for _ in range(24):
        console.clock.advance(29 * 60)
        assert client.get("/").status_code == 200
    console.clock.advance(29 * 60)  # 12 h 30 min after login
    assert client.get("/").status_code == 303


def test_with_tls_the_cookie_is_secure(console: Console, tmp_path: Path) -> None:
    from dataclasses import replace

    web = replace(console.outbox.config.web, cert_file=tmp_path / "c.pem",
                  key_file=tmp_path / "k.pem")
    client = client_for(console, ConsoleApp(console.outbox, web),
                        base_url="https://127.0.0.1:8025")
    client.get("/login")
    assert "Secure" in client.get("/login").headers["set-cookie"]


def test_every_page_has_the_security_headers(console: Console) -> None:
    client = client_for(console)
    login(client, ADMIN)
    for path in ("/", "/search?q=10023", "/entries/1", "/audit", "/entries/999",
                 "/search?from=x"):
        r = client.get(path)
        assert "default-src 'none'" in r.headers["content-security-policy"], path
        assert r.headers["cache-control"] == "no-store", path
    doc = client.get("/entries/1/document")
    assert doc.headers["x-content-type-options"] == "nosniff"
    assert doc.headers["x-frame-options"] == "SAMEORIGIN"


def test_an_xml_invoice_is_shown_as_text_and_downloaded_as_xml(
        tmp_path: Path, cert: Cert) -> None:
    from tests.einvoice_files import invoice_xml

    extra = ("[[mandant]]\nid = 2\nfolder = 'archive/M2'\n"
             "pattern = '^(?P<doctype>RE)_(?P<docno>\\d+)_(?P<customer>\\d+)\\.xml$'\n")
    (tmp_path / "archive" / "M2").mkdir(parents=True)
    with console_site(tmp_path, cert, extra) as c:
        xml = invoice_xml("XRECHNUNG", "30001", "4711")
        c.write(tmp_path / "archive" / "M2" / "RE_30001_4711.xml", xml)
        c.outbox.scan(FirstPass.NONE)
        entry = c.entry_of("30001")
        client = client_for(c)
        login(client, VIEWER)
        r = client.get(f"/entries/{entry}/document")
        assert r.headers["content-type"] == "text/plain; charset=utf-8" and r.content == xml
        r = client.get(f"/entries/{entry}/document?download=1")
        assert r.headers["content-type"].startswith("application/xml") and r.content == xml


def test_a_move_posted_after_the_session_ended_comes_back_to_its_entry(
        console: Console) -> None:
    client = client_for(console)
    login(client, ADMIN)
    token = csrf_of(client.get("/entries/2").text)
    console.clock.advance(31 * 60)
    r = client.post("/entries/2/requeue", data={"csrf": token})
    assert r.headers["location"] == "/login?next=%2Fentries%2F2&ended=1"
    assert console.outbox.admin.entry(2).state == "failed"  # type: ignore[union-attr]


def test_odd_input_is_a_clear_400_or_404_never_a_500(console: Console) -> None:
    client = client_for(console)
    login(client, ADMIN)
    for path in ("/search?to=9999-12-31", "/export.csv?to=9999-12-31",
                 "/search?from=0001-01-01", "/search?page=99999999999"):
        assert client.get(path).status_code == 400, path
    assert client.get("/search?page=999999").status_code == 200
    for path in ("/entries/9223372036854775808", "/entries/9223372036854775808/document"):
        assert client.get(path).status_code == 404, path
    token = csrf_of(client.get("/").text)
    assert client.post("/entries/9223372036854775808/hold",
                       data={"csrf": token}).status_code == 404


def test_a_login_form_with_a_file_or_a_huge_body_is_refused_before_anything_is_stored(
        console: Console) -> None:
    client = client_for(console)
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"csrf": token, "user": "anna", "password": "x"},
                    files={"f": ("big.bin", b"x" * 100_000)})
    assert r.status_code == 400
    r = client.post("/login", content=b"user=anna&csrf=" + b"x" * 200_000,
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "too large" in r.text


def test_requeueing_a_duplicate_the_customer_has_needs_the_confirmation_too(
        console: Console) -> None:
    folder = console.site.mandant_folder()
    console.write(folder / "RE_90021_4711.pdf", console.pdfs["10021"])  # the same bytes
    console.outbox.scan(FirstPass.NONE)
    dup = console.entry_of("90021")
    view = console.outbox.admin.entry(dup)
    assert view is not None and view.state == "skipped"
    client = client_for(console)
    login(client, ADMIN)
    page = client.get(f"/entries/{dup}").text
    assert 'name="confirm"' in page
    r = client.post(f"/entries/{dup}/requeue", data={"csrf": csrf_of(page)})
    assert r.headers["location"].endswith("refused=not%20confirmed")
    assert console.outbox.admin.entry(dup).state == "skipped"  # type: ignore[union-attr]
