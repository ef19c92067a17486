"""The benchmarks. Each returns a dict of its figures; baselines run on the same data."""

from __future__ import annotations

import hashlib
import os
import signal
import smtplib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench.site import make_site, open_site, write_pdfs
from tikos_outbox.core.console import WebRole
from tikos_outbox.demo import free_port
from tikos_outbox.samples import make_pdf


@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tikos-bench-") as d:
        yield Path(d)


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# -- ingest_burst -----------------------------------------------------------------------------


def bare_ingest(folder: Path, db: Path) -> None:
    """The limit: scandir + read + sha256 + one SQLite transaction (WAL, synchronous FULL)."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE doc (path TEXT, sha256 TEXT, size INTEGER, data BLOB)")
    with conn:
        for de in os.scandir(folder):
            with open(de.path, "rb") as f:
                data = f.read()
            conn.execute("INSERT INTO doc VALUES (?, ?, ?, ?)",
                         (de.name, hashlib.sha256(data).hexdigest(), len(data), data))
    conn.close()


def ingest_burst(n: int) -> dict[str, Any]:
    with workdir() as root:
        config = make_site(root)
        archive = root / "archive"
        write_pdfs(archive, n, 20_000, 200_000)
        baseline = timed(lambda: bare_ingest(archive, root / "bare.db"))
        return timed_scan(config, n, "pending", baseline)


def timed_scan(config: Path, n: int, state: str, baseline: float) -> dict[str, Any]:
    """The service's own scan of the site's archive (all n files end in `state`),
    with the baseline measured before on the same files."""
    svc = open_site(config)
    report: list[Any] = []
    seconds = timed(lambda: report.append(svc.scan()))
    assert report[0].recorded.get(state) == n, report[0]
    svc.store.close()
    return {"files": n, "seconds": round(seconds, 3), "baseline_seconds": round(baseline, 3),
            "ratio": round(seconds / baseline, 3)}


# -- idle_poll -------------------------------------------------------------------------------


TINY = b"%PDF-1.4\n%%EOF\n"
OLD = 1_764_000_000  # 2025-11-24: every file and folder of a generated archive has this mtime


def make_tree(root: Path, files: int, per_dir: int = 100) -> list[str]:
    """An archive of years/months/days with `per_dir` tiny files per folder; returns
    the files' paths relative to `root`."""
    made, day = 0, 0
    paths: list[str] = []
    while made < files:
        rel = f"{2010 + day // 365}/{day // 30 % 12 + 1:02d}/{day:05d}"
        folder = root / rel
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(min(per_dir, files - made)):
            name = f"RE_{made + i}_4711.pdf"
            (folder / name).write_bytes(TINY)
            os.utime(folder / name, (OLD, OLD))
            paths.append(f"{rel}/{name}")
        made += per_dir
        day += 1
    for path, _, _ in os.walk(root):
        os.utime(path, (OLD, OLD))
    return paths


def idle_poll(n: int) -> dict[str, Any]:
    from watchdog.utils.dirsnapshot import DirectorySnapshot

    from tikos_outbox.scanner import IncrementalScanner

    with workdir() as root:
        tree = root / "archive"
        tree.mkdir()
        make_tree(tree, n)
        scanner = IncrementalScanner(tree)
        found = sum(1 for _ in scanner.scan(time.time_ns()))  # the first pass lists everything
        assert found == n, found

        def ours() -> None:
            changed = list(scanner.scan(time.time_ns()))
            assert not changed

        runs = [timed(ours) for _ in range(5)]
        base_runs = [timed(lambda: DirectorySnapshot(str(tree), recursive=True))
                     for _ in range(3)]
    seconds, baseline = statistics.median(runs), statistics.median(base_runs)
    return {"files": n, "seconds": round(seconds, 4), "baseline_seconds": round(baseline, 4),
            "ratio": round(seconds / baseline, 4)}


# -- flush -----------------------------------------------------------------------------------


