"""The web console in a real browser: Playwright driving Debian's Chromium, headless,
against the console served by uvicorn on loopback, on a real outbox.

The screenshots of the README are taken here: set TIKOS_OUTBOX_SCREENSHOTS to a
folder (docs/screenshots) to keep them; otherwise they go to the test's tmp_path."""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest

from tests.helpers import Cert
from tests.web_site import ADMIN, VIEWER, Console, console_site

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.slow
#: as the machine's browser needs it: no sandbox as root, no calls home
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[playwright_api.Browser]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed: .ci/run must install it")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def served(tmp_path: Path, cert: Cert) -> Iterator[tuple[Console, str]]:
    from tikos_outbox.web.server import WebServer

    with console_site(tmp_path, cert) as c:
        server = WebServer(c.outbox, c.outbox.config.web, port=0)
        server.start()
        yield c, server.url.rstrip("/")
        server.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TIKOS_OUTBOX_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def new_page(browser: playwright_api.Browser) -> playwright_api.Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  accept_downloads=True, locale="de-DE")
    return context.new_page()


def pdf_viewer(frame: playwright_api.Frame) -> bool:
    return frame.url.startswith("chrome-extension://")


def log_in(page: playwright_api.Page, base: str, user: tuple[str, str]) -> None:
    page.goto(base + "/")
    assert "/login" in page.url
    page.get_by_label("Benutzer").fill(user[0])
    page.get_by_label("Passwort").fill(user[1])
    page.get_by_role("button", name="Anmelden").click()
    page.wait_for_url(base + "/")


def test_the_office_finds_an_invoice_sees_it_requeues_a_failed_one_and_exports(
        browser: playwright_api.Browser, served: tuple[Console, str], shots: Path) -> None:
    c, base = served
    page = new_page(browser)
    log_in(page, base, ADMIN)
    expect = playwright_api.expect
    expect(page.get_by_role("heading", name="Braucht Aufmerksamkeit (2)")).to_be_visible()
    page.screenshot(path=str(shots / "overview.png"), full_page=True)

    page.get_by_placeholder("Belegnummer, Kunde, Adresse oder Dateiname").fill("10023")
    page.get_by_role("button", name="Suchen").click()
    page.wait_for_url("**/search?q=10023**")
    rows = page.locator("table.entries tbody tr")
    expect(rows).to_have_count(1)
    page.screenshot(path=str(shots / "search.png"), full_page=True)

    with page.expect_event("framenavigated", predicate=pdf_viewer) as viewer:
        rows.get_by_role("link", name="RE 10023").click()
    expect(page.get_by_role("heading", name="Eintrag 3: RE 10023 · Kunde 4716")).to_be_visible()
    expect(page.locator("table.deliveries")).to_contain_text("einkauf@pflegeheim.example")
    # the browser shows the PDF inline: its PDF viewer opened the document in the frame
    # and drew the page's thumbnail (a viewer that got no PDF draws none)
    viewer.value.wait_for_selector("viewer-thumbnail", state="attached")
    src = page.locator("iframe.document").get_attribute("src")
    assert src == "/entries/3/document"
    pdf = page.request.get(base + src)  # what the frame shows, with the page's session
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body() == c.pdfs["10023"]
    page.screenshot(path=str(shots / "entry.png"), full_page=True)

    page.goto(base + "/search?state=failed")
    page.get_by_role("link", name="RE 10022").click()
    expect(page.locator("table.deliveries")).to_contain_text("<script>alert('x')</script>")
    page.get_by_role("button", name="Erneut senden").click()
    expect(page.get_by_role("status")).to_have_text("Erledigt: Eintrag 2 erneut eingereiht.")
    expect(page.locator("dd.state-pending")).to_have_text("wartet")
    expect(page.locator("table.history")).to_contain_text("web:anna")
    assert c.outbox.admin.entry(2).state == "pending"  # type: ignore[union-attr]

    page.goto(base + "/search")
    export = page.locator("section.export")
    export.get_by_label("von").fill("2026-12-01")
    export.get_by_label("bis").fill("2026-12-03")
    with page.expect_download() as info:
        export.get_by_role("button", name="Herunterladen").click()
    download = info.value
    assert download.suggested_filename == "versandnachweis-2026-12-01-bis-2026-12-03.csv"
    data = Path(download.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows_csv = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert rows_csv[0][3] == "Belegnummer"
    assert sorted(r[3] for r in rows_csv[1:]) == ["10021", "10022", "10023", "10023"]


def test_a_viewer_gets_no_requeue_button_and_a_forged_post_is_refused(
        browser: playwright_api.Browser, served: tuple[Console, str]) -> None:
    c, base = served
    page = new_page(browser)
    log_in(page, base, VIEWER)
    page.goto(base + "/entries/2")
    playwright_api.expect(page.get_by_role("heading", name="Eintrag 2")).to_be_visible()
    assert page.get_by_role("button", name="Erneut senden").count() == 0
    token = page.locator("form.logout input[name=csrf]").get_attribute("value")
    assert token
    forged = page.request.post(base + "/entries/2/requeue", form={"csrf": token})
    assert forged.status == 403
    assert c.outbox.admin.entry(2).state == "failed"  # type: ignore[union-attr]


def test_a_post_without_the_csrf_token_is_refused(
        browser: playwright_api.Browser, served: tuple[Console, str]) -> None:
    c, base = served
    page = new_page(browser)
    log_in(page, base, ADMIN)
    r = page.request.post(base + "/entries/2/requeue", form={"confirm": "1"})
    assert r.status == 403
    assert c.outbox.admin.entry(2).state == "failed"  # type: ignore[union-attr]
    [cookie] = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # no script can read the session


def test_without_a_session_every_page_is_the_login_page(
        browser: playwright_api.Browser, served: tuple[Console, str]) -> None:
    _, base = served
    page = new_page(browser)
    for path in ("/", "/entries/2", "/audit", "/export.csv"):
        page.goto(base + path) if path != "/export.csv" else page.request.get(base + path)
        if path != "/export.csv":
            assert "/login?next=" in page.url
            playwright_api.expect(page.get_by_role("heading", name="Anmelden")).to_be_visible()
    r = page.request.get(base + "/export.csv", max_redirects=0)
    assert r.status == 303 and r.headers["location"].startswith("/login")


def test_the_wrong_password_five_times_slows_the_login_down(
        browser: playwright_api.Browser, served: tuple[Console, str], shots: Path) -> None:
    _, base = served
    page = new_page(browser)
    page.goto(base + "/login")
    for _ in range(5):
        page.get_by_label("Benutzer").fill("anna")
        page.get_by_label("Passwort").fill("falsch-falsch")
        page.get_by_role("button", name="Anmelden").click()
        playwright_api.expect(page.get_by_role("alert")).to_have_text(
            "Benutzername oder Passwort ist falsch.")
    page.get_by_label("Passwort").fill(ADMIN[1])
    page.get_by_role("button", name="Anmelden").click()
    playwright_api.expect(page.get_by_role("alert")).to_have_text(
        "Zu viele Fehlversuche. Bitte in 30 Sekunden erneut versuchen.")
    assert "/login" in page.url