@contextmanager
def sink(lifetime_s: float = 3600, *options: str) -> Iterator[int]:
    """bench/sink.py in its own process; `options` as its command line takes them."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.sink", str(port), str(lifetime_s),
                             *options],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def flush(m: int) -> dict[str, Any]:
    with workdir() as root, sink() as port:
        config = make_site(root, port=port)
        write_pdfs(root / "archive", m, 100_000, 100_000)
        svc = open_site(config)
        svc.scan()
        messages = prepared_messages(svc, m)  # the same, for the reference loops
        sender, rcpt = "rechnung@musterwaescherei.example", ["kunde@example.org"]

        def limit() -> None:
            with smtplib.SMTP("127.0.0.1", port) as conn:
                for msg in messages:
                    conn.sendmail(sender, rcpt, msg)

        def naive() -> None:
            for msg in messages[: max(50, m // 10)]:
                with smtplib.SMTP("127.0.0.1", port) as conn:
                    conn.sendmail(sender, rcpt, msg)

        limit_s = timed(limit)
        naive_s = timed(naive)
        report: list[Any] = []
        seconds = timed(lambda: report.append(svc.delivery.send_due(force=True)))
        assert report[0].sent == m, report[0]
        svc.store.close()
    rate, limit_rate = m / seconds, m / limit_s
    naive_rate = max(50, m // 10) / naive_s  # the naive loop sends a tenth: it is slow
    return {"messages": m, "msgs_per_s": round(rate, 1),
            "limit_msgs_per_s": round(limit_rate, 1), "naive_msgs_per_s": round(naive_rate, 1),
            "ratio_to_limit": round(rate / limit_rate, 3),
            "ratio_to_naive": round(rate / naive_rate, 3)}


def prepared_messages(svc: Any, m: int) -> list[bytes]:
    """The messages of the outbox's first `m` entries, built before any clock starts:
    what the reference loops send."""
    from tikos_outbox.core.message import build_message
    from tikos_outbox.core.states import State
    from tikos_outbox.core.views import Claimed, ListFilter
    from tikos_outbox.usecases.compose import mail_for

    mandant = svc.config.mandants[0]
    now = datetime.now(UTC)
    messages: list[bytes] = []
    for v in svc.store.queries.list_entries(ListFilter(limit=m)):
        c = Claimed(id=v.id, mandant=1, path=v.path, file_name=v.file_name,
                    sha256=v.sha256, doctype=v.doctype, docno=v.docno, customer=v.customer,
                    fields={}, recipients=v.recipients or [], message_id=v.message_id,
                    first_attempt_at=None, transient_failures=0,
                    previous_state=State.PENDING)
        pdf = svc.store.queries.load_copy(v.sha256) or b""
        messages.append(build_message(mail_for(svc.config, mandant, c, pdf, now)).as_bytes())
    return messages


# -- message ---------------------------------------------------------------------------------


def message(n: int) -> dict[str, Any]:
    """Building one mail with a 100 KB PDF (`message_bytes`) against the email
    package's own way (an EmailMessage with the stock SMTP policy, the PDF attached,
    `as_bytes`); and DATA's dot-stuffing of that mail against smtplib's (the
    multiline regular expression of `smtplib._quote_periods`). Best of 5 runs of n."""
    import re
    from email import policy
    from email.message import EmailMessage

    from tikos_outbox.core.message import Mail, message_bytes
    from tikos_outbox.smtp_pipeline import dot_stuffed

    pdf = make_pdf(["Rechnung 4711"], padding=100_000)
    mail = Mail("rechnung@musterwaescherei.example", "Musterwäscherei GmbH", None,
                ("kunde@example.org",), "Ihre Rechnung 4711",
                "Sehr geehrte Damen und Herren,\n\nanbei Ihre Rechnung.\n", "RE_4711.pdf",
                pdf, "<4711@musterwaescherei.example>", datetime(2026, 12, 6, tzinfo=UTC))

    def stock() -> bytes:
        msg = EmailMessage(policy=policy.SMTP)
        msg["From"] = f"{mail.sender_name} <{mail.sender_address}>"
        msg["To"] = mail.to[0]
        msg["Subject"], msg["Message-ID"] = mail.subject, mail.message_id
        msg["Date"] = "Sun, 06 Dec 2026 00:00:00 +0000"
        msg.set_content(mail.body)
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=mail.filename)
        return msg.as_bytes()

    leading_dot = re.compile(rb"(?m)^\.")
    wire = message_bytes(mail)

    def best_ms(fn: Callable[[], object]) -> float:
        return min(timed(lambda: [fn() for _ in range(n)]) for _ in range(5)) / n * 1000

    ours, theirs = best_ms(lambda: message_bytes(mail)), best_ms(stock)
    stuffed, regex = best_ms(lambda: dot_stuffed(wire)), best_ms(
        lambda: leading_dot.sub(b"..", wire))
    return {"build_ms": round(ours, 3), "email_package_build_ms": round(theirs, 3),
            "build_ratio": round(ours / theirs, 3), "dot_stuffing_ms": round(stuffed, 3),
            "smtplib_dot_stuffing_ms": round(regex, 3),
            "dot_stuffing_ratio": round(stuffed / regex, 3)}


# -- flush_wan -------------------------------------------------------------------------------

WAN_USER = "rechnung@musterwaescherei.example"


@contextmanager
def wan_server(root: Path, rtt_ms: float, password: str) -> Iterator[tuple[int, Path]]:
    """bench/wan.py in its own process: (the proxy's port, the server's certificate)."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.wan", str(root / "cert"),
                             str(rtt_ms), WAN_USER, password],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        word, port = proc.stdout.readline().split()
        assert word == "ready"
        yield int(port), root / "cert" / "server.pem"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)


def flush_wan(m: int, rtt_ms: float = 20.0) -> dict[str, Any]:
    """The flush to a provider `rtt_ms` away with STARTTLS and AUTH: ours, the limit
    (one connection, prebuilt messages, a bare smtplib loop) and naive (a connection
    with TLS and AUTH per message, over a tenth of the messages)."""
    import ssl

    from tikos_outbox.provision import set_secret

    password = "bench-Passwort-7"  # the benchmark's own server: a made-up login
    with workdir() as root, wan_server(root, rtt_ms, password) as (port, ca):
        config = make_site(root, port=port)
        text = config.read_text(encoding="utf-8").replace("[smtp]\n", (
            f"[smtp]\nsecurity = \"starttls\"\nca_file = '{ca}'\nauth = \"password\"\n"
            f"username = \"{WAN_USER}\"\n"), 1)
        config.write_text(text, encoding="utf-8")
        set_secret(config, "password", password)
        write_pdfs(root / "archive", m, 100_000, 100_000)
        svc = open_site(config)
        svc.scan()
        messages = prepared_messages(svc, m)
        context = ssl.create_default_context(cafile=str(ca))
        rcpt = ["kunde@example.org"]

        def connected() -> smtplib.SMTP:
            conn = smtplib.SMTP("127.0.0.1", port)
            conn.starttls(context=context)
            conn.login(WAN_USER, password)
            return conn

        def limit() -> None:
            with connected() as conn:
                for msg in messages:
                    conn.sendmail(WAN_USER, rcpt, msg)

        naive_n = max(20, m // 10)

        def naive() -> None:
            for msg in messages[:naive_n]:
                with connected() as conn:
                    conn.sendmail(WAN_USER, rcpt, msg)

        limit_s, naive_s = timed(limit), timed(naive)
        report: list[Any] = []
        seconds = timed(lambda: report.append(svc.delivery.send_due(force=True)))
        assert report[0].sent == m, report[0]
        svc.store.close()
    rate, limit_rate, naive_rate = m / seconds, m / limit_s, naive_n / naive_s
    return {"rtt_ms": rtt_ms, "messages": m, "msgs_per_s": round(rate, 1),
            "limit_msgs_per_s": round(limit_rate, 1), "naive_msgs_per_s": round(naive_rate, 1),
            "ratio_to_limit": round(rate / limit_rate, 3),
            "ratio_to_naive": round(rate / naive_rate, 3)}


# -- an outbox with R rows -----------------------------------------------------------------


def fill_outbox(svc: Any, rows: int, paths: list[str] | None = None) -> None:
    """R sent entries of the past (their copies purged), inserted in bulk; with
    `paths`, they are the entries of those (tiny) archive files."""
    from sqlalchemy import insert

    when = datetime(2026, 1, 1, tzinfo=UTC)
    batch = 5000
    tables = svc.store.tables
    with svc.store.engine.begin() as s:
        for start in range(0, rows, batch):
            entries = [{
                "id": 1_000_000 + i, "mandant": 1,
                "path": paths[i] if paths else f"2026/RE_{i}_4711.pdf",
                "file_name": f"RE_{i}_4711.pdf", "sha256": f"{i:064x}",
                "size": len(TINY) if paths else 50_000,
                "mtime_ns": OLD * 10**9, "doctype": "RE", "docno": str(i),
                "customer": "4711", "fields_json": "{}", "state": "sent", "reason": None,
                "recipients_json": '["kunde@example.org"]', "message_id": f"<{i}@x.example>",
                "created_at": when, "updated_at": when, "sent_at": when,
                "transient_failures": 0,
            } for i in range(start, min(rows, start + batch))]
            s.execute(insert(tables.entry), entries)
            s.execute(insert(tables.attempt), [{
                "entry_id": e["id"], "at": when, "server": "smtp:25", "outcome": "delivered",
                "code": 250, "reply": "2.0.0 Ok"} for e in entries])


def query(rows: int) -> dict[str, Any]:
    from tikos_outbox.core.views import ListFilter

    with workdir() as root:
        svc = open_site(make_site(root))
        fill_outbox(svc, rows)
        status_ms = statistics.median(timed(svc.monitor.status) for _ in range(7)) * 1000
        list_ms = statistics.median(
            timed(lambda: svc.admin.entries(ListFilter(limit=50))) for _ in range(7)) * 1000
        svc.store.close()
    return {"rows": rows, "status_ms": round(status_ms, 2), "list_ms": round(list_ms, 2)}


# -- cli ---------------------------------------------------------------------------------------


def best_of(cmd: list[str], runs: int = 7) -> float:
    """The fastest of several runs of a fresh process (the first one also warms the
    operating system's file cache)."""
    def once() -> None:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    return min(timed(once) for _ in range(runs))


def cli(rows: int) -> dict[str, Any]:
    """What an admin waits for: the commands as typed, on an outbox of R entries,
    against a bare `python -c pass` in the same run."""
    script = Path(sys.executable).with_name("tikos-outbox")
    tool = [str(script)] if script.exists() else [sys.executable, "-m", "tikos_outbox"]
    with workdir() as root:
        config = make_site(root)
        svc = open_site(config)
        fill_outbox(svc, rows)
        svc.close()
        cmd = [*tool, "--config", str(config)]
        return {"rows": rows,
                "status_s": round(best_of([*cmd, "status"]), 3),
                "list_s": round(best_of([*cmd, "list"]), 3),
                "show_s": round(best_of([*cmd, "show", str(1_000_000 + rows // 2)]), 3),
                "help_s": round(best_of([*tool, "--help"]), 3),
                "python_s": round(best_of([sys.executable, "-c", "pass"]), 3)}


# -- memory ------------------------------------------------------------------------------------


def _vm_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def memory(rows: int, pending: int = 1000, compare: bool = True) -> dict[str, Any]:
    """Peak RSS of a `run` process over an archive and outbox of `rows` documents
    while it sends `pending` new ones at its next (minutely) slot; with `compare`
    also with a tenth of the rows, to show whether memory grows with them."""
    large = _peak_rss(rows, pending)
    out = {"rows": rows, "peak_rss_mb": large["peak_rss_mb"], "sent": large["sent"]}
    if compare:
        small = _peak_rss(rows // 10, pending)
        out.update(rows_tenth=rows // 10, peak_rss_mb_tenth=small["peak_rss_mb"])
    return out


def _peak_rss(rows: int, pending: int) -> dict[str, Any]:
    with workdir() as root, sink() as port:
        config = make_site(root, port=port, every=1)
        svc = open_site(config)
        history = make_tree(root / "archive" / "history", rows)
        fill_outbox(svc, rows, [f"history/{path}" for path in history])
        write_pdfs(root / "archive", pending, 30_000, 60_000)
        svc.scan()
        proc = subprocess.Popen([sys.executable, "-m", "tikos_outbox", "--config", str(config),
                                 "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peak = 0.0
        deadline = time.monotonic() + 240 + rows / 2000  # its first pass lists every file
        try:
            while time.monotonic() < deadline:
                peak = max(peak, _vm_hwm_mb(proc.pid))
                if svc.store.queries.counts()["sent"] >= rows + pending:
                    break
                time.sleep(0.5)
            peak = max(peak, _vm_hwm_mb(proc.pid))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        sent = svc.store.queries.counts()["sent"] - rows
        svc.store.close()
    return {"peak_rss_mb": round(peak, 1), "sent": sent}


# -- latency ------------------------------------------------------------------------------------


def latency(files: int = 200, settle_s: float = 1.0) -> dict[str, Any]:
    """From a PDF's last write to its entry, with the watcher in events mode."""
    from tikos_outbox.core.views import ListFilter
    from tikos_outbox.runner import run

    with workdir() as root:
        config = make_site(root, mode="events", settle=settle_s)
        svc = open_site(config)
        ready = threading.Event()
        thread = threading.Thread(target=run, args=(svc, ready), daemon=True)
        thread.start()
        ready.wait(30)
        written: dict[str, float] = {}
        archive = root / "archive"
        for i in range(files):
            path = archive / f"RE_{200000 + i}_4711.pdf"
            with open(path, "wb") as f:
                f.write(make_pdf([f"Rechnung {i}"], padding=20_000))
            written[path.name] = time.time()
            time.sleep(0.02)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and svc.store.queries.counts()["pending"] < files:
            time.sleep(0.1)
        views = svc.store.queries.list_entries(ListFilter(limit=files))
        svc.stop.set()
        thread.join(30)
        svc.store.close()
    delays = sorted(v.created_at.timestamp() - written[v.file_name] for v in views)
    p95 = delays[max(0, round(0.95 * len(delays)) - 1)]
    return {"files": len(delays), "p50_s": round(statistics.median(delays), 3),
            "p95_s": round(p95, 3), "settle_s": settle_s}


# -- web_search ------------------------------------------------------------------------------

def _text_search(text: str) -> str:
    """The bare SQL of the console's search for a text that is not a number."""
    like = text.replace("_", "\\_")
    return (f"docno = '{text}' OR customer = '{text}' OR file_name LIKE '%{like}%' ESCAPE"
            f" '\\' OR id IN (SELECT entry_id FROM delivery WHERE address LIKE '%{like}%'"
            " ESCAPE '\\')")


SEARCHES = {  # what the office types, and the bare SQL of the same search (the baseline)
    "docno": ("q=54321", "docno = '54321' OR customer = '54321'"),
    "customer": ("q=4716", "docno = '4716' OR customer = '4716'"),
    "address": ("q=hotel-17.example", _text_search("hotel-17.example")),
    "file_name": ("q=RE_77777", _text_search("RE_77777")),
    "state_and_days": ("state=sent&from=2026-01-01&to=2026-01-01",
                       "state = 'sent' AND created_at >= '2025-12-31 23:00:00'"
                       " AND created_at < '2026-01-01 23:00:00'"),
    "page_20": ("page=20", "1 = 1"),
}


def web_search(rows: int) -> dict[str, Any]:
    """The console's search at `rows` entries (one customer address each), asked over
    HTTP of the real server; `server_ms` is the server's own time (its Server-Timing
    header), the median of 7, for the slowest of the searches; the baseline runs the
    bare SQL of each search (sqlite3, the same LIMIT) on the same database."""

    from sqlalchemy import insert

    from tikos_outbox.web.server import WebServer

    with workdir() as root:
        svc = open_site(make_site(root))
        fill_outbox(svc, rows)
        with svc.store.engine.begin() as s:
            for start in range(0, rows, 5000):
                s.execute(insert(svc.store.tables.delivery), [{
                    "entry_id": 1_000_000 + i, "role": "to", "state": "delivered",
                    "address": f"buchhaltung-{i % 5000}@hotel-{i % 300}.example", "name": "",
                    "reply": "250 2.0.0 Ok", "at": datetime(2026, 1, 1, tzinfo=UTC)}
                    for i in range(start, min(rows, start + 5000))])
        svc.users.add("bench", WebRole.VIEWER, "bench-passwort-1", "bench")
        server = WebServer(svc, svc.config.web, port=0)
        server.start()
        base = server.url.rstrip("/")
        opener = _logged_in(base, "bench", "bench-passwort-1")
        db = sqlite3.connect(str(root / "outbox.db"))
        figures: dict[str, Any] = {"rows": rows}
        worst = (0.0, 0.0, "")
        for name, (query, where) in SEARCHES.items():
            times = []
            for _ in range(7):
                with opener.open(f"{base}/search?{query}", timeout=60) as r:
                    assert r.status == 200
                    times.append(float(r.headers["Server-Timing"].split("dur=")[1]))
            offset = 950 if name == "page_20" else 0
            sql = f"SELECT * FROM entry WHERE {where} ORDER BY id DESC LIMIT 51 OFFSET {offset}"
            bare = statistics.median(timed(partial(_fetch, db, sql)) for _ in range(7)) * 1000
            ms = statistics.median(times)
            figures[f"{name}_ms"] = round(ms, 1)
            figures[f"{name}_bare_ms"] = round(bare, 1)
            if ms > worst[0]:
                worst = (ms, bare, name)
        server.stop()
        db.close()
        svc.store.close()
    figures.update(server_ms=round(worst[0], 1), slowest=worst[2],
                   baseline_ms=round(worst[1], 1),
                   ratio=round(worst[0] / worst[1], 2) if worst[1] else None)
    return figures


def _fetch(db: sqlite3.Connection, sql: str) -> None:
    db.execute(sql).fetchall()


def _logged_in(base: str, user: str, password: str) -> Any:
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(base + "/login", timeout=60) as r:
        token = re.search(r'name="csrf" value="([^"]+)"', r.read().decode())
    assert token
    form = urllib.parse.urlencode({"user": user, "password": password,
                                   "csrf": token.group(1)}).encode()
    with opener.open(base + "/login", data=form, timeout=60) as r:
        assert r.status == 200 and "/login" not in r.url, "the bench user could not log in"
    return opener


# -- first_start -----------------------------------------------------------------------------


def bare_walk(folder: Path, db: Path | None) -> int:
    """The limit of a first pass: a recursive os.scandir walk and one insert per file
    (path, size, mtime) in one SQLite transaction (WAL, synchronous FULL); with no
    `db`, the walk alone."""
    conn = sqlite3.connect(db if db is not None else ":memory:")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE doc (path TEXT, size INTEGER, mtime_ns INTEGER)")
    n = 0
    with conn:
        stack = [str(folder)]
        while stack:
            with os.scandir(stack.pop()) as it:
                for de in it:
                    if de.is_dir(follow_symlinks=False):
                        stack.append(de.path)
                    else:
                        st = de.stat(follow_symlinks=False)
                        if db is not None:
                            conn.execute("INSERT INTO doc VALUES (?, ?, ?)",
                                         (de.path, st.st_size, st.st_mtime_ns))
                        n += 1
    conn.close()
    return n


def table_floor(outbox: Path, copy: Path, per_transaction: int = 5_000) -> float:
    """Seconds to write the outbox's entry rows again, by `sqlite3`'s executemany
    alone (no Python of ours per row), into an empty table of the same schema and
    indexes, `per_transaction` rows a commit (WAL, synchronous FULL) as the first
    pass does: what the outbox's own table costs, whatever the code above it does."""
    source = sqlite3.connect(outbox)
    schema = [sql for (sql,) in source.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'entry' AND sql IS NOT NULL"
        " ORDER BY type DESC")]  # the table, then its indexes
    columns = [row[1] for row in source.execute("PRAGMA table_info(entry)")]
    rows = source.execute(f"SELECT {', '.join(columns)} FROM entry ORDER BY id").fetchall()
    source.close()
    conn = sqlite3.connect(copy)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for sql in schema:
        conn.execute(sql)
    insert = (f"INSERT INTO entry ({', '.join(columns)})"
              f" VALUES ({', '.join('?' * len(columns))})")
    started = time.perf_counter()
    for i in range(0, len(rows), per_transaction):
        with conn:
            conn.executemany(insert, rows[i:i + per_transaction])
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def first_start(n: int) -> dict[str, Any]:
    """The service's first pass over an archive of `n` files, all history (modified
    before the first start): recorded as skipped, never mailed."""
    with workdir() as root:
        config = make_site(root, baseline=True)
        archive = root / "archive"
        archive.mkdir(exist_ok=True)
        make_tree(archive, n)
        baseline = timed(lambda: bare_walk(archive, root / "bare.db"))
        walk = timed(lambda: bare_walk(archive, None))
        figures = timed_scan(config, n, "skipped", baseline)
        # the part no code of ours can take away: the walk and the entry table's inserts
        floor = table_floor(root / "outbox.db", root / "floor.db")
        return {**figures, "walk_seconds": round(walk, 3),
                "table_floor_seconds": round(floor, 3),
                "floor_ratio": round((walk + floor) / baseline, 3)}
